/**
 * `dataset`: imports IDX, NPY, image folders, CSV, Parquet, Arrow IPC or synthetic data into
 * dataset shards (schema "dataset/1", tools/runtime/src/shards/SCHEMA.md), or draws a detection
 * data set (`detection-canvas`: shards plus coco/<split>.json). Work is in ./import.js and
 * ./detection.js.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core/plugin';
import { canvasParams, canvasParamsWithDefaults } from './canvas-params.js';

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
      Type.Literal('detection-canvas'),
    ]),
    sources: Type.Array(
      Type.Object(
        {
          split: Type.String({ description: 'train, test, val, ...' }),
          path: Type.Optional(PathParam({ description: 'idx/npy inputs file, image root folder, or table file' })),
          labels: Type.Optional(PathParam({ description: 'idx/npy labels file' })),
          samples: Type.Optional(
            Type.Integer({
              minimum: 1,
              description: 'synthetic: number of samples; detection-canvas: number of canvases',
            }),
          ),
          itemRange: Type.Optional(
            Type.Tuple([Type.Integer({ minimum: 0 }), Type.Integer({ minimum: 1 })], {
              description:
                'detection-canvas with items idx: the rows [start, end) of the IDX file this split takes its items from (default all); splits sharing a file must not overlap',
            }),
          ),
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
    canvas: Type.Optional(canvasParams),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'dataset',
  version: '1',
  description:
    'Import IDX / NPY / PNG+JPEG folders / CSV / Parquet / Arrow (or generate synthetic data or detection canvases) into dataset shards',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 1024 },
  async run(ctx) {
    const p = ctx.params;
    if (p.format === 'detection-canvas') {
      const held = p.sources.findIndex((s) => s.holdout);
      if (held >= 0)
        throw new Error(
          `sources[${held}].holdout: format detection-canvas takes one source per split (give val its own)`,
        );
      const { importDetectionCanvas } = await import('./detection.js');
      const manifest = await importDetectionCanvas({
        sources: p.sources,
        outDir: ctx.outDir,
        rowsPerShard: p.rowsPerShard,
        seed: p.seed,
        canvas: canvasParamsWithDefaults(p.canvas),
        numClasses: p.numClasses,
        signal: ctx.signal,
        progress: (done) => ctx.progress(done, undefined, 'canvases'),
      });
      return { metrics: { samples: manifest.totalRows, shards: manifest.shards.length } };
    }
    if (p.canvas) throw new Error(`canvas is a parameter of format detection-canvas, not ${p.format}`);
    const ranged = p.sources.findIndex((s) => s.itemRange);
    if (ranged >= 0)
      throw new Error(`sources[${ranged}].itemRange is a parameter of format detection-canvas, not ${p.format}`);
    const { importDataset } = await import('./import.js');
    const manifest = await importDataset({
      ...p,
      format: p.format,
      sources: p.sources,
      outDir: ctx.outDir,
      signal: ctx.signal,
      progress: (done) => ctx.progress(done, undefined, 'samples'),
    });
    return { metrics: { samples: manifest.totalRows, shards: manifest.shards.length } };
  },
});
