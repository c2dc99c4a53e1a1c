/** Test fixtures of the eval stage: a hand-made stage context, seeded data, small ONNX models. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import type { TSchema, Static } from '@sinclair/typebox';
import type { InputArtifact, PluginDefinition, StageContext } from '@distillery/core';
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

/** A StageContext like the runner's: params validated with defaults applied; inputs as lists of artifacts. */
export function makeCtx<S extends TSchema>(
  plugin: PluginDefinition<S>,
  raw: Record<string, unknown>,
  dirs: { outDir: string; pipelineDir: string; inputs: Record<string, InputArtifact[]>; cpus?: number },
): { ctx: StageContext<Static<S>>; record: CtxRecord } {
  const params = Value.Default(plugin.params, structuredClone(raw)) as Static<S>;
  if (!Value.Check(plugin.params, params)) {
    const first = [...Value.Errors(plugin.params, params)][0];
    throw new Error(`params invalid: ${first?.path} ${first?.message}`);
  }
  mkdirSync(dirs.outDir, { recursive: true });
  const record: CtxRecord = { progress: [], warnings: [] };
  const inputs = dirs.inputs;
  const ctx: StageContext<Static<S>> = {
    stageId: 'eval-stage', pipeline: 'test', params, inputs,
    input(name: string) {
      const list = inputs[name];
      if (!list || list.length !== 1) throw new Error(`no single input ${name}`);
      return list[0]!.path;
    },
    outDir: dirs.outDir, stateDir: join(dirs.outDir, '..', 'state'), pipelineDir: dirs.pipelineDir,
    devices: { cpus: dirs.cpus ?? 1, gpus: [] },
    log: { info() {}, warn: (m: string) => void record.warnings.push(m), debug() {} },
    progress: (done: number, total?: number) => void record.progress.push([done, total]),
    metric() {},
    signal: new AbortController().signal,
  };
  return { ctx, record };
}

/** Linear classifier logits = x W (+ b), W [dim, classes], written as dir/model.onnx. */
export function writeLinearModel(dir: string, w: Float32Array, b: Float32Array | undefined, dim: number, classes: number): void {
  mkdirSync(dir, { recursive: true });
  const builder = new GraphBuilder('linear').input('x', 'float32', ['batch', dim]).initializer('W', w, [dim, classes]);
  if (b) builder.initializer('b', b, [classes]);
  const model = builder.node('Gemm', b ? ['x', 'W', 'b'] : ['x', 'W'], ['logits']).output('logits', 'float32', ['batch', classes]).build();
  writeModelFile(join(dir, 'model.onnx'), model);
}

/** Float64 logits of the linear model, n x classes. */
export function linearLogits(x: Float32Array, w: Float32Array, b: Float32Array | undefined, dim: number, classes: number): Float64Array {
  const n = x.length / dim;
  const out = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) for (let c = 0; c < classes; c++) {
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
    for (let j = 0; j < c; j++) s += (out[off + j] = Math.exp(z[off + j]! - m));
    for (let j = 0; j < c; j++) out[off + j]! /= s;
  }
  return out;
}
