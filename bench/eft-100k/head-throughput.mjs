// Training throughput of the 100K-class students (generalist MLP 256-256-64-C, KC with SC head and
// self-paced scales) on the tfjs backend student-train picks, batch 256, Adam: ms/step and samples/s.
// Usage: npx tsc -b && node bench/eft-100k/head-throughput.mjs [classes=100000]
import { selectBackend } from '@distillery/core/tfjs/backend';
const choice = await selectBackend({ cpus: 2, gpus: [], prefer: 'auto', log: () => {} });
const tf = choice.tf;
console.log('backend', choice.name, choice.threads);
const { createStudent } = await import('@distillery/plugin-student-train/models/student');
const { Optimizer } = await import('@distillery/plugin-student-train/optim');
const { crossEntropy, sigmoidKd } = await import('@distillery/plugin-student-train/losses/index');
const { sparseFromLists } = await import('@distillery/plugin-student-train/targets');
const C = Number(process.argv[2] ?? 100000), B = 256;
const verts = []; let at = 0; for (let v = 0; v < 20; v++) { const n = v < 19 ? Math.floor(C / 20) : C - at; verts.push(Array.from({ length: n }, (_, i) => at + i)); at += n; }
for (const [name, cfg] of [['mlp64', { arch: 'mlp', hidden: [256, 64] }], ['kc', { arch: 'kc', hidden: [256], sharedWidth: 256, verticalWidth: 64, verticals: verts, selfPaced: true }]]) {
  const s = createStudent(cfg, [256], C, 0);
  const opt = new Optimizer({ name: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0.9, weightDecay: 0 }, s.params);
  const x = tf.randomNormal([B, 256]);
  const labels = tf.tensor1d(Int32Array.from({ length: B }, (_, i) => (i * 7919) % C), 'int32');
  const vars = s.params.map((p) => p.variable);
  const step = () => tf.tidy(() => {
    const tgt = name === 'kc' ? sparseFromLists(Array.from({ length: B }, (_, i) => ({ ids: [(i * 7919) % C], probs: [0.9], tail: 0 })), 'zero') : undefined;
    const { value, grads } = tf.variableGrads(() => { const z = s.apply(x, true); return name === 'kc' ? sigmoidKd(z, tgt) : crossEntropy(z, labels); }, vars);
    const named = {}; for (const p of s.params) named[p.name] = grads[p.variable.name];
    opt.apply(named, 1e-3); value.dataSync();
  });
  step(); const t0 = performance.now(); const n = 5; for (let i = 0; i < n; i++) step();
  const ms = (performance.now() - t0) / n;
  console.log(name, 'C', C, 'ms/step', ms.toFixed(0), 'samples/s', (B / ms * 1000).toFixed(0), 'params', s.params.reduce((a, p) => a + p.variable.size, 0));
}
