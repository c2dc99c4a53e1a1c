/**
 * TensorFlow.js Layers students (`student: { arch: tfjs-layers }`): models built with tfjs-layers and
 * saved to a temp folder are read, translated to ONNX and trained as imported students. Checked
 * against tfjs-layers itself (inference and training-mode forward), finite differences, onnxruntime
 * and onnx.checker on the exported model.onnx, and tfjs-layers loading the model.json written back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { makeTestContext } from '@distillery/core';
import { readModelFile } from '@distillery/runtime/onnx';
import { datasetSchema, teacherOutputSchema, writeShards } from '@distillery/runtime/shards';
import { createStudent, type Student } from '../src/models/student.js';
import { layersSaveHandler } from '../src/models/tfjs-layers/write.js';
import { crossEntropy } from '../src/losses/index.js';
import { exportOnnx } from '../src/train.js';
import plugin from '../src/plugin.js';
import { Rng } from '../src/rng.js';
import { assertGradientsPerParameter, assertOnnxChecker, maxAbsDiff } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'student-train-tfjs-layers-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const H = 8;
const W = 8;
const C = 2;
const CLASSES = 5;
const rng = new Rng(7);
const normal = (n: number, scale = 1) => Float32Array.from({ length: n }, () => scale * rng.normal());

/**
 * A functional CNN over [8, 8, 2] using every supported layer class: convolutions (same / valid,
 * strides, dilation, no bias, depthwise), batch norm, the pools, merges, activations, Reshape into
 * a Dense on a map, and a linear output.
 */
function cnnFixture(dropout: number): tfl.LayersModel {
  const L = tfl.layers;
  const x = L.input({ shape: [H, W, C], name: 'image' });
  const a = L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv_a' }).apply(x);
  const bn = L.batchNormalization({ name: 'bn', momentum: 0.9 }).apply(a) as tfl.SymbolicTensor;
  const dw = L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 2, name: 'dw' }).apply(
    bn,
  );
  const strided = L.conv2d({
    filters: 8,
    kernelSize: 3,
    strides: 2,
    padding: 'same',
    useBias: false,
    name: 'strided',
  }).apply(bn);
  const dilated = L.conv2d({
    filters: 8,
    kernelSize: 2,
    dilationRate: 2,
    padding: 'valid',
    activation: 'tanh',
    name: 'dilated',
  }).apply(bn); // 6x6
  const pooled = L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'max_same' }).apply(dilated); // 3x3
  const padded = L.conv2d({ filters: 8, kernelSize: 2, padding: 'same', activation: 'swish', name: 'even_same' }).apply(
    pooled,
  ); // 3x3
  const up = L.reshape({ targetShape: [3, 3, 8], name: 'as_map' }).apply(L.flatten({ name: 'flat_map' }).apply(padded));
  const sum = L.add({ name: 'sum' }).apply([dw, strided] as tfl.SymbolicTensor[]);
  const clipped = L.reLU({ maxValue: 6, name: 'relu6' }).apply(sum);
  const cat = L.concatenate({ name: 'cat' }).apply([
    clipped,
    L.multiply({ name: 'mul' }).apply([dw, strided] as tfl.SymbolicTensor[]),
  ] as tfl.SymbolicTensor[]); // 4x4x16
  const leaky = L.leakyReLU({ alpha: 0.2, name: 'leaky' }).apply(cat);
  const avg = L.averagePooling2d({ poolSize: 3, strides: 1, padding: 'same', name: 'avg_same' }).apply(leaky);
  const soft = L.softmax({ axis: -1, name: 'channel_softmax' }).apply(avg);
  const gap = L.globalAveragePooling2d({ name: 'gap' }).apply(soft);
  const valid = L.averagePooling2d({ poolSize: 2, name: 'avg_valid' }).apply(avg); // 2x2x16
  const rows = L.reshape({ targetShape: [4, 16], name: 'rows' }).apply(valid);
  const perRow = L.dense({ units: 3, activation: 'sigmoid', name: 'per_row' }).apply(rows); // [4, 3]
  const flat = L.flatten({ name: 'flat' }).apply(perRow);
  const gap2 = L.globalAveragePooling2d({ name: 'gap2' }).apply(up);
  const joined = L.concatenate({ name: 'joined' }).apply([gap, flat, gap2] as tfl.SymbolicTensor[]); // 16 + 12 + 8
  const bn1 = L.batchNormalization({ name: 'bn1d' }).apply(joined);
  const drop = L.dropout({ rate: dropout, name: 'drop' }).apply(bn1);
  const hidden = L.dense({ units: 10, activation: 'gelu', name: 'hidden' }).apply(drop);
  const act = L.activation({ activation: 'relu', name: 'act' }).apply(hidden);
  const avg2 = L.average({ name: 'avg2' }).apply([act, hidden] as tfl.SymbolicTensor[]);
  const out = L.dense({ units: CLASSES, name: 'logits_dense' }).apply(avg2) as tfl.SymbolicTensor;
  return randomised(tfl.model({ inputs: x, outputs: out }));
}

/** A Sequential MLP ending in Dense(softmax), reading the flattened image. */
function mlpFixture(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.flatten({ inputShape: [H, W, C], name: 'flatten' }));
  m.add(tfl.layers.dense({ units: 12, activation: 'relu', name: 'fc0' }));
  m.add(tfl.layers.batchNormalization({ name: 'bn0', center: false })); // tfjs-layers cannot train this one (beta.read() of null)
  m.add(tfl.layers.dense({ units: CLASSES, activation: 'softmax', name: 'fc1' }));
  return randomised(m);
}

/** A Sequential over flat [128] inputs ending in an Activation(softmax) layer. */
function flatFixture(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ inputShape: [H * W * C], units: CLASSES, name: 'fc' }));
  m.add(tfl.layers.activation({ activation: 'softmax', name: 'probs' }));
  return randomised(m);
}

/** Seeded non-trivial weights (batch-norm variances positive), so a wrong layout cannot pass. */
function randomised(model: tfl.LayersModel): tfl.LayersModel {
  for (const layer of model.layers) {
    const weights = layer.weights.map((w) => {
      const shape = w.shape as number[];
      const n = shape.reduce((a, b) => a * b, 1);
      const values = w.originalName.endsWith('moving_variance')
        ? Float32Array.from({ length: n }, () => 0.5 + rng.next())
        : normal(n, 0.4);
      return tf.tensor(values, shape);
    });
    if (weights.length > 0) layer.setWeights(weights);
  }
  return model;
}

let saved = 0;
/** Saves `model` with the project's save handler; returns the folder holding model.json. */
async function save(model: tfl.LayersModel): Promise<string> {
  const dir = join(root, `model-${saved++}`);
  await model.save(layersSaveHandler(dir));
  return dir;
}

function load(dir: string, options: { reinit?: boolean; freeze?: string[] } = {}, shape = [H, W, C]): Student {
  return createStudent(
    { arch: 'tfjs-layers', model: dir, reinit: options.reinit ?? false, freeze: options.freeze ?? [] },
    shape,
    CLASSES,
    3,
  );
}

/** Reads a model.json + weights folder back into tfjs-layers. */
async function tfjsLoad(dir: string): Promise<tfl.LayersModel> {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  const bytes = readFileSync(join(dir, json.weightsManifest[0].paths[0]));
  return tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest[0].weights,
      weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
    }),
  );
}

const images = (n: number) => tf.tensor(normal(n * H * W * C), [n, H, W, C]);

test('inference forward equals tfjs-layers predict within 1e-4 (functional CNN, Sequential MLP and flat model; softmax left out)', async () => {
  const x = images(6);
  for (const [name, model, softmaxed] of [
    ['cnn', cnnFixture(0.3), false],
    ['mlp', mlpFixture(), true],
    ['flat', flatFixture(), true],
  ] as const) {
    const student = load(await save(model));
    const want = (model.predict(name === 'flat' ? tf.reshape(x, [6, H * W * C]) : x) as tf.Tensor).dataSync();
    const logits = student.apply(x, false);
    const got = (softmaxed ? tf.softmax(logits) : logits).dataSync();
    const diff = maxAbsDiff(got, want);
    assert.ok(diff < 1e-4, `${name}: max |student - tfjs-layers| = ${diff}`);
    assert.equal(student.notes!.length, softmaxed ? 1 : 0, `${name}: ${student.notes}`);
    if (softmaxed) assert.match(student.notes![0]!, /softmax.*left out/);
  }
});

test('training-mode forward (batch statistics in batch norm) equals tfjs-layers with training: true', async () => {
  const model = cnnFixture(0);
  const student = load(await save(model));
  const x = images(5);
  const want = (model.apply(x, { training: true }) as tf.Tensor).dataSync();
  const diff = maxAbsDiff(student.apply(x, true, 0).dataSync(), want);
  assert.ok(diff < 1e-4, `max |student - tfjs-layers| in training mode = ${diff}`);
});

test('gradients of every weight match central finite differences', async () => {
  const L = tfl.layers;
  const x = L.input({ shape: [H, W, C] });
  const conv = L.conv2d({ filters: 3, kernelSize: 3, padding: 'same', name: 'conv' }).apply(x);
  const bn = L.batchNormalization({ name: 'bn' }).apply(conv);
  const dw = L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'valid', name: 'dw', activation: 'tanh' }).apply(
    bn,
  ); // 3x3x3
  const rows = L.reshape({ targetShape: [9, 3] }).apply(dw);
  const flat = L.flatten().apply(L.dense({ units: 2, name: 'per_row' }).apply(rows));
  const out = L.dense({ units: CLASSES, name: 'fc' }).apply(flat) as tfl.SymbolicTensor;
  const student = load(await save(randomised(tfl.model({ inputs: x, outputs: out }))));
  const batch = images(4);
  const weights = tf.tensor2d(normal(4 * CLASSES), [4, CLASSES]);
  const loss = () => tf.sum(tf.mul(student.apply(batch, true, 0), weights)) as tf.Scalar;
  const vars = student.params.map((p) => p.variable);
  assert.deepEqual(
    student.params.map((p) => p.name),
    [
      'conv/kernel',
      'conv/bias',
      'bn/gamma',
      'bn/beta',
      'dw/depthwise_kernel',
      'dw/bias',
      'per_row/kernel',
      'per_row/bias',
      'fc/kernel',
      'fc/bias',
    ],
  );
  const { grads } = tf.variableGrads(loss, vars);
  assertGradientsPerParameter(
    student.params,
    grads,
    loss,
    (i) => tf.tensor(normal(vars[i]!.size), vars[i]!.shape),
    2e-2,
  );
});

test('training lowers the loss; model.onnx equals tfjs in onnxruntime and passes onnx.checker; model.json written back loads in tfjs-layers with the trained weights; frozen layers keep theirs', async () => {
  const model = cnnFixture(0.2);
  model.getLayer('dilated').trainable = false; // saved as trainable: false
  const dir = await save(model);
  const student = load(dir, { freeze: ['conv_a', 'hidden/bias'] }); // a layer name and a weight name
  const x = images(16);
  const labels = tf.tensor1d(
    Int32Array.from({ length: 16 }, (_, i) => i % CLASSES),
    'int32',
  );
  const frozenBefore = tf.tidy(() =>
    model
      .getLayer('conv_a')
      .getWeights()
      .map((w) => Array.from(w.dataSync())),
  );
  assert.deepEqual(
    student.params.filter((p) => /^(conv_a|dilated|hidden)\//.test(p.name)).map((p) => p.name),
    ['hidden/kernel'],
  );
  // Training mode (batch statistics; step 0's dropout mask): the running statistics lag behind.
  const lossNow = () => tf.tidy(() => crossEntropy(student.apply(x, true, 0), labels).dataSync()[0]!);
  const start = lossNow();
  const opt = tf.train.adam(0.01);
  for (let i = 0; i < 20; i++)
    opt.minimize(
      () => crossEntropy(student.apply(x, true, i), labels),
      false,
      student.params.map((p) => p.variable),
    );
  const end = lossNow();
  assert.ok(end < 0.5 * start, `loss ${start} -> ${end}`);

  const onnxPath = join(root, 'trained.onnx');
  exportOnnx(student, onnxPath, { 'distillery.seed': '3' });
  const session = await ort.InferenceSession.create(onnxPath);
  assert.deepEqual(session.inputNames, ['input']);
  const ortOut = await session.run({ input: new ort.Tensor('float32', x.dataSync() as Float32Array, [16, H, W, C]) });
  const want = student.apply(x, false).dataSync();
  const diff = maxAbsDiff(ortOut.logits!.data as Float32Array, want);
  assert.ok(diff < 1e-4, `max |onnxruntime - tfjs| = ${diff}`);
  const onnx = await readModelFile(onnxPath);
  assert.equal(onnx.metadata['distillery.arch'], 'tfjs-layers');
  assertOnnxChecker(onnxPath);

  const outDir = join(root, 'written-back');
  assert.deepEqual(student.exportNative!(outDir), ['model.json', 'model.weights.bin']);
  const back = await tfjsLoad(outDir);
  const backOut = (back.predict(x) as tf.Tensor).dataSync();
  assert.ok(
    maxAbsDiff(backOut, want) < 1e-4,
    `tfjs-layers on the written-back model vs the student: ${maxAbsDiff(backOut, want)}`,
  );
  const original = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  const written = JSON.parse(readFileSync(join(outDir, 'model.json'), 'utf8'));
  assert.deepEqual(written.modelTopology, original.modelTopology);
  assert.deepEqual(
    written.weightsManifest[0].weights.map((w: { name: string; shape: number[] }) => [w.name, w.shape]),
    original.weightsManifest[0].weights.map((w: { name: string; shape: number[] }) => [w.name, w.shape]),
  );
  const trainedLayer = (m: tfl.LayersModel, name: string) =>
    m
      .getLayer(name)
      .getWeights()
      .map((w) => Array.from(w.dataSync()));
  assert.deepEqual(trainedLayer(back, 'conv_a'), frozenBefore);
  assert.deepEqual(trainedLayer(back, 'hidden')[1], trainedLayer(model, 'hidden')[1]);
  assert.deepEqual(trainedLayer(back, 'dilated'), trainedLayer(model, 'dilated'));
  assert.ok(maxAbsDiff(trainedLayer(back, 'dw')[0]!, trainedLayer(model, 'dw')[0]!) > 1e-3, 'dw kernel trained');
  // Running statistics moved in training and were written back.
  assert.ok(maxAbsDiff(trainedLayer(back, 'bn')[2]!, trainedLayer(model, 'bn')[2]!) > 1e-4, 'bn moving_mean updated');
});

test('reinit: fresh seeded weights (He-uniform, zero biases, unit gamma and variance); the same seed gives the same weights', async () => {
  const dir = await save(mlpFixture());
  const a = load(dir, { reinit: true });
  const b = load(dir, { reinit: true });
  const value = (s: Student, name: string) =>
    Array.from([...s.params, ...s.buffers].find((p) => p.name === name)!.variable.dataSync());
  assert.deepEqual(value(a, 'fc0/kernel'), value(b, 'fc0/kernel'));
  assert.ok(value(a, 'fc0/kernel').every((v) => Math.abs(v) <= Math.sqrt(6 / (H * W * C))));
  const file = value(load(dir), 'fc0/kernel');
  assert.ok(maxAbsDiff(value(a, 'fc0/kernel'), file) > 0.01);
  assert.ok(value(a, 'fc0/bias').every((v) => v === 0));
  assert.ok(value(a, 'bn0/gamma').every((v) => v === 1));
  assert.ok(value(a, 'bn0/moving_variance').every((v) => v === 1));
});

test('an unsupported layer fails before training, naming the layer, its class and the file', async () => {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [H, W, C], filters: 2, kernelSize: 3, name: 'c' }));
  m.add(tfl.layers.upSampling2d({ size: [2, 2], name: 'grow' }));
  m.add(tfl.layers.flatten({ name: 'f' }));
  m.add(tfl.layers.dense({ units: CLASSES, name: 'd' }));
  const dir = await save(m);
  assert.throws(
    () => load(dir),
    (e: Error) =>
      e.message.includes(join(dir, 'model.json')) &&
      e.message.includes('layer "grow" (UpSampling2D)') &&
      /supported: InputLayer, Dense/.test(e.message),
  );
  // An unsupported activation and a shape that does not fit the dataset name the layer too.
  const g = tfl.sequential();
  g.add(tfl.layers.dense({ inputShape: [H * W * C], units: CLASSES, activation: 'elu', name: 'elu_dense' }));
  const gdir = await save(g);
  assert.throws(() => load(gdir), /layer "elu_dense" \(Dense\): activation "elu" is not supported/);
  assert.throws(() => load(gdir, {}, [H, W, 3]), /input shape \[128\] does not fit the dataset's rows \[8,8,3\]/);
});

test('a missing weights file or a short one is refused naming the file', async () => {
  const dir = await save(flatFixture());
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, 'model.weights.bin'), new Uint8Array(12));
  assert.throws(() => load(dir), /describes 2580 bytes, its files \(model\.weights\.bin\) hold 12/);
  json.weightsManifest[0].paths = ['absent.bin'];
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  assert.throws(() => load(dir), /absent\.bin: cannot read/);
});

test('the stage: KD fine-tunes a tfjs-layers student from an input stage, writes model.onnx, model.json and model.weights.bin', async () => {
  const rows = 64;
  const labels = Int32Array.from({ length: rows }, (_, r) => r % CLASSES);
  // Class c: a bright pixel block at row c; the teacher's logits point at the label.
  const features = Float32Array.from({ length: rows * H * W * C }, (_, i) => {
    const r = Math.floor(i / (H * W * C));
    const y = Math.floor((i % (H * W * C)) / (W * C));
    return (y === labels[r] ? 1 : 0) + 0.2 * rng.next();
  });
  const ids = Array.from({ length: rows }, (_, r) => `s${r}`);
  const dataset = join(root, 'stage', 'dataset');
  await writeShards(
    {
      dir: dataset,
      schema: datasetSchema({ shape: [H, W, C], input: 'features', labels: 'single', numClasses: CLASSES }),
      rowsPerShard: 64,
    },
    [{ columns: { id: ids, split: ids.map(() => 'train'), label: labels, features }, rows }],
  );
  const teacher = join(root, 'stage', 'teacher');
  await writeShards(
    {
      dir: teacher,
      schema: teacherOutputSchema({
        teacherId: 't',
        modelSha256: 'x',
        temperature: 1,
        activation: 'softmax',
        numClasses: CLASSES,
        storage: { dense: true },
      }),
      rowsPerShard: 64,
    },
    [
      {
        columns: {
          id: ids,
          logits: Float32Array.from({ length: rows * CLASSES }, (_, i) =>
            i % CLASSES === labels[Math.floor(i / CLASSES)] ? 4 : 0,
          ),
        },
        rows,
      },
    ],
  );
  const modelDir = await save(mlpFixture());
  const outDir = join(root, 'stage', 'out');
  const { ctx, record } = makeTestContext(
    plugin,
    {
      student: { arch: 'tfjs-layers', modelFile: 'model.json' },
      loss: 'kd',
      temperature: 2,
      alpha: 0.5,
      epochs: 8,
      batchSize: 16,
      lr: 0.01,
    },
    {
      outDir,
      stateDir: join(root, 'stage', 'state'),
      pipelineDir: root,
      inputs: { dataset: [dataset], teacher: [teacher], studentModel: [modelDir] },
      stageId: 'tfjs',
    },
  );
  await plugin.run(ctx);
  const losses = record.metrics.filter((m) => m.name === 'loss').map((m) => m.value);
  assert.ok(losses.slice(-4).reduce((a, b) => a + b) < 0.7 * losses.slice(0, 4).reduce((a, b) => a + b), `${losses}`);
  assert.ok(record.infos.some((l) => /softmax activation of the output layer "fc1" \(Dense\) is left out/.test(l)));
  const back = await tfjsLoad(outDir);
  const onnx = await ort.InferenceSession.create(join(outDir, 'model.onnx'));
  const x = tf.tensor(features, [rows, H, W, C]);
  const logits = (await onnx.run({ input: new ort.Tensor('float32', features, [rows, H, W, C]) })).logits!
    .data as Float32Array;
  const probabilities = tf.softmax(tf.tensor2d(logits, [rows, CLASSES])).dataSync();
  assert.ok(maxAbsDiff((back.predict(x) as tf.Tensor).dataSync(), probabilities) < 1e-4);
});
