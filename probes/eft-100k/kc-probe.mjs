#!/usr/bin/env node
// Diagnostics for issue 17: one in-process student-train run on an eft-100k project's data and
// teacher outputs, scored on every test row against all classes: top-1, top-5 and mean per-vertical
// AP ranked on the raw logits (= the sigmoid scores, what sigmoid-trained students produce) and on
// each row's softmax (what the eval stage computed before `apScore`). Prints one JSON line.
// Usage (after npx tsc -b):
//   node bench/eft-100k/kc-probe.mjs <project out dir: out/eft-100k> '<JSON TrainConfig overrides>' [label]
// The overrides are merged into the defaults below (the pipeline's generalist or kc stage);
// "preset": "generalist" | "kc" picks the base. "epochs": 0 scores the initial model.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
const { tf } = await selectBackend({ cpus: 2, gpus: [], prefer: 'wasm', log: () => {} });
const { openTrainingData, epochBatches } = await import('@distillery/plugin-student-train');
const { trainStudent } = await import('@distillery/plugin-student-train');
const { StreamingClassificationMetrics } = await import('@distillery/plugin-eval');

const [out, overridesArg = '{}', label = ''] = process.argv.slice(2);
const o = JSON.parse(overridesArg);
const preset = o.preset ?? 'generalist';
delete o.preset;
const dataDir = join(out, 'data');
const teacherDirs =
  preset === 'kc'
    ? readdirSync(out)
        .filter((d) => d.startsWith('teacher@'))
        .map((d) => join(out, d))
    : [];
const data = await openTrainingData(dataDir, teacherDirs, 'train');
const test = await openTrainingData(dataDir, [], 'test');
const C = data.info.numClasses;
const base = {
  student:
    preset === 'kc'
      ? { arch: 'kc', hidden: [256], sharedWidth: 256, verticalWidth: 64, verticals: [], selfPaced: true }
      : { arch: 'mlp', hidden: [256, 64] },
  loss: {
    kind: preset === 'kc' ? 'kc' : 'sigmoid_ce',
    divergence: 'forward_kl',
    temperature: 1,
    alpha: 0,
    skew: 0.1,
    softLabels: 'auto',
    topkPolicy: 'renormalise',
    kcTopK: 10,
    kcGtMix: 0.5,
    sampledNegatives: 1024,
  },
  optimizer: { name: 'adam', lr: 3e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0.9, weightDecay: 0 },
  schedule: { name: 'cosine', warmupSteps: 0, stepSize: 1000, gamma: 0.1, minFactor: 0 },
  epochs: 1,
  maxSteps: 600,
  batchSize: 256,
  shuffleBuffer: 10000,
  clipNorm: 0,
  seed: 0,
  checkpointEvery: 0,
  headInit: 'imprint',
  imprintAfter: true,
};
const cfg = {
  ...base,
  ...o,
  student: { ...base.student, ...(o.student ?? {}) },
  loss: { ...base.loss, ...(o.loss ?? {}) },
  optimizer: { ...base.optimizer, ...(o.optimizer ?? {}) },
};
const tmp = mkdtempSync(join(tmpdir(), 'kcprobe-'));
const t0 = Date.now();
let lastLoss = NaN;
const r = await trainStudent(data, cfg, join(tmp, 'state'), {
  log: () => {},
  metric: (n, v) => {
    if (n === 'loss') lastLoss = v;
  },
  progress: () => {},
});
const trainSeconds = (Date.now() - t0) / 1000;
const vmap = JSON.parse(readFileSync(join(dataDir, 'verticals.json'), 'utf8'));
const verticals = { classToVertical: Int32Array.from(vmap.classToVertical), names: vmap.names };
const raw = new StreamingClassificationMetrics({
  numClasses: C,
  topk: [1, 5],
  eceBins: 15,
  probabilities: true,
  verticals,
});
const soft = new StreamingClassificationMetrics({
  numClasses: C,
  topk: [1],
  eceBins: 15,
  probabilities: false,
  verticals,
});
for await (const b of epochBatches(test, 250, 1, 0, 0)) {
  const x = tf.tensor2d(Float32Array.from(b.flatMap((s) => Array.from(s.x))), [b.length, b[0].x.length]);
  const z = tf.tidy(() => r.student.apply(x, false));
  const scores = await z.data();
  z.dispose();
  x.dispose();
  const labels = Int32Array.from(b, (s) => s.label);
  raw.add(scores, labels, b.length);
  soft.add(scores, labels, b.length);
}
const a = raw.summary();
const s = soft.summary();
rmSync(tmp, { recursive: true, force: true });
console.log(
  JSON.stringify({
    label,
    preset,
    overrides: o,
    steps: r.steps,
    lastLoss,
    trainSeconds,
    testRows: a.samples,
    top1: a.top1,
    top5: a.topk['5'],
    mpvapSigmoid: a.meanPerVerticalAP,
    mpvapSoftmax: s.meanPerVerticalAP,
  }),
);
