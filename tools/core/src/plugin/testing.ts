/**
 * Calling a plugin's `run` without the runner, for plugin tests: a StageContext like the one the
 * worker builds. Params get the schema's defaults and are checked against it, as the loader does,
 * and path params are made absolute against pipelineDir, as the runner does.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Static, TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { InputArtifact, PluginDefinition, StageContext } from './contract.js';
import { findPathParams, withAbsolutePaths } from './path-params.js';

export interface TestContextOptions {
  outDir: string;
  /** Default: a `state` directory next to outDir. */
  stateDir?: string;
  /** Default: outDir. */
  pipelineDir?: string;
  /** Input name -> one directory, several directories, or artifacts with their stage ids. */
  inputs?: Record<string, string | string[] | InputArtifact[]>;
  stageId?: string;
  cpus?: number;
  gpus?: number[];
  signal?: AbortSignal;
}

/** What the plugin reported through the context. */
export interface TestContextRecord {
  progress: Array<[number, number | undefined]>;
  metrics: Array<{ name: string; value: number; step?: number }>;
  infos: string[];
  warnings: string[];
}

export function makeTestContext<S extends TSchema>(
  plugin: PluginDefinition<S>,
  raw: Record<string, unknown>,
  options: TestContextOptions,
): { ctx: StageContext<Static<S>>; record: TestContextRecord } {
  const params = Value.Default(plugin.params, structuredClone(raw)) as Static<S>;
  if (!Value.Check(plugin.params, params)) {
    const first = [...Value.Errors(plugin.params, params)][0];
    throw new Error(`params of ${plugin.name} invalid: ${first?.path} ${first?.message}`);
  }
  const pipelineDir = options.pipelineDir ?? options.outDir;
  const resolved = withAbsolutePaths(params, findPathParams(plugin.params, params, pipelineDir));
  const stateDir = options.stateDir ?? join(options.outDir, '..', 'state');
  mkdirSync(options.outDir, { recursive: true });
  mkdirSync(stateDir, { recursive: true });
  const inputs: Record<string, InputArtifact[]> = {};
  for (const [name, value] of Object.entries(options.inputs ?? {})) {
    const list = Array.isArray(value) ? value : [value];
    inputs[name] = list.map((v) => (typeof v === 'string' ? { stage: name, path: v } : v));
  }
  const record: TestContextRecord = { progress: [], metrics: [], infos: [], warnings: [] };
  const ctx: StageContext<Static<S>> = {
    stageId: options.stageId ?? 'test-stage',
    pipeline: 'test',
    params: resolved,
    inputs,
    input(name) {
      const list = inputs[name];
      if (!list || list.length !== 1) throw new Error(`no single input named "${name}"`);
      return (list[0] as InputArtifact).path;
    },
    outDir: options.outDir,
    stateDir,
    pipelineDir,
    devices: { cpus: options.cpus ?? 1, gpus: options.gpus ?? [] },
    log: { info: (m) => void record.infos.push(m), warn: (m) => void record.warnings.push(m), debug() {} },
    progress: (done, total) => void record.progress.push([done, total]),
    metric: (name, value, step) => void record.metrics.push({ name, value, ...(step !== undefined ? { step } : {}) }),
    signal: options.signal ?? new AbortController().signal,
  };
  return { ctx, record };
}
