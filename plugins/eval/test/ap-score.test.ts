import { test } from 'node:test';
import assert from 'node:assert/strict';
import { meanPerVerticalAP, type ScoreMatrix } from '../src/index.js';
import { StreamingClassificationMetrics } from '../src/classification/streaming.js';

/** Seeded logits where rows have different log-partition functions, so softmax and sigmoid ranks differ. */
function fixture(n: number, c: number): { logits: Float32Array; labels: Int32Array } {
  let state = 12345;
  const next = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 4294967296;
  const logits = new Float32Array(n * c);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % c;
    const rowShift = 4 * next(); // a per-row offset: softmax removes it, sigmoid does not
    for (let j = 0; j < c; j++)
      logits[i * c + j] = 3 * (next() - 0.5) + rowShift + (j === labels[i] ? 1.5 * next() : 0);
  }
  return { logits, labels };
}

const map = (data: Float64Array, n: number, c: number): ScoreMatrix => ({ rows: n, cols: c, data });

test('mean per-vertical AP ranks softmax probabilities or per-class sigmoid scores, as apScore says', () => {
  const n = 60;
  const c = 6;
  const classVertical = [0, 0, 0, 1, 1, 1];
  const { logits, labels } = fixture(n, c);
  const sigmoid = Float64Array.from(logits, (z) => 1 / (1 + Math.exp(-z)));
  const softmax = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, logits[i * c + j]!);
    let z = 0;
    for (let j = 0; j < c; j++) z += softmax[i * c + j] = Math.exp(logits[i * c + j]! - m);
    for (let j = 0; j < c; j++) softmax[i * c + j]! /= z;
  }
  const verticals = { classToVertical: Int32Array.from(classVertical), names: ['a', 'b'] };
  const run = (apScore: 'softmax' | 'sigmoid') => {
    const s = new StreamingClassificationMetrics({
      numClasses: c,
      topk: [1],
      eceBins: 10,
      probabilities: false,
      verticals,
      apScore,
    });
    // Two batches: the streaming accumulation must not depend on the split.
    s.add(logits.subarray(0, 25 * c), labels.subarray(0, 25), 25);
    s.add(logits.subarray(25 * c), labels.subarray(25), n - 25);
    return s.summary();
  };
  const expectedSigmoid = meanPerVerticalAP(map(sigmoid, n, c), labels, classVertical, 2).mpvap;
  const expectedSoftmax = meanPerVerticalAP(map(softmax, n, c), labels, classVertical, 2).mpvap;
  assert.ok(
    Math.abs(expectedSigmoid - expectedSoftmax) > 0.01,
    `the fixture must separate the two rankings (${expectedSigmoid} vs ${expectedSoftmax})`,
  );
  const sig = run('sigmoid');
  const soft = run('softmax');
  assert.ok(
    Math.abs(sig.meanPerVerticalAP! - expectedSigmoid) < 1e-12,
    `sigmoid: ${sig.meanPerVerticalAP} vs ${expectedSigmoid}`,
  );
  assert.ok(
    Math.abs(soft.meanPerVerticalAP! - expectedSoftmax) < 1e-12,
    `softmax: ${soft.meanPerVerticalAP} vs ${expectedSoftmax}`,
  );
  // Top-1 does not depend on the AP score.
  assert.equal(sig.top1, soft.top1);
});

test('apScore sigmoid refuses probability outputs', () => {
  assert.throws(
    () =>
      new StreamingClassificationMetrics({
        numClasses: 2,
        topk: [1],
        eceBins: 10,
        probabilities: true,
        apScore: 'sigmoid',
      }),
    /apScore "sigmoid" ranks logits/,
  );
});
