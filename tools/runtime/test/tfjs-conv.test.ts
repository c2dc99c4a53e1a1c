import { test } from 'node:test';
import assert from 'node:assert/strict';
import { selectBackend } from '../src/tfjs/backend.js';
import { conv2d, maxPool2x2, type ConvActivation, type ConvPadding } from '../src/tfjs/conv.js';
import { Rng } from '../src/rng.js';
import type * as Tf from '@tensorflow/tfjs-core';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/**
 * Direct float64 loops of the formulas: z = conv(x, W) + b (stride 1), y = act(z), L = sum(mix * y);
 * returns L and dL/dx, dL/dW, dL/db.
 */
function naiveConv(
  x: Float32Array,
  xs: number[],
  w: Float32Array,
  k: number,
  co: number,
  b: Float32Array,
  mix: Float32Array,
  padding: ConvPadding,
  relu: boolean,
) {
  const [n, h, wd, ci] = xs as [number, number, number, number];
  const p = padding === 'same' ? (k - 1) / 2 : 0;
  const ho = h + 2 * p - k + 1;
  const wo = wd + 2 * p - k + 1;
  const at = (ni: number, r: number, c: number, ch: number) =>
    r < 0 || r >= h || c < 0 || c >= wd ? 0 : x[((ni * h + r) * wd + c) * ci + ch]!;
  let loss = 0;
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(co);
  for (let ni = 0; ni < n; ni++)
    for (let i = 0; i < ho; i++)
      for (let j = 0; j < wo; j++)
        for (let o = 0; o < co; o++) {
          let z = b[o]!;
          for (let a = 0; a < k; a++)
            for (let bb = 0; bb < k; bb++)
              for (let c = 0; c < ci; c++) z += at(ni, i + a - p, j + bb - p, c) * w[((a * k + bb) * ci + c) * co + o]!;
          const m = mix[((ni * ho + i) * wo + j) * co + o]!;
          const y = relu ? Math.max(0, z) : z;
          loss += m * y;
          const dz = relu && z <= 0 ? 0 : m;
          if (dz === 0) continue;
          db[o] = db[o]! + dz;
          for (let a = 0; a < k; a++)
            for (let bb = 0; bb < k; bb++)
              for (let c = 0; c < ci; c++) {
                const r = i + a - p;
                const cc = j + bb - p;
                const wi = ((a * k + bb) * ci + c) * co + o;
                dw[wi] = dw[wi]! + at(ni, r, cc, c) * dz;
                const xi = ((ni * h + r) * wd + cc) * ci + c;
                if (r >= 0 && r < h && cc >= 0 && cc < wd) dx[xi] = dx[xi]! + w[wi]! * dz;
              }
        }
  return { loss, dx, dw, db };
}

/** Direct loops: y = max over each 2x2 window (stride 2), L = sum(mix * y); returns y and dL/dx. */
function naiveMaxPool(x: Float32Array, xs: number[], mix: Float32Array) {
  const [n, h, w, c] = xs as [number, number, number, number];
  const ho = Math.floor(h / 2);
  const wo = Math.floor(w / 2);
  const y = new Float64Array(n * ho * wo * c);
  const dx = new Float64Array(x.length);
  for (let ni = 0; ni < n; ni++)
    for (let i = 0; i < ho; i++)
      for (let j = 0; j < wo; j++)
        for (let ch = 0; ch < c; ch++) {
          let best = -Infinity;
          let arg = -1;
          for (let a = 0; a < 2; a++)
            for (let b = 0; b < 2; b++) {
              const idx = ((ni * h + 2 * i + a) * w + 2 * j + b) * c + ch;
              if (x[idx]! > best) {
                best = x[idx]!;
                arg = idx;
              }
            }
          const o = ((ni * ho + i) * wo + j) * c + ch;
          y[o] = best;
          dx[arg] = dx[arg]! + mix[o]!;
        }
  return { y, dx };
}

// The reference is the formula computed in loops above, with a random weighting of the outputs so
// every output position carries a distinct gradient.
const cases: {
  k: number;
  padding: ConvPadding;
  activation: ConvActivation;
  shape: [number, number, number, number];
  co: number;
}[] = [
  { k: 3, padding: 'valid', activation: 'relu', shape: [3, 9, 7, 4], co: 5 },
  { k: 3, padding: 'same', activation: 'linear', shape: [2, 6, 8, 3], co: 6 },
  { k: 5, padding: 'same', activation: 'relu', shape: [2, 7, 7, 2], co: 3 },
  { k: 5, padding: 'valid', activation: 'linear', shape: [4, 8, 9, 1], co: 2 },
  { k: 1, padding: 'valid', activation: 'relu', shape: [2, 4, 5, 6], co: 4 },
];

for (const c of cases) {
  test(`conv2d k=${c.k} ${c.padding} ${c.activation} ${c.shape} -> ${c.co}: value and all three gradients equal the formulas computed in loops`, async () => {
    const { tf } = await selectBackend({ cpus: 2, gpus: [] });
    const rng = new Rng(c.k * 100 + c.co);
    const [n, h, w, ci] = c.shape;
    const x = tf.tensor4d(rng.uniformArray(n * h * w * ci, 1), c.shape);
    const weight = tf.tensor4d(rng.uniformArray(c.k * c.k * ci * c.co, 0.5), [c.k, c.k, ci, c.co]);
    const bias = tf.tensor1d(rng.uniformArray(c.co, 0.2));
    const pad = c.padding;
    const ho = pad === 'same' ? h : h - c.k + 1;
    const wo = pad === 'same' ? w : w - c.k + 1;
    const mixValues = rng.uniformArray(n * ho * wo * c.co, 1);
    const mix = tf.tensor4d(mixValues, [n, ho, wo, c.co]);
    const ours = (xx: Tf.Tensor4D, ww: Tf.Tensor4D, bb: Tf.Tensor1D) =>
      tf.sum(tf.mul(conv2d(xx, ww, bb, { padding: pad, activation: c.activation, inputGrad: true }), mix));
    type T = Tf.Tensor;
    const grads = tf.grads((a: T, b: T, d: T) => ours(a as Tf.Tensor4D, b as Tf.Tensor4D, d as Tf.Tensor1D))([
      x,
      weight,
      bias,
    ]);
    const ref = naiveConv(
      x.dataSync() as Float32Array,
      c.shape,
      weight.dataSync() as Float32Array,
      c.k,
      c.co,
      bias.dataSync() as Float32Array,
      mixValues,
      pad,
      c.activation === 'relu',
    );
    const value = ours(x, weight, bias).dataSync()[0]!;
    assert.ok(Math.abs(value - ref.loss) <= 1e-4 * Math.max(1, Math.abs(ref.loss)), `value ${value} vs ${ref.loss}`);
    const expected = [ref.dx, ref.dw, ref.db];
    const shapes = [c.shape, [c.k, c.k, ci, c.co], [c.co]];
    ['dx', 'dW', 'db'].forEach((name, i) => {
      assert.deepEqual(grads[i]!.shape, shapes[i], `${name} shape`);
      assert.ok(maxAbs(expected[i]!) > 1e-3, `${name} reference is not trivially zero`);
      const err = maxAbsDiff(grads[i]!.dataSync(), expected[i]!);
      assert.ok(err <= 1e-4 * Math.max(1, maxAbs(expected[i]!)), `${name}: max difference ${err}`);
    });
  });
}

test('conv2d without inputGrad returns gradients for the filter and bias only', async () => {
  const { tf } = await selectBackend({ cpus: 2, gpus: [] });
  const rng = new Rng(7);
  const x = tf.tensor4d(rng.uniformArray(2 * 5 * 5 * 1, 1), [2, 5, 5, 1]);
  const weight = tf.variable(tf.tensor4d(rng.uniformArray(9 * 2, 0.5), [3, 3, 1, 2]));
  const bias = tf.variable(tf.tensor1d([0, 0]));
  const { grads } = tf.variableGrads(
    () => tf.sum(conv2d(x, weight, bias, { padding: 'same', activation: 'relu', inputGrad: false })) as Tf.Scalar,
    [weight, bias],
  );
  assert.deepEqual(Object.keys(grads).sort(), [weight.name, bias.name].sort());
  assert.throws(
    () => conv2d(x, tf.zeros([2, 2, 1, 1]), tf.zeros([1]), { padding: 'same', activation: 'linear', inputGrad: true }),
    /'same' padding needs an odd kernel/,
  );
  assert.throws(
    () => conv2d(x, tf.zeros([3, 3, 2, 1]), tf.zeros([1]), { padding: 'same', activation: 'linear', inputGrad: true }),
    /input has 1 channels, filter expects 2/,
  );
});

for (const shape of [
  [2, 6, 8, 3],
  [3, 7, 5, 2],
  [1, 2, 3, 4],
] as [number, number, number, number][]) {
  test(`maxPool2x2 on ${shape}: value and gradient equal the formula computed in loops (odd edges dropped)`, async () => {
    const { tf } = await selectBackend({ cpus: 2, gpus: [] });
    const rng = new Rng(shape.reduce((a, b) => a * 10 + b, 0));
    const size = shape.reduce((a, b) => a * b, 1);
    // A random permutation of distinct values: no ties, so both conventions agree.
    const values = Float32Array.from(rng.shuffle(Array.from({ length: size }, (_, i) => i / size - 0.5)));
    const x = tf.tensor4d(values, shape);
    const out = [shape[0], Math.floor(shape[1] / 2), Math.floor(shape[2] / 2), shape[3]] as [
      number,
      number,
      number,
      number,
    ];
    const mixValues = rng.uniformArray(
      out.reduce((a, b) => a * b, 1),
      1,
    );
    const mix = tf.tensor4d(mixValues, out);
    const ref = naiveMaxPool(values, shape, mixValues);
    const y = maxPool2x2(x);
    assert.deepEqual(y.shape, out);
    assert.deepEqual(Array.from(y.dataSync()), Array.from(ref.y));
    const g1 = tf.grad((a) => tf.sum(tf.mul(maxPool2x2(a as Tf.Tensor4D), mix)))(x);
    assert.deepEqual(g1.shape, shape);
    assert.ok(maxAbsDiff(g1.dataSync(), ref.dx) <= 1e-6);
    // Exactly one input per window receives the gradient.
    const nonzero = Array.from(g1.dataSync()).filter((v) => v !== 0).length;
    assert.equal(
      nonzero,
      out.reduce((a, b) => a * b, 1),
    );
  });
}
