/**
 * `msd-bundle`: packs a router and K students into a bundle a user runs with onnxruntime alone
 * (manifest.json + router.onnx + student_<k>.onnx + msd-runner.mjs; format in ./bundle-runner.ts).
 *
 * Inputs: `routing` (a partition stage), `router` (a student-train stage trained on the
 * partition-subset "router" dataset), `students` (the K student-train stages, in partition order:
 * a fan-out over 0..K-1 binds them so).
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

export default definePlugin({
  name: 'msd-bundle',
  version: '1',
  description:
    'Packs a multi-student model (router + K students + manifest) for onnxruntime; the eval stage evaluates it as one model',
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
    const { orderStudents, writeBundle } = await import('./bundle.js');
    const routing = await readRoutingTable(ctx.input('routing'), ctx.stageId);
    const routerDir = ctx.input('router');
    const students = ctx.inputs.students ?? [];
    if (students.length === 0)
      throw new Error(
        `stage ${ctx.stageId}: bind the input "students" to the K student-train stages (in partition order)`,
      );
    const manifest = await writeBundle({
      routing,
      router: { stage: ctx.inputs.router![0]!.stage, path: join(routerDir, 'model.onnx') },
      students: orderStudents(students),
      outDir: ctx.outDir,
      preprocessing: ctx.params.preprocessing,
    });
    const studentParams = manifest.studentModels.map((s) => s.parameters ?? 0);
    const routerParams = manifest.router.parameters ?? 0;
    ctx.log.info(
      `bundle: router (${routerParams} parameters) + ${manifest.students} students (${studentParams.join(', ')} parameters)`,
    );
    return {
      metrics: {
        students: manifest.students,
        total_parameters: routerParams + studentParams.reduce((a, b) => a + b, 0),
        active_parameters: routerParams + Math.max(...studentParams),
      },
    };
  },
});
