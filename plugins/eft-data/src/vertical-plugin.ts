/**
 * `eft-vertical`: one vertical's rows with local labels, the training set of its specialist
 * (fan out with `foreach` over the vertical names). Inputs: `dataset` (dataset shard set) and
 * `taxonomy` (a directory with taxonomy.json; eft-generate's output serves as both). Work: vertical.ts.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

const params = Type.Object(
  {
    vertical: Type.String({ minLength: 1, description: 'Vertical name (taxonomy.json verticals[].name)' }),
    splits: Type.Array(Type.String(), { default: ['train'], description: 'Splits to keep (empty = all)' }),
    labels: Type.Union([Type.Literal('multi'), Type.Literal('single')], {
      default: 'multi',
      description:
        'multi: `labels` list column (student-train uses per-class sigmoid CE); single: `label` (softmax CE)',
    }),
    rowsPerShard: Type.Integer({ minimum: 1, default: 16384 }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'eft-vertical',
  version: '1',
  description: "One vertical's samples with local labels (a specialist's training set) plus its class_map.json",
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 512 },
  async run(ctx) {
    const { extractVertical } = await import('./vertical.js');
    const dataset = ctx.input('dataset');
    const taxonomy = ctx.inputs.taxonomy ? ctx.input('taxonomy') : dataset;
    const result = await extractVertical({
      datasetDir: dataset,
      taxonomyDir: taxonomy,
      vertical: ctx.params.vertical,
      outDir: ctx.outDir,
      splits: ctx.params.splits,
      labels: ctx.params.labels,
      rowsPerShard: ctx.params.rowsPerShard,
      signal: ctx.signal,
      progress: (done, total) => ctx.progress(done, total, 'rows'),
    });
    return { metrics: { rows: result.manifest.totalRows, classes: result.classes } };
  },
});
