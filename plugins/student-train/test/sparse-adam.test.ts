import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { DEFAULT_OPTIMIZER, Optimizer, type OptimizerConfig } from '@distillery/runtime/optim';
import { RowSparseAdam } from '../src/sparse-adam.js';
import { Rng } from '../src/rng.js';

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const ROWS = 12;
const WIDTH = 5;

function randomArray(rng: Rng, n: number, scale: number): Float32Array {
  return Float32Array.from(rng.uniformArray(n, scale));
}

/** Dense Adam (optim.ts) on a [ROWS, WIDTH] variable for the given per-step dense gradients. */
function denseRun(config: OptimizerConfig, start: Float32Array, grads: Float32Array[], lrs: number[]): Float32Array {
  const variable = tf.variable(tf.tensor2d(start, [ROWS, WIDTH]));
  const opt = new Optimizer(config, [{ name: 'w', variable }]);
  grads.forEach((g, s) => opt.apply({ w: tf.tensor2d(g, [ROWS, WIDTH]) }, lrs[s]!));
  const out = variable.dataSync() as Float32Array;
  const copy = Float32Array.from(out);
  opt.dispose();
  variable.dispose();
  return copy;
}

/** The rows of a dense [ROWS, WIDTH] gradient at `ids`, packed [ids.length, WIDTH]. */
function rowsOf(g: Float32Array, ids: number[]): Float32Array {
  const out = new Float32Array(ids.length * WIDTH);
  ids.forEach((r, i) => out.set(g.subarray(r * WIDTH, (r + 1) * WIDTH), i * WIDTH));
  return out;
}

for (const weightDecay of [0, 0.01]) {
  test(`row-sparse Adam equals dense Adam bitwise on rows touched at every step (weight decay ${weightDecay})`, () => {
    const rng = new Rng(7);
    const config: OptimizerConfig = { ...DEFAULT_OPTIMIZER, lr: 1e-2, weightDecay };
    const start = randomArray(rng, ROWS * WIDTH, 1);
    const steps = 6;
    const grads = Array.from({ length: steps }, () => randomArray(rng, ROWS * WIDTH, 0.5));
    const lrs = Array.from({ length: steps }, (_, s) => 1e-2 * (1 - s / steps)); // a schedule: lr changes per step
    const dense = denseRun(config, start, grads, lrs);
    // Sparse: rows 0..3 touched at every step (in a different order each step), plus a varying subset.
    const always = [0, 1, 2, 3];
    const params = Float32Array.from(start);
    const sparse = new RowSparseAdam(config, ROWS, WIDTH);
    const touchedEver = new Set<number>(always);
    grads.forEach((g, s) => {
      const extra = s % 2 === 0 ? [5, 9] : [7];
      extra.forEach((r) => touchedEver.add(r));
      const ids = s % 2 === 0 ? [...always, ...extra] : [...extra, ...always.slice().reverse()];
      sparse.apply(params, ids, rowsOf(g, ids), lrs[s]!);
    });
    assert.equal(sparse.step, steps);
    for (const r of always) {
      for (let j = 0; j < WIDTH; j++) assert.equal(params[r * WIDTH + j], dense[r * WIDTH + j], `row ${r} col ${j}`);
    }
    // Never-touched rows: weights and moments exactly as they started.
    for (let r = 0; r < ROWS; r++) {
      if (touchedEver.has(r)) continue;
      for (let j = 0; j < WIDTH; j++) {
        assert.equal(params[r * WIDTH + j], start[r * WIDTH + j]);
        assert.equal(sparse.m[r * WIDTH + j], 0);
        assert.equal(sparse.v[r * WIDTH + j], 0);
      }
    }
    // Rows touched at some steps only differ from dense Adam (dense keeps moving them with momentum).
    assert.notEqual(params[5 * WIDTH], dense[5 * WIDTH]);
  });
}

test('row-sparse Adam: a row first touched at step t gets m = (1-b1) g, v = (1-b2) g^2 and the step-t bias corrections (lazy moments)', () => {
  const config = { ...DEFAULT_OPTIMIZER, weightDecay: 0 };
  const sparse = new RowSparseAdam(config, 3, 2);
  const params = new Float32Array([1, 2, 3, 4, 5, 6]);
  sparse.apply(params, [0], new Float32Array([0.5, -0.5]), 0.1);
  sparse.apply(params, [0], new Float32Array([0.25, 0.25]), 0.1);
  sparse.apply(params, [2], new Float32Array([2, -1]), 0.1); // row 2's first gradient, at t = 3
  const t = 3;
  for (const [j, g] of [
    [0, 2],
    [1, -1],
  ] as const) {
    const m = (1 - config.beta1) * g;
    const v = (1 - config.beta2) * g * g;
    const expected =
      [5, 6][j]! -
      (0.1 / (1 - config.beta1 ** t)) * (m / (Math.sqrt(v) / Math.sqrt(1 - config.beta2 ** t) + config.eps));
    assert.ok(Math.abs(params[4 + j]! - expected) < 1e-6, `row 2 col ${j}: ${params[4 + j]} vs ${expected}`);
    assert.ok(Math.abs(sparse.m[4 + j]! - m) < 1e-7);
  }
  assert.deepEqual(Array.from(params.subarray(2, 4)), [3, 4], 'row 1 never touched');
});

test('row-sparse Adam rejects repeated, out-of-range ids and mis-sized gradients, before changing anything', () => {
  const sparse = new RowSparseAdam(DEFAULT_OPTIMIZER, 4, 2);
  const params = new Float32Array(8).fill(1);
  assert.throws(() => sparse.apply(params, [1, 1], new Float32Array(4), 0.1), /row id 1 appears twice/);
  assert.throws(() => sparse.apply(params, [4], new Float32Array(2), 0.1), /row id 4 at position 0 outside \[0, 4\)/);
  assert.throws(() => sparse.apply(params, [0], new Float32Array(3), 0.1), /1 ids need 2 gradient values, got 3/);
  assert.equal(sparse.step, 0);
  assert.deepEqual(Array.from(params), new Array(8).fill(1));
});
