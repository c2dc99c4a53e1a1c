/**
 * `eval` stage: evaluates classifiers on a dataset split and writes report.json, report.md and
 * SVG plots. Inputs: `dataset` (dataset shard set), `model` (one or several stages whose output
 * holds model.onnx, or an msd-bundle stage: the students; each is named by its stage id), optional `teacher` (stages
 * holding model.onnx: reference models; the first is the reference for agreement and the
 * teacher vs student efficiency table), optional `taxonomy` (a stage whose output holds
 * verticals.json, used when the `verticals` param is not set). Heavy work: ./stage/evaluate.js.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core/plugin';
import { join } from 'node:path';

const params = Type.Object(
  {
    split: Type.String({ default: 'test', description: 'Dataset split to evaluate; "*" = every row' }),
    batchSize: Type.Integer({ default: 256, minimum: 1 }),
    topk: Type.Array(Type.Integer({ minimum: 1 }), {
      default: [1, 5],
      minItems: 1,
      description: 'k values of top-k accuracy',
    }),
    eceBins: Type.Integer({
      default: 15,
      minimum: 1,
      description: 'Equal-width confidence bins of ECE and the reliability diagram',
    }),
    outputs: Type.Union([Type.Literal('logits'), Type.Literal('probabilities')], {
      default: 'logits',
      description: 'What the models output: logits are softmaxed for ECE and AP',
    }),
    apScore: Type.Union([Type.Literal('softmax'), Type.Literal('sigmoid')], {
      default: 'softmax',
      description:
        "What mean per-vertical AP ranks: softmax = each row's probabilities (softmax of the logits, or the given probabilities); sigmoid = the per-class sigmoid of each logit, the score of a model trained with per-class sigmoid losses (needs outputs: logits). The report names it.",
    }),
    input: Type.Optional(Type.String({ description: 'Model input name; default: the only input' })),
    output: Type.Optional(Type.String({ description: 'Model output holding class scores; default: the first output' })),
    verticals: Type.Optional(
      PathParam({
        description:
          'JSON file: the vertical of each class, as an array or {"classToVertical": [...], "names": [...]}; default: verticals.json of the input "taxonomy"',
      }),
    ),
    scale: Type.Number({
      default: 1 / 255,
      description: 'pixels are multiplied by this before mean/std (as teacher-infer)',
    }),
    mean: Type.Array(Type.Number(), { default: [], description: 'per-channel mean (after scale); empty = 0' }),
    std: Type.Array(Type.Number(), { default: [], description: 'per-channel std; empty = 1' }),
    inputLayout: Type.Union([Type.Literal('as-is'), Type.Literal('CHW')], {
      default: 'as-is',
      description: 'CHW: transpose HWC images for the model',
    }),
    latencyWarmup: Type.Integer({ default: 5, minimum: 0, description: 'Untimed runs before latency is measured' }),
    latencyRuns: Type.Integer({ default: 50, minimum: 1, description: 'Timed runs per model' }),
    latencyBatch: Type.Integer({
      default: 1,
      minimum: 1,
      description: 'Batch size of the latency runs (and of the FLOP count)',
    }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'eval',
  version: '1',
  description:
    'Evaluate classifiers: top-k, per-class / per-vertical accuracy, mean per-vertical AP, ECE, teacher agreement, parameters, FLOPs, latency; report.md/json and SVG plots',
  params,
  resources: { cpus: 2, gpus: 0, memoryMiB: 2048 },
  async run(ctx) {
    const { evaluateModels } = await import('./stage/evaluate.js');
    const { loadVerticalMap } = await import('./stage/verticals.js');
    const p = ctx.params;
    const taxonomy = ctx.inputs.taxonomy?.[0]?.path;
    const verticalsFile = p.verticals ? p.verticals : taxonomy ? join(taxonomy, 'verticals.json') : undefined;
    const teachers = (ctx.inputs.teacher ?? []).map((a) => ({ name: a.stage, role: 'teacher' as const, dir: a.path }));
    const students = (ctx.inputs.model ?? []).map((a) => ({ name: a.stage, role: 'student' as const, dir: a.path }));
    if (students.length === 0)
      throw new Error(`stage ${ctx.stageId}: bind the input "model" to the stage(s) whose model.onnx to evaluate`);
    const report = await evaluateModels({
      datasetDir: ctx.input('dataset'),
      models: [...teachers, ...students],
      split: p.split,
      batchSize: p.batchSize,
      topk: p.topk,
      eceBins: p.eceBins,
      outputs: p.outputs,
      apScore: p.apScore,
      inputName: p.input,
      outputName: p.output,
      scale: p.scale,
      mean: p.mean,
      std: p.std,
      inputLayout: p.inputLayout,
      ...(verticalsFile ? { verticals: await loadVerticalMap(verticalsFile) } : {}),
      latency: { warmup: p.latencyWarmup, iterations: p.latencyRuns, batch: p.latencyBatch },
      threads: ctx.devices.cpus,
      gpus: ctx.devices.gpus,
      outDir: ctx.outDir,
      signal: ctx.signal,
      progress: (done, total) => ctx.progress(done, total, 'samples'),
      warn: (m) => ctx.log.warn(m),
    });
    const metrics: Record<string, number> = { samples: report.dataset.samples };
    for (const m of report.models) {
      metrics[`${m.name}/top1`] = m.metrics.top1;
      metrics[`${m.name}/ece`] = m.metrics.ece;
      if (m.metrics.meanPerVerticalAP !== undefined && m.metrics.meanPerVerticalAP !== null)
        metrics[`${m.name}/mpvap`] = m.metrics.meanPerVerticalAP;
      if (m.metrics.agreement !== undefined) metrics[`${m.name}/agreement`] = m.metrics.agreement;
      if (m.composite) {
        metrics[`${m.name}/routing_accuracy`] = m.composite.routingAccuracy;
        metrics[`${m.name}/known_partition_top1`] = m.composite.knownPartitionTop1;
      }
      ctx.log.info(
        `${m.name}: top-1 ${(m.metrics.top1 * 100).toFixed(2)}%, ECE ${m.metrics.ece.toFixed(4)}, p50 ${m.efficiency.latencyP50Ms.toFixed(3)} ms`,
      );
    }
    return { metrics };
  },
});
