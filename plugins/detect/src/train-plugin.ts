/**
 * `detect-train`: trains a small CenterNet detector (./detector.ts) on a detection data set
 * (`dataset` stage, format detection-canvas), from hard labels and/or the stored outputs of one or
 * several teacher detectors (input `teachers`: `detect-infer` stages run on the same split),
 * with heatmap and box distillation, feature imitation and an adversarial feature term
 * (./train.ts). Writes model.onnx (./model-contract.ts) and training.json.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

const params = Type.Object(
  {
    detector: Type.Object(
      {
        channels: Type.Array(Type.Integer({ minimum: 1 }), {
          default: [16, 32, 32],
          description: 'output channels of each backbone block (conv kxk same -> relu [-> 2x2 max pool])',
        }),
        pools: Type.Integer({
          minimum: 0,
          default: 2,
          description: 'the first `pools` blocks end with a 2x2 max pool: output stride 2^pools',
        }),
        kernel: Type.Integer({ minimum: 1, default: 3, description: 'backbone kernel size (odd)' }),
        headWidth: Type.Integer({
          minimum: 0,
          default: 32,
          description: '3x3 head convolution width shared by the heads; 0 = none',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    split: Type.String({ default: 'train', description: 'rows trained on' }),
    epochs: Type.Integer({ minimum: 0, default: 10, description: '0 = the untrained detector (a baseline row)' }),
    maxSteps: Type.Integer({
      minimum: 0,
      default: 0,
      description: '0 = every epoch; a small number makes a smoke run',
    }),
    batchSize: Type.Integer({ minimum: 1, default: 32 }),
    lr: Type.Number({ exclusiveMinimum: 0, default: 0.002, description: 'Adam learning rate' }),
    schedule: Type.Union([Type.Literal('cosine'), Type.Literal('constant')], { default: 'cosine' }),
    bufferSize: Type.Integer({ minimum: 1, default: 1024, description: 'shuffle buffer (samples held in memory)' }),
    seed: Type.Integer({ default: 0 }),
    hard: Type.Number({
      minimum: 0,
      default: 1,
      description: 'weight of the hard-label terms (focal + size + offset)',
    }),
    sizeWeight: Type.Number({ minimum: 0, default: 0.1, description: 'size L1 weight (CenterNet default 0.1)' }),
    offsetWeight: Type.Number({ minimum: 0, default: 1, description: 'offset L1 weight (CenterNet default 1)' }),
    kd: Type.Object(
      {
        heatmap: Type.Number({
          minimum: 0,
          default: 0,
          description: 'weight of heatmap distillation (binary KL at temperature)',
        }),
        temperature: Type.Number({ exclusiveMinimum: 0, default: 1 }),
        box: Type.Number({
          minimum: 0,
          default: 0,
          description: "weight of size/offset distillation (L1 weighted by the teacher's centre probability)",
        }),
        feature: Type.Number({
          minimum: 0,
          default: 0,
          description: 'weight of feature imitation (MSE after a 1x1 adapter)',
        }),
        teacherWeights: Type.Array(Type.Number({ minimum: 0 }), {
          default: [],
          description: 'per-teacher weights, in the order of input "teachers" (normalised to sum 1); empty = equal',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    adversarial: Type.Object(
      {
        weight: Type.Number({
          minimum: 0,
          default: 0,
          description: 'weight of the adversarial feature term (0 = off)',
        }),
        startStep: Type.Integer({
          minimum: 0,
          default: 0,
          description: 'the term (and the discriminator) start at this step',
        }),
        lr: Type.Number({
          exclusiveMinimum: 0,
          default: 0.0002,
          description: 'discriminator Adam learning rate (beta1 0.5)',
        }),
        width: Type.Integer({ minimum: 1, default: 32, description: 'discriminator hidden channels' }),
      },
      { additionalProperties: false, default: {} },
    ),
    backend: Type.Union([Type.Literal('auto'), Type.Literal('wasm'), Type.Literal('cpu')], { default: 'auto' }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'detect-train',
  version: '1',
  description:
    'Train a CenterNet detector from hard labels and/or teacher detectors (heatmap, box, feature, adversarial distillation)',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 2048 },
  async run(ctx) {
    const { selectBackend } = await import('@distillery/runtime/tfjs');
    await selectBackend({
      cpus: ctx.devices.cpus,
      gpus: ctx.devices.gpus,
      prefer: ctx.params.backend,
      log: (m) => ctx.log.info(m),
    });
    const { trainDetector } = await import('./train.js');
    const teachers = (ctx.inputs.teachers ?? []).map((a) => a.path);
    const { backend: _backend, ...cfg } = ctx.params;
    const info = await trainDetector(ctx.input('dataset'), teachers, ctx.outDir, cfg, {
      log: (m) => ctx.log.info(m),
      progress: (done, total) => ctx.progress(done, total, 'steps'),
      metric: (name, value, step) => ctx.metric(name, value, step),
      signal: ctx.signal,
    });
    return {
      metrics: { parameters: info.parameters, steps: info.steps, seconds: info.seconds, ...prefixed(info.finalLosses) },
    };
  },
});

function prefixed(losses: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(losses).map(([k, v]) => [`loss.${k}`, v]));
}
