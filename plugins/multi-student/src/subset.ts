/**
 * Data side of multi-student distillation: the dataset one student (or the router) trains on.
 *
 * - Student k: the rows whose label lies in partition k, relabelled with LOCAL ids 0..n_k-1 in
 *   ascending global order (local id j = global class partitions[k][j]); `class_map.json` holds
 *   that list (the global id of each local class), the same convention as teacher-infer's
 *   `classMap` and the `distillery.class_map` shard metadata.
 * - Router: every labelled row with label = the partition (student) of its class.
 *
 * All splits are kept (a student's test rows are its partition's test rows). Unlabelled rows
 * (label -1) cannot be routed by label and are dropped (counted in subset.json).
 */
import { join } from 'node:path';
import {
  ShardWriter,
  datasetSchema,
  openShardSet,
  parseDatasetSchema,
  type ColumnValues,
} from '@distillery/runtime/shards';
import { writeFileAtomicSync } from '@distillery/core/plugin';
import type { RoutingTable } from './partition.js';

/** subset.json: what partition-subset wrote. */
export interface SubsetSummary {
  format: 'distillery-msd-subset';
  version: 1;
  /** Student index, or "router". */
  student: number | 'router';
  /** Classes of the subset's label space (n_k, or K for the router). */
  numClasses: number;
  /** Student subsets: global id of each local class. */
  classMap?: number[];
  /** Router subsets: the partition of each global class. */
  classToStudent?: number[];
  /** Rows kept, by split. */
  rows: Record<string, number>;
  /** Unlabelled rows dropped. */
  droppedUnlabelled: number;
}

/** Validates a parsed routing.json; errors name the file. */
/** Reads and checks routing.json of a `partition` stage's output directory. */
export async function readRoutingTable(partitionDir: string, stageId: string): Promise<RoutingTable> {
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const routingFile = join(partitionDir, 'routing.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(routingFile, 'utf8'));
  } catch (error) {
    throw new Error(`stage ${stageId}: cannot read routing table ${routingFile} (${(error as Error).message})`);
  }
  return checkRoutingTable(raw, routingFile);
}

export function checkRoutingTable(raw: unknown, where: string): RoutingTable {
  const t = raw as Partial<RoutingTable> | null;
  if (
    !t ||
    typeof t !== 'object' ||
    !Number.isInteger(t.numClasses) ||
    !Number.isInteger(t.students) ||
    !Array.isArray(t.partitions) ||
    !Array.isArray(t.classToStudent)
  ) {
    throw new Error(`${where}: not a routing table (expected numClasses, students, partitions, classToStudent)`);
  }
  if (t.partitions.length !== t.students || t.classToStudent.length !== t.numClasses) {
    throw new Error(
      `${where}: ${t.partitions.length} partitions for ${t.students} students, ${t.classToStudent.length} class entries for ${t.numClasses} classes`,
    );
  }
  t.partitions.forEach((part, k) => {
    if (!Array.isArray(part) || part.length === 0) throw new Error(`${where}: partition ${k} is empty`);
    for (const c of part) {
      if (!Number.isInteger(c) || c < 0 || c >= t.numClasses! || t.classToStudent![c] !== k)
        throw new Error(`${where}: partition ${k} lists class ${c}, which classToStudent does not map to ${k}`);
    }
  });
  const total = t.partitions.reduce((a, p) => a + p.length, 0);
  if (total !== t.numClasses) throw new Error(`${where}: partitions hold ${total} classes, expected ${t.numClasses}`);
  return t as RoutingTable;
}

export interface SubsetOptions {
  datasetDir: string;
  routing: RoutingTable;
  student: number | 'router';
  outDir: string;
  rowsPerShard: number;
  signal?: AbortSignal;
}

/** Writes the subset's shard set plus class_map.json (students) and subset.json into outDir. */
export async function writeSubset(o: SubsetOptions): Promise<SubsetSummary> {
  const dataset = await openShardSet(o.datasetDir);
  const info = parseDatasetSchema(dataset.schema, `dataset ${o.datasetDir}`);
  if (info.labels !== 'single')
    throw new Error(`dataset ${o.datasetDir}: multi-label partition subsets are not implemented`);
  const t = o.routing;
  if (t.numClasses !== info.numClasses)
    throw new Error(`routing table covers ${t.numClasses} classes but dataset ${o.datasetDir} has ${info.numClasses}`);
  const router = o.student === 'router';
  if (!router && (!Number.isInteger(o.student) || (o.student as number) < 0 || (o.student as number) >= t.students)) {
    throw new Error(
      `student ${o.student} is outside 0..${t.students - 1} (the routing table has ${t.students} partitions)`,
    );
  }
  const classMap = router ? undefined : (t.partitions[o.student as number] as number[]);
  // Global class -> label in the subset (-1 = not in it).
  const relabel = new Int32Array(t.numClasses).fill(-1);
  if (classMap) classMap.forEach((g, j) => (relabel[g] = j));
  else t.classToStudent.forEach((k, g) => (relabel[g] = k));
  const numClasses = classMap ? classMap.length : t.students;
  const classNames = classMap
    ? info.classNames
      ? classMap.map((g) => info.classNames![g]!)
      : undefined
    : Array.from({ length: t.students }, (_, k) => `partition ${k}`);
  const schema = datasetSchema({
    shape: info.shape,
    layout: info.layout as 'HWC',
    input: info.input,
    labels: 'single',
    numClasses,
    ...(classNames ? { classNames } : {}),
    source: `${router ? 'router' : `student ${o.student}`} subset of ${dataset.schema.metadata['distillery.source'] ?? o.datasetDir}`,
  });
  const writer = await ShardWriter.create({ dir: o.outDir, schema, rowsPerShard: o.rowsPerShard });
  const rows: Record<string, number> = {};
  let dropped = 0;
  try {
    for await (const batch of dataset.batches()) {
      o.signal?.throwIfAborted();
      const ids = batch.strings('id');
      const splits = batch.strings('split');
      const labels = batch.numeric('label');
      const x = batch.numeric(info.input);
      const keep: number[] = [];
      const newLabels: number[] = [];
      for (let r = 0; r < batch.numRows; r++) {
        const y = labels[r] as number;
        if (y === -1) {
          dropped++;
          continue;
        }
        if (!Number.isInteger(y) || y < 0 || y >= t.numClasses)
          throw new Error(`dataset ${batch.file}: sample ${ids[r]} has label ${y}, outside [0, ${t.numClasses})`);
        const local = relabel[y] as number;
        if (local < 0) continue;
        keep.push(r);
        newLabels.push(local);
        rows[splits[r]!] = (rows[splits[r]!] ?? 0) + 1;
      }
      if (keep.length === 0) continue;
      const w = info.width;
      const xs = info.input === 'pixels' ? new Uint8Array(keep.length * w) : new Float32Array(keep.length * w);
      keep.forEach((r, i) => xs.set(x.subarray(r * w, (r + 1) * w), i * w));
      const columns: Record<string, ColumnValues> = {
        id: keep.map((r) => ids[r]!),
        split: keep.map((r) => splits[r]!),
        label: Int32Array.from(newLabels),
        [info.input]: xs,
      };
      writer.append(columns, keep.length);
    }
    if (writer.rowsWritten === 0)
      throw new Error(
        `dataset ${o.datasetDir}: no rows fall in ${router ? 'any partition' : `partition ${o.student} (classes ${classMap!.join(', ')})`}`,
      );
    await writer.close();
  } catch (error) {
    await writer.abort();
    throw error;
  }
  const summary: SubsetSummary = {
    format: 'distillery-msd-subset',
    version: 1,
    student: o.student,
    numClasses,
    ...(classMap ? { classMap: [...classMap] } : { classToStudent: [...t.classToStudent] }),
    rows,
    droppedUnlabelled: dropped,
  };
  if (classMap) writeFileAtomicSync(join(o.outDir, 'class_map.json'), JSON.stringify(classMap));
  writeFileAtomicSync(join(o.outDir, 'subset.json'), `${JSON.stringify(summary, null, 1)}\n`);
  return summary;
}
