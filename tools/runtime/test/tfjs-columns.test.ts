import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/tfjs/backend.js';
import { denseColumns, rowNormsSquared } from '../src/tfjs/dense.js';

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

/** Seeded values in [-1, 1). */
function seeded(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

function close(a: tf.Tensor, b: tf.Tensor, tol: number, what: string): void {
  const x = a.dataSync();
  const y = b.dataSync();
  assert.equal(x.length, y.length, `${what}: sizes`);
  for (let i = 0; i < x.length; i++)
    assert.ok(Math.abs(x[i]! - y[i]!) <= tol * (1 + Math.abs(y[i]!)), `${what}[${i}]: ${x[i]} vs ${y[i]}`);
}

test('denseColumns: values and gradients equal the dense layer restricted to the columns (plain autodiff reference)', () => {
  const [n, inDim, outDim] = [5, 4, 9];
  const x = tf.tensor2d(seeded(n * inDim, 1), [n, inDim]);
  const w = tf.tensor2d(seeded(inDim * outDim, 2), [inDim, outDim]);
  const b = tf.tensor1d(seeded(outDim, 3));
  const cols = [7, 2, 4]; // unsorted on purpose
  const probe = tf.tensor2d(seeded(n * cols.length, 4), [n, cols.length]);
  const f = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
    tf.sum(
      tf.mul(denseColumns(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D, tf.tensor1d(cols, 'int32')), probe),
    );
  // Reference: full logits, columns picked by a one-hot selection matrix (differentiable everywhere).
  const select = tf.tensor2d(
    Float32Array.from({ length: outDim * cols.length }, (_, i) =>
      cols[i % cols.length] === Math.floor(i / cols.length) ? 1 : 0,
    ),
    [outDim, cols.length],
  );
  const ref = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
    tf.sum(tf.mul(tf.matMul(tf.add(tf.matMul(xx as tf.Tensor2D, ww as tf.Tensor2D), bb), select), probe));
  close(f(x, w, b), ref(x, w, b), 1e-5, 'value');
  const g1 = tf.grads(f)([x, w, b]);
  const g2 = tf.grads(ref)([x, w, b]);
  ['dx', 'dW', 'db'].forEach((name, i) => close(g1[i]!, g2[i]!, 1e-5, name));
  // Columns not selected get exactly zero gradient.
  const dW = g1[1]!.arraySync() as number[][];
  assert.ok(dW.every((row) => row[0] === 0 && row[8] === 0));
});

test('rowNormsSquared: ||x W + b||^2 per row from the Gram matrix, values and gradients equal the dense computation', () => {
  const [n, inDim, outDim] = [6, 3, 11];
  const x = tf.tensor2d(seeded(n * inDim, 5), [n, inDim]);
  const w = tf.tensor2d(seeded(inDim * outDim, 6), [inDim, outDim]);
  const b = tf.tensor1d(seeded(outDim, 7));
  const probe = tf.tensor1d(seeded(n, 8));
  const f = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
    tf.sum(tf.mul(rowNormsSquared(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D), probe));
  const ref = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
    tf.sum(tf.mul(tf.sum(tf.square(tf.add(tf.matMul(xx as tf.Tensor2D, ww as tf.Tensor2D), bb)), 1), probe));
  // Hand check of one row: the norm of x_0 W + b computed in float64 here.
  const xs = x.arraySync() as number[][];
  const ws = w.arraySync() as number[][];
  const bs = b.arraySync() as number[];
  let expected = 0;
  for (let o = 0; o < outDim; o++) {
    let z = bs[o]!;
    for (let i = 0; i < inDim; i++) z += xs[0]![i]! * ws[i]![o]!;
    expected += z * z;
  }
  const norms = rowNormsSquared(x, w, b).dataSync();
  assert.ok(Math.abs(norms[0]! - expected) < 1e-4 * (1 + expected), `${norms[0]} vs ${expected}`);
  close(f(x, w, b), ref(x, w, b), 1e-4, 'value');
  const g1 = tf.grads(f)([x, w, b]);
  const g2 = tf.grads(ref)([x, w, b]);
  ['dx', 'dW', 'db'].forEach((name, i) => close(g1[i]!, g2[i]!, 1e-4, name));
});
