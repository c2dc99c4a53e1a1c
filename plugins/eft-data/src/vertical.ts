/**
 * One vertical's training set for its specialist: the rows of a dataset shard set whose label is
 * in the vertical, labels mapped to the vertical's LOCAL ids 0..N_v-1 (local id i = the i-th
 * smallest global id of the vertical, as in verticals/<name>.json). Written as `labels`
 * (list<int32>, multi-label: student-train then trains with per-class sigmoid cross-entropy, as KC
 * specialists are) or as `label` (softmax). The output directory also holds class_map.json (JSON
 * int array: global id of each local class) for teacher-infer, and the shard metadata carries it
 * as distillery.class_map.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  ShardWriter,
  datasetSchema,
  openShardSet,
  parseDatasetSchema,
  type ShardManifest,
  type ColumnValues,
} from '@distillery/runtime/shards';
import { readTaxonomy, verticalClasses, verticalIndex } from './taxonomy.js';
import { writeFileAtomicSync } from '@distillery/core/plugin';

export const CLASS_MAP_FILE = 'class_map.json';

export interface VerticalOptions {
  datasetDir: string;
  taxonomyDir: string;
  vertical: string;
  outDir: string;
  /** Splits to keep (empty = all). */
  splits: string[];
  labels: 'multi' | 'single';
  rowsPerShard: number;
  signal?: AbortSignal;
  progress?: (done: number, total: number) => void;
}

export async function extractVertical(o: VerticalOptions): Promise<{ manifest: ShardManifest; classes: number }> {
  const taxonomy = readTaxonomy(o.taxonomyDir);
  const v = verticalIndex(taxonomy, o.vertical, `eft-vertical (taxonomy ${o.taxonomyDir})`);
  const classMap = verticalClasses(taxonomy)[v]!;
  const set = await openShardSet(o.datasetDir);
  const info = parseDatasetSchema(set.schema, o.datasetDir);
  if (info.labels !== 'single')
    throw new Error(`eft-vertical: dataset ${o.datasetDir} is multi-label; verticals need one label per sample`);
  if (info.numClasses !== taxonomy.numClasses) {
    throw new Error(
      `eft-vertical: dataset ${o.datasetDir} has ${info.numClasses} classes, taxonomy ${o.taxonomyDir} has ${taxonomy.numClasses}`,
    );
  }
  const local = new Int32Array(taxonomy.numClasses).fill(-1);
  classMap.forEach((g, i) => (local[g] = i));
  const schema = datasetSchema({
    shape: info.shape,
    layout: info.layout as 'flat',
    input: info.input,
    labels: o.labels,
    numClasses: classMap.length,
    source: `eft-vertical ${o.vertical} of ${o.datasetDir}`,
  });
  schema.metadata['distillery.class_map'] = JSON.stringify(classMap);
  schema.metadata['distillery.vertical'] = o.vertical;
  const writer = await ShardWriter.create({ dir: o.outDir, rowsPerShard: o.rowsPerShard, schema });
  const keep = new Set(o.splits);
  const width = info.width;
  const input = info.input;
  let read = 0;
  try {
    for await (const batch of set.batches({ verify: 'size' })) {
      if (o.signal?.aborted) throw new Error(`eft-vertical aborted after ${read} rows`);
      const ids = batch.strings('id');
      const splits = batch.strings('split');
      const labels = batch.numeric('label');
      const xs = batch.numeric(input);
      const rows: number[] = [];
      for (let r = 0; r < batch.numRows; r++) {
        const y = labels[r]!;
        if (y < -1 || y >= taxonomy.numClasses)
          throw new Error(
            `eft-vertical: dataset ${o.datasetDir} row ${batch.startRow + r} ("${ids[r]}") has label ${y}, outside [-1, ${taxonomy.numClasses})`,
          );
        if (y >= 0 && local[y]! >= 0 && (keep.size === 0 || keep.has(splits[r]!))) rows.push(r);
      }
      read += batch.numRows;
      o.progress?.(read, set.totalRows);
      if (rows.length === 0) continue;
      const x = input === 'features' ? new Float32Array(rows.length * width) : new Uint8Array(rows.length * width);
      rows.forEach((r, i) => x.set(xs.subarray(r * width, (r + 1) * width), i * width));
      const localLabels = Int32Array.from(rows, (r) => local[labels[r]!]!);
      const columns: Record<string, ColumnValues> = {
        id: rows.map((r) => ids[r]!),
        split: rows.map((r) => splits[r]!),
        [input]: x,
      };
      if (o.labels === 'single') columns.label = localLabels;
      else columns.labels = { offsets: Int32Array.from({ length: rows.length + 1 }, (_, i) => i), values: localLabels };
      writer.append(columns, rows.length);
    }
    if (writer.rowsWritten === 0)
      throw new Error(
        `eft-vertical: no rows of vertical "${o.vertical}"${keep.size ? ` in splits ${[...keep].join(', ')}` : ''} in ${o.datasetDir}`,
      );
    const path = join(o.outDir, CLASS_MAP_FILE);
    writeFileAtomicSync(path, JSON.stringify(classMap));
    const manifest = await writer.close();
    return { manifest, classes: classMap.length };
  } catch (error) {
    await writer.abort();
    rmSync(join(o.outDir, CLASS_MAP_FILE), { force: true });
    throw error;
  }
}
