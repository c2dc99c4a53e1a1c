/**
 * `masked-bundle`: the single-student baseline told the partition (see ./masked.ts), as an MSD
 * bundle the eval stage evaluates beside the routed MSD bundles.
 *
 * Inputs: `routing` (a partition stage), `router` (the same router stage as the MSD bundle of that
 * K), `model` (a student-train stage over all C classes).
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

export default definePlugin({
  name: 'masked-bundle',
  version: '1',
  description:
    'One student over all classes with its logits masked to each partition, packed with a router as an MSD bundle (the like-for-like baseline of MSD classification)',
  params: Type.Object(
    {
      preprocessing: Type.String({
        default: 'as student-train: pixels / 255 in the dataset layout; float features as they are',
        description: 'Input preprocessing, recorded in the manifest',
      }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1, memoryMiB: 512 },
  async run(ctx) {
    const { join } = await import('node:path');
    const { readRoutingTable } = await import('./subset.js');
    const { writeMaskedBundle } = await import('./masked.js');
    const routing = await readRoutingTable(ctx.input('routing'), ctx.stageId);
    const manifest = await writeMaskedBundle({
      routing,
      router: { stage: ctx.inputs.router![0]!.stage, path: join(ctx.input('router'), 'model.onnx') },
      model: { stage: ctx.inputs.model![0]!.stage, path: join(ctx.input('model'), 'model.onnx') },
      outDir: ctx.outDir,
      preprocessing: ctx.params.preprocessing,
    });
    const routerParams = manifest.router.parameters ?? 0;
    const single = manifest.studentModels[0]?.parameters ?? 0;
    ctx.log.info(
      `masked bundle: router (${routerParams} parameters) + one student (${single} parameters) masked to ${manifest.students} partitions`,
    );
    return {
      metrics: {
        students: manifest.students,
        total_parameters: routerParams + single,
        active_parameters: routerParams + single,
      },
    };
  },
});
