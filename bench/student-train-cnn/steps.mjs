// ms per training step (Adam, softmax CE, batch 128, 28x28x1) of the Fashion-MNIST pipeline's models,
// to size pipelines/fashion-mnist.yaml. Usage: node bench/student-train-cnn/steps.mjs [--threads 1] [--steps 10]
import { parseArgs } from 'node:util';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
const { values: args } = parseArgs({
  options: { threads: { type: 'string', default: '1' }, steps: { type: 'string', default: '10' } },
});
const { tf } = await selectBackend({ cpus: Number(args.threads), gpus: [], prefer: 'wasm' });
const { createStudent } = await import('@distillery/plugin-student-train');
const { Optimizer, DEFAULT_OPTIMIZER } = await import('@distillery/runtime/optim');
const { crossEntropy } = await import('@distillery/plugin-student-train');
const configs = {
  'teacher cnn same [32,64] fc256 dropout': {
    arch: 'cnn',
    channels: [32, 64],
    kernel: 3,
    padding: 'same',
    batchNorm: false,
    hidden: [256],
    dropout: 0.3,
  },
  'lenet valid [32,64] fc128': {
    arch: 'cnn',
    channels: [32, 64],
    kernel: 3,
    padding: 'valid',
    batchNorm: false,
    hidden: [128],
  },
  'student cnn valid [8,16] fc32': {
    arch: 'cnn',
    channels: [8, 16],
    kernel: 3,
    padding: 'valid',
    batchNorm: false,
    hidden: [32],
  },
  'student mlp 84': { arch: 'mlp', hidden: [84] },
};
const x = tf.randomUniform([128, 28, 28, 1], 0, 1, 'float32', 1);
const labels = tf.tensor1d(
  Int32Array.from({ length: 128 }, (_, i) => (i * 7) % 10),
  'int32',
);
for (const [name, config] of Object.entries(configs)) {
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
  for (let i = 0; i < 2; i++) step(i);
  const t0 = performance.now();
  for (let i = 0; i < Number(args.steps); i++) step(i);
  console.log(
    `${name}: ${((performance.now() - t0) / Number(args.steps)).toFixed(1)} ms/step (${args.threads} thread(s))`,
  );
}
process.exit(0);
