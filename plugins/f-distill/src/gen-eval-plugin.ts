/**
 * `gen-eval`: Frechet distance (raw coordinates, or FID in the feature space of an `extractor`
 * input = feature-classifier stage), precision/recall and mode coverage of every candidate input
 * (sample sets or generators; a fan-out of f-distill students is one multi-student candidate)
 * against the `reference` input. Writes report.json, report.md and one PNG per candidate.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';
import { stageHooks } from './stage.js';

export default definePlugin({
  name: 'gen-eval',
  version: '1',
  description:
    'Evaluate one-step generators and sample sets: Frechet distance / domain FID, precision/recall, mode coverage, sample grids',
  params: Type.Object(
    {
      samples: Type.Integer({
        default: 5000,
        minimum: 2,
        description: 'generated samples per generator; cap on reference and sample-set rows (headline FIDs: >= 10000)',
      }),
      bootstrap: Type.Integer({
        default: 0,
        minimum: 0,
        description:
          'resamples of a 95% percentile-bootstrap interval of each Frechet distance / FID (0: no interval; 200 for headline numbers), seeded from seed',
      }),
      referenceSplit: Type.Optional(Type.String({ description: 'split of a dataset reference (e.g. test)' })),
      prSamples: Type.Integer({
        default: 2000,
        minimum: 4,
        description: 'rows used for precision/recall (quadratic cost)',
      }),
      k: Type.Integer({ default: 3, minimum: 1, description: 'k of the k-NN manifolds' }),
      modeCoverage: Type.Boolean({
        default: false,
        description: 'report mode coverage (each reference class is one mode)',
      }),
      seed: Type.Integer({ default: 12345 }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1, gpus: 0, memoryMiB: 2048 },
  async run(ctx) {
    const { evaluateGenerators } = await import('./gen-eval.js');
    const report = await evaluateGenerators(
      ctx.inputs,
      ctx.outDir,
      { ...ctx.params, threads: ctx.devices.cpus },
      stageHooks(ctx, 'candidates'),
    );
    const metrics: Record<string, number> = {};
    for (const r of report.rows) {
      metrics[`${r.name}.frechet`] = r.frechet;
      if (r.frechetLow !== undefined && r.frechetHigh !== undefined) {
        metrics[`${r.name}.frechet_low`] = r.frechetLow;
        metrics[`${r.name}.frechet_high`] = r.frechetHigh;
      }
      metrics[`${r.name}.precision`] = r.precision;
      metrics[`${r.name}.recall`] = r.recall;
      if (r.coverage !== undefined) metrics[`${r.name}.coverage`] = r.coverage;
    }
    return { metrics };
  },
});
