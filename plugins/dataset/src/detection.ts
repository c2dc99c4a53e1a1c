/**
 * `format: detection-canvas`: detection canvases (./canvas.js) written as dataset shards plus COCO
 * ground truth per split (`coco/<split>.json` beside the shards).
 *
 * Shards: schema "dataset/1" with a multi-label `labels` column (the classes present, ascending),
 * `pixels` [size, size, 1] HWC, and two detection columns: `boxes` list<float32> (4 numbers per
 * object, COCO [x, y, w, h] in pixels) and `box_labels` list<int32> (class of each box), in the
 * order of the COCO annotations of that image. Row id `<split>/<n>` is COCO image id n (0-based,
 * in the split) and its `file_name`; category ids are the class ids of the shards.
 *
 * Each split draws from its own Rng stream (seeded by `seed` and the split's name) and from its own
 * items: with `items: idx`, a source's IDX file and `itemRange`, so test objects are unseen in
 * training; two splits sharing items of one file are an error.
 */
import { rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '@distillery/core/plugin';
import { Rng } from '@distillery/runtime/rng';
import {
  ShardWriter,
  datasetSchema,
  type ColumnValues,
  type ShardManifest,
  type ShardSchema,
} from '@distillery/runtime/shards';
import {
  SHAPE_NAMES,
  checkCanvasSpec,
  drawCanvas,
  poolItemSource,
  shapeItemSource,
  type Canvas,
  type CanvasSpec,
  type ItemSource,
} from './canvas.js';
import { readIdx } from './import.js';

/** One split of canvases. */
export interface CanvasSource {
  split: string;
  /** items: idx: the IDX images and labels the split's items come from. */
  path?: string;
  labels?: string;
  /** Number of canvases. */
  samples?: number;
  /** items: idx: the item rows [start, end) of the IDX file this split may use (default: all). */
  itemRange?: [number, number];
}

/** The canvas parameters plus where items come from. */
export interface CanvasParams extends CanvasSpec {
  /** `idx`: items are the sources' IDX images (e.g. Fashion-MNIST); `shapes`: SHAPE_NAMES drawn procedurally. */
  items: 'idx' | 'shapes';
  /** Category names; default SHAPE_NAMES (shapes) or "0", "1", ... (idx). */
  classNames?: string[];
}

export interface CanvasImportOptions {
  sources: CanvasSource[];
  outDir: string;
  rowsPerShard: number;
  seed: number;
  canvas: CanvasParams;
  /** Default: classNames' length, else the largest item label + 1. */
  numClasses?: number;
  signal?: AbortSignal;
  progress?: (done: number) => void;
}

/** COCO ground truth as written to coco/<split>.json. */
export interface CocoFile {
  info: { description: string; split: string };
  images: { id: number; file_name: string; width: number; height: number }[];
  annotations: {
    id: number;
    image_id: number;
    category_id: number;
    bbox: [number, number, number, number];
    area: number;
    iscrowd: 0;
  }[];
  categories: { id: number; name: string; supercategory: string }[];
}

export const COCO_DIR = 'coco';
const CHUNK_ROWS = 256;

/** The Rng of one split: FNV-1a of "<seed>/<split>", so adding a split leaves the others unchanged. */
export function splitRng(seed: number, split: string): Rng {
  let h = 0x811c9dc5;
  for (const ch of `${seed}/${split}`) h = Math.imul(h ^ ch.codePointAt(0)!, 0x01000193) >>> 0;
  return Rng.fromState(h);
}

/** Dataset schema "dataset/1" (multi-label) plus the two detection columns. */
export function detectionSchema(size: number, numClasses: number, classNames: string[], source: string): ShardSchema {
  const schema = datasetSchema({
    shape: [size, size, 1],
    layout: 'HWC',
    input: 'pixels',
    labels: 'multi',
    numClasses,
    classNames,
    source,
  });
  schema.columns.push(
    { name: 'boxes', type: 'float32', list: true },
    { name: 'box_labels', type: 'int32', list: true },
  );
  schema.metadata['distillery.boxes'] = 'coco-xywh-pixels';
  return schema;
}

function checkSources(o: CanvasImportOptions): void {
  if (o.sources.length === 0) throw new Error('detection-canvas: sources is empty');
  const seen = new Set<string>();
  o.sources.forEach((s, i) => {
    const at = `sources[${i}] (split ${s.split})`;
    if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/.test(s.split))
      throw new Error(`${at}: split name must be letters, digits, _ . - (it names coco/<split>.json)`);
    if (seen.has(s.split)) throw new Error(`${at}: split "${s.split}" appears twice (one source per split)`);
    seen.add(s.split);
    if (s.samples === undefined || !Number.isInteger(s.samples) || s.samples < 1)
      throw new Error(`${at}: samples (number of canvases) must be an integer >= 1, got ${s.samples}`);
    if (o.canvas.items === 'idx' && (!s.path || !s.labels))
      throw new Error(`${at}: canvas.items is idx, so path (IDX images) and labels (IDX labels) are required`);
    if (o.canvas.items === 'shapes' && (s.path || s.labels || s.itemRange))
      throw new Error(`${at}: canvas.items is shapes, so path, labels and itemRange must not be given`);
    if (s.itemRange) {
      const [a, b] = s.itemRange;
      if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b <= a)
        throw new Error(
          `${at}: itemRange must be [start, end) with 0 <= start < end, got ${JSON.stringify(s.itemRange)}`,
        );
    }
  });
  // Splits reading one IDX file must use disjoint item rows, so no object is seen in two splits.
  for (let i = 0; i < o.sources.length; i++)
    for (let j = i + 1; j < o.sources.length; j++) {
      const [a, b] = [o.sources[i]!, o.sources[j]!];
      if (!a.path || !b.path || resolve(a.path) !== resolve(b.path)) continue;
      const [a0, a1] = a.itemRange ?? [0, Number.POSITIVE_INFINITY];
      const [b0, b1] = b.itemRange ?? [0, Number.POSITIVE_INFINITY];
      if (Math.max(a0, b0) < Math.min(a1, b1))
        throw new Error(
          `sources[${i}] (split ${a.split}) and sources[${j}] (split ${b.split}) share item rows of ${a.path}: ` +
            'give them disjoint itemRange so no object appears in two splits',
        );
    }
}

/** The item pool of an idx source: rows itemRange of its IDX file, read with the IDX reader. */
async function loadPool(source: CanvasSource, at: string) {
  const reader = await readIdx({ split: source.split, path: source.path, labels: source.labels });
  const [h, w, c] = reader.shape.shape;
  if (reader.shape.shape.length !== 3 || c !== 1)
    throw new Error(
      `${source.path}: items must be 2-D greyscale images, got shape ${JSON.stringify(reader.shape.shape)}`,
    );
  const [start, end] = source.itemRange ?? [0, Number.POSITIVE_INFINITY];
  const pixels: Uint8Array[] = [];
  const labels: number[] = [];
  let row = 0;
  for await (const chunk of reader.chunks) {
    for (let i = 0; i < chunk.rows; i++, row++)
      if (row >= start && row < end) {
        pixels.push(chunk.values.subarray(i * h! * w!, (i + 1) * h! * w!) as Uint8Array);
        labels.push(chunk.labels[i]!);
      }
  }
  if (source.itemRange && end > row)
    throw new Error(
      `${at}: itemRange ${JSON.stringify(source.itemRange)} goes past the ${row} images of ${source.path}`,
    );
  const flat = new Uint8Array(pixels.length * h! * w!);
  pixels.forEach((p, i) => flat.set(p, i * h! * w!));
  return { width: w!, height: h!, pixels: flat, labels: Int32Array.from(labels) };
}

function rowColumns(split: string, first: number, canvases: Canvas[], size: number): Record<string, ColumnValues> {
  const n = canvases.length;
  const offsets = (count: (i: number) => number) => {
    const o = new Int32Array(n + 1);
    for (let i = 0; i < n; i++) o[i + 1] = o[i]! + count(i);
    return o;
  };
  const present = canvases.map((c) => [...new Set(c.objects.map((o) => o.classId))].sort((a, b) => a - b));
  const labelOffsets = offsets((i) => present[i]!.length);
  const boxOffsets = offsets((i) => 4 * canvases[i]!.objects.length);
  const boxLabelOffsets = offsets((i) => canvases[i]!.objects.length);
  const pixels = new Uint8Array(n * size * size);
  canvases.forEach((c, i) => pixels.set(c.pixels, i * size * size));
  return {
    id: canvases.map((_, i) => `${split}/${first + i}`),
    split: new Array<string>(n).fill(split),
    labels: { offsets: labelOffsets, values: Int32Array.from(present.flat()) },
    pixels,
    boxes: {
      offsets: boxOffsets,
      values: Float32Array.from(canvases.flatMap((c) => c.objects.flatMap((o) => o.bbox))),
    },
    box_labels: {
      offsets: boxLabelOffsets,
      values: Int32Array.from(canvases.flatMap((c) => c.objects.map((o) => o.classId))),
    },
  };
}

/**
 * Draws every split's canvases into one shard set in outDir, and writes coco/<split>.json. The COCO
 * files are written (atomically) before the manifest, which is written last; on any error the
 * writer is aborted and the coco folder removed, so nothing partial is left.
 */
export async function importDetectionCanvas(o: CanvasImportOptions): Promise<ShardManifest> {
  checkCanvasSpec(o.canvas, 'canvas');
  checkSources(o);
  const items: ItemSource[] = [];
  let maxLabel = -1;
  for (const [i, source] of o.sources.entries()) {
    if (o.canvas.items === 'shapes') {
      items.push(shapeItemSource());
      maxLabel = SHAPE_NAMES.length - 1;
      continue;
    }
    const pool = await loadPool(source, `sources[${i}] (split ${source.split})`);
    if (pool.labels.length === 0) throw new Error(`sources[${i}] (split ${source.split}): no items in ${source.path}`);
    for (const y of pool.labels) if (y > maxLabel) maxLabel = y;
    items.push(poolItemSource(pool));
  }
  const defaultNames = o.canvas.items === 'shapes' ? [...SHAPE_NAMES] : undefined;
  const numClasses = o.numClasses ?? o.canvas.classNames?.length ?? defaultNames?.length ?? maxLabel + 1;
  if (maxLabel >= numClasses)
    throw new Error(`numClasses is ${numClasses} but an item has label ${maxLabel} (labels must be < numClasses)`);
  const classNames = o.canvas.classNames ?? defaultNames ?? Array.from({ length: numClasses }, (_, i) => String(i));
  if (classNames.length !== numClasses)
    throw new Error(`canvas.classNames has ${classNames.length} names for numClasses = ${numClasses}`);
  const { size } = o.canvas;
  const described = o.sources.map((s) => (s.path ? `${s.path}${s.itemRange ? `[${s.itemRange}]` : ''}` : 'shapes'));
  const schema = detectionSchema(size, numClasses, classNames, `detection-canvas: ${described.join(', ')}`);
  const cocoDir = join(o.outDir, COCO_DIR);
  let writer: ShardWriter | undefined;
  let done = 0;
  try {
    writer = await ShardWriter.create({ dir: o.outDir, schema, rowsPerShard: o.rowsPerShard });
    await mkdir(cocoDir, { recursive: true });
    for (const [i, source] of o.sources.entries()) {
      const rng = splitRng(o.seed, source.split);
      const coco: CocoFile = {
        info: { description: 'distillery dataset stage, format detection-canvas', split: source.split },
        images: [],
        annotations: [],
        categories: classNames.map((name, id) => ({
          id,
          name,
          supercategory: o.canvas.items === 'shapes' ? 'shape' : 'item',
        })),
      };
      const samples = source.samples!;
      for (let start = 0; start < samples; start += CHUNK_ROWS) {
        if (o.signal?.aborted) throw new Error('dataset import: cancelled');
        const canvases: Canvas[] = [];
        for (let n = start; n < Math.min(samples, start + CHUNK_ROWS); n++) {
          const canvas = drawCanvas(rng, items[i]!, o.canvas);
          canvases.push(canvas);
          coco.images.push({ id: n, file_name: `${source.split}/${n}`, width: size, height: size });
          for (const object of canvas.objects)
            coco.annotations.push({
              id: coco.annotations.length + 1, // COCOeval treats annotation id 0 as never matched
              image_id: n,
              category_id: object.classId,
              bbox: object.bbox,
              area: object.bbox[2] * object.bbox[3],
              iscrowd: 0,
            });
        }
        writer.append(rowColumns(source.split, start, canvases, size), canvases.length);
        done += canvases.length;
        o.progress?.(done);
      }
      await writeFileAtomic(join(cocoDir, `${source.split}.json`), JSON.stringify(coco));
    }
    return await writer.close();
  } catch (error) {
    await writer?.abort();
    rmSync(cocoDir, { recursive: true, force: true });
    throw error;
  }
}
