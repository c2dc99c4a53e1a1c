import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  averagePrecision,
  expectedCalibrationError,
  meanPerVerticalAP,
  multiLabelMAP,
  perClassAccuracy,
  perVerticalAccuracy,
  teacherAgreement,
  topKAccuracy,
  type ScoreMatrix,
} from '../src/index.js';

const m = (rows: number[][]): ScoreMatrix => ({
  rows: rows.length,
  cols: rows[0]!.length,
  data: Float64Array.from(rows.flat()),
});
const close = (a: number | null, b: number, what: string) =>
  assert.ok(a !== null && Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

test('top-k, per-class and per-vertical accuracy', () => {
  const s = m([
    [0.7, 0.2, 0.1], // label 0: rank 0
    [0.5, 0.3, 0.2], // label 1: rank 1
    [0.4, 0.4, 0.2], // label 1: tie with class 0, lower index first -> rank 1
    [0.1, 0.3, 0.6], // label 2: rank 0
  ]);
  const labels = [0, 1, 1, 2];
  close(topKAccuracy(s, labels, 1), 0.5, 'top1');
  close(topKAccuracy(s, labels, 2), 1, 'top2');
  assert.deepEqual(perClassAccuracy(s, labels), [1, 0, 1]);
  assert.deepEqual(perVerticalAccuracy(s, labels, [0, 0, 1], 2), [1 / 3, 1]);
  assert.throws(() => topKAccuracy(s, [0, 1, 5, 2], 1), /sample 2: label 5 outside/);
});

test('average precision: hand-computed values, ties enter together', () => {
  close(averagePrecision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]), 0.5 * 1 + 0.5 * (2 / 3), 'AP');
  close(averagePrecision([0.5, 0.5], [1, 0]), 0.5, 'tied AP');
  assert.equal(averagePrecision([0.1, 0.2], [0, 0]), null);
});

test("mean per-vertical AP uses each vertical's own test images", () => {
  // classes 0,1 -> vertical 0; class 2 -> vertical 1. Samples of vertical 0: 0, 1, 2.
  const s = m([
    [0.9, 0.1, 0.0],
    [0.6, 0.4, 0.9], // class-2 score is high but sample 1 is not in vertical 1's set
    [0.2, 0.8, 0.0],
    [0.1, 0.1, 0.8],
    [0.3, 0.3, 0.4],
  ]);
  const labels = [0, 1, 0, 2, 2];
  const r = meanPerVerticalAP(s, labels, [0, 0, 1], 2);
  // class 0 over {0,1,2}: scores .9(+) .6(-) .2(+) -> AP = .5*1 + .5*(2/3)
  close(r.perClass[0]!, 0.5 + 1 / 3, 'AP class 0');
  // class 1 over {0,1,2}: scores .1(-) .4(+) .8(-) -> positive ranked 2nd: AP = 1/2
  close(r.perClass[1]!, 0.5, 'AP class 1');
  close(r.perClass[2]!, 1, 'AP class 2 over {3,4} only');
  close(r.perVertical[0]!, (0.5 + 1 / 3 + 0.5) / 2, 'vertical 0');
  close(r.mpvap, ((0.5 + 1 / 3 + 0.5) / 2 + 1) / 2, 'mpvap');
});

test('multi-label mAP ignores unverified labels; teacher agreement', () => {
  const s = m([
    [0.9, 0.2],
    [0.8, 0.7],
    [0.1, 0.9],
  ]);
  // class 0: sample 1 unverified -> {0:+ .9, 2:- .1} -> AP 1; class 1: +,-,+ with scores .2,.7,.9 -> ranks .9(+) .7(-) .2(+): 0.5 + 0.5*2/3
  const r = multiLabelMAP(s, Int8Array.from([1, 1, -1, 0, 0, 1]));
  close(r.perClass[0]!, 1, 'class 0');
  close(r.perClass[1]!, 0.5 + 1 / 3, 'class 1');
  close(r.mAP, (1 + 0.5 + 1 / 3) / 2, 'mAP');
  close(
    teacherAgreement(
      s,
      m([
        [1, 0],
        [0, 1],
        [0, 1],
      ]),
    ),
    2 / 3,
    'agreement',
  );
});

test('ECE and reliability bins', () => {
  const s = m([
    [0.9, 0.1], // label 0, correct, bin (0.5, 1]
    [0.6, 0.4], // label 1, wrong
    [0.3, 0.7], // label 1, correct
    [0.5, 0.5], // label 0, correct, confidence 0.5 -> bin (0, 0.5]
  ]);
  const r = expectedCalibrationError(s, [0, 1, 1, 0], { bins: 2 });
  assert.deepEqual(
    r.bins.map((b) => b.count),
    [1, 3],
  );
  close(r.bins[1]!.accuracy, 2 / 3, 'bin accuracy');
  close(r.bins[1]!.confidence, (0.9 + 0.6 + 0.7) / 3, 'bin confidence');
  close(r.ece, 0.75 * Math.abs(2 / 3 - 2.2 / 3) + 0.25 * 0.5, 'ECE');
  // The same rows as logits: softmax confidences of [ln 9, 0] etc. equal the probabilities above.
  const logits = m([
    [Math.log(9), 0],
    [Math.log(1.5), 0],
    [0, Math.log(7 / 3)],
    [0, 0],
  ]);
  close(expectedCalibrationError(logits, [0, 1, 1, 0], { bins: 2, logits: true }).ece, r.ece, 'ECE from logits');
});
