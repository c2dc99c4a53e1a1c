// Training throughput of the 100K-class students at batch 256 with Adam on the tfjs backend
// student-train picks: the generalist MLP 256-256-64-C and the KC students (MLP head with KC
// targets, SC head, SC + self-paced), each with the full sigmoid CE over all C classes ("dense",
// a couple of steps only) and with sampled negatives (the batch's positives + R shared negatives).
// Prints ms/step, samples/s and forward FLOPs per sample (2 x multiply-adds; head counted on the
// columns actually computed). Usage: npx tsc -b && node bench/eft-100k/head-throughput.mjs [C=100000] [R=1024] [K=10]
import { selectBackend } from '@distillery/runtime/tfjs/backend';
const { verticalSizes } = await import('@distillery/plugin-eft-data');
const choice = await selectBackend({ cpus: 2, gpus: [], prefer: 'auto', log: () => {} });
const tf = choice.tf;
const { createStudent } = await import('@distillery/plugin-student-train');
const { Optimizer } = await import('@distillery/runtime/optim');
const { sigmoidKd } = await import('@distillery/plugin-student-train');
const { sampleColumns, sampledSigmoidCrossEntropy, targetsAtColumns } = await import(
  '@distillery/plugin-student-train'
);
const { sparseFromLists } = await import('@distillery/plugin-student-train');
const { Rng } = await import('@distillery/runtime/rng');
const C = Number(process.argv[2] ?? 100000),
  R = Number(process.argv[3] ?? 1024),
  K = Number(process.argv[4] ?? 10),
  B = 256,
  D = 256;
console.log(
  `backend ${choice.name}, ${choice.threads} threads; C=${C}, batch ${B}, R=${R} sampled negatives, ${K} teacher ids + label per sample`,
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
// Per sample: label + K ids from the label's vertical (like a specialist's top-K).
const rowsFor = () =>
  Array.from({ length: B }, () => {
    const y = rng.int(C);
    const v = verts[vOf[y]];
    const ids = [y];
    const probs = [0.9];
    while (ids.length < K + 1) {
      const c = v[rng.int(v.length)];
      if (!ids.includes(c)) {
        ids.push(c);
        probs.push(0.5 * rng.next());
      }
    }
    return { ids, probs, tail: 0 };
  });
const variants = [
  ['generalist mlp 256-256-64-C', { arch: 'mlp', hidden: [256, 64] }, 'hard'],
  ['+distill: mlp 256-256-64-C, KC targets', { arch: 'mlp', hidden: [256, 64] }, 'kc'],
  [
    '+SC: kc 256-256(s1)-20x64(s2)-C',
    { arch: 'kc', hidden: [256], sharedWidth: 256, verticalWidth: 64, verticals: verts, selfPaced: false },
    'kc',
  ],
  [
    '+self-paced: SC + gamma_v x/||x||',
    { arch: 'kc', hidden: [256], sharedWidth: 256, verticalWidth: 64, verticals: verts, selfPaced: true },
    'kc',
  ],
];
const mode = process.argv[5] ?? 'both';
for (const [name, cfg, kind] of variants) {
  const s = createStudent(cfg, [D], C, 0);
  const params = s.params.reduce((a, p) => a + p.variable.size, 0);
  const opt = new Optimizer(
    { name: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0.9, weightDecay: 0 },
    s.params,
  );
  const x = tf.randomNormal([B, D]);
  const vars = s.params.map((p) => p.variable);
  let cols = 0;
  const step = (sampled) =>
    tf.tidy(() => {
      const rows = kind === 'hard' ? rowsFor().map((r) => ({ ids: [r.ids[0]], probs: [1], tail: 0 })) : rowsFor();
      let f;
      if (sampled) {
        const sc = sampleColumns(rows, C, R, rng);
        cols = sc.columns.length;
        const t = tf.tensor2d(targetsAtColumns(rows, sc.columns), [B, cols]);
        const w = tf.tensor1d(sc.weights);
        f = () => sampledSigmoidCrossEntropy(s.applyColumns(x, true, sc.columns), t, w);
      } else {
        cols = C;
        const tgt = sparseFromLists(rows, 'zero');
        f = () => sigmoidKd(s.apply(x, true), tgt);
      }
      const { value, grads } = tf.variableGrads(f, vars);
      const named = {};
      for (const p of s.params) named[p.name] = grads[p.variable.name];
      opt.apply(named, 1e-3);
      value.dataSync();
    });
  // Forward multiply-adds per sample: trunk + blocks + head columns (+ Gram terms for self-paced, amortised per batch).
  const trunk = cfg.arch === 'mlp' ? D * 256 + 256 * 64 : D * 256 + 256 * 256 + 256 * 20 * 64;
  const flops = (c) => 2 * (trunk + 64 * c + (cfg.selfPaced ? 20 * 64 * 64 + (64 * 64 * C) / B : 0));
  for (const sampled of mode === 'both' ? [false, true] : [mode === 'sampled']) {
    const n = sampled ? 8 : 1;
    step(sampled);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) step(sampled);
    const ms = (performance.now() - t0) / n;
    console.log(
      `${name.padEnd(40)} ${sampled ? `sampled (${cols} cols)` : 'dense'.padEnd(20)}  params ${(params / 1e6).toFixed(2)}M  fwd ${(flops(cols) / 1e6).toFixed(2)} MFLOP/sample (dense ${(flops(C) / 1e6).toFixed(1)})  ${ms.toFixed(0)} ms/step  ${((B / ms) * 1000).toFixed(0)} samples/s`,
    );
  }
  opt.dispose();
}
