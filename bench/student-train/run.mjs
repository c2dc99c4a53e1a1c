#!/usr/bin/env node
// ms per training step of an MLP 784-1024-1024-1000, batch 256, Adam, softmax cross-entropy:
// this project (tfjs, backend chosen as in training) vs PyTorch (/usr/bin/python3, 2 threads), one run.
// Usage: npx tsc -b && node bench/student-train/run.mjs [--threads 2] [--steps 20] [--backend auto|wasm|cpu] [--no-torch] [--autodiff]
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '@distillery/core/tfjs/backend';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '20' },
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
const { createStudent } = await import('@distillery/plugin-student-train/models/student');
const { Optimizer, DEFAULT_OPTIMIZER } = await import('@distillery/plugin-student-train/optim');
const { crossEntropy } = await import('@distillery/plugin-student-train/losses/index');

const student = createStudent({ arch: 'mlp', hidden: [1024, 1024] }, [784], 1000, 0);
const optimizer = new Optimizer({ ...DEFAULT_OPTIMIZER, name: 'adam', lr: 1e-3 }, student.params);
const x = tf.randomNormal([256, 784], 0, 1, 'float32', 1);
const labels = tf.tensor1d(Int32Array.from({ length: 256 }, (_, i) => (i * 7919) % 1000), 'int32');
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
  const { value, grads } = tf.variableGrads(() => crossEntropy(args.autodiff ? autodiffLogits() : student.apply(x, true), labels), vars);
  const named = {};
  student.params.forEach((p) => (named[p.name] = grads[p.variable.name]));
  optimizer.apply(named, 1e-3);
  const loss = value.dataSync()[0];
  value.dispose();
  return loss;
}
for (let i = 0; i < warmup; i++) { const l = step(); if (i === 0) console.log(`first-step loss ${l.toFixed(3)} (ln 1000 = ${Math.log(1000).toFixed(3)})`); }
const t0 = performance.now();
let last = 0;
for (let i = 0; i < steps; i++) last = step();
const tfjsMs = (performance.now() - t0) / steps;
const mode = args.autodiff ? 'tfjs autodiff matMul' : 'custom dense backward';
console.log(`tfjs ${choice.name} (${choice.threads} threads, ${mode}): ${tfjsMs.toFixed(1)} ms/step (loss ${last.toFixed(3)}, tensors ${tf.memory().numTensors})`);

if (!args['no-torch']) {
  const script = fileURLToPath(new URL('./torch_mlp.py', import.meta.url));
  const r = spawnSync('/usr/bin/python3', [script, '--threads', String(threads), '--steps', String(steps), '--warmup', String(warmup)], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) },
  });
  if (r.status !== 0) {
    console.log(`pytorch baseline failed: ${r.stderr.trim().split('\n').pop()}`);
  } else {
    const torch = JSON.parse(r.stdout.trim().split('\n').pop());
    console.log(`pytorch ${torch.version} (${torch.threads} threads, BLAS ${torch.blas}): ${torch.msPerStep.toFixed(1)} ms/step`);
    console.log(`ratio tfjs/pytorch: ${(tfjsMs / torch.msPerStep).toFixed(2)}x (goal <= 1.5x)`);
  }
}
process.exit(0);
