/** The training history kept for training.json: every step up to a cap, then thinned evenly. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TrainingHistory } from '../src/history.js';

test('every step is kept until the cap; past it, every 2nd, 4th, ... step, in order', () => {
  const history = new TrainingHistory(10);
  for (let step = 0; step < 8; step++) {
    history.record('loss', 1 / (step + 1), step);
    history.record('loss/soft', 2 / (step + 1), step);
    history.record('lr', 0.1, step);
  }
  assert.deepEqual(
    history.toJSON().map((p) => p.step),
    [0, 1, 2, 3, 4, 5, 6, 7],
  );
  assert.deepEqual(history.toJSON()[3], { step: 3, loss: 0.25, lr: 0.1, terms: { soft: 0.5 } });
  for (let step = 8; step < 40; step++) history.record('loss', 1 / (step + 1), step);
  const steps = history.toJSON().map((p) => p.step);
  assert.ok(steps.length <= 10, `${steps.length} points`);
  const stride = steps[1]! - steps[0]!;
  assert.ok(stride >= 4);
  assert.deepEqual(
    steps,
    Array.from({ length: steps.length }, (_, i) => i * stride),
  );
  assert.ok(steps[steps.length - 1]! >= 40 - stride, 'the history reaches the last steps');
  // Metrics without a step (final values) are not history.
  history.record('loss', 0, undefined);
  assert.equal(history.toJSON().length, steps.length);
});
