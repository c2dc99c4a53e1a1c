/** `ring-data`: the 2-D toy data set (mixture of Gaussians on a ring, class = mode) as dataset shards. */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

export default definePlugin({
  name: 'ring-data',
  version: '1',
  description: 'Generate the 2-D ring mixture-of-Gaussians toy (class = mode) as dataset shards',
  params: Type.Object(
    {
      modes: Type.Integer({ default: 8, minimum: 2 }),
      radius: Type.Number({ default: 2, exclusiveMinimum: 0 }),
      std: Type.Number({ default: 0.1, exclusiveMinimum: 0 }),
      splits: Type.Array(
        Type.Object({ split: Type.String(), samples: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
        {
          default: [
            { split: 'train', samples: 8000 },
            { split: 'test', samples: 2000 },
          ],
          minItems: 1,
        },
      ),
      seed: Type.Integer({ default: 0 }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1, gpus: 0, memoryMiB: 256 },
  async run(ctx) {
    const { writeRing } = await import('./ring.js');
    const samples = await writeRing(ctx.outDir, ctx.params);
    return { metrics: { samples } };
  },
});
