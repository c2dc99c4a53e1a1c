/**
 * `partition-subset`: the dataset of one MSD student (rows of its partition, local labels,
 * class_map.json) or of the router (all rows, label = partition id). See ./subset.ts.
 *
 * Inputs: `dataset` (dataset shards), `routing` (a partition stage: routing.json).
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

export default definePlugin({
  name: 'partition-subset',
  version: '1',
  description:
    'Writes the dataset of one multi-student partition (local labels + class_map.json) or of the router (label = partition)',
  params: Type.Object(
    {
      student: Type.Union([Type.Integer({ minimum: 0 }), Type.Literal('router')], {
        description: 'partition index k, or "router"',
      }),
      rowsPerShard: Type.Integer({ minimum: 1, default: 8192 }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1, memoryMiB: 1024 },
  async run(ctx) {
    const { readRoutingTable, writeSubset } = await import('./subset.js');
    const routing = await readRoutingTable(ctx.input('routing'), ctx.stageId);
    const summary = await writeSubset({
      datasetDir: ctx.input('dataset'),
      routing,
      student: ctx.params.student,
      outDir: ctx.outDir,
      rowsPerShard: ctx.params.rowsPerShard,
      signal: ctx.signal,
    });
    const rows = Object.values(summary.rows).reduce((a, b) => a + b, 0);
    ctx.log.info(
      `${summary.student === 'router' ? 'router' : `student ${summary.student}`}: ${summary.numClasses} classes, ${rows} rows (${Object.entries(
        summary.rows,
      )
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')})`,
    );
    return { metrics: { classes: summary.numClasses, rows, dropped_unlabelled: summary.droppedUnlabelled } };
  },
});
