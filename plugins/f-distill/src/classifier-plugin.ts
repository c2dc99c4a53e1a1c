/** `feature-classifier`: trains the domain classifier whose penultimate layer is the FID feature space. */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';
import { BackendParam, selectStageBackend, stageHooks } from './stage.js';

export default definePlugin({
  name: 'feature-classifier',
  version: '1',
  description:
    'Train an MLP classifier on a dataset and export it to ONNX with its penultimate layer as "features" (domain FID extractor)',
  params: Type.Object(
    {
      hidden: Type.Array(Type.Integer({ minimum: 1 }), { default: [256, 128], minItems: 1 }),
      epochs: Type.Integer({ default: 3, minimum: 1 }),
      batchSize: Type.Integer({ default: 128, minimum: 1 }),
      lr: Type.Number({ default: 1e-3, exclusiveMinimum: 0 }),
      trainSplit: Type.String({ default: 'train' }),
      testSplit: Type.String({ default: 'test' }),
      backend: BackendParam,
      seed: Type.Integer({ default: 0 }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1, gpus: 0, memoryMiB: 2048 },
  async run(ctx) {
    await selectStageBackend(ctx, ctx.params.backend);
    const { trainClassifier } = await import('./classifier.js');
    const r = await trainClassifier(ctx.input('dataset'), ctx.outDir, ctx.params, stageHooks(ctx, 'steps'));
    return { metrics: { test_accuracy: r.testAccuracy, feature_dim: r.featureDim } };
  },
});
