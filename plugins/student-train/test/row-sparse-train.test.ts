import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { writeShards, datasetSchema } from '@distillery/runtime/shards';
import { openTrainingData, type TrainingData } from '../src/data.js';
import { trainStudent, type TrainConfig } from '../src/train.js';
import { DEFAULT_OPTIMIZER } from '@distillery/runtime/optim';
import { Rng } from '../src/rng.js';

const root = mkdtempSync(join(tmpdir(), 'row-sparse-train-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const CLASSES = 12;
const DIM = 6;
const ROWS = 96;

/** Gaussian clusters around seeded class centres. */
async function makeData(): Promise<TrainingData> {
  const rng = new Rng(42);
  const centres = Array.from({ length: CLASSES }, () => Array.from({ length: DIM }, () => 2 * rng.normal()));
  const ids: string[] = [];
  const splits: string[] = [];
  const labels = new Int32Array(ROWS);
  const features = new Float32Array(ROWS * DIM);
  for (let r = 0; r < ROWS; r++) {
    ids.push(`s${r}`);
    splits.push('train');
    labels[r] = r % CLASSES;
    for (let d = 0; d < DIM; d++) features[r * DIM + d] = centres[labels[r]!]![d]! + 0.5 * rng.normal();
  }
  const dir = join(root, 'dataset');
  await writeShards(
    {
      dir,
      schema: datasetSchema({ shape: [DIM], input: 'features', labels: 'single', numClasses: CLASSES }),
      rowsPerShard: 40,
    },
    [{ columns: { id: ids, split: splits, label: labels, features }, rows: ROWS }],
  );
  return openTrainingData(dir, [], 'train');
}

function config(overrides: Partial<TrainConfig>): TrainConfig {
  return {
    student: { arch: 'mlp', hidden: [8] },
    loss: {
      kind: 'sigmoid_ce',
      divergence: 'forward_kl',
      temperature: 1,
      alpha: 0,
      skew: 0.1,
      softLabels: 'auto',
      topkPolicy: 'renormalise',
      kcTopK: 10,
      kcGtMix: 0,
      sampledNegatives: 100,
    },
    optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-2 },
    schedule: { name: 'cosine', warmupSteps: 0, stepSize: 1000, gamma: 0.1, minFactor: 0 },
    epochs: 2,
    maxSteps: 0,
    batchSize: 16,
    shuffleBuffer: 32,
    clipNorm: 0,
    seed: 3,
    checkpointEvery: 0,
    ...overrides,
  };
}

const hooks = (onStep?: (done: number) => void, signal?: AbortSignal) => ({
  log: () => {},
  metric: () => {},
  progress: (done: number) => onStep?.(done),
  ...(signal ? { signal } : {}),
});

async function weights(
  data: TrainingData,
  c: TrainConfig,
  state: string,
  onStep?: (done: number) => void,
  signal?: AbortSignal,
): Promise<Map<string, Float32Array>> {
  const r = await trainStudent(data, c, join(root, state), hooks(onStep, signal));
  return new Map(r.student.params.map((p) => [p.name, Float32Array.from(p.variable.dataSync() as Float32Array)]));
}

test('row-sparse head with every class in every step trains the same model as the dense optimiser (mlp, kc self-paced off)', async () => {
  const data = await makeData();
  const kc = {
    arch: 'kc' as const,
    hidden: [8],
    sharedWidth: 8,
    verticalWidth: 4,
    verticals: [
      [0, 1, 2, 3, 4],
      [5, 6, 7, 8, 9, 10, 11],
    ],
    selfPaced: false,
  };
  for (const student of [{ arch: 'mlp' as const, hidden: [8] }, kc]) {
    // sampledNegatives >= C: every class is a column of every step, so every row is touched every step.
    const dense = await weights(data, config({ student }), `dense-${student.arch}`);
    const sparse = await weights(data, config({ student, headOptimizer: 'row-sparse' }), `sparse-${student.arch}`);
    for (const [name, a] of dense) {
      const b = sparse.get(name)!;
      let moved = false;
      for (let i = 0; i < a.length; i++)
        assert.ok(
          Math.abs(a[i]! - b[i]!) < 2e-5 * (1 + Math.abs(a[i]!)),
          `${student.arch} ${name}[${i}]: dense ${a[i]} vs row-sparse ${b[i]}`,
        );
      for (let i = 0; i < a.length; i++) moved ||= a[i] !== 0;
      assert.ok(moved, `${student.arch} ${name} trained`);
    }
  }
});

test('row-sparse head: a killed run resumes from its checkpoint to the same weights (head rows and lazy moments saved)', async () => {
  const data = await makeData();
  const c = config({
    headOptimizer: 'row-sparse',
    checkpointEvery: 3,
    loss: { ...config({}).loss, sampledNegatives: 3 },
  });
  const whole = await weights(data, c, 'whole');
  const controller = new AbortController();
  await assert.rejects(
    weights(data, c, 'killed', (done) => done === 7 && controller.abort(), controller.signal),
    /aborted at step 7/,
  );
  const resumed = await weights(data, c, 'killed');
  for (const [name, a] of whole) assert.deepEqual(Array.from(resumed.get(name)!), Array.from(a), name);
});

test('imprintAfter is refused for loss kc; row-sparse needs sampled negatives and Adam', async () => {
  const data = await makeData();
  await assert.rejects(
    trainStudent(
      data,
      config({ loss: { ...config({}).loss, kind: 'kc' }, imprintAfter: true }),
      join(root, 'kc'),
      hooks(),
    ),
    /imprintAfter: not with loss kc/,
  );
  await assert.rejects(
    trainStudent(
      data,
      config({ loss: { ...config({}).loss, sampledNegatives: 0 }, headOptimizer: 'row-sparse' }),
      join(root, 'rs0'),
      hooks(),
    ),
    /row-sparse: needs sampledNegatives > 0/,
  );
  await assert.rejects(
    trainStudent(
      data,
      config({ optimizer: { ...DEFAULT_OPTIMIZER, name: 'sgd' }, headOptimizer: 'row-sparse' }),
      join(root, 'rs1'),
      hooks(),
    ),
    /trained with Adam; optimizer is sgd/,
  );
});
