/** Test fixtures: a stage context like the runner's, IDX files. */
import type { TSchema, Static } from '@sinclair/typebox';
import { makeTestContext, type PluginDefinition, type StageContext, type TestContextRecord } from '@distillery/core';

/** A StageContext like the runner's (core's makeTestContext). */
export function makeCtx<S extends TSchema>(
  plugin: PluginDefinition<S>,
  raw: Record<string, unknown>,
  dirs: { outDir: string; pipelineDir: string },
): { ctx: StageContext<Static<S>>; record: TestContextRecord } {
  return makeTestContext(plugin, raw, { outDir: dirs.outDir, pipelineDir: dirs.pipelineDir, inputs: {} });
}

/** An IDX file: magic (element type, dim count), big-endian dims, then the data. */
export function idx(type: number, dims: number[], data: Uint8Array): Buffer {
  const h = Buffer.alloc(4 + 4 * dims.length);
  h[2] = type;
  h[3] = dims.length;
  dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([h, Buffer.from(data)]);
}
