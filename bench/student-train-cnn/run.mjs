#!/usr/bin/env node
// One training step of a LeNet-style CNN on 28x28x1 (conv 3x3 1->32 valid, ReLU, maxpool 2,
// conv 3x3 32->64 valid, ReLU, maxpool 2, dense 1600->128->10; Adam, softmax CE, batch 128):
// student-train's CNN (tfjs, backend chosen as in training) against the same network in PyTorch
// (/usr/bin/python3, same thread count), interleaved round by round (A B A B ...) so machine drift
// hits both sides. Also prints per-layer GFLOPS of the forward and both gradients on each side.
// Last line: `ratio N` = median over rounds of (tfjs ms/step) / (PyTorch ms/step).
// Usage: npx tsc -b && node bench/student-train-cnn/run.mjs [--threads 2] [--rounds 8] [--steps 10] [--native]
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { conv2d, conv2dFilterGrad, conv2dInputGrad } from '@distillery/runtime/tfjs';
import { interleave, startTorch } from '../lib/torch-side.mjs';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '8' },
    steps: { type: 'string', default: '10' },
    backend: { type: 'string', default: 'auto' },
    native: { type: 'boolean', default: false },
  },
});
const threads = Number(args.threads);
const rounds = Number(args.rounds);
const steps = Number(args.steps);

const choice = await selectBackend({ cpus: threads, gpus: [], prefer: args.backend, log: (m) => console.log(m) });
const tf = choice.tf;
const { createStudent } = await import('@distillery/plugin-student-train');
const { Optimizer, DEFAULT_OPTIMIZER } = await import('@distillery/runtime/optim');
const { crossEntropy } = await import('@distillery/plugin-student-train');

const student = createStudent(
  { arch: 'cnn', channels: [32, 64], kernel: 3, batchNorm: false, hidden: [128], padding: 'valid' },
  [28, 28, 1],
  10,
  0,
);
const optimizer = new Optimizer({ ...DEFAULT_OPTIMIZER, name: 'adam', lr: 1e-3 }, student.params);
const x = tf.randomUniform([128, 28, 28, 1], 0, 1, 'float32', 1);
const labels = tf.tensor1d(
  Int32Array.from({ length: 128 }, (_, i) => (i * 7) % 10),
  'int32',
);
const vars = student.params.map((p) => p.variable);
function step() {
  const { value, grads } = tf.variableGrads(() => crossEntropy(student.apply(x, true), labels), vars);
  const named = {};
  student.params.forEach((p) => (named[p.name] = grads[p.variable.name]));
  optimizer.apply(named, 1e-3);
  const loss = value.dataSync()[0];
  value.dispose();
  return loss;
}
function tfjsSteps(n) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) step();
  return (performance.now() - t0) / n;
}

const torch = await startTorch(fileURLToPath(new URL('./torch_cnn.py', import.meta.url)), [String(threads)], threads);
console.log(
  `pytorch ${torch.hello.version}, ${torch.hello.threads} threads; tfjs ${choice.name}, ${choice.threads} threads`,
);
for (let i = 0; i < 3; i++) step();
const result = await interleave(rounds, () => tfjsSteps(steps), torch, steps);

// Per-layer: forward, input gradient and filter gradient of each conv layer, median of 7.
// (The tidy callback returns nothing: tidy walks a returned typed array element by element.)
function medianMs(fn, reps = 7) {
  tf.tidy(() => {
    fn().dataSync();
  });
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    tf.tidy(() => {
      fn().dataSync();
    });
    times.push(performance.now() - t0);
  }
  return times.sort((p, q) => p - q)[Math.floor(reps / 2)];
}
const layerShapes = [
  [[128, 28, 28, 1], 32],
  [[128, 13, 13, 32], 64],
];
const torchLayers = (await torch.ask('layers 7')).layers;
layerShapes.forEach(([shape, co], i) => {
  const [n, h, w, ci] = shape;
  const ho = h - 2,
    wo = w - 2;
  const flops = 2 * n * ho * wo * co * 9 * ci;
  const xi = tf.randomUniform(shape, 0, 1, 'float32', 2);
  const wt = tf.randomNormal([3, 3, ci, co], 0, 0.1, 'float32', 3);
  const b = tf.zeros([co]);
  const dy = tf.randomNormal([n, ho, wo, co], 0, 1, 'float32', 4);
  const ms = {
    forward: medianMs(() => conv2d(xi, wt, b, { padding: 'valid', activation: 'linear', inputGrad: true })),
    inputGrad: medianMs(() => conv2dInputGrad(dy, wt, 'valid')),
    filterGrad: medianMs(() => conv2dFilterGrad(xi, dy, 3, 'valid')),
  };
  const gf = (t) => (flops / t / 1e6).toFixed(1);
  const t = torchLayers[i];
  console.log(
    `conv${i} ${ci}->${co} on ${h}x${w} (${(flops / 1e6).toFixed(0)} MFLOP each): ` +
      ['forward', 'inputGrad', 'filterGrad']
        .map((k) => `${k} ${ms[k].toFixed(1)} ms ${gf(ms[k])} GFLOPS (pytorch ${t[k].toFixed(1)} ms ${gf(t[k])})`)
        .join('; '),
  );
  if (args.native) {
    // The backend's own gradient kernels, for reference (slow: Conv2DBackpropInput, Conv3DBackpropFilterV2 via tf.grad).
    const native = medianMs(() => tf.conv2dTranspose(dy, wt, shape, 1, 'valid'), 3);
    console.log(`conv${i} backend Conv2DBackpropInput: ${native.toFixed(1)} ms ${gf(native)} GFLOPS`);
  }
});
torch.close();
console.log(
  `tfjs median ${result.ours.toFixed(1)} ms/step, pytorch median ${result.theirs.toFixed(1)} ms/step (goal: ratio <= 2.5)`,
);
console.log(`ratio ${result.ratio.toFixed(2)}`);
process.exit(0);
