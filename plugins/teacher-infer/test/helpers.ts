import type { TSchema, Static } from '@sinclair/typebox';
import { makeTestContext, type PluginDefinition, type StageContext, type TestContextRecord } from '@distillery/core';
import { ShardWriter, datasetSchema } from '@distillery/runtime/shards';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';
import { Rng } from '@distillery/runtime/rng';

/** Seeded uniform [0, 1) stream (the project's Rng). */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

export type { TestContextRecord as CtxRecord } from '@distillery/core';

/** A StageContext like the runner's (core's makeTestContext); inputs name one directory each. */
export function makeCtx<S extends TSchema>(
  plugin: PluginDefinition<S>,
  raw: Record<string, unknown>,
  dirs: { outDir: string; pipelineDir: string; inputs?: Record<string, string>; gpus?: number[] },
): { ctx: StageContext<Static<S>>; record: TestContextRecord } {
  return makeTestContext(plugin, raw, {
    outDir: dirs.outDir,
    pipelineDir: dirs.pipelineDir,
    inputs: dirs.inputs ?? {},
    ...(dirs.gpus ? { gpus: dirs.gpus } : {}),
  });
}

/** Writes a float-features dataset: n samples of dim values, ids "s<i>", split alternating train/test. */
export async function writeFeatureDataset(
  dir: string,
  features: Float32Array,
  dim: number,
  numClasses: number,
  rowsPerShard = 64,
): Promise<string[]> {
  const n = features.length / dim;
  const ids = Array.from({ length: n }, (_, i) => `s${i}`);
  const writer = await ShardWriter.create({
    dir,
    schema: datasetSchema({ shape: [dim], input: 'features', labels: 'single', numClasses }),
    rowsPerShard,
  });
  writer.append(
    {
      id: ids,
      split: ids.map((_, i) => (i % 2 ? 'test' : 'train')),
      label: Int32Array.from(ids, (_, i) => i % numClasses),
      features,
    },
    n,
  );
  await writer.close();
  return ids;
}

/** Linear teacher: logits = x W + b (W [dim, classes]) and features = relu(x) (output "feat"). */
export function writeLinearTeacher(path: string, w: Float32Array, b: Float32Array, dim: number, classes: number): void {
  const model = new GraphBuilder('linear')
    .input('x', 'float32', ['batch', dim])
    .initializer('W', w, [dim, classes])
    .initializer('b', b, [classes])
    .node('Gemm', ['x', 'W', 'b'], ['logits'])
    .node('Relu', ['x'], ['feat'])
    .output('logits', 'float32', ['batch', classes])
    .output('feat', 'float32', ['batch', dim])
    .build();
  writeModelFile(path, model);
}

/** Reference logits in float64. */
export function linearLogits(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  dim: number,
  classes: number,
): Float64Array {
  const n = x.length / dim;
  const out = new Float64Array(n * classes);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < classes; c++) {
      let s = b[c]!;
      for (let k = 0; k < dim; k++) s += x[i * dim + k]! * w[k * classes + c]!;
      out[i * classes + c] = s;
    }
  return out;
}
