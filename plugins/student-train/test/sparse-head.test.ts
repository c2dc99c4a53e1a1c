import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { createStudent, type Student, type StudentConfig } from '../src/models/student.js';
import type { Imprintable } from '../src/imprint.js';
import { DEFAULT_OPTIMIZER } from '@distillery/runtime/optim';
import { SparseHead } from '../src/sparse-head.js';
import { Rng } from '../src/rng.js';

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-4 * (1 + Math.abs(b)), `${what}: ${a} vs ${b}`);

/** A student whose head is not all zeros, so every path carries signal. */
function makeStudent(config: StudentConfig, numClasses: number): Student & Imprintable {
  const s = createStudent(config, [6], numClasses, 3) as Student & Imprintable;
  const rng = new Rng(5);
  for (const h of s.heads())
    h.bias.assign(tf.tensor1d(Float32Array.from({ length: h.classes.length }, () => rng.normal())));
  return s;
}

/**
 * sum(probe * logits[:, cols]) through the row-sparse head and through student.applyColumns: values,
 * gradients of every non-head parameter, and (without self-paced scales) the head rows' gradients.
 */
function compare(config: StudentConfig, numClasses: number, cols: number[], what: string): void {
  const student = makeStudent(config, numClasses);
  const head = new SparseHead(student, DEFAULT_OPTIMIZER);
  head.load();
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
  const columns = Int32Array.from(cols);
  const headVars = head.variables();
  const body = student.params.filter((p) => !headVars.has(p.variable));
  const step = head.begin(columns);
  const viaSparse = tf.variableGrads(
    () => tf.sum(tf.mul(head.logits(student.penultimate(x), step), probe)) as tf.Scalar,
    [...body.map((p) => p.variable), ...step.variables],
  );
  const viaStudent = tf.variableGrads(
    () => tf.sum(tf.mul(student.applyColumns!(x, true, columns), probe)) as tf.Scalar,
    student.params.map((p) => p.variable),
  );
  close(viaSparse.value.dataSync()[0]!, viaStudent.value.dataSync()[0]!, `${what}: value`);
  for (const p of body) {
    const g1 = viaSparse.grads[p.variable.name]?.dataSync() ?? new Float32Array(p.variable.size);
    const g2 = viaStudent.grads[p.variable.name]?.dataSync() ?? new Float32Array(p.variable.size);
    for (let i = 0; i < g2.length; i++) close(g1[i]!, g2[i]!, `${what}: d${p.name}[${i}]`);
  }
  const selfPaced = config.arch === 'kc' && config.selfPaced;
  if (!selfPaced) {
    // Head rows: the sparse gradient of class c equals the dense head gradient's column c.
    const heads = student.heads();
    for (const part of step.parts) {
      const h = heads[part.head]!;
      const dense = viaStudent.grads[h.weight.name]!.dataSync();
      const denseBias = viaStudent.grads[h.bias.name]!.dataSync();
      const gw = viaSparse.grads[part.weight.name]!.dataSync();
      const gb = viaSparse.grads[part.bias.name]!.dataSync();
      const m = part.classes.length;
      const nCols = h.classes.length;
      part.classes.forEach((cls, i) => {
        const col = Array.from(h.classes).indexOf(cls);
        for (let j = 0; j < h.width; j++)
          close(gw[j * m + i]!, dense[j * nCols + col]!, `${what}: dW class ${cls} row ${j}`);
        close(gb[i]!, denseBias[col]!, `${what}: db class ${cls}`);
      });
    }
  }
  for (const v of step.variables) v.dispose();
}

test('row-sparse head: logits and gradients equal applyColumns (mlp; kc with and without self-paced, contiguous and interleaved verticals)', () => {
  const cols = [0, 2, 4, 7, 9];
  compare({ arch: 'mlp', hidden: [5, 3] }, 10, cols, 'mlp');
  compare({ arch: 'mlp', hidden: [] }, 10, [9, 0, 4], 'mlp without hidden layers, unsorted columns');
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
      compare(
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
    }
  }
});

test('row-sparse head: a step changes only its rows; store() writes them into the student; the self-paced norm statistics follow the rows', () => {
  const config: StudentConfig = {
    arch: 'kc',
    hidden: [5],
    sharedWidth: 4,
    verticalWidth: 3,
    verticals: [
      [0, 1, 2, 3],
      [4, 5, 6],
      [7, 8, 9],
    ],
    selfPaced: true,
  };
  const student = makeStudent(config, 10);
  const head = new SparseHead(student, DEFAULT_OPTIMIZER);
  head.load();
  const before = Float32Array.from(head.rows);
  const rng = new Rng(2);
  const x = tf.tensor2d(
    Float32Array.from({ length: 24 }, () => rng.normal()),
    [4, 6],
  );
  const columns = Int32Array.from([1, 5, 8]);
  const step = head.begin(columns);
  const { grads } = tf.variableGrads(
    () => tf.sum(tf.square(head.logits(student.penultimate(x), step))) as tf.Scalar,
    step.variables,
  );
  head.apply(step, new Map(step.variables.map((v) => [v, grads[v.name]!])), 0.1);
  const w1 = head.width + 1;
  for (let c = 0; c < 10; c++) {
    const changed = head.rows.subarray(c * w1, (c + 1) * w1).some((v, j) => v !== before[c * w1 + j]);
    assert.equal(changed, [1, 5, 8].includes(c), `class ${c}`);
  }
  head.store();
  // The student's own forward pass now uses the updated rows, and its full self-paced logits equal the
  // row-sparse head's at every column (the Gram statistics were updated, not stale).
  const all = Int32Array.from({ length: 10 }, (_, i) => i);
  const viaStudent = student.apply(x, false).dataSync();
  const check = head.begin(all);
  const viaHead = head.logits(student.penultimate(x), check).dataSync();
  for (let i = 0; i < viaStudent.length; i++) close(viaHead[i]!, viaStudent[i]!, `logit ${i}`);
  // A fresh load of the stored variables reproduces the rows exactly.
  const again = new SparseHead(student, DEFAULT_OPTIMIZER);
  again.load();
  assert.deepEqual(Array.from(again.rows), Array.from(head.rows));
});
