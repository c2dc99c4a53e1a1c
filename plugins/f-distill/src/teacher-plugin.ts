/**
 * `diffusion-teacher`: bootstrap stage training a class-conditional EDM denoiser (relu MLP on the
 * flattened input, class one-hot and a sinusoidal embedding of c_noise = ln(sigma)/4 concatenated
 * to the input) on real data; exported as ONNX (inputs x, sigma, class).
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';
import { BackendParam, EdmParams, selectStageBackend, stageHooks } from './stage.js';

export default definePlugin({
  name: 'diffusion-teacher',
  version: '1',
  description:
    'Train a class-conditional diffusion teacher (EDM denoiser MLP, tfjs) on a dataset and export it to ONNX',
  params: Type.Object(
    {
      hidden: Type.Array(Type.Integer({ minimum: 1 }), { default: [256, 256, 256] }),
      steps: Type.Integer({ default: 3000, minimum: 1 }),
      batchSize: Type.Integer({ default: 256, minimum: 1 }),
      lr: Type.Number({ default: 1e-3, exclusiveMinimum: 0 }),
      ...EdmParams,
      pMean: Type.Number({ default: -1.2, description: 'training sigmas: ln sigma ~ N(pMean, pStd^2)' }),
      pStd: Type.Number({ default: 1.2, exclusiveMinimum: 0 }),
      emaDecay: Type.Number({ default: 0.999, minimum: 0, maximum: 1 }),
      split: Type.Optional(Type.String({ description: 'train only on this split (default: all rows)' })),
      backend: BackendParam,
      seed: Type.Integer({ default: 0 }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 2, gpus: 0, memoryMiB: 2048 },
  async run(ctx) {
    await selectStageBackend(ctx, ctx.params.backend);
    const { trainTeacher } = await import('./teacher.js');
    const p = ctx.params;
    const info = await trainTeacher(
      ctx.input('dataset'),
      ctx.outDir,
      { ...p, edm: { sigmaData: p.sigmaData, sigmaMin: p.sigmaMin, sigmaMax: p.sigmaMax, rho: p.rho } },
      stageHooks(ctx, 'steps'),
    );
    return { metrics: { parameters: info.parameters, final_loss: info.finalLoss } };
  },
});
