/** Test fixtures of the eval stage: a hand-made stage context, seeded data, small ONNX models. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TSchema, Static } from '@sinclair/typebox';
import {
  makeTestContext,
  type InputArtifact,
  type PluginDefinition,
  type StageContext,
  type TestContextRecord,
} from '@distillery/core';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';
import { Rng } from '@distillery/runtime/rng';

/** Seeded uniform [0, 1) stream (the project's Rng). */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

export type { TestContextRecord as CtxRecord } from '@distillery/core';

/** A StageContext like the runner's (core's makeTestContext). */
export function makeCtx<S extends TSchema>(
  plugin: PluginDefinition<S>,
  raw: Record<string, unknown>,
  dirs: { outDir: string; pipelineDir: string; inputs: Record<string, InputArtifact[]>; cpus?: number },
): { ctx: StageContext<Static<S>>; record: TestContextRecord } {
  return makeTestContext(plugin, raw, { ...dirs, stageId: 'eval-stage' });
}

/** Linear classifier logits = x W (+ b), W [dim, classes], written as dir/model.onnx. */
export function writeLinearModel(
  dir: string,
  w: Float32Array,
  b: Float32Array | undefined,
  dim: number,
  classes: number,
): void {
  mkdirSync(dir, { recursive: true });
  const builder = new GraphBuilder('linear').input('x', 'float32', ['batch', dim]).initializer('W', w, [dim, classes]);
  if (b) builder.initializer('b', b, [classes]);
  const model = builder
    .node('Gemm', b ? ['x', 'W', 'b'] : ['x', 'W'], ['logits'])
    .output('logits', 'float32', ['batch', classes])
    .build();
  writeModelFile(join(dir, 'model.onnx'), model);
}

/** Float64 logits of the linear model, n x classes. */
export function linearLogits(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | undefined,
  dim: number,
  classes: number,
): Float64Array {
  const n = x.length / dim;
  const out = new Float64Array(n * classes);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < classes; c++) {
      let s = b ? b[c]! : 0;
      for (let k = 0; k < dim; k++) s += x[i * dim + k]! * w[k * classes + c]!;
      out[i * classes + c] = s;
    }
  return out;
}

/** Row-wise softmax of an n x c matrix (float64). */
export function softmaxRows(z: Float64Array, c: number): Float64Array {
  const out = new Float64Array(z.length);
  for (let off = 0; off < z.length; off += c) {
    const m = Math.max(...z.subarray(off, off + c));
    let s = 0;
    for (let j = 0; j < c; j++) s += out[off + j] = Math.exp(z[off + j]! - m);
    for (let j = 0; j < c; j++) out[off + j]! /= s;
  }
  return out;
}
