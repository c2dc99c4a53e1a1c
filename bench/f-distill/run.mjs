#!/usr/bin/env node
// f-distill benchmark (against the built dist): what one-step distillation buys at inference, and
// what the training loop costs on this machine.
//  1. Sampling latency in onnxruntime-node of a Fashion-MNIST-sized EDM denoiser MLP
//     (784-d, hidden [512,512,512], 10 classes): teacher Heun sampling with 18 sigmas (35 NFE) vs
//     the one-step generator exported from the same network; ratio = the speed-up.
//  2. tfjs (wasm) denoiser training step (batch 128) vs the same MLP step in PyTorch CPU
//     (bench/f-distill/torch_step.py run by /usr/bin/python3 when present), same thread count.
// Usage: node bench/f-distill/run.mjs [--threads 1] [--samples 500]
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const threads = Number(args.threads ?? 1);
const samples = Number(args.samples ?? 500);
const here = dirname(fileURLToPath(import.meta.url));

const { selectBackend } = await import('@distillery/runtime/tfjs');
await selectBackend({ cpus: threads, gpus: [], prefer: 'wasm' });
const tf = await import('@tensorflow/tfjs-core');
const {
  ConditionedNet,
  exportConditionedOnnx,
  adam,
  trainStep,
  DenoiserSession,
  GeneratorSession,
  heunSample,
  samplerSigmas,
  DEFAULT_EDM,
} = await import('@distillery/plugin-f-distill');

const D = 784,
  C = 10,
  hidden = [512, 512, 512];
const spec = { kind: 'denoiser', dim: D, numClasses: C, hidden, edm: DEFAULT_EDM };
const net = new ConditionedNet(spec, 1, 'denoiser');
const dir = mkdtempSync(join(tmpdir(), 'f-distill-bench-'));
try {
  exportConditionedOnnx(net, join(dir, 'teacher.onnx'), 'denoiser');
  exportConditionedOnnx(net, join(dir, 'generator.onnx'), 'generator');
  const teacher = await DenoiserSession.open(join(dir, 'teacher.onnx'), D, { threads });
  const gen = await GeneratorSession.open(join(dir, 'generator.onnx'), D, { threads });
  const z = Float32Array.from({ length: samples * D }, (_, i) => Math.sin(i * 12.9898) * 0.5);
  const cls = Int32Array.from({ length: samples }, (_, i) => i % C);
  await gen.generate(z.subarray(0, 10 * D), cls.subarray(0, 10)); // warm-up
  let t = performance.now();
  await heunSample(z, samplerSigmas(18, DEFAULT_EDM), (x, s) => teacher.denoise(x, s, cls));
  const teacherMs = (performance.now() - t) / samples;
  t = performance.now();
  for (let rep = 0; rep < 5; rep++) await gen.generate(z, cls);
  const genMs = (performance.now() - t) / (5 * samples);
  console.log(`sampling (onnxruntime, ${threads} thread(s), ${samples} samples, 784-d MLP [512x3]):`);
  console.log(`  teacher Heun 18 sigmas (35 NFE): ${teacherMs.toFixed(3)} ms/sample`);
  console.log(
    `  one-step generator (1 NFE):      ${genMs.toFixed(3)} ms/sample   speed-up x${(teacherMs / genMs).toFixed(1)}`,
  );
  await teacher.release();
  await gen.release();

  const B = 128;
  const opt = adam(net.params, 1e-4);
  const x0 = tf.randomNormal([B, D]);
  const noise = tf.randomNormal([B, D]);
  const sig = Float32Array.from({ length: B }, (_, i) => Math.exp(-1.2 + 1.2 * Math.sin(i)));
  const classes = Int32Array.from({ length: B }, (_, i) => i % C);
  const step = () => trainStep(opt, net.params, () => tf.tidy(() => net.denoisingLoss(x0, sig, noise, classes)));
  for (let i = 0; i < 3; i++) step();
  const n = 30;
  t = performance.now();
  for (let i = 0; i < n; i++) step();
  const tfjsStepsPerS = n / ((performance.now() - t) / 1000);
  console.log(`training (denoiser step, batch ${B}): tfjs wasm ${tfjsStepsPerS.toFixed(2)} steps/s`);
  const py = '/usr/bin/python3';
  if (existsSync(py)) {
    const r = spawnSync(py, [join(here, 'torch_step.py'), '--threads', String(threads), '--steps', String(n)], {
      encoding: 'utf8',
    });
    const m = /steps\/s ([0-9.]+)/.exec(r.stdout ?? '');
    if (m)
      console.log(
        `  PyTorch CPU (baseline, same run): ${Number(m[1]).toFixed(2)} steps/s   tfjs/torch = ${(tfjsStepsPerS / Number(m[1])).toFixed(2)}`,
      );
    else console.log(`  PyTorch baseline unavailable: ${(r.stderr ?? '').split('\n').slice(-2).join(' ')}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
