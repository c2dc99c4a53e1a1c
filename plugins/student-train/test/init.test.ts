import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { readModelFile } from '@distillery/runtime/onnx';
import { writeShards, datasetSchema } from '@distillery/runtime/shards';
import { makeTestContext } from '@distillery/core';
import { studentParams } from './helpers.js';
import plugin from '../src/plugin.js';
import { createStudent, type StudentConfig } from '../src/models/student.js';
import { exportOnnx } from '../src/train.js';
import { initStudentFromOnnx } from '../src/init.js';
import { Rng } from '../src/rng.js';

const root = mkdtempSync(join(tmpdir(), 'student-train-init-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const configs: [string, StudentConfig, number[]][] = [
  ['mlp', { arch: 'mlp', hidden: [12, 7] }, [5]],
  ['cnn', { arch: 'cnn', channels: [3, 4], kernel: 3, batchNorm: true, hidden: [8] }, [8, 8, 2]],
  [
    'kc',
    {
      arch: 'kc',
      hidden: [10],
      sharedWidth: 9,
      verticalWidth: 3,
      verticals: [
        [0, 3, 5],
        [1, 2, 4],
      ],
      selfPaced: true,
    },
    [5],
  ],
];

for (const [name, config, shape] of configs) {
  test(`init (${name}): a student of another seed, read back from a trained model's ONNX, gives that model's outputs`, async () => {
    const classes = 6;
    const trained = createStudent(config, shape, classes, 3);
    const rng = new Rng(4);
    const n = 5;
    const size = shape.reduce((a, b) => a * b, 1);
    const x = tf.tensor(
      Float32Array.from({ length: n * size }, () => rng.normal()),
      [n, ...shape],
    );
    // Training steps so weights, biases, gammas and batch-norm running stats leave their init.
    const opt = tf.train.sgd(0.05);
    for (let i = 0; i < 3; i++)
      opt.minimize(
        () => tf.mean(tf.square(trained.apply(x, true))) as tf.Scalar,
        false,
        trained.params.map((p) => p.variable),
      );
    const want = trained.apply(x, false).dataSync();
    const path = join(root, `${name}.onnx`);
    exportOnnx(trained, path);
    const fresh = createStudent(config, shape, classes, 99);
    const before = fresh.apply(x, false).dataSync();
    assert.ok(
      before.some((v, i) => Math.abs(v - want[i]!) > 1e-3),
      'a different seed starts elsewhere',
    );
    const model = await readModelFile(path);
    initStudentFromOnnx(fresh, model, path);
    const got = fresh.apply(x, false).dataSync();
    let maxDiff = 0;
    for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
    assert.ok(maxDiff < 1e-6, `max |init - trained| = ${maxDiff}`);
    // Same arch, other widths: an error naming the initializer; another arch: named too.
    const wider = createStudent(
      config.arch === 'cnn' ? { ...config, hidden: [9] } : ({ ...config, hidden: [11] } as StudentConfig),
      shape,
      classes,
      1,
    );
    assert.throws(() => initStudentFromOnnx(wider, model, path), /initializer "(fc|trunk)0\.weight" has shape/);
    const other = createStudent(
      config.arch === 'mlp'
        ? {
            arch: 'kc',
            hidden: [4],
            sharedWidth: 4,
            verticalWidth: 2,
            verticals: [
              [0, 1, 2],
              [3, 4, 5],
            ],
            selfPaced: false,
          }
        : { arch: 'mlp', hidden: [4] },
      shape,
      classes,
      1,
    );
    assert.throws(
      () => initStudentFromOnnx(other, model, path),
      new RegExp(`a "${config.arch}" model, but the student is`),
    );
  });
}

function makeCtx(params: Record<string, unknown>, inputs: Record<string, string[]>, name: string) {
  const outDir = join(root, name, 'out');
  const { ctx } = makeTestContext(plugin, studentParams(params), {
    outDir,
    stateDir: join(root, name, 'state'),
    pipelineDir: root,
    inputs,
    stageId: name,
  });
  return { ctx, outDir };
}

test('student-train "init" input: a stage started from an upstream model.onnx exports that model\'s outputs (one step at lr 1e-12)', async () => {
  const rng = new Rng(8);
  const rows = 64,
    dim = 5,
    classes = 3;
  const labels = Int32Array.from({ length: rows }, () => rng.int(classes));
  const features = Float32Array.from(
    { length: rows * dim },
    (_, i) => (i % dim === labels[Math.floor(i / dim)] ? 2 : 0) + rng.normal(),
  );
  const ids = Array.from({ length: rows }, (_, r) => `r${r}`);
  const dataset = join(root, 'ds');
  await writeShards(
    {
      dir: dataset,
      schema: datasetSchema({ shape: [dim], input: 'features', labels: 'single', numClasses: classes }),
      rowsPerShard: 32,
    },
    [{ columns: { id: ids, split: ids.map(() => 'train'), label: labels, features }, rows }],
  );
  const a = makeCtx({ loss: 'ce', epochs: 3, batchSize: 16, lr: 0.01, seed: 1 }, { dataset: [dataset] }, 'a');
  await plugin.run(a.ctx as never);
  const b = makeCtx(
    { loss: 'ce', epochs: 1, maxSteps: 1, batchSize: 16, lr: 1e-12, seed: 2 },
    { dataset: [dataset], init: [a.outDir] },
    'b',
  );
  await plugin.run(b.ctx as never);
  const input = new ort.Tensor('float32', features.subarray(0, 10 * dim), [10, dim]);
  const outA = (await (await ort.InferenceSession.create(join(a.outDir, 'model.onnx'))).run({ input })).logits!
    .data as Float32Array;
  const outB = (await (await ort.InferenceSession.create(join(b.outDir, 'model.onnx'))).run({ input })).logits!
    .data as Float32Array;
  outA.forEach((v, i) => assert.ok(Math.abs(v - outB[i]!) < 1e-5, `logit ${i}: ${v} vs ${outB[i]}`));
  const c = makeCtx(
    { loss: 'ce', epochs: 1, maxSteps: 1, batchSize: 16, lr: 1e-12, seed: 2, student: { hidden: [8] } },
    { dataset: [dataset], init: [a.outDir] },
    'c',
  );
  await assert.rejects(
    plugin.run(c.ctx as never),
    /init .*a\/out\/model\.onnx: initializer "fc0\.weight" has shape \[5,16\]/,
  );
});
