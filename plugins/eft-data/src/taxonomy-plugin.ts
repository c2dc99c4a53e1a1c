/**
 * `eft-taxonomy`: turns a user's class-to-vertical map file (CSV/TSV, see import-map.ts) into
 * taxonomy.json + verticals/<name>.json, the format eft-vertical and the pipeline read.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core/plugin';

const params = Type.Object(
  {
    map: PathParam({ description: 'CSV/TSV with header columns class, vertical[, group]' }),
    numClasses: Type.Optional(Type.Integer({ minimum: 1, description: 'Expected number of classes (checked)' })),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'eft-taxonomy',
  version: '1',
  description: 'Class-to-vertical map file -> taxonomy.json (for running the EFT pipeline on your own embeddings)',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 256 },
  async run(ctx) {
    const { taxonomyFromMap } = await import('./import-map.js');
    const { writeTaxonomy } = await import('./taxonomy.js');
    const path = ctx.params.map; // absolute: the runner resolves path params
    const t = taxonomyFromMap(path);
    if (ctx.params.numClasses !== undefined && ctx.params.numClasses !== t.numClasses) {
      throw new Error(`class map ${path}: ${t.numClasses} classes, parameter numClasses says ${ctx.params.numClasses}`);
    }
    writeTaxonomy(ctx.outDir, t);
    return { metrics: { classes: t.numClasses, verticals: t.verticals.length } };
  },
});
