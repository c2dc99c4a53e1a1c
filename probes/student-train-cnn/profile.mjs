// Kernel-level profile of one training step of the benchmark CNN (tf.profile): where the time goes.
// Usage: node probes/student-train-cnn/profile.mjs [--threads 1]
import { parseArgs } from 'node:util';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
const { values: args } = parseArgs({
  options: { threads: { type: 'string', default: '1' }, bn: { type: 'boolean', default: false } },
});
const { tf } = await selectBackend({ cpus: Number(args.threads), gpus: [], prefer: 'wasm' });
const { createStudent } = await import('@distillery/plugin-student-train');
const { crossEntropy } = await import('@distillery/plugin-student-train');
const student = createStudent(
  { arch: 'cnn', channels: [32, 64], kernel: 3, batchNorm: args.bn, hidden: [128], padding: 'valid' },
  [28, 28, 1],
  10,
  0,
);
const x = tf.randomUniform([128, 28, 28, 1], 0, 1, 'float32', 1);
const labels = tf.tensor1d(
  Int32Array.from({ length: 128 }, (_, i) => (i * 7) % 10),
  'int32',
);
const vars = student.params.map((p) => p.variable);
const step = () => {
  const { value, grads } = tf.variableGrads(() => crossEntropy(student.apply(x, true), labels), vars);
  value.dataSync();
  tf.dispose([value, ...Object.values(grads)]);
};
step();
const info = await tf.profile(step);
const rows = await Promise.all(
  info.kernels.map(async (k) => ({ name: k.name, ms: await k.kernelTimeMs, shapes: JSON.stringify(k.inputShapes) })),
);
const byName = new Map();
for (const r of rows) byName.set(r.name, (byName.get(r.name) ?? 0) + (typeof r.ms === 'number' ? r.ms : 0));
for (const [name, ms] of [...byName].sort((a, b) => b[1] - a[1]).slice(0, 15))
  console.log(`${name.padEnd(24)} ${ms.toFixed(1)} ms`);
for (const r of rows.sort((a, b) => b.ms - a.ms).slice(0, 10))
  console.log(`  ${r.name} ${r.ms.toFixed(1)} ms ${r.shapes}`);
process.exit(0);
