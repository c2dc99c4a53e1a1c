import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectBackend } from '@distillery/runtime/tfjs';
import { DEFAULT_EDM, heunSample, preconditioning, samplerSigmas, sigmaAtFraction } from '../src/edm.js';
import { consecutivePartition } from '../src/io.js';

test('EDM: preconditioning and the rho path match the paper formulas', () => {
  const p = preconditioning(2, 0.5);
  assert.ok(Math.abs(p.cSkip - 0.25 / 4.25) < 1e-15);
  assert.ok(Math.abs(p.cOut - 1 / Math.sqrt(4.25)) < 1e-15);
  assert.ok(Math.abs(p.cIn - 1 / Math.sqrt(4.25)) < 1e-15);
  assert.ok(Math.abs(p.cNoise - Math.log(2) / 4) < 1e-15);
  const s = samplerSigmas(18, DEFAULT_EDM);
  assert.equal(s.length, 19);
  assert.ok(Math.abs(s[0]! - 80) < 1e-9 && Math.abs(s[17]! - 0.002) < 1e-12 && s[18] === 0);
  assert.ok(Math.abs(sigmaAtFraction(0.5, DEFAULT_EDM) - ((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7) < 1e-12);
});

test('Heun sampler solves the probability-flow ODE of Gaussian data (exact denoiser known)', async () => {
  // Data N(0, sd^2): D(x; sigma) = x sd^2 / (sigma^2 + sd^2); the ODE keeps x / sqrt(sigma^2 + sd^2) constant.
  const sd = 0.5;
  const cfg = { ...DEFAULT_EDM, sigmaData: sd };
  const z = Float32Array.from([-1.5, -0.2, 0.3, 2.0]);
  const denoise = async (x: Float32Array, sigma: number) => x.map((v) => (v * sd * sd) / (sigma * sigma + sd * sd));
  const maxRelError = async (steps: number) => {
    const out = await heunSample(z, samplerSigmas(steps, cfg), denoise);
    let worst = 0;
    for (let i = 0; i < z.length; i++) {
      const exact = (80 * z[i]! * sd) / Math.sqrt(80 * 80 + sd * sd);
      worst = Math.max(worst, Math.abs(out[i]! - exact) / Math.abs(exact));
    }
    return worst;
  };
  const e18 = await maxRelError(18);
  const e50 = await maxRelError(50);
  const e200 = await maxRelError(200);
  assert.ok(e18 < 0.08 && e50 < 0.01 && e200 < 1e-3, `errors ${e18} ${e50} ${e200}`);
  // Second order: 4x the steps gives ~16x less error.
  assert.ok(e200 < e50 / 8, `errors ${e50} -> ${e200} do not converge at second order`);
});

test('consecutive class partition: disjoint, covering, about equal', () => {
  const parts = [0, 1, 2, 3].map((k) => consecutivePartition(10, 4, k));
  assert.deepEqual(parts, [
    [0, 1, 2],
    [3, 4],
    [5, 6, 7],
    [8, 9],
  ]);
  assert.throws(() => consecutivePartition(10, 4, 4), /student index 4/);
  assert.throws(() => consecutivePartition(3, 4, 0), /students must be in \[1, 3\]/);
});

test('tfjs denoiser, generator and classifier match their ONNX exports in onnxruntime', async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
  const tf = await import('@tensorflow/tfjs-core');
  const { ConditionedNet, Mlp, exportConditionedOnnx, exportClassifierOnnx } = await import('../src/nets.js');
  const { DenoiserSession, GeneratorSession, FeatureSession } = await import('../src/ort.js');
  const dir = mkdtempSync(join(tmpdir(), 'f-distill-onnx-'));
  try {
    const spec = {
      kind: 'denoiser' as const,
      dim: 3,
      numClasses: 4,
      hidden: [16, 8],
      edm: { ...DEFAULT_EDM, sigmaData: 0.7, sigmaMax: 30 },
    };
    const net = new ConditionedNet(spec, 5, 'denoiser');
    // Make the last layer non-trivial (it is initialised small).
    net.mlp.layers[2]!.w.assign(tf.mul(net.mlp.layers[2]!.w, 10));
    const n = 6;
    const x = Float32Array.from({ length: n * 3 }, (_, i) => Math.sin(i * 1.7) * 2);
    const sigmas = Float32Array.from([0.002, 0.05, 0.5, 1, 7, 30]);
    const classes = Int32Array.from([0, 1, 2, 3, 1, 0]);
    const expected = tf.tidy(() => net.apply(tf.tensor2d(x, [n, 3]), sigmas, classes).dataSync() as Float32Array);
    exportConditionedOnnx(net, join(dir, 'd.onnx'), 'denoiser');
    const session = await DenoiserSession.open(join(dir, 'd.onnx'), 3);
    const got = await session.denoise(x, sigmas, classes);
    await session.release();
    for (let i = 0; i < got.length; i++)
      assert.ok(
        Math.abs(got[i]! - expected[i]!) < 1e-4 * (1 + Math.abs(expected[i]!)),
        `denoiser ${i}: ${got[i]} vs ${expected[i]}`,
      );
    // Generator: G(z, c) = D(sigmaMax z; sigmaMax, c).
    const gExpected = tf.tidy(
      () =>
        net
          .apply(tf.mul(tf.tensor2d(x, [n, 3]), 30) as never, new Float32Array(n).fill(30), classes)
          .dataSync() as Float32Array,
    );
    exportConditionedOnnx(net, join(dir, 'g.onnx'), 'generator');
    const gen = await GeneratorSession.open(join(dir, 'g.onnx'), 3);
    const gGot = await gen.generate(x, classes);
    await gen.release();
    for (let i = 0; i < gGot.length; i++)
      assert.ok(Math.abs(gGot[i]! - gExpected[i]!) < 1e-4 * (1 + Math.abs(gExpected[i]!)), `generator ${i}`);
    // Classifier: features = penultimate relu activations, logits = last layer.
    const mlp = new Mlp({ input: 3, hidden: [5, 4], output: 2 }, 9, 'classifier');
    const { out, penultimate } = tf.tidy(() => {
      const r = mlp.apply(tf.tensor2d(x, [n, 3]), false);
      return { out: r.out.dataSync() as Float32Array, penultimate: r.penultimate.dataSync() as Float32Array };
    });
    exportClassifierOnnx(mlp, join(dir, 'c.onnx'));
    const fs = await FeatureSession.open(join(dir, 'c.onnx'));
    const r = await fs.run(x, n, 3);
    await fs.release();
    assert.equal(r.featureDim, 4);
    for (let i = 0; i < penultimate.length; i++) assert.ok(Math.abs(r.features[i]! - penultimate[i]!) < 1e-5);
    for (let i = 0; i < out.length; i++) assert.ok(Math.abs(r.logits[i]! - out[i]!) < 1e-5);
    net.dispose();
    mlp.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('generator VJP: d/dtheta mean(G * g) equals the finite-difference directional derivative', async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
  const tf = await import('@tensorflow/tfjs-core');
  const { ConditionedNet } = await import('../src/nets.js');
  const spec = {
    kind: 'denoiser' as const,
    dim: 2,
    numClasses: 3,
    hidden: [8],
    edm: { ...DEFAULT_EDM, sigmaData: 1, sigmaMax: 5 },
  };
  const G = new ConditionedNet(spec, 1, 'denoiser');
  const n = 4;
  const z = tf.tensor2d([0.1, -0.3, 1.2, 0.4, -0.8, 0.9, 0.05, -1.1], [n, 2]);
  const classes = [0, 1, 2, 1];
  const g = tf.tensor2d([1, -2, 0.5, 0.3, -1, 1, 2, 0.1], [n, 2]);
  const gen = () => G.apply(tf.mul(z, 5) as never, new Float32Array(n).fill(5), classes);
  const objective = () => tf.div(tf.sum(tf.mul(gen(), g)), n * 2) as never;
  const { grads } = tf.variableGrads(
    objective,
    G.params.map((p) => p.variable),
  );
  const w = G.params[0]!.variable;
  const gw = grads[w.name]!.dataSync();
  // Finite difference on one weight entry.
  const idx = 3;
  const base = w.dataSync().slice();
  const evalAt = (delta: number) => {
    const v = base.slice();
    v[idx] = v[idx]! + delta;
    w.assign(tf.tensor(v, w.shape));
    return tf.tidy(() => (objective() as unknown as import('@tensorflow/tfjs-core').Scalar).dataSync()[0]!);
  };
  const fd = (evalAt(1e-2) - evalAt(-1e-2)) / 2e-2;
  w.assign(tf.tensor(base, w.shape));
  assert.ok(Math.abs(fd - gw[idx]!) < 1e-3 * (1 + Math.abs(fd)), `grad ${gw[idx]} vs finite difference ${fd}`);
  G.dispose();
});
