/**
 * The planner: decides, without running anything, which stages are cached and which must run,
 * and why. The runner makes the same decisions as it goes (a stage whose upstream reran may still
 * hit the cache if that upstream produced the same output).
 */
import { explainKeyChange, type KeyParts } from '../cache/key.js';
import type { Pipeline, StageInstance } from '../pipeline/model.js';
import { readRunRecords } from './record.js';
import type { Workspace } from './workspace.js';

export interface PlanOptions {
  /** Stage names or instance ids to run even if cached. */
  force?: string[];
  /** Run this stage (name or instance id) and everything downstream of it, even if cached. */
  from?: string;
}

export interface PlannedStage {
  id: string;
  plugin: string;
  state: 'cached' | 'run';
  reason: string;
  /** Known when every upstream is cached. */
  key?: string;
  parts?: KeyParts;
  /** Output tree of the cache entry, for cached stages. */
  tree?: string;
}

/** Instance ids selected by names (a fan-out name selects all its instances). */
export function selectStages(pipeline: Pipeline, names: string[]): Set<string> {
  const selected = new Set<string>();
  for (const name of names) {
    const ids = pipeline.groups.get(name) ?? (pipeline.byId.has(name) ? [name] : undefined);
    if (!ids)
      throw new Error(
        `unknown stage "${name}" in ${pipeline.file} (stages: ${[...pipeline.groups.keys()].join(', ')})`,
      );
    ids.forEach((id) => selected.add(id));
  }
  return selected;
}

/** `ids` and every stage downstream of them. */
export function downstreamOf(pipeline: Pipeline, ids: Set<string>): Set<string> {
  const result = new Set(ids);
  for (const stage of pipeline.stages) if (stage.upstream.some((u) => result.has(u))) result.add(stage.id);
  return result;
}

export function forcedStages(pipeline: Pipeline, options: PlanOptions): Set<string> {
  const forced = selectStages(pipeline, options.force ?? []);
  if (options.from) downstreamOf(pipeline, selectStages(pipeline, [options.from])).forEach((id) => forced.add(id));
  return forced;
}

export async function planPipeline(
  ws: Workspace,
  pipeline: Pipeline,
  options: PlanOptions = {},
): Promise<PlannedStage[]> {
  const forced = forcedStages(pipeline, options);
  const planned = new Map<string, PlannedStage>();
  for (const stage of pipeline.stages) {
    const base = { id: stage.id, plugin: stage.plugin.name };
    const rerunning = stage.upstream.filter((u) => planned.get(u)?.state !== 'cached');
    if (rerunning.length > 0) {
      planned.set(stage.id, { ...base, state: 'run', reason: `upstream will run: ${rerunning.join(', ')}` });
      continue;
    }
    const parts = await ws.keyParts(stage, (id) => planned.get(id)?.tree as string);
    const key = ws.key(parts);
    const entry = ws.store.readEntry(key);
    const damage = ws.store.takeProblems();
    if (forced.has(stage.id)) planned.set(stage.id, { ...base, state: 'run', reason: 'forced', key, parts });
    else if (entry)
      planned.set(stage.id, { ...base, state: 'cached', reason: 'up to date', key, parts, tree: entry.tree });
    else if (damage.length > 0)
      planned.set(stage.id, {
        ...base,
        state: 'run',
        reason: `cached output failed verification: ${damage.join('; ')}`,
        key,
        parts,
      });
    else
      planned.set(stage.id, {
        ...base,
        state: 'run',
        reason: staleReason(ws, pipeline, stage, parts, planned.values()),
        key,
        parts,
      });
  }
  ws.hashes.save();
  return pipeline.stages.map((s) => planned.get(s.id) as PlannedStage);
}

/**
 * Keys of the cache entries a run will read if nothing changes on the way: each stage's key while
 * every upstream has an entry (read without verifying: this is for gc to keep them, not to serve).
 */
export async function plannedKeys(ws: Workspace, pipeline: Pipeline): Promise<string[]> {
  const trees = new Map<string, string>();
  const keys: string[] = [];
  for (const stage of pipeline.stages) {
    if (stage.upstream.some((u) => !trees.has(u))) continue;
    const key = ws.key(await ws.keyParts(stage, (id) => trees.get(id) as string));
    keys.push(key);
    const entry = ws.store.peekEntry(key);
    if (entry) trees.set(stage.id, entry.tree);
  }
  return keys;
}

/** Why a stage whose key has no cache entry is stale, compared with its last recorded execution. */
export function staleReason(
  ws: Workspace,
  pipeline: Pipeline,
  stage: StageInstance,
  parts: KeyParts,
  known?: Iterable<{ id: string; tree?: string }>,
): string {
  const previous = lastEntryFor(ws, pipeline.name, stage.id);
  if (!previous) return unfinishedReason(ws, pipeline.name, stage.id);
  // Output tree -> the stage that produced it, to name the upstream whose output changed.
  const names = new Map<string, string>();
  for (const p of known ?? []) if (p.tree) names.set(p.tree, p.id);
  const reasons = explainKeyChange(previous, parts, names);
  return reasons.length > 0 ? reasons.join('; ') : 'no cache entry for this key';
}

/**
 * Why a stage with no earlier cache entry runs: a first run ("never ran"), or the stage is being
 * resumed (its last attempt failed, was interrupted, or its run was killed), or rebuilt (it ran
 * before but its cache entry is gone, e.g. after `distill gc --workspace`).
 */
export function unfinishedReason(ws: Workspace, pipelineName: string, stageId: string): string {
  for (const record of readRunRecords(ws.runsDir(), pipelineName)) {
    const s = record.stages.find((x) => x.id === stageId);
    if (!s) continue;
    if (s.status === 'ran' || s.status === 'cached')
      return `rebuilding: its output of run ${record.runId} is no longer in the cache`;
    if (s.status === 'failed') {
      const interrupted = record.status === 'interrupted' || (s.error ?? '').startsWith('cancelled');
      return interrupted ? `resuming: interrupted in run ${record.runId}` : `retrying: failed in run ${record.runId}`;
    }
    // A record still "running" with this stage started (it has a log): that run was killed.
    if (s.log && record.status === 'running') return `resuming: run ${record.runId} stopped while it ran`;
  }
  return 'never ran';
}

/** Key parts of the most recent recorded execution (ran or cached) of a stage. */
export function lastEntryFor(ws: Workspace, pipelineName: string, stageId: string): KeyParts | undefined {
  for (const record of readRunRecords(ws.runsDir(), pipelineName)) {
    const stage = record.stages.find((s) => s.id === stageId && s.key && (s.status === 'ran' || s.status === 'cached'));
    if (!stage?.key) continue;
    const entry = ws.store.peekEntry(stage.key);
    if (entry) return entry.parts;
  }
  return undefined;
}
