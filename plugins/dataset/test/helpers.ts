/** Test fixtures: a stage context like the runner's. */
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
