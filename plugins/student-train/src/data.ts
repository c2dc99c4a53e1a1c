/**
 * Training data: streams a dataset shard set and, row-aligned with it, zero or more teacher-output
 * shard sets (via the core shards module), through a seeded shuffle buffer into minibatches.
 *
 * Teacher rows are joined to dataset rows by sample id. A teacher shard set may cover only some of
 * the split's rows (teacher-infer `rows: classMap`: a specialist on its own vertical), but its rows
 * must follow the dataset's order (a subsequence, as teacher-infer writes them): the join is then a
 * streaming merge with O(1) memory. openTrainingData checks this up front, naming the first
 * teacher row that matches no dataset row in order.
 * The stream of an epoch is a pure function of (seed, epoch), so a resumed run fast-forwards to
 * the checkpointed batch and continues with exactly the batches an uninterrupted run would see.
 */
import {
  openShardSet,
  parseDatasetSchema,
  parseTeacherSchema,
  type DatasetInfo,
  type ShardBatch,
  type ShardSet,
  type TeacherOutputOptions,
} from '@distillery/runtime/shards';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from './rng.js';

/** Teacher outputs of one sample, copied out of the shard (views would die with the shard). */
export interface TeacherRow {
  logits?: Float32Array;
  topkIds?: Int32Array;
  topkLogprobs?: Float32Array;
  topkMissing?: number;
  sampleIds?: Int32Array;
  sampleCounts?: Uint16Array;
  sampleWeights?: Float32Array;
  /** Stored teacher features (flat, the model output's layout); copied only when TrainingData.readFeatures. */
  features?: Float32Array;
}

/** One training sample. */
export interface Sample {
  id: string;
  /** Input scaled to float (pixels / 255). */
  x: Float32Array;
  /** Single-label class id (-1 unlabelled) or the true ids of a multi-label sample. */
  label: number;
  labels?: Int32Array;
  /** One entry per teacher source; undefined where that teacher has no row for this sample. */
  teachers: (TeacherRow | undefined)[];
}

export interface TeacherSource {
  set: ShardSet;
  info: TeacherOutputOptions;
  /** Where it came from, for error messages. */
  where: string;
  /** Dataset rows of the split this teacher has a row for (all of them, or e.g. one vertical's). */
  coveredRows: number;
}

export interface TrainingData {
  dataset: ShardSet;
  info: DatasetInfo;
  teachers: TeacherSource[];
  split: string;
  /** Rows of the split. */
  rows: number;
  /** Copy each teacher row's `features` column into TeacherRow.features (feature distillation). */
  readFeatures: boolean;
}

export async function openTrainingData(
  datasetDir: string,
  teacherDirs: string[],
  split: string,
  options: { readFeatures?: boolean } = {},
): Promise<TrainingData> {
  const dataset = await openShardSet(datasetDir);
  const info = parseDatasetSchema(dataset.schema, datasetDir);
  const teachers: TeacherSource[] = [];
  for (const dir of teacherDirs) {
    const set = await openShardSet(dir);
    teachers.push({ set, info: parseTeacherSchema(set.schema, dir), where: dir, coveredRows: 0 });
  }
  // One pass over the ids: counts the split's rows and checks every teacher's rows are a
  // subsequence of them (the join readSamples does), before any training starts.
  const cursors = teachers.map((t) => new TeacherCursor(t, false));
  let rows = 0;
  for await (const batch of dataset.batches({ verify: 'size' })) {
    const splits = batch.strings('split');
    const ids = batch.strings('id');
    for (let r = 0; r < batch.numRows; r++) {
      if (splits[r] !== split) {
        // Teachers may cover other splits too (teacher-infer over the whole dataset).
        for (const c of cursors) await c.skip(ids[r]!);
        continue;
      }
      rows++;
      for (const [i, c] of cursors.entries()) if (await c.take(ids[r]!)) teachers[i]!.coveredRows++;
    }
  }
  if (rows === 0) throw new Error(`dataset ${datasetDir}: no rows with split "${split}"`);
  for (const c of cursors) await c.finish(split);
  return { dataset, info, teachers, split, rows, readFeatures: options.readFeatures ?? false };
}

function copyTeacherRow(batch: ShardBatch, r: number, has: Set<string>, features: boolean): TeacherRow {
  const row: TeacherRow = {};
  const fixed = (name: string): Float32Array | Int32Array => {
    const v = batch.numeric(name);
    const width = v.length / batch.numRows;
    return v.slice(r * width, (r + 1) * width) as Float32Array | Int32Array;
  };
  const list = (name: string) => {
    const l = batch.list(name);
    return l.values.slice(l.offsets[r]!, l.offsets[r + 1]!);
  };
  if (has.has('logits')) row.logits = fixed('logits') as Float32Array;
  if (has.has('topk_ids')) {
    row.topkIds = fixed('topk_ids') as Int32Array;
    row.topkLogprobs = fixed('topk_logprobs') as Float32Array;
    row.topkMissing = batch.numeric('topk_missing_mass')[r]!;
  }
  if (has.has('features') && features) row.features = fixed('features') as Float32Array;
  if (has.has('sample_ids')) {
    row.sampleIds = list('sample_ids') as Int32Array;
    row.sampleCounts = list('sample_counts') as Uint16Array;
    if (has.has('sample_weights')) row.sampleWeights = list('sample_weights') as Float32Array;
  }
  return row;
}

/**
 * Merge-join cursor over one teacher set: take(id) returns the teacher's row for the dataset's
 * next sample when the teacher's next row has that id, and undefined (the teacher skips it)
 * otherwise. finish() fails if teacher rows are left: they matched no dataset row in order.
 */
class TeacherCursor {
  private iterator: AsyncGenerator<ShardBatch>;
  private batch: ShardBatch | undefined;
  private ids: string[] = [];
  private r = 0;
  private row = 0;
  private done = false;
  private readonly has: Set<string>;
  constructor(
    private readonly source: TeacherSource,
    private readonly copy = true,
    private readonly features = false,
  ) {
    this.iterator = source.set.batches({ verify: 'size' });
    this.has = new Set(source.set.schema.columns.map((c) => c.name));
  }
  private async fill(): Promise<boolean> {
    while (!this.done && (!this.batch || this.r >= this.batch.numRows)) {
      const n = await this.iterator.next();
      if (n.done) {
        this.done = true;
        this.batch = undefined;
        break;
      }
      this.batch = n.value;
      this.ids = this.batch.strings('id');
      this.r = 0;
    }
    return !this.done;
  }
  async take(datasetId: string): Promise<TeacherRow | undefined | true> {
    if (!(await this.fill())) return undefined;
    if (this.ids[this.r] !== datasetId) return undefined;
    const out = this.copy ? copyTeacherRow(this.batch!, this.r, this.has, this.features) : true;
    this.r++;
    this.row++;
    return out;
  }
  /** Consumes the teacher's row for a dataset row outside the training split, if it has one. */
  async skip(datasetId: string): Promise<void> {
    if ((await this.fill()) && this.ids[this.r] === datasetId) this.r++;
  }
  async finish(split: string): Promise<void> {
    if (await this.fill()) {
      throw new Error(
        `teacher outputs ${this.source.where}: row ${this.row} (sample "${this.ids[this.r]}") matches no dataset row in order ` +
          `(teacher rows must be dataset rows, in the dataset's order; ${this.row} rows of split "${split}" joined before it)`,
      );
    }
  }
}

/** Reads the split in file order; teacher rows aligned by id. */
async function* readSamples(data: TrainingData): AsyncGenerator<Sample> {
  const cursors = data.teachers.map((t) => new TeacherCursor(t, true, data.readFeatures));
  const input = data.info.input;
  const width = data.info.width;
  for await (const batch of data.dataset.batches({ verify: 'size' })) {
    const ids = batch.strings('id');
    const splits = batch.strings('split');
    const xs = batch.numeric(input);
    const labels = data.info.labels === 'single' ? batch.numeric('label') : undefined;
    const labelLists = data.info.labels === 'multi' ? batch.list('labels') : undefined;
    for (let r = 0; r < batch.numRows; r++) {
      if (splits[r] !== data.split) {
        for (const c of cursors) await c.skip(ids[r]!);
        continue;
      }
      const x = new Float32Array(width);
      const src = xs.subarray(r * width, (r + 1) * width);
      if (input === 'pixels') for (let i = 0; i < width; i++) x[i] = src[i]! / 255;
      else x.set(src);
      const sample: Sample = { id: ids[r]!, x, label: labels ? labels[r]! : -1, teachers: [] };
      if (labelLists)
        sample.labels = Int32Array.from(labelLists.values.subarray(labelLists.offsets[r]!, labelLists.offsets[r + 1]!));
      for (const c of cursors) sample.teachers.push((await c.take(sample.id)) as TeacherRow | undefined);
      yield sample;
    }
  }
}

/**
 * Minibatches of one epoch: samples pass through a shuffle buffer of `bufferSize` (seeded by
 * seed and epoch); the last partial batch is kept.
 */
export async function* epochBatches(
  data: TrainingData,
  batchSize: number,
  bufferSize: number,
  seed: number,
  epoch: number,
): AsyncGenerator<Sample[]> {
  const rng = new Rng(seed * 1000003 + epoch);
  const buffer: Sample[] = [];
  let batch: Sample[] = [];
  const emit = (s: Sample) => {
    batch.push(s);
    if (batch.length === batchSize) {
      const out = batch;
      batch = [];
      return out;
    }
    return undefined;
  };
  for await (const sample of readSamples(data)) {
    buffer.push(sample);
    if (buffer.length >= bufferSize) {
      const out = emit(takeRandom(buffer, rng));
      if (out) yield out;
    }
  }
  while (buffer.length > 0) {
    const out = emit(takeRandom(buffer, rng));
    if (out) yield out;
  }
  if (batch.length > 0) yield batch;
}

/** Removes and returns a uniformly chosen element (swap with the last, then pop: O(1)). */
function takeRandom<T>(buffer: T[], rng: Rng): T {
  const i = rng.int(buffer.length);
  const picked = buffer[i] as T;
  buffer[i] = buffer[buffer.length - 1] as T;
  buffer.pop();
  return picked;
}

/** The samples' inputs as one float32 tensor [n, ...shape]. */
export function inputTensor(samples: Sample[], shape: number[]): tf.Tensor {
  return tf.tensor(inputValues(samples), [samples.length, ...shape]);
}

/** The samples' inputs concatenated row by row (what inputTensor uploads). */
export function inputValues(samples: Sample[]): Float32Array {
  const width = samples[0]!.x.length;
  const x = new Float32Array(samples.length * width);
  samples.forEach((s, i) => x.set(s.x, i * width));
  return x;
}

/** Per-step image augmentation (student-train's `augment` parameter). */
export interface AugmentConfig {
  /** Mirror left-right with probability 1/2. */
  flip: boolean;
  /** Translate by an integer offset drawn uniformly from [-shift, shift] in each axis; zero fill. */
  shift: number;
}

/**
 * Augments a batch of [H, W, C] images: each image gets its own flip and shift,
 * drawn from `rng` (the caller seeds it from the run seed and the step, so a resumed run draws the
 * same). Returns a new array; `x` is not modified.
 */
export function augmentImages(
  x: Float32Array,
  n: number,
  shape: number[],
  config: AugmentConfig,
  rng: Rng,
): Float32Array {
  if (shape.length !== 3) throw new Error(`augment: inputs must be images [H, W, C], got shape [${shape}]`);
  const [h, w, c] = shape as [number, number, number];
  const size = h * w * c;
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++) {
    const flip = config.flip && rng.next() < 0.5;
    const dy = config.shift > 0 ? rng.int(2 * config.shift + 1) - config.shift : 0;
    const dx = config.shift > 0 ? rng.int(2 * config.shift + 1) - config.shift : 0;
    const base = i * size;
    for (let r = 0; r < h; r++) {
      const sr = r - dy;
      if (sr < 0 || sr >= h) continue;
      for (let col = 0; col < w; col++) {
        let sc = col - dx;
        if (sc < 0 || sc >= w) continue;
        if (flip) sc = w - 1 - sc;
        const from = base + (sr * w + sc) * c;
        const to = base + (r * w + col) * c;
        for (let ch = 0; ch < c; ch++) out[to + ch] = x[from + ch]!;
      }
    }
  }
  return out;
}
