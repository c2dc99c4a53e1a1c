import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { writeShards, datasetSchema, teacherOutputSchema } from '@distillery/runtime/shards';
import { epochBatches, openTrainingData } from '../src/data.js';
import { trainStudent, type TrainConfig } from '../src/train.js';
import { Rng } from '../src/rng.js';

const root = mkdtempSync(join(tmpdir(), 'student-train-join-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const CLASSES = 4;
const DIM = 3;
const ROWS = 50;
// Two verticals: classes {0, 1} and {2, 3}.
const VERTICALS = [
  [0, 1],
  [2, 3],
];

/** Dataset rows s0..s49 (every 5th is test), labels from a seeded stream. */
async function makeDataset(dir: string) {
  const rng = new Rng(7);
  const ids = Array.from({ length: ROWS }, (_, r) => `s${r}`);
  const splits = ids.map((_, r) => (r % 5 === 4 ? 'test' : 'train'));
  const labels = Int32Array.from(ids, () => rng.int(CLASSES));
  const features = Float32Array.from({ length: ROWS * DIM }, () => rng.normal());
  await writeShards(
    {
      dir,
      schema: datasetSchema({ shape: [DIM], input: 'features', labels: 'single', numClasses: CLASSES }),
      rowsPerShard: 16,
    },
    [{ columns: { id: ids, split: splits, label: labels, features }, rows: ROWS }],
  );
  return { ids, splits, labels };
}

/**
 * A vertical teacher's top-1 rows for the given dataset rows: the stored probability encodes the
 * row number (0.5 + r / 1000), so a test can tell which row a joined value came from.
 */
async function makeTeacher(dir: string, v: number, rows: number[], ids: string[]) {
  const classMap = VERTICALS[v]!;
  await writeShards(
    {
      dir,
      schema: teacherOutputSchema({
        teacherId: `v${v}`,
        modelSha256: 'x',
        temperature: 1,
        activation: 'sigmoid',
        numClasses: CLASSES,
        classMap,
        storage: { dense: false, topk: { k: 1 } },
      }),
      rowsPerShard: 7,
    },
    [
      {
        columns: {
          id: rows.map((r) => ids[r]!),
          topk_ids: Int32Array.from(rows, () => classMap[0]!),
          topk_logprobs: Float32Array.from(rows, (r) => Math.log(0.5 + r / 1000)),
          topk_missing_mass: new Float32Array(rows.length),
        },
        rows: rows.length,
      },
    ],
  );
}

test('teacher rows joined by id: per-vertical teachers cover only their rows; order violations and partial teachers for non-kc losses are errors', async () => {
  const d = await makeDataset(join(root, 'data'));
  const train = d.ids.map((_, r) => r).filter((r) => d.splits[r] === 'train');
  const own = (v: number) => train.filter((r) => VERTICALS[v]!.includes(d.labels[r]!));
  await makeTeacher(join(root, 't0'), 0, own(0), d.ids);
  await makeTeacher(join(root, 't1'), 1, own(1), d.ids);
  const data = await openTrainingData(join(root, 'data'), [join(root, 't0'), join(root, 't1')], 'train');
  assert.equal(data.rows, train.length);
  assert.deepEqual(
    data.teachers.map((t) => t.coveredRows),
    [own(0).length, own(1).length],
  );
  assert.equal(own(0).length + own(1).length, train.length);
  // Buffer 1: file order. Each sample has exactly its vertical's teacher row, with its own value.
  const samples = [];
  for await (const b of epochBatches(data, 1000, 1, 0, 0)) samples.push(...b);
  assert.deepEqual(
    samples.map((s) => s.id),
    train.map((r) => d.ids[r]),
  );
  for (const s of samples) {
    const r = Number(s.id.slice(1));
    const v = VERTICALS.findIndex((cl) => cl.includes(s.label));
    assert.equal(s.teachers[1 - v], undefined, `${s.id}: no row from the other vertical's teacher`);
    const p = Math.exp(s.teachers[v]!.topkLogprobs![0]!);
    assert.ok(Math.abs(p - (0.5 + r / 1000)) < 1e-6, `${s.id}: joined the value of its own row`);
  }

  // KC trains on the per-vertical teachers (a few steps, finite loss).
  const config: TrainConfig = {
    student: { arch: 'kc', hidden: [8], sharedWidth: 8, verticalWidth: 4, verticals: [], selfPaced: false },
    loss: {
      kind: 'kc',
      divergence: 'forward_kl',
      temperature: 1,
      alpha: 0,
      skew: 0.1,
      softLabels: 'auto',
      topkPolicy: 'renormalise',
      kcTopK: 1,
      kcGtMix: 0.5,
      sampledNegatives: 0,
    },
    optimizer: { name: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0, weightDecay: 0 },
    schedule: { name: 'constant', warmupSteps: 0, stepSize: 1000, gamma: 0.1, minFactor: 0 },
    epochs: 2,
    maxSteps: 0,
    batchSize: 8,
    shuffleBuffer: 16,
    clipNorm: 0,
    seed: 3,
    checkpointEvery: 0,
  };
  const hooks = { log: () => {}, metric: () => {}, progress: () => {} };
  const result = await trainStudent(data, config, join(root, 'state-kc'), hooks);
  assert.equal(result.steps, 2 * Math.ceil(train.length / 8));
  assert.ok(Number.isFinite(result.finalLoss));

  // A teacher missing one of its vertical's rows: KC names the sample.
  const missing = own(0)[3]!;
  await makeTeacher(
    join(root, 't0-hole'),
    0,
    own(0).filter((r) => r !== missing),
    d.ids,
  );
  const holed = await openTrainingData(join(root, 'data'), [join(root, 't0-hole'), join(root, 't1')], 'train');
  await assert.rejects(
    trainStudent(holed, config, join(root, 'state-hole'), hooks),
    new RegExp(`sample "s${missing}" .*no row in teacher v0`),
  );

  // Rows out of the dataset's order (or not in the split): an error naming the teacher row.
  const swapped = own(0).slice();
  [swapped[1], swapped[2]] = [swapped[2]!, swapped[1]!];
  await makeTeacher(join(root, 't0-swap'), 0, swapped, d.ids);
  await assert.rejects(
    openTrainingData(join(root, 'data'), [join(root, 't0-swap')], 'train'),
    new RegExp(`row 2 \\(sample "s${swapped[2]}"\\) matches no dataset row in order`),
  );
  // Rows of another split, in the dataset's order, are passed over (teacher-infer over the whole dataset).
  const testRow = d.ids.findIndex((_, r) => d.splits[r] === 'test');
  const before = own(0).filter((r) => r < testRow);
  await makeTeacher(join(root, 't0-test'), 0, [...before, testRow], d.ids);
  const withTest = await openTrainingData(join(root, 'data'), [join(root, 't0-test')], 'train');
  assert.equal(withTest.teachers[0]!.coveredRows, before.length);
  // ... but a row of another split out of order is an error naming it.
  await makeTeacher(join(root, 't0-test-late'), 0, [testRow, ...before.slice(0, 1)], d.ids);
  await assert.rejects(
    openTrainingData(join(root, 'data'), [join(root, 't0-test-late')], 'train'),
    /matches no dataset row in order/,
  );

  // A non-kc loss needs every row.
  const single = await openTrainingData(join(root, 'data'), [join(root, 't0')], 'train');
  await assert.rejects(
    trainStudent(
      single,
      { ...config, student: { arch: 'mlp', hidden: [4] }, loss: { ...config.loss, kind: 'sigmoid_kd' } },
      join(root, 'state-kd'),
      hooks,
    ),
    new RegExp(
      `cover ${own(0).length} of the ${train.length} train rows; loss "sigmoid_kd" needs a teacher row for every row`,
    ),
  );
});

test('sigmoid losses start at the class prior: every logit log(1/C), so the first loss is C log(1 + 1/C) + log C per one-hot sample (mlp, kc self-paced)', async () => {
  const d = await makeDataset(join(root, 'data-prior'));
  const train = d.ids.map((_, r) => r).filter((r) => d.splits[r] === 'train');
  const own = (v: number) => train.filter((r) => VERTICALS[v]!.includes(d.labels[r]!));
  await makeTeacher(join(root, 'p0'), 0, own(0), d.ids);
  await makeTeacher(join(root, 'p1'), 1, own(1), d.ids);
  const data = await openTrainingData(join(root, 'data-prior'), [join(root, 'p0'), join(root, 'p1')], 'train');
  const expected = CLASSES * Math.log(1 + 1 / CLASSES) + Math.log(CLASSES);
  const base: TrainConfig = {
    student: { arch: 'mlp', hidden: [8] },
    loss: {
      kind: 'sigmoid_ce',
      divergence: 'forward_kl',
      temperature: 1,
      alpha: 0,
      skew: 0.1,
      softLabels: 'auto',
      topkPolicy: 'renormalise',
      kcTopK: 1,
      kcGtMix: 1,
      sampledNegatives: 0,
    },
    optimizer: { name: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0, weightDecay: 0 },
    schedule: { name: 'constant', warmupSteps: 0, stepSize: 1000, gamma: 0.1, minFactor: 0 },
    epochs: 1,
    maxSteps: 1,
    batchSize: 8,
    shuffleBuffer: 16,
    clipNorm: 0,
    seed: 3,
    checkpointEvery: 0,
  };
  for (const [name, config] of [
    ['mlp sigmoid_ce', base],
    [
      'kc self-paced, gtMix 1',
      {
        ...base,
        student: { arch: 'kc', hidden: [8], sharedWidth: 8, verticalWidth: 4, verticals: [], selfPaced: true },
        loss: { ...base.loss, kind: 'kc' },
      },
    ],
    [
      'kc sampled negatives (exact: R >= C)',
      {
        ...base,
        student: { arch: 'kc', hidden: [8], sharedWidth: 8, verticalWidth: 4, verticals: [], selfPaced: true },
        loss: { ...base.loss, kind: 'kc', sampledNegatives: 10 },
      },
    ],
  ] as [string, TrainConfig][]) {
    const losses: number[] = [];
    const input = config.loss.kind === 'kc' ? data : await openTrainingData(join(root, 'data-prior'), [], 'train');
    await trainStudent(input, config, join(root, `state-prior-${name}`), {
      log: () => {},
      metric: (n, v) => n === 'loss' && losses.push(v),
      progress: () => {},
    });
    assert.ok(Math.abs(losses[0]! - expected) < 1e-4, `${name}: first loss ${losses[0]}, expected ${expected}`);
  }
});
