import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';
import { openShardSet } from '@distillery/runtime/shards';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { encodeCenterNet } from '../src/centernet.js';
import { DETECTOR_OUTPUTS_SCHEMA, openDetectionData } from '../src/data.js';
import { Detector } from '../src/detector.js';
import { evaluateDetectors, renderDetectMarkdown, seedStatistics, type DetectEvalOptions } from '../src/evaluate.js';
import { writeDetectorOutputs } from '../src/infer.js';
import { DETECTOR_METADATA_KEY } from '../src/model-contract.js';
import { SIZE, writeDataset } from './fixture.js';

let dir: string;
let data: string;

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
  dir = mkdtempSync(join(tmpdir(), 'detect-infer-'));
  data = join(dir, 'data');
  await writeDataset(data, { train: 37, one: 1 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('writeDetectorOutputs: the split in file order, maps equal to the tfjs forward, features optional', async () => {
  const model = new Detector(
    { channels: [4, 8], pools: 2, kernel: 3, headWidth: 0 },
    { width: SIZE, height: SIZE },
    2,
    5,
  );
  const onnx = join(dir, 'teacher.onnx');
  model.writeOnnx(onnx);
  const base = { modelPath: onnx, datasetDir: data, split: 'train', batchSize: 10, threads: 1, rowsPerShard: 16 };
  const out = join(dir, 'outputs');
  const { rows } = await writeDetectorOutputs({ ...base, feature: true, outDir: out, teacherId: 't' });
  assert.equal(rows, 37);
  const set = await openShardSet(out);
  assert.equal(set.schema.metadata['distillery.schema'], DETECTOR_OUTPUTS_SCHEMA);
  assert.deepEqual(JSON.parse(set.schema.metadata[DETECTOR_METADATA_KEY]!), model.geometry);
  // Row 0..36 against the model applied in tfjs to the same pixels.
  const d = await openDetectionData(data, [out], 'train', true);
  assert.equal(d.rows, 37);
  const ids: string[] = [];
  let worst = 0;
  for await (const batch of set.batches()) {
    ids.push(...batch.strings('id'));
    const logits = batch.numeric('heatmap_logits') as Float32Array;
    const feature = batch.numeric('feature') as Float32Array;
    const n = batch.numRows;
    const first = ids.length - n;
    const pixels = new Float32Array(n * SIZE * SIZE);
    let r = 0;
    for await (const b of (await openShardSet(data)).batches())
      for (let k = 0; k < b.numRows; k++) {
        const idx = Number(b.strings('id')[k]!.split('/')[1]);
        if (b.strings('split')[k] !== 'train' || idx < first || idx >= first + n) continue;
        const raw = (b.numeric('pixels') as Uint8Array).subarray(k * SIZE * SIZE, (k + 1) * SIZE * SIZE);
        pixels.set(
          Float32Array.from(raw, (v) => v / 255),
          (idx - first) * SIZE * SIZE,
        );
        r++;
      }
    assert.equal(r, n);
    const y = model.apply(tf.tensor4d(pixels, [n, SIZE, SIZE, 1]));
    const want = tf.transpose(y.heatmapLogits, [0, 3, 1, 2]).dataSync();
    const wantFeature = tf.transpose(y.feature, [0, 3, 1, 2]).dataSync();
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(want[i]! - logits[i]!));
    for (let i = 0; i < wantFeature.length; i++) worst = Math.max(worst, Math.abs(wantFeature[i]! - feature[i]!));
  }
  assert.deepEqual(
    ids,
    Array.from({ length: 37 }, (_, i) => `train/${i}`),
  );
  assert.ok(worst < 1e-4, `max |stored - tfjs| = ${worst}`);
  const noFeature = join(dir, 'outputs-nf');
  await writeDetectorOutputs({ ...base, feature: false, outDir: noFeature, teacherId: 't' });
  assert.equal(
    (await openShardSet(noFeature)).schema.columns.some((c) => c.name === 'feature'),
    false,
  );
  await assert.rejects(openDetectionData(data, [noFeature], 'train', true), /no "feature" column/);
  await assert.rejects(
    writeDetectorOutputs({ ...base, split: 'nope', feature: false, outDir: join(dir, 'x'), teacherId: 't' }),
    /no rows with split "nope"/,
  );
  model.dispose();
});

/**
 * An ONNX "detector" whose maps are constants (broadcast over the batch), e.g. the CenterNet
 * targets of one image: a model that detects that image's objects exactly.
 */
function constantDetector(
  path: string,
  maps: { heatmap: Float32Array; size: Float32Array; offset: Float32Array },
): void {
  const [C, h, w] = [2, SIZE / 4, SIZE / 4];
  const logits = Float32Array.from(maps.heatmap, (p) => Math.log(Math.max(p, 1e-6) / Math.max(1 - p, 1e-6)));
  const b = new GraphBuilder('oracle', {
    opset: 17,
    metadata: {
      [DETECTOR_METADATA_KEY]: JSON.stringify({
        inputWidth: SIZE,
        inputHeight: SIZE,
        stride: 4,
        numClasses: C,
        featureChannels: 1,
      }),
    },
  });
  b.input('pixels', 'float32', ['N', SIZE, SIZE, 1]);
  b.initializer('zero', new Float32Array([0]), [1]);
  b.node('ReduceMean', ['pixels'], ['mean'], { axes: { ints: [1, 2, 3] }, keepdims: { i: 1 } });
  b.node('Mul', ['mean', 'zero'], ['base']);
  const constant = (name: string, values: Float32Array, channels: number) => {
    b.initializer(`${name}.value`, values, [1, channels, h, w]);
    b.node('Add', ['base', `${name}.value`], [name]);
    b.output(name, 'float32', ['N', channels, h, w]);
  };
  constant('heatmap', maps.heatmap, C);
  constant('heatmap_logits', logits, C);
  constant('size', maps.size, 2);
  constant('offset', maps.offset, 2);
  constant('feature', new Float32Array(h * w), 1);
  writeModelFile(path, b.build());
}

async function oneImageObjects() {
  const set = await openShardSet(data);
  for await (const b of set.batches()) {
    const k = b.strings('split').indexOf('one');
    if (k < 0) continue;
    const boxes = b.list('boxes');
    const labels = b.list('box_labels');
    const l = labels.values.subarray(labels.offsets[k]!, labels.offsets[k + 1]!);
    const v = boxes.values.subarray(boxes.offsets[k]!, boxes.offsets[k + 1]!);
    return Array.from(l, (classId, i) => ({
      classId,
      bbox: [v[4 * i]!, v[4 * i + 1]!, v[4 * i + 2]!, v[4 * i + 3]!] as const,
    }));
  }
  throw new Error('no row of split "one"');
}

const evalOptions = (models: DetectEvalOptions['models']): DetectEvalOptions => ({
  datasetDir: data,
  split: 'one',
  models,
  topK: 100,
  scoreThreshold: 0.01,
  nmsIoU: 0.5,
  batchSize: 8,
  threads: 1,
  latency: { batch: 1, warmup: 1, iterations: 3 },
  confidence: 0.95,
});

test('evaluateDetectors: a model emitting the ground-truth maps scores AP 1; swapped classes score 0; params and FLOPs of a detector by hand', async () => {
  const objects = await oneImageObjects();
  const geometry = { inputWidth: SIZE, inputHeight: SIZE, stride: 4, numClasses: 2 };
  const truth = encodeCenterNet(objects, geometry);
  const swapped = encodeCenterNet(
    objects.map((o) => ({ ...o, classId: 1 - o.classId })),
    geometry,
  );
  constantDetector(join(dir, 'oracle.onnx'), truth);
  constantDetector(join(dir, 'swapped.onnx'), swapped);
  const detector = new Detector(
    { channels: [4, 8], pools: 2, kernel: 3, headWidth: 6 },
    { width: SIZE, height: SIZE },
    2,
    1,
  );
  detector.writeOnnx(join(dir, 'student.onnx'));
  const report = await evaluateDetectors(
    evalOptions([
      { name: 'oracle', role: 'teacher', modelPath: join(dir, 'oracle.onnx') },
      { name: 'swapped', role: 'student', modelPath: join(dir, 'swapped.onnx') },
      { name: 'small', role: 'student', modelPath: join(dir, 'student.onnx') },
    ]),
  );
  assert.equal(report.dataset.images, 1);
  assert.equal(report.dataset.annotations, objects.length);
  const [oracle, wrong, small] = report.models;
  assert.equal(oracle!.coco.AP, 1);
  assert.equal(oracle!.coco.AR100, 1);
  assert.equal(wrong!.coco.AP, 0);
  // Parameters: (9*1*4 + 4) + (9*4*8 + 8) + (9*8*6 + 6) + (1*6*6 + 6) (out conv: C + 4 = 6 channels).
  assert.equal(small!.parameters, 40 + 296 + 438 + 42);
  assert.equal(small!.parameters, detector.parameterCount());
  // FLOPs: conv 2*k*k*cin*cout + cout per output pixel; relu 1 per element; pool 4 per output; sigmoid C*h*w.
  const convFlops = (px: number, k: number, cin: number, cout: number) => px * cout * (2 * k * k * cin + 1);
  const want =
    convFlops(32 * 32, 3, 1, 4) +
    32 * 32 * 4 +
    16 * 16 * 4 * 4 +
    convFlops(16 * 16, 3, 4, 8) +
    16 * 16 * 8 +
    8 * 8 * 8 * 4 +
    convFlops(8 * 8, 3, 8, 6) +
    8 * 8 * 6 +
    convFlops(8 * 8, 1, 6, 6) +
    8 * 8 * 2;
  assert.equal(small!.flops, want);
  assert.equal(report.efficiency.length, 2);
  assert.equal(report.efficiency[1]!.parameterReduction, oracle!.parameters / small!.parameters);
  assert.match(renderDetectMarkdown(report), /\| oracle \| teacher \| 100\.00 \| 100\.00 \|/);
  detector.dispose();
});

test('seedStatistics: mean ± std per role and the paired t-interval, against values computed here', () => {
  const stats = (AP: number) => ({
    AP,
    AP50: AP + 0.2,
    AP75: AP - 0.1,
    APs: -1,
    APm: -1,
    APl: -1,
    AR1: 0,
    AR10: 0,
    AR100: 0,
    ARs: -1,
    ARm: -1,
    ARl: -1,
  });
  const hard = [0.3, 0.34, 0.32];
  const kd = [0.33, 0.375, 0.36];
  const models = [
    { name: 'teacher', role: 'teacher' as const, coco: stats(0.5) },
    ...hard.map((v, i) => ({ name: `hard@${i + 1}`, role: 'student' as const, coco: stats(v) })),
    ...kd.map((v, i) => ({ name: `kd@${i + 1}`, role: 'student' as const, coco: stats(v) })),
  ];
  const s = seedStatistics(models, { baseline: 'hard', confidence: 0.95 });
  assert.deepEqual(
    s.roles.map((r) => r.role),
    ['hard', 'kd'],
  );
  const kdRole = s.roles[1]!;
  const mean = (0.33 + 0.375 + 0.36) / 3;
  assert.ok(Math.abs(kdRole.AP.mean - mean) < 1e-12);
  const sd = Math.sqrt(((0.33 - mean) ** 2 + (0.375 - mean) ** 2 + (0.36 - mean) ** 2) / 2);
  assert.ok(Math.abs(kdRole.AP.std - sd) < 1e-12);
  // Differences 0.03, 0.035, 0.04: mean 0.035, sd 0.005, t(0.975, 2) = 4.302653: [0.0226, 0.0474].
  const ap = s.comparisons.find((c) => c.metric === 'AP')!;
  assert.equal(ap.a, 'kd');
  const d = [0.03, 0.035, 0.04];
  const dm = (0.03 + 0.035 + 0.04) / 3;
  const dsd = Math.sqrt(d.reduce((acc, v) => acc + (v - dm) ** 2, 0) / 2);
  const half = (4.302652729749464 * dsd) / Math.sqrt(3);
  assert.ok(Math.abs(ap.interval.low - (dm - half)) < 1e-9, `${ap.interval.low} vs ${dm - half}`);
  assert.ok(Math.abs(ap.interval.high - (dm + half)) < 1e-9);
  assert.equal(ap.verdict, 'a > b');
  const noisy = seedStatistics(
    [
      ...hard.map((v, i) => ({ name: `hard@${i}`, role: 'student' as const, coco: stats(v) })),
      ...[0.31, 0.33, 0.34].map((v, i) => ({ name: `kd@${i}`, role: 'student' as const, coco: stats(v) })),
    ],
    { baseline: 'hard', confidence: 0.95 },
  );
  assert.equal(noisy.comparisons[0]!.verdict, 'within noise');
  assert.throws(
    () => seedStatistics(models, { comparisons: [{ a: 'kd', b: 'teacher' }], confidence: 0.95 }),
    /role "teacher" has no seeded models/,
  );
});
