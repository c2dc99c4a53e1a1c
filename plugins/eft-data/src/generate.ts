/**
 * Writes the EFT stand-in into a directory: dataset shards (schema dataset/1: id, split, label
 * int32, features float32[dim]) in train, val, test order, taxonomy.json + verticals/<name>.json
 * (taxonomy.ts) and stats.json (overlap statistics). Rows are generated and written in chunks, so
 * memory does not grow with samples per class.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ShardWriter, datasetSchema, type ShardManifest } from '@distillery/runtime/shards';
import { EftGenerator, overlapStatistics, type EftGeometry, type OverlapStats } from './generator.js';
import { writeTaxonomy, EVAL_VERTICALS_FILE, TAXONOMY_FILE, VERTICALS_DIR } from './taxonomy.js';
import { writeFileAtomicSync } from '@distillery/core/plugin';

/** Everything one generation needs. */
export interface GenerateOptions {
  geometry: EftGeometry;
  /** Samples per class in each split (0 leaves the split out). */
  perClass: { train: number; val: number; test: number };
  /** Val and test rows only for classes 0, s, 2s, ... (1 = every class); keeps 100K-class evaluation affordable. */
  evalClassStride?: number;
  outDir: string;
  rowsPerShard: number;
  /** Rows generated per chunk (memory: chunkRows * dim floats). */
  chunkRows: number;
  /** Samples for the overlap statistics (0 = skip). */
  statsSamples: number;
  signal?: AbortSignal;
  progress?: (done: number, total: number) => void;
}

export interface GenerateResult {
  manifest: ShardManifest;
  stats?: OverlapStats;
  seconds: number;
}

export async function generateEft(o: GenerateOptions): Promise<GenerateResult> {
  const started = Date.now();
  for (const [split, n] of Object.entries(o.perClass)) {
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`samples per class of split "${split}" must be an integer >= 0, got ${n}`);
  }
  const gen = new EftGenerator(o.geometry);
  const t = gen.taxonomy;
  const writer = await ShardWriter.create({
    dir: o.outDir,
    rowsPerShard: o.rowsPerShard,
    schema: datasetSchema({
      shape: [o.geometry.dim],
      layout: 'flat',
      input: 'features',
      labels: 'single',
      numClasses: o.geometry.classes,
      source: `eft-generate (synthetic EFT stand-in) seed ${o.geometry.seed}`,
    }),
  });
  const stride = o.evalClassStride ?? 1;
  const evalClasses = Math.ceil(o.geometry.classes / stride);
  const total = o.perClass.train * o.geometry.classes + (o.perClass.val + o.perClass.test) * evalClasses;
  let done = 0;
  try {
    for (const split of ['train', 'val', 'test'] as const) {
      for (const chunk of gen.rows(split, o.perClass[split], o.chunkRows, split === 'train' ? 1 : stride)) {
        if (o.signal?.aborted) throw new Error(`eft-generate aborted after ${done} rows`);
        writer.append(
          { id: chunk.ids, split: chunk.splits, label: chunk.labels, features: chunk.features },
          chunk.rows,
        );
        done += chunk.rows;
        o.progress?.(done, total);
      }
    }
    const stats = o.statsSamples > 0 ? overlapStatistics(gen, o.statsSamples) : undefined;
    writeTaxonomy(o.outDir, t);
    if (stats) {
      const path = join(o.outDir, 'stats.json');
      writeFileAtomicSync(
        path,
        JSON.stringify(
          {
            geometry: o.geometry,
            perClass: o.perClass,
            evalClassStride: stride,
            verticals: t.verticals,
            overlap: stats,
          },
          null,
          1,
        ),
      );
    }
    const manifest = await writer.close();
    return { manifest, stats, seconds: (Date.now() - started) / 1000 };
  } catch (error) {
    await writer.abort();
    rmSync(join(o.outDir, TAXONOMY_FILE), { force: true });
    rmSync(join(o.outDir, VERTICALS_DIR), { recursive: true, force: true });
    rmSync(join(o.outDir, 'stats.json'), { force: true });
    rmSync(join(o.outDir, EVAL_VERTICALS_FILE), { force: true });
    throw error;
  }
}
