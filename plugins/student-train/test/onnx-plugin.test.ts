/**
 * The student-train stage with `student: { arch: onnx }`: a GraphBuilder model given as a path or
 * through the `studentModel` input is fine-tuned by KD (its loss falls), epochs 0 writes it back
 * unchanged, the exported graph runs in onnxruntime like the trained student, and bad
 * configurations fail before training with the parameter named.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { makeTestContext } from '@distillery/core';
import { GraphBuilder, readModelFile, writeModelFile } from '@distillery/runtime/onnx';
import { datasetSchema, teacherOutputSchema, writeShards } from '@distillery/runtime/shards';
import plugin from '../src/plugin.js';
import { Rng } from '../src/rng.js';

const root = mkdtempSync(join(tmpdir(), 'student-train-onnx-plugin-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const CLASSES = 4;
const DIM = 6;
const ROWS = 96;

/** Gaussian clusters (class c: mean 2 e_c) and a teacher whose logits are 2 x[:4]. */
async function makeData(): Promise<{ dataset: string; teacher: string; features: Float32Array }> {
  const rng = new Rng(42);
  const ids = Array.from({ length: ROWS }, (_, r) => `s${r}`);
  const labels = Int32Array.from({ length: ROWS }, (_, r) => r % CLASSES);
  const features = new Float32Array(ROWS * DIM);
  const logits = new Float32Array(ROWS * CLASSES);
  for (let r = 0; r < ROWS; r++) {
    for (let d = 0; d < DIM; d++) features[r * DIM + d] = (d === labels[r] ? 2 : 0) + 0.5 * rng.normal();
    for (let c = 0; c < CLASSES; c++) logits[r * CLASSES + c] = 2 * features[r * DIM + c]!;
  }
  const dataset = join(root, 'dataset');
  await writeShards(
    {
      dir: dataset,
      schema: datasetSchema({ shape: [DIM], input: 'features', labels: 'single', numClasses: CLASSES }),
      rowsPerShard: 40,
    },
    [{ columns: { id: ids, split: ids.map(() => 'train'), label: labels, features }, rows: ROWS }],
  );
  // The teacher's "embedding" for RKD: its logits and their squares (any 8 values per row).
  const embedding = Float32Array.from({ length: ROWS * 8 }, (_, i) => {
    const v = logits[Math.floor(i / 8) * CLASSES + ((i % 8) % CLASSES)]!;
    return i % 8 < CLASSES ? v : v * v;
  });
  const teacher = join(root, 'teacher');
  await writeShards(
    {
      dir: teacher,
      schema: teacherOutputSchema({
        teacherId: 't',
        modelSha256: 'x',
        temperature: 1,
        activation: 'softmax',
        numClasses: CLASSES,
        storage: { dense: true, features: { dim: 8, output: 'embedding' } },
      }),
      rowsPerShard: 50,
    },
    [{ columns: { id: ids, logits, features: embedding }, rows: ROWS }],
  );
  return { dataset, teacher, features };
}

/** A pretrained-looking MLP: MatMul + Add, Relu, Gemm transB (as torch.nn.Linear exports). */
function writeStudent(path: string): void {
  const rng = new Rng(3);
  const normal = (n: number, s: number) => Float32Array.from({ length: n }, () => s * rng.normal());
  mkdirSync(join(path, '..'), { recursive: true });
  writeModelFile(
    path,
    new GraphBuilder('user-mlp', { opset: 17, producerName: 'pytorch' })
      .input('x', 'float32', ['batch', DIM])
      .initializer('w0', normal(DIM * 8, 0.4), [DIM, 8])
      .initializer('b0', normal(8, 0.1), [8])
      .initializer('w1', normal(CLASSES * 8, 0.4), [CLASSES, 8])
      .initializer('b1', normal(CLASSES, 0.1), [CLASSES])
      .node('MatMul', ['x', 'w0'], ['h.mm'])
      .node('Add', ['h.mm', 'b0'], ['h.pre'])
      .node('Relu', ['h.pre'], ['h'], {}, { name: 'hidden' })
      .node('Gemm', ['h', 'w1', 'b1'], ['out'], { transB: { i: 1 } })
      .output('out', 'float32', ['batch', CLASSES])
      .build(),
  );
}

let data: Promise<{ dataset: string; teacher: string; features: Float32Array }> | undefined;

async function run(name: string, params: Record<string, unknown>, inputs: Record<string, string[]>) {
  const d = await (data ??= makeData());
  const outDir = join(root, name, 'out');
  const { ctx, record } = makeTestContext(plugin, params, {
    outDir,
    stateDir: join(root, name, 'state'),
    pipelineDir: root,
    inputs: { dataset: [d.dataset], teacher: [d.teacher], ...inputs },
    stageId: name,
  });
  const result = await plugin.run(ctx);
  return { outDir, metrics: record.metrics, result, ...d };
}

test('KD fine-tunes an ONNX student given by path: loss falls, same graph written back, onnxruntime equals the trained weights', async () => {
  const model = join(root, 'models', 'student.onnx');
  writeStudent(model);
  const { outDir, metrics, features } = await run(
    'kd',
    {
      student: { arch: 'onnx', model },
      loss: 'kd',
      temperature: 2,
      alpha: 0.3,
      epochs: 6,
      batchSize: 16,
      lr: 0.01,
      seed: 1,
    },
    {},
  );
  const losses = metrics.filter((m) => m.name === 'loss').map((m) => m.value);
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  assert.ok(
    mean(losses.slice(-6)) < 0.7 * mean(losses.slice(0, 6)),
    `loss ${mean(losses.slice(0, 6))} -> ${mean(losses.slice(-6))}`,
  );
  const original = await readModelFile(model);
  const trained = await readModelFile(join(outDir, 'model.onnx'));
  assert.deepEqual(trained.graph.nodes, original.graph.nodes);
  assert.deepEqual(trained.graph.inputs, original.graph.inputs);
  assert.equal(trained.producerName, 'pytorch');
  assert.equal(trained.metadata['distillery.arch'], 'onnx');
  // The trained model separates the clusters: top-1 on the training rows in onnxruntime.
  const session = await ort.InferenceSession.create(join(outDir, 'model.onnx'));
  const out = (await session.run({ x: new ort.Tensor('float32', features, [ROWS, DIM]) })).out!.data as Float32Array;
  let correct = 0;
  for (let r = 0; r < ROWS; r++) {
    const row = Array.from(out.subarray(r * CLASSES, (r + 1) * CLASSES));
    if (row.indexOf(Math.max(...row)) === r % CLASSES) correct++;
  }
  assert.ok(correct / ROWS > 0.9, `top-1 ${correct / ROWS}`);
});

test('epochs 0 through the studentModel input writes the model back with the same initializer values', async () => {
  const dir = join(root, 'exported');
  writeStudent(join(dir, 'mlp.onnx'));
  const { outDir } = await run(
    'before',
    { student: { arch: 'onnx', modelFile: 'mlp.onnx' }, epochs: 0 },
    { studentModel: [dir] },
  );
  const original = await readModelFile(join(dir, 'mlp.onnx'));
  const written = await readModelFile(join(outDir, 'model.onnx'));
  assert.deepEqual(written.graph.initializers, original.graph.initializers);
});

test('arch onnx without a model, with both a path and an input, or with a missing file fails naming what is wrong', async () => {
  await assert.rejects(run('none', { student: { arch: 'onnx' } }, {}), /student.arch onnx needs params.student.model/);
  const dir = join(root, 'exported');
  await assert.rejects(
    run('both', { student: { arch: 'onnx', model: join(dir, 'mlp.onnx') } }, { studentModel: [dir] }),
    /both name the student model/,
  );
  await assert.rejects(
    run('missing', { student: { arch: 'onnx', modelFile: 'nope.onnx' } }, { studentModel: [dir] }),
    /nope\.onnx: cannot read/,
  );
});

test('dkd and rkd on an imported student (rkd on the ONNX node "hidden")', async () => {
  const model = join(root, 'models', 'student.onnx');
  const dkd = await run(
    'dkd',
    {
      student: { arch: 'onnx', model },
      loss: 'dkd',
      temperature: 4,
      dkd: { alpha: 1, beta: 2, warmupSteps: 4 },
      epochs: 2,
      batchSize: 16,
      lr: 0.01,
    },
    {},
  );
  for (const term of ['loss/hard', 'loss/tckd', 'loss/nckd'])
    assert.ok(
      dkd.metrics.some((m) => m.name === term),
      term,
    );
  const rkd = await run(
    'rkd',
    {
      student: { arch: 'onnx', model },
      loss: 'kd',
      feature: { kind: 'rkd', studentLayer: 'hidden', teacherFeature: 'embedding', rkd: { distance: 1, angle: 2 } },
      epochs: 4,
      batchSize: 16,
      lr: 0.01,
    },
    {},
  );
  const feature = rkd.metrics.filter((m) => m.name === 'loss/feature').map((m) => m.value);
  assert.ok(feature.length > 0 && feature.every(Number.isFinite));
  await assert.rejects(
    run(
      'rkd-unknown',
      {
        student: { arch: 'onnx', model },
        loss: 'kd',
        feature: { kind: 'rkd', studentLayer: 'nope', teacherFeature: 'embedding' },
        epochs: 1,
      },
      {},
    ),
    /the student has no layer "nope" \(layers: .*hidden/,
  );
});

test('the parameter schema validates the new blocks: dkd weights, rkd weights, the onnx student fields', () => {
  const check = (params: Record<string, unknown>) => () =>
    makeTestContext(plugin, params, { outDir: join(root, 'schema', 'out'), pipelineDir: root });
  assert.throws(check({ loss: 'dkd', dkd: { alpha: -1 } }), /params of student-train invalid: \/dkd\/alpha/);
  assert.throws(check({ loss: 'dkd', dkd: { gamma: 1 } }), /\/dkd/);
  assert.throws(check({ feature: { kind: 'rkd', rkd: { distance: 1, angel: 2 } } }), /\/feature\/rkd/);
  assert.throws(check({ student: { arch: 'onnx', reinit: 'yes' } }), /\/student\/reinit/);
  assert.throws(check({ student: { arch: 'tflite' } }), /\/student\/arch/);
  const { ctx } = makeTestContext(
    plugin,
    { loss: 'dkd', student: { arch: 'onnx', modelFile: 'm.onnx' } },
    { outDir: join(root, 'schema', 'out'), pipelineDir: root },
  );
  assert.deepEqual(ctx.params.dkd, { alpha: 1, beta: 8, ceWeight: 1, warmupSteps: 0 });
  assert.deepEqual(ctx.params.feature.rkd, { distance: 1, angle: 2 });
  assert.equal(ctx.params.student.reinit, false);
});
