import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { makeTestContext } from '@distillery/core';
import { GraphBuilder, readModelFile, writeModelFile } from '@distillery/runtime/onnx';
import { datasetSchema, openShardSet, parseTeacherSchema, writeShards } from '@distillery/runtime/shards';
import teacherInfer from '@distillery/plugin-teacher-infer/plugin';
import plugin from '../src/plugin.js';
import { createStudent, type StudentConfig } from '../src/models/student.js';
import { initStudentFromOnnx } from '../src/init.js';
import { Rng } from '../src/rng.js';

const root = mkdtempSync(join(tmpdir(), 'student-train-feature-plugin-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const SIDE = 8;
const CLASSES = 3;
const ROWS = 96;

/** 8x8 grey images: class c has a bright 3x3 blob in region c, plus noise. */
async function writeDataset(dir: string): Promise<Uint8Array> {
  const rng = new Rng(3);
  const pixels = new Uint8Array(ROWS * SIDE * SIDE);
  const labels = new Int32Array(ROWS);
  for (let r = 0; r < ROWS; r++) {
    const c = r % CLASSES;
    labels[r] = c;
    const [y0, x0] = (
      [
        [0, 0],
        [4, 1],
        [2, 5],
      ] as [number, number][]
    )[c]!;
    for (let i = 0; i < SIDE * SIDE; i++) pixels[r * SIDE * SIDE + i] = Math.floor(40 * rng.next());
    for (let dy = 0; dy < 3; dy++)
      for (let dx = 0; dx < 3; dx++)
        pixels[r * SIDE * SIDE + (y0 + dy) * SIDE + x0 + dx] = 200 + Math.floor(55 * rng.next());
  }
  const ids = Array.from({ length: ROWS }, (_, r) => `s${r}`);
  await writeShards(
    {
      dir,
      schema: datasetSchema({ shape: [SIDE, SIDE, 1], input: 'pixels', labels: 'single', numClasses: CLASSES }),
      rowsPerShard: 40,
    },
    [{ columns: { id: ids, split: ids.map(() => 'train'), label: labels, pixels }, rows: ROWS }],
  );
  return pixels;
}

/** A fixed CNN teacher: conv 3x3 1->4 (pad 1), relu, 2x2 max pool = output "feat" [batch, 4, 4, 4] (NCHW), dense -> logits. */
function writeTeacher(path: string): void {
  const rng = new Rng(17);
  writeModelFile(
    path,
    new GraphBuilder('teacher', { opset: 17 })
      .input('input', 'float32', ['batch', SIDE, SIDE, 1])
      .initializer(
        'conv.w',
        Float32Array.from({ length: 4 * 9 }, () => rng.normal()),
        [4, 1, 3, 3],
      )
      .initializer(
        'conv.b',
        Float32Array.from({ length: 4 }, () => 0.1 * rng.normal()),
        [4],
      )
      .initializer(
        'fc.w',
        Float32Array.from({ length: 64 * CLASSES }, () => 0.3 * rng.normal()),
        [64, CLASSES],
      )
      .initializer('fc.b', new Float32Array(CLASSES), [CLASSES])
      .node('Transpose', ['input'], ['nchw'], { perm: { ints: [0, 3, 1, 2] } })
      .node('Conv', ['nchw', 'conv.w', 'conv.b'], ['conv'], {
        kernel_shape: { ints: [3, 3] },
        pads: { ints: [1, 1, 1, 1] },
      })
      .node('Relu', ['conv'], ['relu'])
      .node('MaxPool', ['relu'], ['feat'], { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } })
      .node('Flatten', ['feat'], ['flat'], { axis: { i: 1 } })
      .node('Gemm', ['flat', 'fc.w', 'fc.b'], ['logits'])
      .output('logits', 'float32', ['batch', CLASSES])
      .output('feat', 'float32', ['batch', 4, 4, 4])
      .build(),
  );
}

const student: StudentConfig = {
  arch: 'cnn',
  channels: [4],
  kernel: 3,
  batchNorm: false,
  hidden: [8],
  padding: 'same',
};

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

let prepared: Promise<{ dataset: string; teacher: string; pixels: Uint8Array }> | undefined;
/** Dataset, teacher model and teacher-infer's stored outputs (logits + "feat"), made once. */
function prepare(): Promise<{ dataset: string; teacher: string; pixels: Uint8Array }> {
  prepared ??= (async () => {
    const dataset = join(root, 'dataset');
    const pixels = await writeDataset(dataset);
    const model = join(root, 'teacher.onnx');
    writeTeacher(model);
    const outDir = join(root, 'teacher-out');
    const { ctx } = makeTestContext(
      teacherInfer,
      { model, dataset, featuresOutput: 'feat', storage: ['dense'], batchSize: 32 },
      { outDir, pipelineDir: root, stageId: 'teacher' },
    );
    await teacherInfer.run(ctx);
    return { dataset, teacher: outDir, pixels };
  })();
  return prepared;
}

/** Runs student-train with `feature` (and `extra` params); `abortAt`: abort after that many steps, as a kill would. */
async function trainWith(
  feature: Record<string, unknown>,
  name: string,
  extra: Record<string, unknown> = {},
  abortAt?: number,
) {
  const d = await prepare();
  const outDir = join(root, name, 'out');
  rmSync(outDir, { recursive: true, force: true });
  const controller = new AbortController();
  const params = {
    student,
    loss: 'kd',
    alpha: 0.5,
    temperature: 2,
    feature,
    epochs: 8,
    batchSize: 16,
    lr: 0.01,
    seed: 2,
    ...extra,
  };
  const { ctx, record } = makeTestContext(plugin, params, {
    outDir,
    stateDir: join(root, name, 'state'),
    pipelineDir: root,
    inputs: { dataset: [d.dataset], teacher: [d.teacher] },
    stageId: name,
    signal: controller.signal,
  });
  const progress = ctx.progress;
  await plugin.run({
    ...ctx,
    progress: (done: number, total?: number, unit?: string) => {
      progress(done, total, unit);
      if (done === abortAt) controller.abort();
    },
  });
  return { outDir, metrics: record.metrics, ...d };
}

test('teacher-infer records the feature output name and its NCHW shape', async () => {
  const d = await prepare();
  const info = parseTeacherSchema((await openShardSet(d.teacher)).schema, d.teacher);
  assert.deepEqual(info.storage.features, { dim: 64, output: 'feat', shape: [4, 4, 4] });
});

test('hint from stored teacher features: the feature loss falls; model.onnx has no regressor and matches tfjs within 1e-4', async () => {
  const { outDir, metrics, pixels } = await trainWith(
    { kind: 'hint', weight: 1, studentLayer: 'conv0', teacherFeature: 'feat' },
    'hint',
  );
  const feature = metrics.filter((m) => m.name === 'loss/feature').map((m) => m.value);
  const soft = metrics.filter((m) => m.name === 'loss/soft').map((m) => m.value);
  const total = metrics.filter((m) => m.name === 'loss').map((m) => m.value);
  assert.equal(feature.length, 48);
  assert.equal(soft.length, 48);
  // total = alpha * hard + (1 - alpha) * soft + weight * feature, per step.
  const hard = metrics.filter((m) => m.name === 'loss/hard').map((m) => m.value);
  total.forEach((t, i) =>
    assert.ok(
      Math.abs(t - (0.5 * hard[i]! + 0.5 * soft[i]! + feature[i]!)) < 1e-4 * Math.max(1, t),
      `step ${i}: total ${t}`,
    ),
  );
  const first = mean(feature.slice(0, 6));
  const last = mean(feature.slice(-6));
  assert.ok(last < 0.6 * first, `feature loss ${first} -> ${last}`);

  const model = await readModelFile(join(outDir, 'model.onnx'));
  const names = model.graph.initializers.map((t) => t.name).sort();
  const fresh = createStudent(student, [SIDE, SIDE, 1], CLASSES, 0);
  assert.deepEqual(names, [...fresh.params, ...fresh.buffers].map((p) => p.name).sort());
  assert.ok(!names.some((n) => /feature|regressor/.test(n)));
  assert.deepEqual(
    model.graph.outputs.map((o) => o.name),
    ['logits'],
  );

  initStudentFromOnnx(fresh, model, outDir);
  const n = 10;
  const x = Float32Array.from(pixels.subarray(0, n * SIDE * SIDE), (v) => v / 255);
  const want = fresh.apply(tf.tensor(x, [n, SIDE, SIDE, 1]), false).dataSync();
  const session = await ort.InferenceSession.create(join(outDir, 'model.onnx'));
  const got = (await session.run({ input: new ort.Tensor('float32', x, [n, SIDE, SIDE, 1]) })).logits!
    .data as Float32Array;
  let maxDiff = 0;
  got.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - want[i]!))));
  assert.ok(maxDiff < 1e-4, `max |onnx - tfjs| = ${maxDiff}`);
});

test('attention transfer from the stored map: the attention distance falls', async () => {
  const { metrics } = await trainWith(
    { kind: 'attention', weight: 10, studentLayer: 'conv0', teacherFeature: 'feat' },
    'attention',
  );
  const feature = metrics.filter((m) => m.name === 'loss/feature').map((m) => m.value);
  assert.equal(feature.length, 48);
  const first = mean(feature.slice(0, 6));
  const last = mean(feature.slice(-6));
  assert.ok(last < 0.8 * first, `attention term ${first} -> ${last}`);
});

test('a feature name the teacher did not store, or a student layer it lacks, stops before training with both named', async () => {
  await assert.rejects(
    trainWith({ kind: 'hint', studentLayer: 'conv0', teacherFeature: 'conv1.pool' }, 'bad-feature'),
    /store the model output "feat", not "conv1\.pool"/,
  );
  await assert.rejects(
    trainWith({ kind: 'attention', studentLayer: 'fc0', teacherFeature: 'feat' }, 'bad-layer'),
    /student layer "fc0" is flat \[8\]/,
  );
});

test('a killed hint run resumes to the same model (the regressor and its optimiser state are checkpointed)', async () => {
  const hint = { kind: 'hint', weight: 1, studentLayer: 'conv0', teacherFeature: 'feat' };
  const params = { epochs: 2, checkpointEvery: 4 };
  const whole = await trainWith(hint, 'resume-whole', params);
  await assert.rejects(trainWith(hint, 'resume-killed', params, 6), /aborted at step 6/);
  const resumed = await trainWith(hint, 'resume-killed', params);
  assert.equal(JSON.parse(readFileSync(join(resumed.outDir, 'training.json'), 'utf8')).resumedFrom, 4);
  assert.ok(
    readFileSync(join(whole.outDir, 'model.onnx')).equals(readFileSync(join(resumed.outDir, 'model.onnx'))),
    'resumed run equals the uninterrupted one',
  );
});
