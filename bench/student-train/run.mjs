#!/usr/bin/env node
// ms per training step of an MLP 784-1024-1024-1000, batch 256, Adam, softmax cross-entropy:
// this project (tfjs, backend chosen as in training) vs PyTorch (/usr/bin/python3, same threads),
// interleaved round by round (A B A B ...) so machine drift hits both; last line `ratio N`
// (median over rounds of ours / PyTorch).
// Usage: npx tsc -b && node bench/student-train/run.mjs [--threads 2] [--rounds 8] [--steps 10] [--backend auto|wasm|cpu] [--no-torch] [--autodiff]
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { interleave, startTorch } from '../lib/torch-side.mjs';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '3' },
    backend: { type: 'string', default: 'auto' },
    'no-torch': { type: 'boolean', default: false },
    autodiff: { type: 'boolean', default: false },
  },
});
const threads = Number(args.threads);
const steps = Number(args.steps);
const warmup = Number(args.warmup);

const choice = await selectBackend({ cpus: threads, gpus: [], prefer: args.backend, log: (m) => console.log(m) });
const tf = choice.tf;
const { createStudent } = await import('@distillery/plugin-student-train');
const { Optimizer, DEFAULT_OPTIMIZER } = await import('@distillery/runtime/optim');
const { crossEntropy } = await import('@distillery/plugin-student-train');

const student = createStudent({ arch: 'mlp', hidden: [1024, 1024] }, [784], 1000, 0);
const optimizer = new Optimizer({ ...DEFAULT_OPTIMIZER, name: 'adam', lr: 1e-3 }, student.params);
const x = tf.randomNormal([256, 784], 0, 1, 'float32', 1);
const labels = tf.tensor1d(
  Int32Array.from({ length: 256 }, (_, i) => (i * 7919) % 1000),
  'int32',
);
const vars = student.params.map((p) => p.variable);

// Reference path for the ablation: the same MLP with tfjs autodiff of plain tf.matMul (transposed matMuls in backward).
function autodiffLogits() {
  let h = x;
  const ps = student.params;
  for (let i = 0; i < ps.length; i += 2) {
    h = tf.add(tf.matMul(h, ps[i].variable), ps[i + 1].variable);
    if (i + 2 < ps.length) h = tf.relu(h);
  }
  return h;
}

function step() {
  const { value, grads } = tf.variableGrads(
    () => crossEntropy(args.autodiff ? autodiffLogits() : student.apply(x, true), labels),
    vars,
  );
  const named = {};
  student.params.forEach((p) => (named[p.name] = grads[p.variable.name]));
  optimizer.apply(named, 1e-3);
  const loss = value.dataSync()[0];
  value.dispose();
  return loss;
}
for (let i = 0; i < warmup; i++) {
  const l = step();
  if (i === 0) console.log(`first-step loss ${l.toFixed(3)} (ln 1000 = ${Math.log(1000).toFixed(3)})`);
}
function tfjsSteps(n) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) step();
  return (performance.now() - t0) / n;
}
const mode = args.autodiff ? 'tfjs autodiff matMul' : 'custom dense backward';
if (args['no-torch']) {
  console.log(
    `tfjs ${choice.name} (${choice.threads} threads, ${mode}): ${tfjsSteps(steps * Number(args.rounds)).toFixed(1)} ms/step (tensors ${tf.memory().numTensors})`,
  );
} else {
  const torch = await startTorch(
    fileURLToPath(new URL('./torch_mlp.py', import.meta.url)),
    ['--threads', String(threads), '--warmup', String(warmup)],
    threads,
  );
  console.log(
    `pytorch ${torch.hello.version} (${torch.hello.threads} threads, BLAS ${torch.hello.blas}); tfjs ${choice.name} (${choice.threads} threads, ${mode})`,
  );
  const result = await interleave(Number(args.rounds), () => tfjsSteps(steps), torch, steps);
  torch.close();
  console.log(
    `tfjs median ${result.ours.toFixed(1)} ms/step, pytorch median ${result.theirs.toFixed(1)} ms/step (goal: ratio <= 1.5)`,
  );
  console.log(`ratio ${result.ratio.toFixed(2)}`);
}
process.exit(0);
