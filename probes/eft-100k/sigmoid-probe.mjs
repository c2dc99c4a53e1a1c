#!/usr/bin/env node
// Why do sigmoid-CE students learn slowly? One in-process training run of the generalist MLP on an
// eft-generate dataset, scored on its test split (top-1), for one choice of loss / lr / steps / output
// layer initialisation. Usage (after npx tsc -b):
//   node probes/eft-100k/sigmoid-probe.mjs <data dir> <ce|sigmoid_ce> <lr> <steps> <outInit: he|small|zero> [negatives]
// outInit: he = the student's default He-uniform last layer; small = that layer scaled by 0.1;
// zero = zero weights. Sigmoid runs start the output bias at log(1/C) in every case.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { readModelFile } from '@distillery/runtime/onnx';
const { tf } = await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm', log: () => {} });
const { openTrainingData, epochBatches } = await import('@distillery/plugin-student-train');
const { trainStudent, exportOnnx } = await import('@distillery/plugin-student-train');
const { createStudent } = await import('@distillery/plugin-student-train');

const [dir, kind, lrArg, stepsArg, outInit = 'he', negArg = '1024'] = process.argv.slice(2);
const lr = Number(lrArg),
  steps = Number(stepsArg);
const data = await openTrainingData(dir, [], 'train');
const test = await openTrainingData(dir, [], 'test');
const C = data.info.numClasses;
const studentCfg = { arch: 'mlp', hidden: [256, 64] };
const tmp = mkdtempSync(join(tmpdir(), 'sigprobe-'));
let init;
if (outInit !== 'he') {
  const s = createStudent(studentCfg, data.info.shape, C, 0);
  for (const p of s.params) {
    if (p.name === 'fc2.weight')
      p.variable.assign(outInit === 'zero' ? tf.zerosLike(p.variable) : tf.mul(p.variable, 0.1));
    if (p.name === 'fc2.bias' && kind !== 'ce') p.variable.assign(tf.fill(p.variable.shape, -Math.log(C)));
  }
  exportOnnx(s, join(tmp, 'init.onnx'));
  init = { model: await readModelFile(join(tmp, 'init.onnx')), where: 'probe init' };
}
const cfg = {
  student: studentCfg,
  loss: {
    kind,
    divergence: 'forward_kl',
    temperature: 1,
    alpha: 0,
    skew: 0.1,
    softLabels: 'auto',
    topkPolicy: 'renormalise',
    kcTopK: 10,
    kcGtMix: 0,
    sampledNegatives: kind === 'ce' ? 0 : Number(negArg),
  },
  optimizer: { name: 'adam', lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0.9, weightDecay: 0 },
  schedule: { name: 'cosine', warmupSteps: 0, stepSize: 1000, gamma: 0.1, minFactor: 0 },
  epochs: 1000,
  maxSteps: steps,
  batchSize: 256,
  shuffleBuffer: 10000,
  clipNorm: 0,
  seed: 0,
  checkpointEvery: 0,
  ...(init ? { init } : {}),
};
const t0 = Date.now();
const losses = [];
const r = await trainStudent(data, cfg, join(tmp, 'state'), {
  log: () => {},
  metric: (n, v) => n === 'loss' && losses.push(v),
  progress: () => {},
});
let hit = 0,
  n = 0;
for await (const b of epochBatches(test, 500, 1, 0, 0)) {
  const x = tf.tensor2d(Float32Array.from(b.flatMap((s) => Array.from(s.x))), [b.length, b[0].x.length]);
  const pred = tf.argMax(r.student.apply(x, false), 1).dataSync();
  b.forEach((s, i) => {
    n++;
    if (pred[i] === s.label) hit++;
  });
}
rmSync(tmp, { recursive: true, force: true });
console.log(
  `${kind} lr=${lr} steps=${steps} outInit=${outInit} loss ${losses[0]?.toFixed(2)} -> ${r.finalLoss.toFixed(3)}  test top-1 ${(hit / n).toFixed(3)} (n=${n})  ${((Date.now() - t0) / 1000).toFixed(0)} s`,
);
