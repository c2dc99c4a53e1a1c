/**
 * `f-distill`: one-step generator distilled from the ONNX diffusion teacher by f-divergence
 * distribution matching (see distill.ts). Inputs: `teacher` (diffusion-teacher), `real` (dataset
 * or sample set: the discriminator's real data), optional `pairs` (diffusion-sample output: the
 * teacher's (noise, sample) regression pairs). Multi-student: fan the stage out over `student`
 * with `students: K`; student k owns the consecutive class block k (MSD's partition).
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';
import { BackendParam, selectStageBackend, stageHooks } from './stage.js';
import { DIVERGENCES } from './divergence.js';

export default definePlugin({
  name: 'f-distill',
  version: '1',
  description:
    'Distil a diffusion teacher into a one-step generator by f-divergence distribution matching (f-distill / DMD), optionally one of K class-partitioned students',
  params: Type.Object(
    {
      divergence: Type.Union(
        DIVERGENCES.map((d) => Type.Literal(d)),
        {
          default: 'reverse_kl',
          description: 'h(r): reverse_kl (DMD), softened_rkl, js, squared_hellinger, forward_kl, jeffreys',
        },
      ),
      steps: Type.Integer({
        default: 1000,
        minimum: 0,
        description: 'generator steps (0: export the initial generator)',
      }),
      batchSize: Type.Integer({ default: 128, minimum: 2 }),
      lrGenerator: Type.Number({ default: 1e-4, exclusiveMinimum: 0 }),
      lrFake: Type.Number({ default: 1e-4, exclusiveMinimum: 0 }),
      lrDiscriminator: Type.Number({ default: 1e-4, exclusiveMinimum: 0 }),
      fakeUpdates: Type.Integer({
        default: 5,
        minimum: 1,
        description: 'fake-score (and discriminator) updates per generator step (the paper: 5)',
      }),
      warmupSteps: Type.Integer({
        default: 0,
        minimum: 0,
        description:
          'discriminator warm-up: generator steps with h = 1 (the reverse-KL gradient) before the density-ratio weighting starts; the discriminator and the ratio statistics train throughout',
      }),
      ganWeight: Type.Number({
        default: 0.01,
        minimum: 0,
        description: 'weight of the non-saturating GAN term on the generator',
      }),
      regressionWeight: Type.Number({
        default: 0,
        minimum: 0,
        description: 'weight of the MSE regression on the teacher (noise, sample) pairs (input "pairs")',
      }),
      init: Type.Union([Type.Literal('teacher'), Type.Literal('random')], {
        default: 'teacher',
        description: 'generator initialisation: the teacher denoiser at sigmaMax (DMD) or random',
      }),
      discriminatorHidden: Type.Array(Type.Integer({ minimum: 1 }), { default: [128, 128] }),
      uMin: Type.Number({
        default: 0.02,
        minimum: 0,
        maximum: 1,
        description: 'noise levels: fraction of the rho path sigmaMax -> sigmaMin',
      }),
      uMax: Type.Number({ default: 0.98, minimum: 0, maximum: 1 }),
      logitClamp: Type.Number({ default: 10, exclusiveMinimum: 0 }),
      rMin: Type.Number({ default: 0.1, exclusiveMinimum: 0 }),
      rMax: Type.Number({ default: 20, exclusiveMinimum: 0 }),
      ratioBins: Type.Integer({ default: 10, minimum: 1 }),
      ratioMomentum: Type.Number({ default: 0.9, minimum: 0, maximum: 1 }),
      normaliseH: Type.Boolean({ default: true }),
      students: Type.Integer({ default: 1, minimum: 1, description: 'K: number of class-partitioned students' }),
      student: Type.Integer({ default: 0, minimum: 0, description: 'which student this stage trains (0..K-1)' }),
      realSplit: Type.Optional(Type.String({ description: 'split of the real data (default: all rows)' })),
      backend: BackendParam,
      seed: Type.Integer({ default: 0 }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1, gpus: 0, memoryMiB: 2048 },
  async run(ctx) {
    const p = ctx.params;
    if (p.uMin > p.uMax) throw new Error(`f-distill ${ctx.stageId}: uMin ${p.uMin} > uMax ${p.uMax}`);
    if (p.rMin > p.rMax) throw new Error(`f-distill ${ctx.stageId}: rMin ${p.rMin} > rMax ${p.rMax}`);
    await selectStageBackend(ctx, p.backend);
    const { runDistill } = await import('./distill.js');
    const { consecutivePartition } = await import('./io.js');
    const { readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const teacherDir = ctx.input('teacher');
    const numClasses = (
      JSON.parse(readFileSync(join(teacherDir, 'teacher.json'), 'utf8')) as { spec: { numClasses: number } }
    ).spec.numClasses;
    const classes = consecutivePartition(numClasses, p.students, p.student);
    const pairs = ctx.inputs.pairs?.length ? ctx.input('pairs') : undefined;
    if (p.regressionWeight > 0 && pairs === undefined)
      throw new Error(
        `f-distill ${ctx.stageId}: regressionWeight > 0 needs an input "pairs" (a diffusion-sample stage)`,
      );
    const { metrics } = await runDistill(
      { teacherDir, realDir: ctx.input('real'), ...(pairs ? { pairsDir: pairs } : {}), outDir: ctx.outDir },
      {
        ...p,
        classes,
        ratio: {
          logitClamp: p.logitClamp,
          rMin: p.rMin,
          rMax: p.rMax,
          bins: p.ratioBins,
          momentum: p.ratioMomentum,
          normaliseH: p.normaliseH,
        },
        threads: ctx.devices.cpus,
      },
      stageHooks(ctx, 'steps'),
    );
    return { metrics };
  },
});
