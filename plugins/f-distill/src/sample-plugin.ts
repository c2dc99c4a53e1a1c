/**
 * `diffusion-sample`: the generative mode of teacher inference. Samples the ONNX diffusion teacher
 * with the deterministic Heun sampler (EDM, rho-spaced sigmas) in onnxruntime-node and writes
 * (noise, class, sample) rows as a generated-sample shard set under samples/, plus grid.png.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';
import { stageHooks } from './stage.js';

export default definePlugin({
  name: 'diffusion-sample',
  version: '1',
  description: 'Sample a diffusion teacher (ONNX, Heun) into (noise, class, sample) Arrow shards',
  params: Type.Object(
    {
      perClass: Type.Integer({ default: 500, minimum: 1, description: 'samples per class' }),
      steps: Type.Integer({ default: 18, minimum: 1, description: 'sigmas of the Heun sampler (NFE = 2 steps - 1)' }),
      batchSize: Type.Integer({ default: 500, minimum: 1 }),
      seed: Type.Integer({ default: 0 }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1, gpus: 0, memoryMiB: 1024 },
  async run(ctx) {
    const { sampleTeacher, TEACHER_FILES } = await import('./teacher.js');
    const teacherDir = ctx.input('teacher');
    const info = JSON.parse(readFileSync(join(teacherDir, TEACHER_FILES.info), 'utf8'));
    const r = await sampleTeacher(
      teacherDir,
      ctx.outDir,
      info,
      { ...ctx.params, threads: ctx.devices.cpus },
      stageHooks(ctx, 'samples'),
    );
    return { metrics: { samples: r.samples, nfe: r.nfe, ms_per_sample: r.msPerSample } };
  },
});
