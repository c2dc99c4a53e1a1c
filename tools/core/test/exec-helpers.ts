/** Runs generated pipelines in-process for the exec and Argo tests (only built-in + test plugins load). */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPipeline } from '../src/pipeline/load.js';
import type { Pipeline } from '../src/pipeline/model.js';
import { ModuleRegistry } from '../src/plugin/registry.js';
import type { ProgressSink } from '../src/runner/progress.js';
import type { RunRecord, StageRecord } from '../src/runner/record.js';
import { runPipeline, type RunOptions } from '../src/runner/run.js';
import { Workspace } from '../src/runner/workspace.js';

/** Compiled test plugin (tools/core/dist/test/plugins/concat.js). */
export const CONCAT = join(dirname(fileURLToPath(import.meta.url)), 'plugins', 'concat.js');

export const silent: ProgressSink = { started() {}, progress() {}, finished() {}, message() {}, close() {} };

export async function load(file: string, overrides: string[] = []): Promise<Pipeline> {
  // A root without node_modules/@distillery: only exec (built in) and plugins named by path load.
  const registry = await new ModuleRegistry(dirname(file)).init();
  return loadPipeline(file, { registry, overrides });
}

export async function runYaml(
  dir: string,
  yaml: string,
  options: Partial<RunOptions> = {},
): Promise<{ record: RunRecord; ws: Workspace; pipeline: Pipeline; stage(id: string): StageRecord }> {
  const file = join(dir, 'pipeline.yaml');
  writeFileSync(file, yaml);
  const pipeline = await load(file);
  const ws = new Workspace(dir);
  const record = await runPipeline(ws, pipeline, {
    machine: { cpus: 4, gpus: [], memoryMiB: 16_384 },
    progress: silent,
    ...options,
  });
  return {
    record,
    ws,
    pipeline,
    stage: (id) => {
      const found = record.stages.find((s) => s.id === id);
      if (!found) throw new Error(`no stage ${id} in the run record`);
      return found;
    },
  };
}
