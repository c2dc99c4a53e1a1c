import { spawnSync } from 'node:child_process';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { writeShards, datasetSchema, teacherOutputSchema } from '@distillery/runtime/shards';
import { makeTestContext } from '@distillery/core';
import { studentParams } from './helpers.js';
import plugin from '../src/plugin.js';
import { createStudent, type StudentConfig } from '../src/models/student.js';
import { exportOnnx } from '../src/train.js';
import { Rng } from '../src/rng.js';

const root = mkdtempSync(join(tmpdir(), 'student-train-test-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const CLASSES = 4;
const DIM = 6;
const ROWS = 96;

/** Gaussian clusters: class c has mean 2*e_c; the "teacher" is the softmax of 2*x[:4]. */
async function makeData(dir: string, poison = false): Promise<{ dataset: string; teacher: string }> {
  const rng = new Rng(42);
  const ids: string[] = [],
    splits: string[] = [],
    labels = new Int32Array(ROWS),
    features = new Float32Array(ROWS * DIM);
  const logits = new Float32Array(ROWS * CLASSES),
    topIds = new Int32Array(ROWS * 2),
    topLp = new Float32Array(ROWS * 2),
    missing = new Float32Array(ROWS);
  for (let r = 0; r < ROWS; r++) {
    ids.push(`s${r}`);
    splits.push(r < 80 ? 'train' : 'test');
    labels[r] = r % CLASSES;
    for (let d = 0; d < DIM; d++) features[r * DIM + d] = (d === labels[r] ? 2 : 0) + 0.5 * rng.normal();
    if (poison && r === 5) features[r * DIM] = NaN;
    const z = Array.from({ length: CLASSES }, (_, c) => 2 * features[r * DIM + c]!);
    z.forEach((v, c) => (logits[r * CLASSES + c] = v));
    const m = Math.max(...z),
      lse = m + Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0));
    const order = [0, 1, 2, 3].sort((a, b) => z[b]! - z[a]!);
    topIds[r * 2] = order[0]!;
    topIds[r * 2 + 1] = order[1]!;
    topLp[r * 2] = z[order[0]!]! - lse;
    topLp[r * 2 + 1] = z[order[1]!]! - lse;
    missing[r] = Math.max(0, 1 - Math.exp(topLp[r * 2]!) - Math.exp(topLp[r * 2 + 1]!));
  }
  const dataset = join(dir, 'dataset');
  await writeShards(
    {
      dir: dataset,
      schema: datasetSchema({ shape: [DIM], input: 'features', labels: 'single', numClasses: CLASSES }),
      rowsPerShard: 40,
    },
    [{ columns: { id: ids, split: splits, label: labels, features }, rows: ROWS }],
  );
  const teacher = join(dir, 'teacher');
  const trainIdx = ids.map((_, i) => i).filter((i) => splits[i] === 'train');
  const pick = <T extends Float32Array | Int32Array>(a: T, w: number): T => {
    const out = new (a.constructor as new (n: number) => T)(trainIdx.length * w);
    trainIdx.forEach((i, j) => out.set(a.subarray(i * w, (i + 1) * w), j * w));
    return out;
  };
  await writeShards(
    {
      dir: teacher,
      schema: teacherOutputSchema({
        teacherId: 't',
        modelSha256: 'x',
        temperature: 1,
        activation: 'softmax',
        numClasses: CLASSES,
        storage: { dense: true, topk: { k: 2 } },
      }),
      rowsPerShard: 30,
    },
    [
      {
        columns: {
          id: trainIdx.map((i) => ids[i]!),
          logits: pick(logits, CLASSES),
          topk_ids: pick(topIds, 2),
          topk_logprobs: pick(topLp, 2),
          topk_missing_mass: pick(missing, 1),
        },
        rows: trainIdx.length,
      },
    ],
  );
  return { dataset, teacher };
}

function makeCtx(
  params: Record<string, unknown>,
  inputs: Record<string, string[]>,
  name: string,
  controller = new AbortController(),
  onProgress?: (done: number) => void,
) {
  const outDir = join(root, name, 'out');
  const stateDir = join(root, name, 'state');
  rmSync(outDir, { recursive: true, force: true });
  const { ctx, record } = makeTestContext(plugin, studentParams(params), {
    outDir,
    stateDir,
    pipelineDir: root,
    inputs,
    stageId: name,
    signal: controller.signal,
  });
  const progress = ctx.progress;
  const withProgress = {
    ...ctx,
    progress: (done: number, total?: number, unit?: string) => (progress(done, total, unit), onProgress?.(done)),
  };
  return { ctx: withProgress, metrics: record.metrics, outDir, stateDir };
}

test('ce on hard labels learns (loss falls) and writes model.onnx that predicts like the data', async () => {
  const d = await makeData(join(root, 'd1'));
  const { ctx, metrics, outDir } = makeCtx(
    { loss: 'ce', epochs: 6, batchSize: 16, lr: 0.01, seed: 1 },
    { dataset: [d.dataset] },
    'ce',
  );
  await plugin.run(ctx as never);
  const losses = metrics.filter((m) => m.name === 'loss').map((m) => m.value);
  assert.equal(losses.length, 30);
  assert.ok(losses[losses.length - 1]! < 0.5 * losses[0]!, `loss ${losses[0]} -> ${losses[losses.length - 1]}`);
  const session = await ort.InferenceSession.create(join(outDir, 'model.onnx'));
  const x = new Float32Array(CLASSES * DIM);
  for (let c = 0; c < CLASSES; c++) x[c * DIM + c] = 2; // the cluster centres
  const out = (await session.run({ input: new ort.Tensor('float32', x, [CLASSES, DIM]) })).logits!.data as Float32Array;
  for (let c = 0; c < CLASSES; c++) {
    const row = Array.from(out.subarray(c * CLASSES, (c + 1) * CLASSES));
    assert.equal(row.indexOf(Math.max(...row)), c);
  }
  // training.json holds the per-step history the eval report plots: the same losses, terms and lr.
  const history = (
    JSON.parse(readFileSync(join(outDir, 'training.json'), 'utf8')) as {
      lossHistory: { step: number; loss: number; lr: number; terms: Record<string, number> }[];
    }
  ).lossHistory;
  assert.deepEqual(
    history.map((p) => p.loss),
    losses,
  );
  assert.deepEqual(
    history.map((p) => p.step),
    metrics.filter((m) => m.name === 'loss').map((m) => m.step),
  );
  assert.deepEqual(
    history.map((p) => p.lr),
    metrics.filter((m) => m.name === 'lr').map((m) => m.value),
  );
  assert.deepEqual(
    history.map((p) => p.terms.hard),
    metrics.filter((m) => m.name === 'loss/hard').map((m) => m.value),
  );
});

test('headInit imprint: the stage model classifies the cluster centres before any real training; prior does not', async () => {
  const d = await makeData(join(root, 'd4'));
  const centres = new Float32Array(CLASSES * DIM);
  for (let c = 0; c < CLASSES; c++) centres[c * DIM + c] = 2;
  const correct = async (outDir: string) => {
    const session = await ort.InferenceSession.create(join(outDir, 'model.onnx'));
    const out = (await session.run({ input: new ort.Tensor('float32', centres, [CLASSES, DIM]) })).logits!
      .data as Float32Array;
    let n = 0;
    for (let c = 0; c < CLASSES; c++) {
      const row = Array.from(out.subarray(c * CLASSES, (c + 1) * CLASSES));
      if (row.indexOf(Math.max(...row)) === c && row.filter((v) => v === row[c]).length === 1) n++;
    }
    return n;
  };
  // One step at a negligible lr: what the model knows comes from its initialisation.
  const base = { loss: 'sigmoid_ce', maxSteps: 1, lr: 1e-9, batchSize: 16, seed: 3 };
  const imprinted = makeCtx({ ...base, headInit: 'imprint' }, { dataset: [d.dataset] }, 'imprint');
  await plugin.run(imprinted.ctx as never);
  assert.equal(await correct(imprinted.outDir), CLASSES);
  const prior = makeCtx(base, { dataset: [d.dataset] }, 'prior');
  await plugin.run(prior.ctx as never);
  assert.equal(await correct(prior.outDir), 0, 'the prior start scores every class alike');
  // imprintAfter alone: the rows come from the trained features after the last step.
  const after = makeCtx({ ...base, imprintAfter: true }, { dataset: [d.dataset] }, 'imprintAfter');
  await plugin.run(after.ctx as never);
  assert.equal(await correct(after.outDir), CLASSES);
});

test('kd from top-k (rest) and dense: same seed gives the same model; a killed run resumes to the same result', async () => {
  const d = await makeData(join(root, 'd2'));
  const params = {
    loss: 'kd',
    softLabels: 'topk',
    topkPolicy: 'rest',
    alpha: 0.5,
    maxSteps: 9,
    epochs: 3,
    batchSize: 16,
    checkpointEvery: 2,
    seed: 7,
    shuffleBuffer: 32,
  };
  const a = makeCtx(params, { dataset: [d.dataset], teacher: [d.teacher] }, 'kdA');
  await plugin.run(a.ctx as never);
  const b = makeCtx(params, { dataset: [d.dataset], teacher: [d.teacher] }, 'kdB');
  await plugin.run(b.ctx as never);
  const model = (o: string) => readFileSync(join(o, 'model.onnx'));
  assert.ok(model(a.outDir).equals(model(b.outDir)), 'same seed, same bytes');
  // Kill after 5 steps (checkpoint at step 4), then rerun with the same state directory.
  const controller = new AbortController();
  const c = makeCtx(
    params,
    { dataset: [d.dataset], teacher: [d.teacher] },
    'kdC',
    controller,
    (done) => done === 5 && controller.abort(),
  );
  await assert.rejects(plugin.run(c.ctx as never), /aborted at step 5/);
  const c2 = makeCtx(params, { dataset: [d.dataset], teacher: [d.teacher] }, 'kdC');
  const result = await plugin.run(c2.ctx as never);
  assert.equal(JSON.parse(readFileSync(join(c2.outDir, 'training.json'), 'utf8')).resumedFrom, 4);
  assert.equal(result?.metrics?.steps, 9);
  assert.ok(model(a.outDir).equals(model(c2.outDir)), 'resumed run equals the uninterrupted one');
  const dense = makeCtx(
    { ...params, softLabels: 'dense', divergence: 'js', temperature: 2 },
    { dataset: [d.dataset], teacher: [d.teacher] },
    'kdDense',
  );
  await plugin.run(dense.ctx as never);
  assert.ok(dense.metrics.some((m) => m.name === 'loss/soft'));
});

test('NaN input stops training with the step and the loss term named', async () => {
  const d = await makeData(join(root, 'd3'), true);
  const { ctx } = makeCtx({ loss: 'ce', epochs: 1, batchSize: 80, shuffleBuffer: 1 }, { dataset: [d.dataset] }, 'nan');
  await assert.rejects(plugin.run(ctx as never), /step 0: loss term "hard" is NaN/);
});

const configs: [string, StudentConfig, number[]][] = [
  ['mlp', { arch: 'mlp', hidden: [12, 10] }, [5]],
  ['cnn', { arch: 'cnn', channels: [3, 5], kernel: 3, batchNorm: true, hidden: [7] }, [8, 6, 2]],
  ['cnn-nobn', { arch: 'cnn', channels: [4], kernel: 5, batchNorm: false, hidden: [] }, [6, 6, 1]],
  // Valid padding with odd sizes: 12x11 -> conv 10x9 -> pool 5x4 (last column dropped) -> conv 3x2 -> pool 1x1.
  [
    'cnn-valid-dropout',
    { arch: 'cnn', channels: [3, 4], kernel: 3, batchNorm: false, hidden: [6], padding: 'valid', dropout: 0.5 },
    [12, 11, 1],
  ],
  [
    'cnn-valid-bn',
    { arch: 'cnn', channels: [2, 3], kernel: 3, batchNorm: true, hidden: [], padding: 'valid' },
    [13, 12, 2],
  ],
  [
    'kc',
    { arch: 'kc', hidden: [9], sharedWidth: 8, verticalWidth: 3, verticals: [[4, 0], [1, 5, 2], [3]], selfPaced: true },
    [5],
  ],
  [
    'kc-plain',
    {
      arch: 'kc',
      hidden: [],
      sharedWidth: 6,
      verticalWidth: 2,
      verticals: [
        [0, 1, 2],
        [3, 4, 5],
      ],
      selfPaced: false,
    },
    [4],
  ],
];
for (const [name, config, shape] of configs) {
  test(`ONNX export of ${name} matches tfjs within 1e-4 in onnxruntime-node`, async () => {
    const classes = 6;
    const student = createStudent(config, shape, classes, 3);
    const rng = new Rng(9);
    const n = 5;
    const size = shape.reduce((a, b) => a * b, 1);
    const xData = Float32Array.from({ length: n * size }, () => rng.normal());
    // A few training steps first so batch-norm running stats and weights are not at their init.
    const opt = tf.train.sgd(0.05);
    for (let i = 0; i < 3; i++) {
      opt.minimize(
        () => tf.mean(tf.square(student.apply(tf.tensor(xData, [n, ...shape]), true))) as tf.Scalar,
        false,
        student.params.map((p) => p.variable),
      );
    }
    const want = student.apply(tf.tensor(xData, [n, ...shape]), false).dataSync();
    const path = join(root, `${name}.onnx`);
    exportOnnx(student, path);
    const session = await ort.InferenceSession.create(path);
    const got = (await session.run({ input: new ort.Tensor('float32', xData, [n, ...shape]) })).logits!;
    assert.deepEqual(got.dims, [n, classes]);
    const g = got.data as Float32Array;
    let maxDiff = 0;
    for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(g[i]! - want[i]!));
    assert.ok(maxDiff < 1e-4, `max |onnx - tfjs| = ${maxDiff}`);
    // The reference checker (Debian python3-onnx, installed by .ci/run) accepts the graph.
    const checker = spawnSync(
      '/usr/bin/python3',
      ['-c', 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', path],
      { encoding: 'utf8' },
    );
    if (checker.error || /No module named/.test(checker.stderr)) {
      console.log(`# onnx.checker not run for ${name}: python3-onnx is not installed`);
    } else {
      assert.equal(checker.status, 0, `onnx.checker: ${checker.stderr}`);
    }
  });
}

test('validationSplit: top-1 on the held-out rows after every epoch, the last equal to the exported model on those rows', async () => {
  const d = await makeData(join(root, 'dval'));
  const { ctx, metrics, outDir } = makeCtx(
    { loss: 'ce', epochs: 3, batchSize: 16, lr: 0.01, seed: 2, validationSplit: 'test' },
    { dataset: [d.dataset] },
    'val',
  );
  await plugin.run(ctx as never);
  const val = metrics.filter((m) => m.name === 'val/top1');
  // 80 train rows, batch 16: 5 steps per epoch.
  assert.deepEqual(
    val.map((m) => m.step),
    [5, 10, 15],
  );
  const training = JSON.parse(readFileSync(join(outDir, 'training.json'), 'utf8')) as {
    validation: { step: number; metric: string; value: number }[];
  };
  assert.deepEqual(
    training.validation.map((v) => [v.step, v.metric, v.value]),
    val.map((m) => [m.step, 'top1', m.value]),
  );
  // Independent check of the last score: onnxruntime on model.onnx over the 16 test rows.
  const rng = new Rng(42);
  const xs = new Float32Array(16 * DIM);
  const labels: number[] = [];
  for (let r = 0; r < ROWS; r++) {
    const label = r % CLASSES;
    for (let dd = 0; dd < DIM; dd++) {
      const v = (dd === label ? 2 : 0) + 0.5 * rng.normal();
      if (r >= 80) xs[(r - 80) * DIM + dd] = v;
    }
    if (r >= 80) labels.push(label);
  }
  const session = await ort.InferenceSession.create(join(outDir, 'model.onnx'));
  const logits = (await session.run({ input: new ort.Tensor('float32', xs, [16, DIM]) })).logits!.data as Float32Array;
  let correct = 0;
  labels.forEach((label, i) => {
    const row = Array.from(logits.subarray(i * CLASSES, (i + 1) * CLASSES));
    if (row.indexOf(Math.max(...row)) === label) correct++;
  });
  assert.equal(val[val.length - 1]!.value, correct / 16);
  const { ctx: bad } = makeCtx(
    { loss: 'ce', epochs: 1, validationSplit: 'train' },
    { dataset: [d.dataset] },
    'val-bad',
  );
  await assert.rejects(plugin.run(bad as never), /validationSplit "train" is the training split/);
});
