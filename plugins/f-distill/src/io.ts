/**
 * Reading and writing the data this package exchanges between stages:
 * - dataset shard sets (dataset/1, SCHEMA.md): real data; pixels are scaled to [-1, 1]
 *   (x = p / 127.5 - 1), features are used as stored;
 * - generated-sample shard sets (`generated-samples/1`): one row per sample with the generator's
 *   input noise (unit normal z; the teacher sampler starts from sigmaMax * z), the class and the
 *   sample, in the same [-1, 1] / feature space. Columns: id utf8, label int32,
 *   noise float32[D], sample float32[D]; metadata distillery.shape, distillery.num_classes,
 *   distillery.generator (what made it), distillery.nfe (network evaluations per sample).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  openShardSet,
  parseDatasetSchema,
  ShardWriter,
  SCHEMA_KEY,
  DATASET_SCHEMA,
  type ShardSchema,
} from '@distillery/runtime/shards';

export const SAMPLES_SCHEMA = 'generated-samples/1';

/** Rows of real or generated data held in memory (row-major, float32). */
export interface SampleSet {
  x: Float32Array;
  labels: Int32Array;
  /** Generator input noise (generated sets only). */
  noise?: Float32Array;
  n: number;
  dim: number;
  shape: number[];
  numClasses: number;
  metadata: Record<string, string>;
}

/**
 * Reads a dataset (optionally one split) or a generated-sample set. `limit` keeps the first rows.
 * Errors name the directory.
 */
export async function readSampleSet(
  artifact: string,
  options: { split?: string; limit?: number } = {},
): Promise<SampleSet> {
  const dir = sampleSetDir(artifact);
  const set = await openShardSet(dir);
  const meta = set.schema.metadata;
  const limit = options.limit ?? Infinity;
  if (meta[SCHEMA_KEY] === SAMPLES_SCHEMA) {
    const shape = JSON.parse(meta['distillery.shape'] ?? '[]') as number[];
    const dim = shape.reduce((a, b) => a * b, 1);
    const numClasses = Number(meta['distillery.num_classes']);
    const n = Math.min(limit, set.totalRows);
    const x = new Float32Array(n * dim);
    const noise = new Float32Array(n * dim);
    const labels = new Int32Array(n);
    let row = 0;
    for await (const batch of set.batches()) {
      const take = Math.min(batch.numRows, n - row);
      if (take <= 0) break;
      x.set((batch.numeric('sample') as Float32Array).subarray(0, take * dim), row * dim);
      noise.set((batch.numeric('noise') as Float32Array).subarray(0, take * dim), row * dim);
      labels.set((batch.numeric('label') as Int32Array).subarray(0, take), row);
      row += take;
    }
    return { x, noise, labels, n, dim, shape, numClasses, metadata: meta };
  }
  if (meta[SCHEMA_KEY] !== DATASET_SCHEMA)
    throw new Error(`${dir}: neither a dataset nor a generated-sample set (${SCHEMA_KEY} = ${meta[SCHEMA_KEY]})`);
  const info = parseDatasetSchema(set.schema, dir);
  if (info.labels !== 'single') throw new Error(`${dir}: needs single-label data (a label column)`);
  if (info.numClasses < 1) throw new Error(`${dir}: distillery.num_classes is missing`);
  const dim = info.width;
  const xs: Float32Array[] = [];
  const ls: Int32Array[] = [];
  let n = 0;
  for await (const batch of set.batches()) {
    if (n >= limit) break;
    const split = batch.strings('split');
    const labels = batch.numeric('label') as Int32Array;
    const values = batch.numeric(info.input);
    for (let r = 0; r < batch.numRows && n < limit; r++) {
      if (options.split !== undefined && split[r] !== options.split) continue;
      const row = new Float32Array(dim);
      const base = r * dim;
      if (info.input === 'pixels') for (let j = 0; j < dim; j++) row[j] = values[base + j]! / 127.5 - 1;
      else for (let j = 0; j < dim; j++) row[j] = values[base + j]!;
      const label = labels[r]!;
      if (label < 0 || label >= info.numClasses)
        throw new Error(`${dir}: sample ${batch.startRow + r} has label ${label} outside [0, ${info.numClasses})`);
      xs.push(row);
      ls.push(Int32Array.of(label));
      n++;
    }
  }
  if (n === 0) throw new Error(`${dir}: no samples${options.split ? ` in split ${options.split}` : ''}`);
  const x = new Float32Array(n * dim);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    x.set(xs[i]!, i * dim);
    labels[i] = ls[i]![0]!;
  }
  return { x, labels, n, dim, shape: info.shape, numClasses: info.numClasses, metadata: meta };
}

/** The shard set of an artifact: the directory itself or its `samples/` folder (sample stages). */
export function sampleSetDir(artifact: string): string {
  if (existsSync(join(artifact, 'manifest.json'))) return artifact;
  if (existsSync(join(artifact, 'samples', 'manifest.json'))) return join(artifact, 'samples');
  throw new Error(`${artifact}: no shard set (manifest.json missing)`);
}

/** Writes a generated-sample set (temp shards renamed, manifest last; aborted on error). */
export async function writeSampleSet(
  dir: string,
  data: { x: Float32Array; noise: Float32Array; labels: Int32Array; shape: number[]; numClasses: number },
  metadata: Record<string, string>,
): Promise<void> {
  const dim = data.shape.reduce((a, b) => a * b, 1);
  const n = data.labels.length;
  const schema: ShardSchema = {
    columns: [
      { name: 'id', type: 'utf8' },
      { name: 'label', type: 'int32' },
      { name: 'noise', type: 'float32', width: dim },
      { name: 'sample', type: 'float32', width: dim },
    ],
    metadata: {
      [SCHEMA_KEY]: SAMPLES_SCHEMA,
      'distillery.shape': JSON.stringify(data.shape),
      'distillery.num_classes': String(data.numClasses),
      ...metadata,
    },
  };
  const writer = await ShardWriter.create({ dir, schema, rowsPerShard: 8192 });
  try {
    const ids = Array.from({ length: n }, (_, i) => `sample/${String(i).padStart(6, '0')}`);
    writer.append({ id: ids, label: data.labels, noise: data.noise, sample: data.x }, n);
  } catch (error) {
    await writer.abort();
    throw error;
  }
  await writer.close();
}

/** Indices of rows whose label is in `classes`. */
export function rowsOfClasses(labels: Int32Array, classes: readonly number[]): Int32Array {
  const keep = new Set(classes);
  const out: number[] = [];
  for (let i = 0; i < labels.length; i++) if (keep.has(labels[i]!)) out.push(i);
  return Int32Array.from(out);
}

/** Classes owned by student `index` of `count` under the consecutive-ids partition (MSD's best). */
export function consecutivePartition(numClasses: number, count: number, index: number): number[] {
  if (!Number.isInteger(count) || count < 1 || count > numClasses)
    throw new Error(`students must be in [1, ${numClasses}], got ${count}`);
  if (!Number.isInteger(index) || index < 0 || index >= count)
    throw new Error(`student index ${index} is outside [0, ${count})`);
  const out: number[] = [];
  for (let c = 0; c < numClasses; c++) if (Math.floor((c * count) / numClasses) === index) out.push(c);
  return out;
}
