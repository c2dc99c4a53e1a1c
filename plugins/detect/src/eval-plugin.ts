/**
 * `detect-eval`: scores detectors on one split of a detection data set (input `dataset`, whose
 * coco/<split>.json is the ground truth): COCO AP/AR through plugins/eval's evaluator, parameters,
 * FLOPs and latency, MedDet's teacher-vs-student table, and over a seed fan-out (inputs named
 * role@seed) mean ± std per role with paired t-intervals. Inputs `teacher` and `model`: stages
 * whose output holds model.onnx. Writes report.json and report.md; the work is in ./evaluate.js.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

const params = Type.Object(
  {
    split: Type.String({ default: 'test', description: 'split scored (its coco/<split>.json is the ground truth)' }),
    topK: Type.Integer({ minimum: 1, default: 100, description: 'detections kept per image (COCO counts up to 100)' }),
    scoreThreshold: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.01,
      description: 'peaks scoring <= this are dropped',
    }),
    nmsIoU: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.5,
      description: 'class-wise NMS IoU threshold after peak extraction; 1 = no NMS',
    }),
    batchSize: Type.Integer({ minimum: 1, default: 64 }),
    latency: Type.Object(
      {
        batch: Type.Integer({ minimum: 1, default: 1 }),
        warmup: Type.Integer({ minimum: 0, default: 5 }),
        iterations: Type.Integer({ minimum: 1, default: 50 }),
      },
      { additionalProperties: false, default: {} },
    ),
    baseline: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'role (model name up to "@") every other student role is compared with over seeds, e.g. student-hard',
      }),
    ),
    comparisons: Type.Optional(
      Type.Array(
        Type.Object(
          { a: Type.String({ minLength: 1 }), b: Type.String({ minLength: 1 }) },
          { additionalProperties: false },
        ),
        { description: 'paired differences a - b of roles over seeds; default: every student role against baseline' },
      ),
    ),
    confidence: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, default: 0.95 }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'detect-eval',
  version: '1',
  description:
    'Score detectors: COCO mAP, parameters, FLOPs, latency, speed-up and reductions against the teacher, seed statistics',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 1024 },
  async run(ctx) {
    const { join } = await import('node:path');
    const { writeFileAtomic } = await import('@distillery/core/plugin');
    const { evaluateDetectors, renderDetectMarkdown } = await import('./evaluate.js');
    const p = ctx.params;
    const models = [
      ...(ctx.inputs.teacher ?? []).map((a) => ({
        name: a.stage,
        role: 'teacher' as const,
        modelPath: join(a.path, 'model.onnx'),
      })),
      ...(ctx.inputs.model ?? []).map((a) => ({
        name: a.stage,
        role: 'student' as const,
        modelPath: join(a.path, 'model.onnx'),
      })),
    ];
    let done = 0;
    const report = await evaluateDetectors({
      datasetDir: ctx.input('dataset'),
      split: p.split,
      models,
      topK: p.topK,
      scoreThreshold: p.scoreThreshold,
      nmsIoU: p.nmsIoU,
      batchSize: p.batchSize,
      threads: ctx.devices.cpus,
      latency: p.latency,
      ...(p.comparisons ? { comparisons: p.comparisons } : {}),
      ...(p.baseline ? { baseline: p.baseline } : {}),
      confidence: p.confidence,
      signal: ctx.signal,
      log: (m) => {
        ctx.log.info(m);
        ctx.progress(++done, models.length, 'models');
      },
    });
    await writeFileAtomic(join(ctx.outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    await writeFileAtomic(join(ctx.outDir, 'report.md'), renderDetectMarkdown(report));
    const metrics: Record<string, number> = {};
    for (const m of report.models) {
      metrics[`${m.name}.AP`] = m.coco.AP;
      metrics[`${m.name}.AP50`] = m.coco.AP50;
    }
    return { metrics };
  },
});
