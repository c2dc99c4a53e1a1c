import type { Static, TSchema } from '@sinclair/typebox';
import { makeTestContext, type PluginDefinition, type StageContext } from '@distillery/core';
import { ShardWriter, datasetSchema } from '@distillery/runtime/shards';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';

/** A StageContext like the runner's (core's makeTestContext); inputs map a name to [stage id, dir] pairs. */
export function makeCtx<S extends TSchema>(
  plugin: PluginDefinition<S>,
  raw: Record<string, unknown>,
  outDir: string,
  inputs: Record<string, [string, string][]>,
): StageContext<Static<S>> {
  const bound = Object.fromEntries(
    Object.entries(inputs).map(([k, list]) => [k, list.map(([stage, path]) => ({ stage, path }))]),
  );
  return makeTestContext(plugin, raw, { outDir, inputs: bound }).ctx;
}

export async function writeDataset(
  dir: string,
  x: Float32Array,
  dim: number,
  labels: number[],
  splits: string[],
  numClasses: number,
  rowsPerShard = 16,
): Promise<void> {
  const ids = labels.map((_, i) => `s${i}`);
  const writer = await ShardWriter.create({
    dir,
    schema: datasetSchema({
      shape: [dim],
      input: 'features',
      labels: 'single',
      numClasses,
      classNames: Array.from({ length: numClasses }, (_, c) => `c${c}`),
    }),
    rowsPerShard,
  });
  writer.append({ id: ids, split: splits, label: Int32Array.from(labels), features: x }, labels.length);
  await writer.close();
}

/** logits = input W + b (W: dim x width); input "input" [batch, dim], output "logits". */
export function writeLinear(path: string, w: Float32Array, b: Float32Array, dim: number, width: number): void {
  writeModelFile(
    path,
    new GraphBuilder('linear')
      .input('input', 'float32', ['batch', dim])
      .initializer('W', w, [dim, width])
      .initializer('b', b, [width])
      .node('Gemm', ['input', 'W', 'b'], ['logits'])
      .output('logits', 'float32', ['batch', width])
      .build(),
  );
}

/** Float64 reference of writeLinear's model for one row. */
export function linearRow(
  x: Float32Array,
  row: number,
  w: Float32Array,
  b: Float32Array,
  dim: number,
  width: number,
): number[] {
  return Array.from({ length: width }, (_, j) => {
    let s = b[j]!;
    for (let d = 0; d < dim; d++) s += x[row * dim + d]! * w[d * width + j]!;
    return s;
  });
}

export const argmax = (v: number[]): number => v.reduce((best, x, i) => (x > v[best]! ? i : best), 0);
