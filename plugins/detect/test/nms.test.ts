import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iou, nmsByClass, type Detection } from '../src/index.js';

test('iou: overlap, containment, disjoint and touching boxes', () => {
  // [0,0,10,10] and [5,0,10,10]: intersection 5 x 10 = 50, union 150.
  assert.equal(iou([0, 0, 10, 10], [5, 0, 10, 10]), 50 / 150);
  assert.equal(iou([0, 0, 10, 10], [2, 2, 5, 5]), 25 / 100);
  assert.equal(iou([0, 0, 10, 10], [10, 0, 10, 10]), 0);
  assert.equal(iou([0, 0, 10, 10], [30, 30, 1, 1]), 0);
});

test('nmsByClass: suppresses same-class overlaps above the threshold, keeps other classes', () => {
  const dets: Detection[] = [
    { classId: 0, score: 0.6, bbox: [2, 0, 10, 10] }, // IoU with the 0.9 box: 80 / 120 = 0.667
    { classId: 0, score: 0.9, bbox: [0, 0, 10, 10] },
    { classId: 1, score: 0.8, bbox: [0, 0, 10, 10] }, // same place, other class
    { classId: 0, score: 0.7, bbox: [5, 0, 10, 10] }, // IoU 1/3 with the 0.9 box, 70 / 130 = 0.538 with the 0.6 box
    { classId: 0, score: 0.5, bbox: [40, 40, 5, 5] }, // far away
  ];
  const scores = (kept: Detection[]) => kept.map((d) => d.score);
  assert.deepEqual(scores(nmsByClass(dets, 0.5)), [0.9, 0.8, 0.7, 0.5]);
  // At 0.7 the 0.6 box (IoU 0.667 with 0.9, 0.538 with 0.7) survives.
  assert.deepEqual(scores(nmsByClass(dets, 0.7)), [0.9, 0.8, 0.7, 0.6, 0.5]);
  // At 0.3 the 0.7 box (IoU 1/3 > 0.3) goes too.
  assert.deepEqual(scores(nmsByClass(dets, 0.3)), [0.9, 0.8, 0.5]);
  // Equal scores: input order decides.
  const tie: Detection[] = [
    { classId: 2, score: 0.5, bbox: [1, 0, 10, 10] },
    { classId: 2, score: 0.5, bbox: [0, 0, 10, 10] },
  ];
  assert.deepEqual(nmsByClass(tie, 0.5), [tie[0]]);
  assert.throws(() => nmsByClass(dets, 1.5), /iouThreshold must be in \[0, 1\]/);
});
