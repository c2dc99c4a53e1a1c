import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import type { TeacherOutputOptions } from '@distillery/runtime/shards';
import { kcTarget } from '../src/targets.js';
import type { Sample } from '../src/data.js';
import { createStudent, parameterCount } from '../src/models/student.js';

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const info = (classMap: number[]): TeacherOutputOptions => ({
  teacherId: 't',
  modelSha256: '',
  temperature: 1,
  activation: 'sigmoid',
  numClasses: 5,
  classMap,
  storage: { dense: false, topk: { k: 2 } },
});

test("KC targets: the label's vertical teacher, top-K kept, ground truth mixed in", async () => {
  // Vertical 0 = classes {0, 3}, vertical 1 = {1, 2, 4}.
  const verticalOfClass = Int32Array.from([0, 1, 1, 0, 1]);
  const sample = (id: string, label: number): Sample => ({
    id,
    x: new Float32Array(1),
    label,
    teachers: [
      { topkIds: Int32Array.from([3, 0]), topkLogprobs: Float32Array.from([Math.log(0.8), Math.log(0.3)]) },
      { topkIds: Int32Array.from([4, 2]), topkLogprobs: Float32Array.from([Math.log(0.6), Math.log(0.1)]) },
    ],
  });
  const t = kcTarget([sample('a', 0), sample('b', 1)], [info([0, 3]), info([1, 2, 4])], verticalOfClass, 2, 0.25);
  const ids = t.ids.arraySync() as number[][];
  const probs = t.probs.arraySync() as number[][];
  const mask = t.mask.arraySync() as number[][];
  // a (label 0): teacher 0, 0.75 * [0.8, 0.3] on [3, 0], + 0.25 on class 0 (already kept).
  assert.deepEqual(ids[0]!.slice(0, 2), [3, 0]);
  assert.ok(Math.abs(probs[0]![0]! - 0.6) < 1e-6 && Math.abs(probs[0]![1]! - (0.225 + 0.25)) < 1e-6);
  assert.deepEqual(mask[0], [1, 1, 0]);
  // b (label 1): teacher 1, 0.75 * [0.6, 0.1] on [4, 2], label 1 appended with 0.25.
  assert.deepEqual(ids[1], [4, 2, 1]);
  assert.ok([0.45, 0.075, 0.25].every((v, i) => Math.abs(probs[1]![i]! - v) < 1e-6));
  assert.throws(
    () => kcTarget([sample('c', 7)], [info([0, 3]), info([1, 2, 4])], verticalOfClass, 2, 0),
    /sample "c" has label 7/,
  );
});

test('KC student: SC parameter count s_b*s1 + s1*s2*M + s2*N (+ biases, + M scales); gammas start near sqrt(N_v)', () => {
  const verticals = [
    [0, 1, 2, 3],
    [4, 5, 6, 7, 8, 9, 10, 11, 12],
  ];
  const s = createStudent(
    { arch: 'kc', hidden: [], sharedWidth: 8, verticalWidth: 3, verticals, selfPaced: true },
    [10],
    13,
    0,
  );
  const weights = 10 * 8 + 8 * 3 * 2 + 3 * 13;
  const biases = 8 + 3 * 2 + 13;
  assert.equal(parameterCount(s), weights + biases + 2);
  const gammas = s.params.filter((p) => p.name.startsWith('sc.gamma')).map((p) => p.variable.dataSync()[0]!);
  assert.ok(Math.abs(gammas[0]! - 2) < 0.01 && Math.abs(gammas[1]! - 3) < 0.01, `${gammas}`);
  assert.throws(
    () =>
      createStudent(
        { arch: 'kc', hidden: [], sharedWidth: 2, verticalWidth: 2, verticals: [[0], [0, 1]], selfPaced: false },
        [3],
        2,
        0,
      ),
    /class 0 is in verticals 0 and 1/,
  );
});
