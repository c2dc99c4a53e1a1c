/**
 * Warm start: a student's parameters (and batch-norm running statistics) read back from a
 * model.onnx that exportOnnx wrote for the same architecture, e.g. an upstream student-train
 * stage (teacher score matching first, distillation proper second).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { OnnxModel, OnnxTensor } from '@distillery/runtime/onnx';
import type { Student } from './models/student.js';

/** Assigns every parameter and buffer of `student` from the initializer of the same name in `model`. */
export function initStudentFromOnnx(student: Student, model: OnnxModel, where: string): void {
  const arch = model.metadata['distillery.arch'];
  if (arch !== undefined && arch !== student.config.arch)
    throw new Error(`init ${where}: a "${arch}" model, but the student is "${student.config.arch}"`);
  const classes = model.metadata['distillery.num_classes'];
  if (classes !== undefined && Number(classes) !== student.numClasses)
    throw new Error(`init ${where}: ${classes} classes, but the student has ${student.numClasses}`);
  const byName = new Map<string, OnnxTensor>(model.graph.initializers.map((t) => [t.name, t]));
  for (const p of [...student.params, ...student.buffers]) {
    const t = byName.get(p.name);
    if (!t) throw new Error(`init ${where}: no initializer "${p.name}" (is it a model of the same architecture?)`);
    if (!(t.data instanceof Float32Array))
      throw new Error(
        `init ${where}: initializer "${p.name}" is ${t.dataType}${t.external ? ' in external data' : ''}, expected float32`,
      );
    const shape = p.variable.shape;
    // Conv weights are exported as ONNX [cout, cin, k, k] (OIHW); the student holds [k, k, cin, cout] (HWIO).
    const conv = student.config.arch === 'cnn' && /^conv\d+\.weight$/.test(p.name);
    const expected = conv ? [shape[3]!, shape[2]!, shape[0]!, shape[1]!] : shape;
    if (t.dims.length !== expected.length || t.dims.some((d, i) => d !== expected[i])) {
      throw new Error(
        `init ${where}: initializer "${p.name}" has shape [${t.dims}], the student's is [${expected}] (same architecture and widths needed)`,
      );
    }
    let values = t.data;
    if (conv) {
      const [cout, cin, k] = t.dims as [number, number, number];
      values = new Float32Array(t.data.length);
      for (let o = 0; o < cout; o++)
        for (let c = 0; c < cin; c++)
          for (let dy = 0; dy < k; dy++)
            for (let dx = 0; dx < k; dx++) {
              values[((dy * k + dx) * cin + c) * cout + o] = t.data[((o * cin + c) * k + dy) * k + dx]!;
            }
    }
    p.variable.assign(tf.tensor(values, shape));
  }
}
