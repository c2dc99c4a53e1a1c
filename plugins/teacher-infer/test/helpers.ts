/** Test fixtures: hand-made stage contexts, dataset shard sets, small ONNX teachers. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import type { TSchema, Static } from '@sinclair/typebox';
import type { PluginDefinition, StageContext } from '@distillery/core';
import { ShardWriter, datasetSchema } from '@distillery/core/shards/index';
import { GraphBuilder, writeModelFile } from '@distillery/core/onnx/index';
import { Rng } from '@distillery/core/util/rng';

/** Seeded uniform [0, 1) stream (the project's Rng). */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

export interface CtxRecord {
  progress: [number, number | undefined][];
  warnings: string[];
}

/** A StageContext like the runner's: params validated with defaults applied. */
export function makeCtx<S extends TSchema>(plugin: PluginDefinition<S>, raw: Record<string, unknown>, dirs: { outDir: string; pipelineDir: string; inputs?: Record<string, string> }): { ctx: StageContext<Static<S>>; record: CtxRecord } {
  const params = Value.Default(plugin.params, structuredClone(raw)) as Static<S>;
  if (!Value.Check(plugin.params, params)) {
    const first = [...Value.Errors(plugin.params, params)][0];
    throw new Error(`params invalid: ${first?.path} ${first?.message}`);
  }
  mkdirSync(dirs.outDir, { recursive: true });
  const record: CtxRecord = { progress: [], warnings: [] };
  const inputs = Object.fromEntries(Object.entries(dirs.inputs ?? {}).map(([k, path]) => [k, [{ stage: k, path }]]));
  const ctx: StageContext<Static<S>> = {
    stageId: 'test-stage', pipeline: 'test', params, inputs,
    input(name: string) {
      const list = inputs[name];
      if (!list || list.length !== 1) throw new Error(`no single input ${name}`);
      return list[0]!.path;
    },
    outDir: dirs.outDir, stateDir: join(dirs.outDir, '..', 'state'), pipelineDir: dirs.pipelineDir,
    devices: { cpus: 1, gpus: [] },
    log: { info() {}, warn: (m: string) => void record.warnings.push(m), debug() {} },
    progress: (done: number, total?: number) => void record.progress.push([done, total]),
    metric() {},
    signal: new AbortController().signal,
  };
  return { ctx, record };
}

/** Writes a float-features dataset: n samples of dim values, ids "s<i>", split alternating train/test. */
export async function writeFeatureDataset(dir: string, features: Float32Array, dim: number, numClasses: number, rowsPerShard = 64): Promise<string[]> {
  const n = features.length / dim;
  const ids = Array.from({ length: n }, (_, i) => `s${i}`);
  const writer = await ShardWriter.create({ dir, schema: datasetSchema({ shape: [dim], input: 'features', labels: 'single', numClasses }), rowsPerShard });
  writer.append({ id: ids, split: ids.map((_, i) => (i % 2 ? 'test' : 'train')), label: Int32Array.from(ids, (_, i) => i % numClasses), features }, n);
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
export function linearLogits(x: Float32Array, w: Float32Array, b: Float32Array, dim: number, classes: number): Float64Array {
  const n = x.length / dim;
  const out = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) for (let c = 0; c < classes; c++) {
    let s = b[c]!;
    for (let k = 0; k < dim; k++) s += x[i * dim + k]! * w[k * classes + c]!;
    out[i * classes + c] = s;
  }
  return out;
}
