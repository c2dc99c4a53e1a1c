/**
 * `dataset`: imports IDX, NPY, image folders, CSV, Parquet, Arrow IPC or synthetic data into
 * dataset shards (schema "dataset/1", tools/runtime/src/shards/SCHEMA.md). Work is in ./import.js.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core/plugin';

const params = Type.Object(
  {
    format: Type.Union([
      Type.Literal('idx'),
      Type.Literal('npy'),
      Type.Literal('images'),
      Type.Literal('csv'),
      Type.Literal('parquet'),
      Type.Literal('arrow'),
      Type.Literal('synthetic'),
    ]),
    sources: Type.Array(
      Type.Object(
        {
          split: Type.String({ description: 'train, test, val, ...' }),
          path: Type.Optional(PathParam({ description: 'idx/npy inputs file, image root folder, or table file' })),
          labels: Type.Optional(PathParam({ description: 'idx/npy labels file' })),
          samples: Type.Optional(Type.Integer({ minimum: 1, description: 'synthetic: number of samples' })),
          holdout: Type.Optional(
            Type.Object(
              {
                split: Type.String({ description: 'name of the carved split, e.g. val' }),
                fraction: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }),
                seed: Type.Integer({ default: 0 }),
              },
              {
                additionalProperties: false,
                description:
                  'each row of this source goes to `split` with probability `fraction` (seeded, in row order): a validation split carved from training data',
              },
            ),
          ),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    rowsPerShard: Type.Integer({ default: 8192, minimum: 1 }),
    numClasses: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Default: max label + 1 (one extra read pass)' }),
    ),
    labelColumn: Type.String({ default: 'label' }),
    idColumn: Type.Optional(Type.String()),
    channels: Type.Union([Type.Literal(1), Type.Literal(3)], {
      default: 3,
      description: 'images: 1 = grayscale, 3 = RGB',
    }),
    dim: Type.Integer({ default: 16, minimum: 1, description: 'synthetic: feature dimension' }),
    classes: Type.Integer({ default: 10, minimum: 1, description: 'synthetic: classes' }),
    separation: Type.Number({ default: 2, description: 'synthetic: std of class means' }),
    seed: Type.Integer({ default: 0 }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'dataset',
  version: '1',
  description:
    'Import IDX / NPY / PNG+JPEG folders / CSV / Parquet / Arrow (or generate synthetic data) into dataset shards',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 1024 },
  async run(ctx) {
    const { importDataset } = await import('./import.js');
    const p = ctx.params;
    const manifest = await importDataset({
      ...p,
      sources: p.sources,
      outDir: ctx.outDir,
      signal: ctx.signal,
      progress: (done) => ctx.progress(done, undefined, 'samples'),
    });
    return { metrics: { samples: manifest.totalRows, shards: manifest.shards.length } };
  },
});
