import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { SIZE, writeDataset } from './fixture.js';
import { Rng } from '@distillery/runtime/rng';
import { readModelFile } from '@distillery/runtime/onnx';
import { batchTensors, disposeBatch, epochBatches, openDetectionData } from '../src/data.js';
import { Detector, type DetectorConfig } from '../src/detector.js';
import {
  boxKd,
  centerNetFocal,
  discriminatorLoss,
  featureMse,
  generatorLoss,
  heatmapKd,
  maskedL1,
} from '../src/losses.js';
import { DETECTOR_METADATA_KEY, parseDetectorGeometry } from '../src/model-contract.js';
import { trainDetector, type DetectTrainConfig } from '../src/train.js';
import { writeDetectorOutputs } from '../src/infer.js';

const nchw = (t: tf.Tensor4D) => tf.tidy(() => tf.transpose(t, [0, 3, 1, 2]).dataSync() as Float32Array);

let dir: string;

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
  dir = mkdtempSync(join(tmpdir(), 'detect-train-'));
  await writeDataset(join(dir, 'data'), { train: 96, test: 8 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** `model`'s maps on the split's rows, written by detect-infer's writer through its ONNX export. */
async function writeTeacherOutputs(path: string, datasetDir: string, model: Detector, split: string): Promise<void> {
  const onnx = `${path}.onnx`;
  model.writeOnnx(onnx);
  await writeDetectorOutputs({
    modelPath: onnx,
    datasetDir,
    split,
    batchSize: 16,
    feature: true,
    threads: 1,
    outDir: path,
    rowsPerShard: 32,
    teacherId: 'test',
  });
}

const TINY: DetectorConfig = { channels: [8, 16], pools: 2, kernel: 3, headWidth: 16 };

function config(overrides: Partial<DetectTrainConfig> = {}): DetectTrainConfig {
  return {
    detector: TINY,
    split: 'train',
    epochs: 1,
    maxSteps: 0,
    batchSize: 8,
    lr: 0.003,
    schedule: 'constant',
    bufferSize: 64,
    seed: 1,
    hard: 1,
    sizeWeight: 0.1,
    offsetWeight: 1,
    kd: { heatmap: 0, temperature: 1, box: 0, feature: 0, teacherWeights: [] },
    adversarial: { weight: 0, startStep: 0, lr: 0.0002, width: 8 },
    ...overrides,
  };
}

const hooks = (metrics: Map<string, number[]>) => ({
  log: () => undefined,
  progress: () => undefined,
  metric: (name: string, value: number) => metrics.set(name, [...(metrics.get(name) ?? []), value]),
  signal: new AbortController().signal,
});

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
const randomTensor = (rng: Rng, shape: [number, number, number, number], scale = 2) =>
  tf.tensor4d(
    Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => rng.normal() * scale),
    shape,
  );

test('losses equal their formulas computed in loops (focal, masked L1, heatmap KD and its gradient, box KD, feature, adversarial)', () => {
  const rng = new Rng(3);
  const shape: [number, number, number, number] = [2, 3, 4, 2];
  const z = randomTensor(rng, shape);
  const zt = randomTensor(rng, shape);
  const target = Float32Array.from({ length: 48 }, () => rng.next() * 0.9);
  const positive = new Float32Array(48);
  for (const i of [3, 17, 40]) {
    target[i] = 1;
    positive[i] = 1;
  }
  const zs = z.dataSync();
  const ts = zt.dataSync();
  let focal = 0;
  for (let i = 0; i < 48; i++) {
    const p = sigmoid(zs[i]!);
    focal += positive[i] ? (1 - p) ** 2 * Math.log(p) : (1 - target[i]!) ** 4 * p ** 2 * Math.log(1 - p);
  }
  const got = centerNetFocal(z, tf.tensor4d(target, shape), tf.tensor4d(positive, shape), 3).dataSync()[0]!;
  assert.ok(Math.abs(got - -focal / 3) < 1e-5 * Math.abs(focal), `focal ${got} vs ${-focal / 3}`);

  const T = 2.5;
  let kd = 0;
  const grad = new Float64Array(48);
  for (let i = 0; i < 48; i++) {
    const q = sigmoid(ts[i]! / T);
    const p = sigmoid(zs[i]! / T);
    kd += q * Math.log(q / p) + (1 - q) * Math.log((1 - q) / (1 - p));
    grad[i] = (T * (p - q)) / 3;
  }
  const kdGot = heatmapKd(z, zt, T, 3).dataSync()[0]!;
  assert.ok(
    Math.abs(kdGot - (T * T * kd) / 3) < (1e-4 * (T * T * kd)) / 3,
    `heatmap KD ${kdGot} vs ${(T * T * kd) / 3}`,
  );
  const g = tf
    .grad((s: tf.Tensor) => heatmapKd(s as tf.Tensor4D, zt, T, 3))(z)
    .dataSync();
  for (let i = 0; i < 48; i++) assert.ok(Math.abs(g[i]! - grad[i]!) < 1e-5, `d KD / d z[${i}]: ${g[i]} vs ${grad[i]}`);

  // Box maps [2, 3, 4, 2], mask / weight [2, 3, 4, 1].
  const maskValues = Float32Array.from({ length: 24 }, (_, i) => (i % 5 === 0 ? 1 : 0));
  const weightValues = Float32Array.from({ length: 24 }, () => rng.next());
  const [a, b, c, d] = [0, 1, 2, 3].map(() => randomTensor(rng, [2, 3, 4, 2]));
  const [av, bv, cv, dv] = [a!, b!, c!, d!].map((t) => t.dataSync());
  let l1 = 0;
  let weighted = 0;
  let wsum = 0;
  for (let cell = 0; cell < 24; cell++) {
    wsum += weightValues[cell]!;
    for (let k = 0; k < 2; k++) {
      const i = cell * 2 + k;
      l1 += maskValues[cell]! * Math.abs(av![i]! - bv![i]!);
      weighted += weightValues[cell]! * (Math.abs(av![i]! - bv![i]!) + Math.abs(cv![i]! - dv![i]!));
    }
  }
  const centres = maskValues.reduce((s, v) => s + v, 0);
  assert.ok(
    Math.abs(
      maskedL1(a!, b!, tf.tensor4d(maskValues, [2, 3, 4, 1]), centres).dataSync()[0]! - l1 / (2 * centres + 1e-4),
    ) < 1e-5,
  );
  const boxGot = boxKd(
    { size: a!, offset: c! },
    { size: b!, offset: d! },
    tf.tensor4d(weightValues, [2, 3, 4, 1]),
  ).dataSync()[0]!;
  assert.ok(Math.abs(boxGot - weighted / (2 * wsum + 1e-4)) < 1e-5, `box KD ${boxGot} vs ${weighted / (2 * wsum)}`);
  let mse = 0;
  for (let i = 0; i < 48; i++) mse += (av![i]! - bv![i]!) ** 2;
  assert.ok(Math.abs(featureMse(a!, b!).dataSync()[0]! - mse / 48) < 1e-5);
  const softplus = (x: number) => Math.log1p(Math.exp(x));
  let dReal = 0;
  let dFake = 0;
  let gFake = 0;
  for (let i = 0; i < 48; i++) {
    dReal += softplus(-zs[i]!);
    dFake += softplus(ts[i]!);
    gFake += softplus(-ts[i]!);
  }
  assert.ok(Math.abs(discriminatorLoss(z, zt).dataSync()[0]! - (dReal + dFake) / 48) < 1e-5);
  assert.ok(Math.abs(generatorLoss(zt).dataSync()[0]! - gFake / 48) < 1e-5);
});

test('epochBatches: every row of the split once per epoch, the order a function of (seed, epoch)', async () => {
  const data = join(dir, 'order');
  await writeDataset(data, { train: 50, test: 7 });
  const d = await openDetectionData(data, [], 'train', false);
  assert.equal(d.rows, 50);
  const order = async (seed: number, epoch: number) => {
    const ids: string[] = [];
    for await (const b of epochBatches(d, 8, 16, seed, epoch, false)) ids.push(...b.map((s) => s.id));
    return ids;
  };
  const first = await order(1, 0);
  assert.deepEqual([...first].sort(), Array.from({ length: 50 }, (_, i) => `train/${i}`).sort());
  assert.deepEqual(await order(1, 0), first);
  assert.notDeepEqual(await order(1, 1), first);
  let dropped = 0;
  for await (const b of epochBatches(d, 8, 16, 1, 0)) dropped += b.length;
  assert.equal(dropped, 48, 'dropLast keeps whole batches only');
});

/** onnxruntime's outputs of model.onnx for `x` (NHWC), NCHW Float32Arrays by name. */
async function runOnnx(path: string, x: tf.Tensor4D): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(path);
  const feeds = { pixels: new ort.Tensor('float32', x.dataSync() as Float32Array, x.shape) };
  const result = await session.run(feeds);
  const out: Record<string, Float32Array> = {};
  for (const name of session.outputNames) out[name] = result[name]!.data as Float32Array;
  await session.release();
  return out;
}

function assertClose(got: Float32Array, want: Float32Array, what: string, tol = 1e-4): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  assert.ok(worst < tol, `${what}: max |onnx - tfjs| = ${worst}`);
}

test('Detector.writeOnnx: onnxruntime equals the tfjs forward on all five outputs; geometry metadata', async () => {
  for (const cfg of [TINY, { channels: [4, 8, 8], pools: 1, kernel: 5, headWidth: 0 }] as DetectorConfig[]) {
    const model = new Detector(cfg, { width: SIZE, height: 24 }, 3, 11);
    // Non-zero biases so their layout in the export is checked too.
    for (const p of model.params)
      if (p.name.endsWith('.bias')) p.variable.assign(tf.randomNormal(p.variable.shape, 0, 0.3, 'float32', 2));
    const x = tf.randomUniform([3, 24, SIZE, 1], 0, 1, 'float32', 4) as tf.Tensor4D;
    const path = join(dir, `export-${cfg.pools}.onnx`);
    model.writeOnnx(path);
    const onnx = await runOnnx(path, x);
    const out = model.apply(x);
    assertClose(onnx.heatmap_logits!, nchw(out.heatmapLogits), 'heatmap_logits');
    assertClose(onnx.heatmap!, nchw(tf.sigmoid(out.heatmapLogits) as tf.Tensor4D), 'heatmap');
    assertClose(onnx.size!, nchw(out.size), 'size');
    assertClose(onnx.offset!, nchw(out.offset), 'offset');
    assertClose(onnx.feature!, nchw(out.feature), 'feature');
    const geometry = parseDetectorGeometry((await readModelFile(path)).metadata[DETECTOR_METADATA_KEY], path);
    assert.deepEqual(geometry, {
      inputWidth: SIZE,
      inputHeight: 24,
      stride: 2 ** cfg.pools,
      numClasses: 3,
      featureChannels: cfg.channels.at(-1),
    });
    model.dispose();
  }
});

test('detect-train, hard labels: the focal loss falls; model.onnx holds the trained weights', async () => {
  const data = join(dir, 'data');
  const out = join(dir, 'hard');
  mkdirSync(out);
  const metrics = new Map<string, number[]>();
  const info = await trainDetector(data, [], out, config({ epochs: 6 }), hooks(metrics));
  assert.equal(info.steps, 6 * 12);
  const focal = metrics.get('loss.focal')!;
  assert.ok(focal.at(-1)! < 0.6 * focal[0]!, `focal loss ${focal[0]} -> ${focal.at(-1)}`);
  const training = JSON.parse(readFileSync(join(out, 'training.json'), 'utf8')) as {
    parameters: number;
    steps: number;
  };
  assert.equal(training.parameters, info.parameters);
  // The exported detector localises the training objects better than the untrained one: the
  // heatmap at ground-truth centres is higher than elsewhere.
  const d = await openDetectionData(data, [], 'test', false);
  let contrast = 0;
  for await (const samples of epochBatches(d, 8, 1, 0, 0, false)) {
    const b = batchTensors(samples, info.geometry, []);
    const onnx = await runOnnx(join(out, 'model.onnx'), b.x);
    const heat = tf.transpose(tf.tensor4d(onnx.heatmap!, [samples.length, 2, 8, 8]), [0, 2, 3, 1]);
    const pos = b.positive;
    const atCentres = tf.sum(tf.mul(heat, pos)).dataSync()[0]! / tf.sum(pos).dataSync()[0]!;
    const elsewhere = tf.sum(tf.mul(heat, tf.sub(1, pos))).dataSync()[0]! / tf.sum(tf.sub(1, pos)).dataSync()[0]!;
    contrast = atCentres / elsewhere;
    disposeBatch(b);
  }
  assert.ok(contrast > 3, `mean heatmap at centres / elsewhere = ${contrast}`);
});

test('detect-train, two teachers: heatmap, box and feature KD and the adversarial term all train; KD alone fits the teacher', async () => {
  const data = join(dir, 'data');
  const teacherModels = [
    new Detector({ channels: [8, 16], pools: 2, kernel: 3, headWidth: 16 }, { width: SIZE, height: SIZE }, 2, 21),
    new Detector({ channels: [12, 16], pools: 2, kernel: 3, headWidth: 0 }, { width: SIZE, height: SIZE }, 2, 22),
  ];
  const teachers = [join(dir, 'teacher-a'), join(dir, 'teacher-b')];
  for (let k = 0; k < 2; k++) await writeTeacherOutputs(teachers[k]!, data, teacherModels[k]!, 'train');
  const out = join(dir, 'kd');
  mkdirSync(out);
  const metrics = new Map<string, number[]>();
  const info = await trainDetector(
    data,
    teachers,
    out,
    config({
      epochs: 5,
      hard: 0,
      kd: { heatmap: 1, temperature: 2, box: 1, feature: 1, teacherWeights: [3, 1] },
      adversarial: { weight: 0.1, startStep: 10, lr: 0.0005, width: 8 },
    }),
    hooks(metrics),
  );
  assert.equal(info.teachers, 2);
  for (const term of [
    'kd_heatmap.0',
    'kd_heatmap.1',
    'kd_box.0',
    'kd_box.1',
    'kd_feature.0',
    'kd_feature.1',
    'adversarial',
    'discriminator',
  ])
    assert.ok(metrics.get(`loss.${term}`)?.every(Number.isFinite), `loss.${term} recorded`);
  assert.equal(metrics.get('loss.focal'), undefined, 'hard = 0: no focal term');
  const kd = metrics.get('loss.kd_heatmap.0')!;
  assert.ok(kd.at(-1)! < 0.7 * kd[0]!, `heatmap KD to teacher 0: ${kd[0]} -> ${kd.at(-1)}`);
  for (const m of teacherModels) m.dispose();
});

test('detect-train refuses bad inputs before training, naming the parameter or the teacher row', async () => {
  const data = join(dir, 'data');
  const out = join(dir, 'bad');
  mkdirSync(out);
  const m = new Map<string, number[]>();
  await assert.rejects(
    trainDetector(
      data,
      [],
      out,
      config({ kd: { heatmap: 1, temperature: 1, box: 0, feature: 0, teacherWeights: [] } }),
      hooks(m),
    ),
    /no teacher outputs are given \(input "teachers"\)/,
  );
  await assert.rejects(
    trainDetector(
      data,
      [join(dir, 'teacher-a')],
      out,
      config({ kd: { heatmap: 1, temperature: 1, box: 0, feature: 0, teacherWeights: [1, 1] } }),
      hooks(m),
    ),
    /kd.teacherWeights has 2 entries for 1 teachers/,
  );
  // Teacher outputs written on another split: the first row's id differs.
  const model = new Detector(TINY, { width: SIZE, height: SIZE }, 2, 3);
  await writeTeacherOutputs(join(dir, 'teacher-test'), data, model, 'test');
  model.dispose();
  await assert.rejects(
    trainDetector(
      data,
      [join(dir, 'teacher-test')],
      out,
      config({ kd: { heatmap: 1, temperature: 1, box: 0, feature: 0, teacherWeights: [] } }),
      hooks(m),
    ),
    /teacher .*teacher-test: row 0 is sample "test\/0", the split's row 0 is "train\/0"/,
  );
  await assert.rejects(trainDetector(data, [], out, config({ split: 'val' }), hooks(m)), /no rows with split "val"/);
  assert.deepEqual(readdirSync(out), [], 'nothing written');
});
