import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { createStudent, type StudentConfig } from '../src/models/student.js';
import { sampleColumns, sampledSigmoidCrossEntropy, targetsAtColumns, type SparseRow } from '../src/losses/sampled.js';
import { gatherColumns, sigmoidCrossEntropy } from '../src/losses/index.js';
import { Rng } from '../src/rng.js';

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const ROWS: SparseRow[] = [
  { ids: [3, 17], probs: [0.9, 0.2] },
  { ids: [8], probs: [1] },
  { ids: [17, 0, 5], probs: [0.5, 0, 0.25] }, // class 0 has a zero target: not a positive
];

test('sampleColumns: positives kept at weight 1, R distinct negatives from the rest at (C-|U|)/R; R >= C-|U| is every class', () => {
  const C = 40;
  const s = sampleColumns(ROWS, C, 6, new Rng(1));
  const positives = [3, 5, 8, 17];
  assert.equal(s.positives, 4);
  assert.equal(s.columns.length, 10);
  assert.deepEqual(
    Array.from(s.columns),
    Array.from(s.columns).sort((a, b) => a - b),
  );
  assert.equal(new Set(s.columns).size, 10);
  s.columns.forEach((c, j) => assert.equal(s.weights[j], positives.includes(c) ? 1 : (C - 4) / 6));
  // Dense high-R case (Fisher-Yates branch) and the exact case.
  const high = sampleColumns(ROWS, C, 30, new Rng(2));
  assert.equal(high.columns.length, 34);
  assert.ok(Math.abs(high.weights.reduce((a, w) => a + w, 0) - C) < 1e-4, 'weights sum to C');
  const all = sampleColumns(ROWS, C, 36, new Rng(3));
  assert.deepEqual(
    Array.from(all.columns),
    Array.from({ length: C }, (_, i) => i),
  );
  assert.ok(all.weights.every((w) => w === 1));
  // Targets land on their columns; a target outside [0, C) is refused with the sample named.
  const t = targetsAtColumns(ROWS, s.columns);
  const col = (c: number) => Array.from(s.columns).indexOf(c);
  assert.equal(t[0 * 10 + col(17)], Math.fround(0.2));
  assert.equal(t[2 * 10 + col(5)], 0.25);
  assert.throws(() => sampleColumns([{ ids: [40], probs: [1] }], C, 2, new Rng(0)), /sample 0 has target class 40/);
});

test('sampled sigmoid CE: exact with every column; unbiased over draws (mean within 4 standard errors of the full loss)', () => {
  const C = 50;
  const n = ROWS.length;
  const rng = new Rng(7);
  const logits = tf.tensor2d(
    Float32Array.from({ length: n * C }, () => 2 * rng.normal() - 1),
    [n, C],
  );
  const dense = new Float32Array(n * C);
  ROWS.forEach((r, b) => Array.from(r.ids).forEach((c, j) => (dense[b * C + c] = r.probs[j]!)));
  const full = sigmoidCrossEntropy(logits, tf.tensor2d(dense, [n, C])).dataSync()[0]!;
  const estimate = (negatives: number, seed: number): number =>
    tf.tidy(() => {
      const s = sampleColumns(ROWS, C, negatives, new Rng(seed));
      const ids = tf.tensor2d(
        Int32Array.from({ length: n * s.columns.length }, (_, i) => s.columns[i % s.columns.length]!),
        [n, s.columns.length],
        'int32',
      );
      const at = gatherColumns(logits, ids);
      return sampledSigmoidCrossEntropy(
        at,
        tf.tensor2d(targetsAtColumns(ROWS, s.columns), [n, s.columns.length]),
        tf.tensor1d(s.weights),
      ).dataSync()[0]!;
    });
  assert.ok(Math.abs(estimate(1000, 0) - full) < 1e-4 * full);
  const draws = Array.from({ length: 400 }, (_, i) => estimate(5, 100 + i));
  const mean = draws.reduce((a, v) => a + v, 0) / draws.length;
  const sd = Math.sqrt(draws.reduce((a, v) => a + (v - mean) ** 2, 0) / (draws.length - 1));
  assert.ok(sd > 0, 'the estimate varies between draws');
  assert.ok(Math.abs(mean - full) < (4 * sd) / Math.sqrt(draws.length), `mean ${mean} vs full ${full} (sd ${sd})`);
});

/** Values and parameter gradients of sum(probe * logits[:, cols]) via applyColumns and via apply. */
function compareColumns(config: StudentConfig, numClasses: number, cols: number[], what: string): void {
  const student = createStudent(config, [6], numClasses, 3);
  const rng = new Rng(11);
  const n = 4;
  const x = tf.tensor2d(
    Float32Array.from({ length: n * 6 }, () => rng.normal()),
    [n, 6],
  );
  const probe = tf.tensor2d(
    Float32Array.from({ length: n * cols.length }, () => rng.normal()),
    [n, cols.length],
  );
  const ids = tf.tensor2d(
    Int32Array.from({ length: n * cols.length }, (_, i) => cols[i % cols.length]!),
    [n, cols.length],
    'int32',
  );
  const vars = student.params.map((p) => p.variable);
  const sparse = tf.variableGrads(
    () => tf.sum(tf.mul(student.applyColumns!(x, true, Int32Array.from(cols)), probe)) as tf.Scalar,
    vars,
  );
  const dense = tf.variableGrads(
    () => tf.sum(tf.mul(gatherColumns(student.apply(x, true), ids), probe)) as tf.Scalar,
    vars,
  );
  const a = sparse.value.dataSync()[0]!;
  const b = dense.value.dataSync()[0]!;
  assert.ok(Math.abs(a - b) < 1e-4 * (1 + Math.abs(b)), `${what}: value ${a} vs ${b}`);
  for (const p of student.params) {
    const g1 = sparse.grads[p.variable.name]?.dataSync() ?? new Float32Array(p.variable.size);
    const g2 = dense.grads[p.variable.name]?.dataSync() ?? new Float32Array(p.variable.size);
    for (let i = 0; i < g2.length; i++)
      assert.ok(
        Math.abs(g1[i]! - g2[i]!) < 1e-4 * (1 + Math.abs(g2[i]!)),
        `${what}: d${p.name}[${i}] ${g1[i]} vs ${g2[i]}`,
      );
  }
}

test('applyColumns equals apply()[:, cols] in values and every parameter gradient (mlp; kc with and without self-paced, contiguous and interleaved verticals)', () => {
  const cols = [9, 0, 4, 7, 2]; // unsorted, across verticals
  compareColumns({ arch: 'mlp', hidden: [5, 3] }, 10, cols, 'mlp');
  const contiguous = [
    [0, 1, 2, 3],
    [4, 5, 6],
    [7, 8, 9],
  ];
  const interleaved = [
    [0, 3, 6, 9],
    [1, 4, 7],
    [2, 5, 8],
  ];
  for (const [name, verticals] of [
    ['contiguous', contiguous],
    ['interleaved', interleaved],
  ] as const) {
    for (const selfPaced of [false, true]) {
      compareColumns(
        {
          arch: 'kc',
          hidden: [5],
          sharedWidth: 4,
          verticalWidth: 3,
          verticals: verticals.map((v) => [...v]),
          selfPaced,
        },
        10,
        cols,
        `kc ${name} selfPaced=${selfPaced}`,
      );
      compareColumns(
        {
          arch: 'kc',
          hidden: [],
          sharedWidth: 4,
          verticalWidth: 2,
          verticals: verticals.map((v) => [...v]),
          selfPaced,
        },
        10,
        [1, 2, 3],
        `kc ${name} sorted`,
      );
    }
  }
});
