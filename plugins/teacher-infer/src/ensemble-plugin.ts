/**
 * `teacher-ensemble` stage: averages the logits of several ONNX classifiers into one ONNX model
 * (./ensemble.ts), e.g. a seed fan-out of teachers (input `models: teacher` binds every
 * teacher@<seed>). Its model.onnx feeds teacher-infer and eval like a single teacher.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core';
import type { OnnxModel } from '@distillery/runtime/onnx';

const params = Type.Object(
  {
    weights: Type.Optional(
      Type.Array(Type.Number({ minimum: 0 }), {
        minItems: 2,
        description: 'Weight of each member in input order (normalised to sum 1); default equal',
      }),
    ),
    output: Type.Optional(
      Type.String({ minLength: 1, description: "Each member's logits output; default its first output" }),
    ),
    passThrough: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description:
        'Outputs of the first member kept as extra outputs under their own names (e.g. features for a hint loss)',
    }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'teacher-ensemble',
  version: '1',
  description: 'One ONNX model that averages the logits of several ONNX classifiers (an ensemble teacher)',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 512 },
  async run(ctx) {
    const { join } = await import('node:path');
    const { readModelFile, writeModelFile } = await import('@distillery/runtime/onnx');
    const { ensembleModels } = await import('./ensemble.js');
    const inputs = ctx.inputs.models ?? [];
    if (inputs.length < 2)
      throw new Error(
        `stage ${ctx.stageId}: bind the input "models" to at least 2 model stages (e.g. models: teacher for every teacher@<seed>), got ${inputs.length}`,
      );
    const members = [];
    for (const input of inputs)
      members.push({ label: input.stage, model: await readModelFile(join(input.path, 'model.onnx')) });
    let model: OnnxModel;
    try {
      model = ensembleModels(members, {
        ...(ctx.params.weights ? { weights: ctx.params.weights } : {}),
        ...(ctx.params.output ? { output: ctx.params.output } : {}),
        passThrough: ctx.params.passThrough,
      });
    } catch (error) {
      throw new Error(`stage ${ctx.stageId}: ${(error as Error).message}`);
    }
    writeModelFile(join(ctx.outDir, 'model.onnx'), model);
    ctx.log.info(`ensemble of ${members.length} models: ${members.map((m) => m.label).join(', ')}`);
    const parameters = model.graph.initializers.reduce((s, t) => s + t.dims.reduce((a, b) => a * b, 1), 0);
    return { metrics: { members: members.length, parameters } };
  },
});
