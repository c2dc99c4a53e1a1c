/**
 * `detect-infer`: runs a teacher detector (an ONNX model following ./model-contract.ts, e.g. a
 * detect-train stage's model.onnx) over one split of a detection data set and stores its maps as a
 * `detector-outputs/1` shard set, which detect-train's input `teachers` reads for distillation.
 * The work is in ./infer.js.
 */
import { resolve } from 'node:path';
import { Type } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core/plugin';

const params = Type.Object(
  {
    model: Type.Optional(
      PathParam({
        description:
          'ONNX detector file; default: model.onnx of the stage input named "model" (e.g. a detect-train stage)',
      }),
    ),
    split: Type.String({
      default: 'train',
      description: 'rows run through the model: the split the student trains on',
    }),
    feature: Type.Boolean({
      default: true,
      description: 'store the backbone feature map too (feature imitation and the adversarial term need it)',
    }),
    batchSize: Type.Integer({ default: 64, minimum: 1 }),
    rowsPerShard: Type.Integer({ default: 1024, minimum: 1 }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'detect-infer',
  version: '1',
  description: 'Run a teacher detector over a split; store its heatmap logits, box maps and features as Arrow shards',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 1024 },
  async run(ctx) {
    const { writeDetectorOutputs } = await import('./infer.js');
    const p = ctx.params;
    const started = Date.now();
    const { rows, geometry } = await writeDetectorOutputs({
      modelPath: p.model ?? resolve(ctx.input('model'), 'model.onnx'),
      datasetDir: ctx.input('dataset'),
      split: p.split,
      batchSize: p.batchSize,
      feature: p.feature,
      threads: ctx.devices.cpus,
      signal: ctx.signal,
      outDir: ctx.outDir,
      rowsPerShard: p.rowsPerShard,
      teacherId: ctx.stageId,
      progress: (done) => ctx.progress(done, undefined, 'samples'),
    });
    ctx.log.info(
      `detector outputs: ${rows} rows of "${p.split}", ${geometry.numClasses} classes at stride ${geometry.stride}${p.feature ? `, ${geometry.featureChannels}-channel features` : ''}`,
    );
    return { metrics: { rows, seconds: (Date.now() - started) / 1000 } };
  },
});
