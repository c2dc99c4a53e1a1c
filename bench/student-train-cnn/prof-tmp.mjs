import { selectBackend } from '@distillery/runtime/tfjs/backend';
const { tf } = await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
const { createStudent, crossEntropy } = await import('@distillery/plugin-student-train');
const { Optimizer, DEFAULT_OPTIMIZER } = await import('@distillery/runtime/optim');
const config = JSON.parse(
  process.argv[2] ?? '{"arch":"cnn","channels":[32,64],"kernel":3,"padding":"valid","batchNorm":false,"hidden":[256]}',
);
const bs = Number(process.argv[3] ?? 128);
const x = tf.randomUniform([bs, 28, 28, 1], 0, 1, 'float32', 1);
const labels = tf.tensor1d(
  Int32Array.from({ length: bs }, (_, i) => (i * 7) % 10),
  'int32',
);
const student = createStudent(config, [28, 28, 1], 10, 0);
const optimizer = new Optimizer({ ...DEFAULT_OPTIMIZER, name: 'adam', lr: 1e-3 }, student.params);
const vars = student.params.map((p) => p.variable);
const step = (i) => {
  const { value, grads } = tf.variableGrads(() => crossEntropy(student.apply(x, true, i), labels), vars);
  const named = {};
  student.params.forEach((p) => (named[p.name] = grads[p.variable.name]));
  optimizer.apply(named, 1e-3);
  value.dataSync();
  value.dispose();
};
for (let i = 0; i < 3; i++) step(i);
const t0 = performance.now();
for (let i = 0; i < 5; i++) step(i);
console.log('ms/step', ((performance.now() - t0) / 5).toFixed(1));
const prof = await tf.profile(() => step(9));
const by = new Map();
for (const k of prof.kernels) {
  const key = k.name + ' ' + JSON.stringify(k.inputShapes);
  const e = by.get(key) ?? { n: 0, ms: 0 };
  e.n++;
  e.ms += await k.kernelTimeMs;
  by.set(key, e);
}
const rows = [...by.entries()].sort((a, b) => b[1].ms - a[1].ms);
let total = 0;
for (const [, e] of rows) total += e.ms;
console.log('kernel total ms', total.toFixed(1), 'kernels', prof.kernels.length);
for (const [k, e] of rows.slice(0, 40)) console.log(e.ms.toFixed(2).padStart(8), e.n, k);
process.exit(0);
