import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { writeShards, datasetSchema } from '@distillery/runtime/shards';
import { openTrainingData } from '../src/data.js';
import { imprintHeads, type Imprintable } from '../src/imprint.js';
import { createStudent } from '../src/models/student.js';
import { Rng } from '../src/rng.js';

const root = mkdtempSync(join(tmpdir(), 'imprint-test-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const DIM = 5;
const CLASSES = 6; // class 5 has no training row

/** Class c (< 5) sits around 3 * e_c; rows of split 'test' must not enter the means. */
let made: Promise<{ dir: string; features: Float32Array; labels: Int32Array; splits: string[] }> | undefined;
const makeData = () => (made ??= writeData());
async function writeData(): Promise<{ dir: string; features: Float32Array; labels: Int32Array; splits: string[] }> {
  const rng = new Rng(7);
  const rows = 70;
  const ids: string[] = [],
    splits: string[] = [],
    labels = new Int32Array(rows),
    features = new Float32Array(rows * DIM);
  for (let r = 0; r < rows; r++) {
    ids.push(`r${r}`);
    splits.push(r >= 60 ? 'test' : 'train');
    labels[r] = r < 12 ? 0 : r % 5; // unbalanced: the centre (all rows) differs from the mean of class means
    for (let d = 0; d < DIM; d++)
      features[r * DIM + d] = (d === labels[r] ? 3 : 0) + 0.4 * rng.normal() + (r >= 60 ? 100 : 0);
  }
  const dir = join(root, 'data');
  await writeShards(
    {
      dir,
      schema: datasetSchema({ shape: [DIM], input: 'features', labels: 'single', numClasses: CLASSES }),
      rowsPerShard: 25,
    },
    [{ columns: { id: ids, split: splits, label: labels, features }, rows }],
  );
  return { dir, features, labels, splits };
}

/** Independent reference: class means, centre over all train rows, alpha from the median norm. */
function reference(
  features: Float32Array,
  labels: Int32Array,
  splits: string[],
  cols: number[],
  offset: number,
  width: number,
  margin: number,
) {
  const train = splits.map((s, r) => (s === 'train' ? r : -1)).filter((r) => r >= 0);
  const mu = Array.from(
    { length: width },
    (_, j) => train.reduce((a, r) => a + features[r * DIM + offset + j]!, 0) / train.length,
  );
  const means = cols.map((c) => {
    const rows = train.filter((r) => labels[r] === c);
    return rows.length
      ? Array.from(
          { length: width },
          (_, j) => rows.reduce((a, r) => a + features[r * DIM + offset + j]!, 0) / rows.length,
        )
      : undefined;
  });
  const norms = means
    .filter((m) => m)
    .map((m) => Math.hypot(...m!.map((v, j) => v - mu[j]!)))
    .sort((a, b) => a - b);
  const med =
    norms.length % 2 ? norms[(norms.length - 1) / 2]! : (norms[norms.length / 2 - 1]! + norms[norms.length / 2]!) / 2;
  const alpha = margin / med;
  return means.map((m) => {
    if (!m) return undefined;
    const n = Math.hypot(...m.map((v, j) => v - mu[j]!));
    const w = m.map((v, j) => (alpha * (v - mu[j]!)) / n);
    return { w, b: -Math.log(CLASSES) - w.reduce((a, v, j) => a + v * mu[j]!, 0) };
  });
}

test('imprinting, mlp without hidden layers: rows are the centred, scaled class means of the train split', async () => {
  const { dir, features, labels, splits } = await makeData();
  const data = await openTrainingData(dir, [], 'train');
  const student = createStudent({ arch: 'mlp', hidden: [] }, [DIM], CLASSES, 1);
  const summary = await imprintHeads(student, data, { batchSize: 16 });
  assert.deepEqual(summary, { rows: 60, imprinted: 5, margin: Math.log(CLASSES) });
  const w = student.params.find((p) => p.name === 'fc0.weight')!.variable.arraySync() as number[][];
  const b = student.params.find((p) => p.name === 'fc0.bias')!.variable.arraySync() as number[];
  const ref = reference(features, labels, splits, [0, 1, 2, 3, 4, 5], 0, DIM, Math.log(CLASSES));
  ref.forEach((r, c) => {
    if (!r) {
      // No training row: prior (weight 0, bias -log C).
      assert.deepEqual(
        w.map((row) => row[c]),
        [0, 0, 0, 0, 0],
      );
      assert.ok(Math.abs(b[c]! + Math.log(CLASSES)) < 1e-6);
      return;
    }
    r.w.forEach((v, j) => assert.ok(Math.abs(w[j]![c]! - v) < 1e-4, `w[${j}][${c}] ${w[j]![c]} vs ${v}`));
    assert.ok(Math.abs(b[c]! - r.b) < 1e-4, `b[${c}] ${b[c]} vs ${r.b}`);
  });
  // At step 0 the student already classifies the train rows by nearest centred class mean.
  const logits = student.apply(tf.tensor2d(features.subarray(0, 60 * DIM), [60, DIM]), false).arraySync();
  const correct = logits.filter((row, r) => row.indexOf(Math.max(...row)) === labels[r]).length;
  assert.ok(correct >= 57, `${correct}/60 train rows right at step 0`);
});

test('imprinting a KC head: each vertical reads its own feature slice; cnn is refused', async () => {
  const { dir, features, labels, splits } = await makeData();
  const data = await openTrainingData(dir, [], 'train');
  const student = createStudent(
    {
      arch: 'kc',
      hidden: [],
      sharedWidth: 8,
      verticalWidth: 3,
      verticals: [
        [0, 3, 5],
        [1, 2, 4],
      ],
      selfPaced: false,
    },
    [DIM],
    CLASSES,
    3,
  );
  await imprintHeads(student, data, { margin: 2 });
  // Reference from the student's own features at init (the slice each vertical block reads).
  const hidden = (student as unknown as Imprintable).penultimate(tf.tensor2d(features, [70, DIM])).arraySync();
  const flat = Float32Array.from(hidden.flat());
  const width = hidden[0]!.length;
  for (const [v, cols] of [
    [0, [0, 3, 5]],
    [1, [1, 2, 4]],
  ] as const) {
    // reference() indexes rows with stride DIM; re-pack the features with that stride per vertical.
    const packed = new Float32Array(70 * DIM);
    for (let r = 0; r < 70; r++) for (let j = 0; j < 3; j++) packed[r * DIM + j] = flat[r * width + v * 3 + j]!;
    const ref = reference(packed, labels, splits, [...cols], 0, 3, 2);
    const w = student.params.find((p) => p.name === `sc.out${v}.weight`)!.variable.arraySync() as number[][];
    ref.forEach((r, col) => {
      if (!r)
        return assert.deepEqual(
          w.map((row) => row[col]),
          [0, 0, 0],
        );
      r.w.forEach((x, j) =>
        assert.ok(Math.abs(w[j]![col]! - x) < 1e-4, `vertical ${v}: w[${j}][${col}] ${w[j]![col]} vs ${x}`),
      );
    });
  }
  const cnn = createStudent(
    { arch: 'cnn', channels: [2], kernel: 3, batchNorm: false, hidden: [] },
    [2, 2, 1],
    CLASSES,
    0,
  );
  await assert.rejects(imprintHeads(cnn, data), /headInit imprint: student arch "cnn" has no imprintable head/);
});

test('headInit ncm, mlp without hidden layers: the arg max is the nearest train-split class mean (Euclidean)', async () => {
  const { dir, features, labels, splits } = await makeData();
  const data = await openTrainingData(dir, [], 'train');
  const student = createStudent({ arch: 'mlp', hidden: [] }, [DIM], CLASSES, 1);
  const summary = await imprintHeads(student, data, { batchSize: 16, rule: 'ncm' });
  assert.equal(summary.imprinted, 5);
  const train = splits.map((s, r) => (s === 'train' ? r : -1)).filter((r) => r >= 0);
  const means = Array.from({ length: 5 }, (_, c) => {
    const rows = train.filter((r) => labels[r] === c);
    return Array.from({ length: DIM }, (_, j) => rows.reduce((a, r) => a + features[r * DIM + j]!, 0) / rows.length);
  });
  // Probe points (not the data): every row of a random grid is scored by distance to the means.
  const rng = new Rng(3);
  const probes = Array.from({ length: 40 }, () => Array.from({ length: DIM }, () => 4 * rng.next() - 0.5));
  const logits = student.apply(tf.tensor2d(probes.flat(), [40, DIM]), false).arraySync();
  probes.forEach((p, i) => {
    const dist = means.map((m) => m.reduce((a, v, j) => a + (p[j]! - v) ** 2, 0));
    const nearest = dist.indexOf(Math.min(...dist));
    const row = logits[i]!;
    assert.equal(row.indexOf(Math.max(...row)), nearest, `probe ${i}`);
    // logit_c = ||p||^2 - ||p - m_c||^2 exactly.
    const sq = p.reduce((a, v) => a + v * v, 0);
    dist.forEach((d, c) =>
      assert.ok(Math.abs(row[c]! - (sq - d)) < 1e-3, `probe ${i} class ${c}: ${row[c]} vs ${sq - d}`),
    );
    assert.ok(row[5]! < -1e29, 'a class without training rows never wins');
  });
});
