/**
 * `partition`: splits the label space among K students (MSD) and writes the routing table,
 * routing.json (see RoutingTable in ./partition.ts), a versioned, cached artifact like any other.
 *
 * Inputs: `dataset` (dataset shards: number of classes; class means for k-means), optional
 * `teacher` (teacher shards with penultimate features: k-means on teacher features instead).
 */
import { Type } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core/plugin';
import { writeFileAtomic } from '@distillery/core/plugin';

export default definePlugin({
  name: 'partition',
  version: '1',
  description:
    'Partitions the classes among K students (consecutive, random, balanced k-means, by vertical) into a routing table',
  params: Type.Object(
    {
      students: Type.Integer({ minimum: 1, description: 'K' }),
      strategy: Type.Union(
        [Type.Literal('consecutive'), Type.Literal('random'), Type.Literal('kmeans'), Type.Literal('vertical')],
        { default: 'consecutive' },
      ),
      seed: Type.Integer({ default: 0 }),
      minClasses: Type.Integer({
        minimum: 1,
        default: 2,
        description:
          'fewest classes a student may own when K > 1; K > C / minClasses is refused (a one-class student has a fixed answer, so its known-partition accuracy is 100% by construction)',
      }),
      split: Type.String({ default: 'train', description: 'kmeans: the split whose class means are clustered' }),
      verticals: Type.Optional(
        PathParam({
          description:
            'vertical strategy: JSON file, an array of the vertical of each class or {"classToVertical": [...]}',
        }),
      ),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1 },
  async run(ctx) {
    const { readFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { openShardSet, parseDatasetSchema } = await import('@distillery/runtime/shards');
    const { balancedKMeans, consecutivePartition, randomPartition, routingTable, verticalPartition } = await import(
      './partition.js'
    );
    const p = ctx.params;
    const datasetDir = ctx.input('dataset');
    const { checkK } = await import('./partition.js');
    const info = parseDatasetSchema((await openShardSet(datasetDir)).schema, datasetDir);
    try {
      checkK(info.numClasses, p.students, p.minClasses);
    } catch (error) {
      throw new Error(`stage ${ctx.stageId}: ${(error as Error).message}`);
    }
    let partitions: number[][];
    let inertia: number | undefined;
    if (p.strategy === 'consecutive') partitions = consecutivePartition(info.numClasses, p.students, p.minClasses);
    else if (p.strategy === 'random') partitions = randomPartition(info.numClasses, p.students, p.seed, p.minClasses);
    else if (p.strategy === 'vertical') {
      if (!p.verticals)
        throw new Error(
          `stage ${ctx.stageId}: strategy "vertical" needs the parameter verticals (a class -> vertical JSON file)`,
        );
      const raw = JSON.parse(await readFile(p.verticals, 'utf8')) as unknown;
      const map = Array.isArray(raw) ? raw : (raw as { classToVertical?: unknown }).classToVertical;
      if (!Array.isArray(map) || map.length !== info.numClasses || !map.every((v) => Number.isInteger(v))) {
        throw new Error(
          `${p.verticals}: expected ${info.numClasses} integer vertical ids (an array, or {"classToVertical": [...]})`,
        );
      }
      partitions = verticalPartition(map as number[], p.students, p.minClasses);
    } else {
      const { classMeanEmbeddings } = await import('./class-embeddings.js');
      const teacher = ctx.inputs.teacher?.[0]?.path;
      const { embeddings, numClasses, dim } = await classMeanEmbeddings(datasetDir, {
        split: p.split,
        signal: ctx.signal,
        ...(teacher ? { teacherDir: teacher } : {}),
      });
      ({ partitions, inertia } = balancedKMeans(embeddings, numClasses, dim, p.students, p.seed, 25, p.minClasses));
    }
    const table = routingTable(info.numClasses, partitions, p.strategy, p.seed);
    const sizes = table.partitions.map((x) => x.length);
    ctx.log.info(`partition sizes: ${sizes.join(', ')}`);
    await writeFileAtomic(join(ctx.outDir, 'routing.json'), JSON.stringify(table));
    return {
      metrics: {
        students: table.students,
        min_size: Math.min(...sizes),
        max_size: Math.max(...sizes),
        ...(inertia !== undefined ? { inertia } : {}),
      },
    };
  },
});
