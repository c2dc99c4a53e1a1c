/**
 * Detector training data: one split of a detection dataset (dataset/1 shards with `pixels`,
 * `boxes`, `box_labels`; plugins/dataset `format: detection-canvas`) streamed with zero or more
 * detector-output sets (`detector-outputs/1`, written by `detect-infer` for the
 * same split, rows in the dataset's order) through a seeded shuffle buffer into minibatches, and
 * the minibatch tensors CenterNet training needs (targets from ./centernet.ts, teacher maps).
 *
 * Memory is bounded by the shuffle buffer, not the data set. An epoch's order is a function of
 * (seed, epoch).
 */
import { openShardSet, parseDatasetSchema, type ShardBatch, type ShardSet } from '@distillery/runtime/shards';
import { Rng } from '@distillery/runtime/rng';
import * as tf from '@tensorflow/tfjs-core';
import type { LabelledBox } from './boxes.js';
import { encodeCenterNet, type CenterNetGeometry } from './centernet.js';
import { DETECTOR_METADATA_KEY, parseDetectorGeometry, type DetectorGeometry } from './model-contract.js';

/** Schema key value of detector-output shard sets (detect-infer). */
export const DETECTOR_OUTPUTS_SCHEMA = 'detector-outputs/1';

/** A teacher's maps for one image, CHW as stored. */
export interface TeacherMaps {
  heatmapLogits: Float32Array;
  size: Float32Array;
  offset: Float32Array;
  feature?: Float32Array;
}

/** One training image. */
export interface DetectionSample {
  id: string;
  /** H * W uint8 pixels (one channel). */
  pixels: Uint8Array;
  objects: LabelledBox[];
  teachers: TeacherMaps[];
}

/** An opened teacher set: geometry and where it is, for messages. */
export interface TeacherSet {
  set: ShardSet;
  geometry: DetectorGeometry;
  hasFeature: boolean;
  where: string;
}

export interface DetectionData {
  dataset: ShardSet;
  where: string;
  split: string;
  rows: number;
  width: number;
  height: number;
  numClasses: number;
  teachers: TeacherSet[];
  /** Copy the teachers' `feature` column (feature imitation, adversarial term). */
  readFeatures: boolean;
}

/**
 * Opens the dataset and teacher sets and checks, before any training, that the dataset is a
 * one-channel detection set with the split, and that each teacher set has one row per split row
 * with the same ids in the same order and the student's input size and class count.
 */
export async function openDetectionData(
  datasetDir: string,
  teacherDirs: readonly string[],
  split: string,
  readFeatures: boolean,
): Promise<DetectionData> {
  const dataset = await openShardSet(datasetDir);
  const info = parseDatasetSchema(dataset.schema, datasetDir);
  const columns = new Set(dataset.schema.columns.map((c) => c.name));
  for (const c of ['boxes', 'box_labels', 'pixels'])
    if (!columns.has(c))
      throw new Error(
        `dataset ${datasetDir}: no "${c}" column; detect-train needs a detection set (format: detection-canvas)`,
      );
  const [height, width, channels] = info.shape as [number, number, number];
  if (info.shape.length !== 3 || channels !== 1)
    throw new Error(`dataset ${datasetDir}: images must be [H, W, 1], got [${info.shape}]`);
  const ids: string[] = [];
  for await (const batch of dataset.batches({ verify: 'size' })) {
    const splits = batch.strings('split');
    const rowIds = batch.strings('id');
    for (let r = 0; r < batch.numRows; r++) if (splits[r] === split) ids.push(rowIds[r]!);
  }
  if (ids.length === 0) throw new Error(`dataset ${datasetDir}: no rows with split "${split}"`);
  const teachers: TeacherSet[] = [];
  for (const dir of teacherDirs) {
    const set = await openShardSet(dir);
    const schema = set.schema.metadata['distillery.schema'];
    if (schema !== DETECTOR_OUTPUTS_SCHEMA)
      throw new Error(
        `teacher ${dir}: not a detector-output set (distillery.schema = ${schema}, need ${DETECTOR_OUTPUTS_SCHEMA})`,
      );
    const geometry = parseDetectorGeometry(set.schema.metadata[DETECTOR_METADATA_KEY], dir);
    if (geometry.inputWidth !== width || geometry.inputHeight !== height || geometry.numClasses !== info.numClasses)
      throw new Error(
        `teacher ${dir}: made for ${geometry.inputWidth}x${geometry.inputHeight} inputs and ${geometry.numClasses} classes; the dataset has ${width}x${height} and ${info.numClasses}`,
      );
    let row = 0;
    for await (const batch of set.batches({ verify: 'size' })) {
      const teacherIds = batch.strings('id');
      for (let r = 0; r < batch.numRows; r++, row++)
        if (teacherIds[r] !== ids[row])
          throw new Error(
            `teacher ${dir}: row ${row} is sample "${teacherIds[r]}", the split's row ${row} is "${ids[row] ?? `(none: the split has ${ids.length} rows)`}" (run detect-infer on split "${split}" of this dataset)`,
          );
    }
    if (row !== ids.length)
      throw new Error(`teacher ${dir}: ${row} rows for the ${ids.length} rows of split "${split}"`);
    const hasFeature = set.schema.columns.some((c) => c.name === 'feature');
    if (readFeatures && !hasFeature)
      throw new Error(
        `teacher ${dir}: no "feature" column (feature / adversarial distillation need detect-infer with feature: true)`,
      );
    teachers.push({ set, geometry, hasFeature, where: dir });
  }
  return {
    dataset,
    where: datasetDir,
    split,
    rows: ids.length,
    width,
    height,
    numClasses: info.numClasses,
    teachers,
    readFeatures,
  };
}

function rowSlice(batch: ShardBatch, name: string, r: number): Float32Array {
  const values = batch.numeric(name) as Float32Array;
  const width = values.length / batch.numRows;
  return values.slice(r * width, (r + 1) * width);
}

/** The split's samples in file order, each teacher's row joined (same order, checked at open). */
async function* readSamples(data: DetectionData): AsyncGenerator<DetectionSample> {
  const cursors = data.teachers.map((t) => ({
    iterator: t.set.batches({ verify: 'size' }),
    batch: undefined as ShardBatch | undefined,
    r: 0,
  }));
  const nextTeacherRow = async (i: number): Promise<TeacherMaps> => {
    const c = cursors[i]!;
    while (!c.batch || c.r >= c.batch.numRows) {
      const n = await c.iterator.next();
      if (n.done) throw new Error(`teacher ${data.teachers[i]!.where}: ended before the split`);
      c.batch = n.value;
      c.r = 0;
    }
    const r = c.r++;
    const maps: TeacherMaps = {
      heatmapLogits: rowSlice(c.batch, 'heatmap_logits', r),
      size: rowSlice(c.batch, 'size', r),
      offset: rowSlice(c.batch, 'offset', r),
    };
    if (data.readFeatures) maps.feature = rowSlice(c.batch, 'feature', r);
    return maps;
  };
  const pixelsPerImage = data.width * data.height;
  for await (const batch of data.dataset.batches({ verify: 'size' })) {
    const splits = batch.strings('split');
    const ids = batch.strings('id');
    const pixels = batch.numeric('pixels') as Uint8Array;
    const boxes = batch.list('boxes');
    const labels = batch.list('box_labels');
    for (let r = 0; r < batch.numRows; r++) {
      if (splits[r] !== data.split) continue;
      const b = boxes.values.subarray(boxes.offsets[r]!, boxes.offsets[r + 1]!);
      const l = labels.values.subarray(labels.offsets[r]!, labels.offsets[r + 1]!);
      if (b.length !== 4 * l.length)
        throw new Error(`dataset ${data.where}: sample "${ids[r]}" has ${b.length} box numbers for ${l.length} labels`);
      const objects: LabelledBox[] = Array.from(l, (classId, k) => ({
        classId,
        bbox: [b[4 * k]!, b[4 * k + 1]!, b[4 * k + 2]!, b[4 * k + 3]!] as const,
      }));
      const teachers: TeacherMaps[] = [];
      for (let i = 0; i < cursors.length; i++) teachers.push(await nextTeacherRow(i));
      yield {
        id: ids[r]!,
        pixels: pixels.slice(r * pixelsPerImage, (r + 1) * pixelsPerImage),
        objects,
        teachers,
      };
    }
  }
}

/**
 * Minibatches of one epoch: the split's samples through a shuffle buffer of `bufferSize` (each
 * incoming sample replaces a uniformly drawn one, which is emitted), seeded by (seed, epoch). The
 * last, smaller batch is dropped when `dropLast`.
 */
export async function* epochBatches(
  data: DetectionData,
  batchSize: number,
  bufferSize: number,
  seed: number,
  epoch: number,
  dropLast = true,
): AsyncGenerator<DetectionSample[]> {
  const rng = new Rng((seed * 1000003 + epoch * 7919 + 17) >>> 0);
  const buffer: DetectionSample[] = [];
  let batch: DetectionSample[] = [];
  const emit = (s: DetectionSample): DetectionSample[] | undefined => {
    batch.push(s);
    if (batch.length < batchSize) return undefined;
    const full = batch;
    batch = [];
    return full;
  };
  for await (const sample of readSamples(data)) {
    if (buffer.length < bufferSize) {
      buffer.push(sample);
      continue;
    }
    const i = rng.int(bufferSize);
    const out = emit(buffer[i]!);
    buffer[i] = sample;
    if (out) yield out;
  }
  rng.shuffle(buffer);
  for (const s of buffer) {
    const out = emit(s);
    if (out) yield out;
  }
  if (!dropLast && batch.length > 0) yield batch;
}

/** CHW planes of one image -> rows of NHWC at image index b. */
function chwToNhwc(src: Float32Array, dst: Float32Array, b: number, channels: number, cells: number): void {
  const base = b * cells * channels;
  for (let c = 0; c < channels; c++) {
    const plane = c * cells;
    for (let i = 0; i < cells; i++) dst[base + i * channels + c] = src[plane + i]!;
  }
}

/** The tensors one training step reads (NHWC), plus the centre counts the losses divide by. */
export interface BatchTensors {
  x: tf.Tensor4D;
  heatmap: tf.Tensor4D;
  positive: tf.Tensor4D;
  size: tf.Tensor4D;
  offset: tf.Tensor4D;
  mask: tf.Tensor4D;
  /** Ones in `positive`: the focal (and heatmap distillation) normaliser. */
  peaks: number;
  /** Ones in `mask`: cells with size / offset targets (two objects can share a cell). */
  centres: number;
  teachers: { heatmapLogits: tf.Tensor4D; size: tf.Tensor4D; offset: tf.Tensor4D; feature?: tf.Tensor4D }[];
}

/** Encodes the batch's CenterNet targets and stacks pixels and teacher maps as NHWC tensors. */
export function batchTensors(
  samples: readonly DetectionSample[],
  geometry: CenterNetGeometry,
  featureChannels: number[],
): BatchTensors {
  const n = samples.length;
  const { inputWidth: W, inputHeight: H, stride, numClasses: C } = geometry;
  const [w, h] = [W / stride, H / stride];
  const cells = w * h;
  const x = new Float32Array(n * W * H);
  const heatmap = new Float32Array(n * cells * C);
  const positive = new Float32Array(n * cells * C);
  const size = new Float32Array(n * cells * 2);
  const offset = new Float32Array(n * cells * 2);
  const mask = new Float32Array(n * cells);
  let centres = 0;
  const teachers =
    samples[0]?.teachers.map((_, i) => ({
      heatmapLogits: new Float32Array(n * cells * C),
      size: new Float32Array(n * cells * 2),
      offset: new Float32Array(n * cells * 2),
      feature: featureChannels[i]! > 0 ? new Float32Array(n * cells * featureChannels[i]!) : undefined,
    })) ?? [];
  samples.forEach((s, b) => {
    for (let i = 0; i < W * H; i++) x[b * W * H + i] = s.pixels[i]! / 255;
    const t = encodeCenterNet(s.objects, geometry);
    chwToNhwc(t.heatmap, heatmap, b, C, cells);
    chwToNhwc(t.size, size, b, 2, cells);
    chwToNhwc(t.offset, offset, b, 2, cells);
    for (let i = 0; i < cells; i++) {
      mask[b * cells + i] = t.mask[i]!;
      centres += t.mask[i]!;
    }
    s.teachers.forEach((maps, i) => {
      const out = teachers[i]!;
      chwToNhwc(maps.heatmapLogits, out.heatmapLogits, b, C, cells);
      chwToNhwc(maps.size, out.size, b, 2, cells);
      chwToNhwc(maps.offset, out.offset, b, 2, cells);
      if (out.feature && maps.feature) chwToNhwc(maps.feature, out.feature, b, featureChannels[i]!, cells);
    });
  });
  // Centres of the focal loss: cells where a class heatmap is exactly 1 (a centre cell may hold
  // two classes' centres; both count, as in the reference's num_pos).
  let peaks = 0;
  for (let i = 0; i < heatmap.length; i++)
    if (heatmap[i] === 1) {
      positive[i] = 1;
      peaks++;
    }
  return {
    x: tf.tensor4d(x, [n, H, W, 1]),
    heatmap: tf.tensor4d(heatmap, [n, h, w, C]),
    positive: tf.tensor4d(positive, [n, h, w, C]),
    size: tf.tensor4d(size, [n, h, w, 2]),
    offset: tf.tensor4d(offset, [n, h, w, 2]),
    mask: tf.tensor4d(mask, [n, h, w, 1]),
    peaks,
    centres,
    teachers: teachers.map((t, i) => ({
      heatmapLogits: tf.tensor4d(t.heatmapLogits, [n, h, w, C]),
      size: tf.tensor4d(t.size, [n, h, w, 2]),
      offset: tf.tensor4d(t.offset, [n, h, w, 2]),
      feature: t.feature ? tf.tensor4d(t.feature, [n, h, w, featureChannels[i]!]) : undefined,
    })),
  };
}

/** Disposes every tensor of a batch. */
export function disposeBatch(b: BatchTensors): void {
  tf.dispose([b.x, b.heatmap, b.positive, b.size, b.offset, b.mask]);
  for (const t of b.teachers) tf.dispose([t.heatmapLogits, t.size, t.offset, ...(t.feature ? [t.feature] : [])]);
}
