#!/usr/bin/env node
// ms/step of a 100K-class student step with sampled negatives, dense Adam on every parameter vs the
// row-sparse head (student-train sparse-head.ts: host rows, lazy Adam on the step's rows), interleaved
// so both see the same machine load. Batch 256, K teacher ids + label per sample from the label's vertical.
// Usage: npx tsc -b && node bench/eft-100k/sparse-head-throughput.mjs [C=100000] [K=10] [s2=256] [steps=4]
import { selectBackend } from '@distillery/runtime/tfjs/backend';
const { verticalSizes } = await import('@distillery/plugin-eft-data');
const choice = await selectBackend({ cpus: 2, gpus: [], prefer: 'auto', log: () => {} });
const tf = choice.tf;
const { createStudent } = await import('@distillery/plugin-student-train');
const { Optimizer } = await import('@distillery/runtime/optim');
const { SparseHead } = await import('@distillery/plugin-student-train');
const { sampleColumns, sampledSigmoidCrossEntropy, targetsAtColumns } = await import(
  '@distillery/plugin-student-train'
);
const { Rng } = await import('@distillery/runtime/rng');
const C = Number(process.argv[2] ?? 100000),
  K = Number(process.argv[3] ?? 10),
  S2 = Number(process.argv[4] ?? 256),
  STEPS = Number(process.argv[5] ?? 4);
const B = 256,
  D = 256,
  R = 1024;
const adam = { name: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0.9, weightDecay: 0 };
console.log(
  `backend ${choice.name}, ${choice.threads} threads; C=${C}, batch ${B}, R=${R}, K=${K}, last hidden width ${S2}`,
);
// Zipf(1) vertical sizes as eft-generate makes them (contiguous ranges).
const sizes = verticalSizes(C, 20, 1);
const verts = [];
let at = 0;
for (const n of sizes) {
  verts.push(Array.from({ length: n }, (_, i) => at + i));
  at += n;
}
const vOf = new Int32Array(C);
verts.forEach((cl, v) => cl.forEach((c) => (vOf[c] = v)));
const rng = new Rng(1);
const rowsFor = (hard) =>
  Array.from({ length: B }, () => {
    const y = rng.int(C);
    const v = verts[vOf[y]];
    const ids = [y];
    const probs = [0.9];
    while (!hard && ids.length < K + 1) {
      const c = v[rng.int(v.length)];
      if (!ids.includes(c)) {
        ids.push(c);
        probs.push(0.5 * rng.next());
      }
    }
    return { ids, probs: hard ? [1] : probs };
  });
const variants = [
  ['generalist mlp 256-256-' + S2, { arch: 'mlp', hidden: [256, S2] }, true],
  [
    'kc 256-256(s1)-20x' + S2 + ' self-paced',
    { arch: 'kc', hidden: [256], sharedWidth: 256, verticalWidth: S2, verticals: verts, selfPaced: true },
    false,
  ],
];
for (const [name, cfg, hard] of variants) {
  const x = tf.randomNormal([B, D]);
  const runs = {};
  for (const mode of ['dense', 'row-sparse']) {
    const s = createStudent(cfg, [D], C, 0);
    const head = mode === 'row-sparse' ? new SparseHead(s, adam) : undefined;
    head?.load();
    const headVars = head?.variables() ?? new Set();
    const body = s.params.filter((p) => !headVars.has(p.variable));
    runs[mode] = { s, head, body, opt: new Optimizer(adam, body), ms: [] };
  }
  let cols = 0;
  const step = (run) => {
    const rows = rowsFor(hard);
    const sc = sampleColumns(rows, C, R, rng);
    cols = sc.columns.length;
    const t0 = performance.now();
    tf.tidy(() => {
      const t = tf.tensor2d(targetsAtColumns(rows, sc.columns), [B, cols]);
      const w = tf.tensor1d(sc.weights);
      const hs = run.head?.begin(sc.columns);
      const vars = [...run.body.map((p) => p.variable), ...(hs?.variables ?? [])];
      const { value, grads } = tf.variableGrads(
        () =>
          sampledSigmoidCrossEntropy(
            hs ? run.head.logits(run.s.penultimate(x), hs) : run.s.applyColumns(x, true, sc.columns),
            t,
            w,
          ),
        vars,
      );
      const named = {};
      for (const p of run.body) named[p.name] = grads[p.variable.name];
      if (hs) run.head.apply(hs, new Map(hs.variables.map((v) => [v, grads[v.name]])), 1e-3);
      run.opt.apply(named, 1e-3);
      value.dataSync();
    });
    return performance.now() - t0;
  };
  step(runs.dense);
  step(runs['row-sparse']); // warm-up
  for (let i = 0; i < STEPS; i++) for (const mode of ['dense', 'row-sparse']) runs[mode].ms.push(step(runs[mode]));
  const med = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
  console.log(
    `${name.padEnd(34)} ~${cols} cols  dense Adam ${med(runs.dense.ms).toFixed(0)} ms/step  row-sparse ${med(runs['row-sparse'].ms).toFixed(0)} ms/step  (median of ${STEPS}, interleaved)`,
  );
  for (const r of Object.values(runs)) r.opt.dispose();
}
