/**
 * `eft-generate`: the seeded EFT stand-in (100K classes in 20 long-tailed verticals, 256-d
 * embeddings around class prototypes). Output directory = a dataset shard set plus taxonomy.json,
 * verticals/<name>.json and stats.json, so one artifact feeds both `dataset` and `taxonomy`
 * inputs downstream. Geometry and difficulty: generator.ts.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';
import { DEFAULT_GEOMETRY as D } from './generator.js';

const num = (def: number, description: string) => Type.Number({ minimum: 0, default: def, description });

const params = Type.Object(
  {
    classes: Type.Integer({ minimum: 1, default: D.classes, description: 'Number of classes' }),
    verticals: Type.Integer({
      minimum: 1,
      default: D.verticals,
      description: 'Number of verticals (one specialist each)',
    }),
    tailExponent: num(D.tailExponent, 'Vertical sizes proportional to rank^-tailExponent (0 = equal)'),
    groupSize: Type.Integer({ minimum: 1, default: D.groupSize, description: 'Classes per group inside a vertical' }),
    dim: Type.Integer({ minimum: 1, default: D.dim, description: 'Embedding dimension' }),
    subspaceRank: Type.Integer({
      minimum: 1,
      default: D.subspaceRank,
      description: 'Rank of the subspace in which sibling classes differ',
    }),
    verticalSpread: num(D.verticalSpread, 'Std per coordinate of vertical centres'),
    groupSpread: num(D.groupSpread, 'Std per coordinate of group centres around their vertical'),
    classSpread: num(D.classSpread, 'Std of class prototypes inside their group subspace'),
    withinNoise: num(
      D.withinNoise,
      'Std of sample noise inside the group subspace: the main difficulty knob (vs classSpread)',
    ),
    isotropicNoise: num(D.isotropicNoise, 'Std per coordinate of full-space sample noise'),
    nuisanceRank: Type.Integer({
      minimum: 0,
      default: D.nuisanceRank,
      description: 'Rank of the global nuisance subspace',
    }),
    nuisanceStd: num(D.nuisanceStd, 'Std of nuisance coordinates'),
    samplesPerClass: Type.Integer({ minimum: 1, default: 4, description: 'Scale: training samples per class' }),
    valPerClass: Type.Integer({ minimum: 0, default: 0, description: 'Validation samples per class' }),
    testPerClass: Type.Integer({ minimum: 0, default: 1, description: 'Test samples per class' }),
    evalClassStride: Type.Integer({
      minimum: 1,
      default: 1,
      description: 'val/test rows only for classes 0, s, 2s, ... (a class-subsampled evaluation split)',
    }),
    seed: Type.Integer({ default: D.seed }),
    rowsPerShard: Type.Integer({ minimum: 1, default: 16384 }),
    chunkRows: Type.Integer({ minimum: 1, default: 4096, description: 'Rows generated per chunk (memory bound)' }),
    statsSamples: Type.Integer({
      minimum: 0,
      default: 100,
      description: 'Samples for the overlap statistics in stats.json (0 = skip)',
    }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'eft-generate',
  version: '1',
  description:
    'Seeded EFT stand-in: hierarchical 100K-class label space and 256-d embeddings as dataset shards + taxonomy.json',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 1024 },
  async run(ctx) {
    const { generateEft } = await import('./generate.js');
    const p = ctx.params;
    const result = await generateEft({
      geometry: {
        classes: p.classes,
        verticals: p.verticals,
        tailExponent: p.tailExponent,
        groupSize: p.groupSize,
        dim: p.dim,
        subspaceRank: p.subspaceRank,
        verticalSpread: p.verticalSpread,
        groupSpread: p.groupSpread,
        classSpread: p.classSpread,
        withinNoise: p.withinNoise,
        isotropicNoise: p.isotropicNoise,
        nuisanceRank: p.nuisanceRank,
        nuisanceStd: p.nuisanceStd,
        seed: p.seed,
      },
      perClass: { train: p.samplesPerClass, val: p.valPerClass, test: p.testPerClass },
      evalClassStride: p.evalClassStride,
      outDir: ctx.outDir,
      rowsPerShard: p.rowsPerShard,
      chunkRows: p.chunkRows,
      statsSamples: p.statsSamples,
      signal: ctx.signal,
      progress: (done, total) => ctx.progress(done, total, 'samples'),
    });
    const s = result.stats;
    if (s)
      ctx.log.info(
        `overlap: oracle nearest-prototype top-1 ${s.oracleTop1.toFixed(3)}, top-5 ${s.oracleTop5.toFixed(3)}; errors in group ${s.errorsInGroup.toFixed(2)}, in vertical ${s.errorsInVertical.toFixed(2)}`,
      );
    return {
      metrics: {
        rows: result.manifest.totalRows,
        seconds: result.seconds,
        ...(s ? { oracle_top1: s.oracleTop1, oracle_top5: s.oracleTop5, errors_in_group: s.errorsInGroup } : {}),
      },
    };
  },
});
