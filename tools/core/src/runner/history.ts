/**
 * Run history as data: what each recorded run of a pipeline used (params per stage) and measured
 * (metrics per stage), from the run records in .distill/runs and the cache entries they name, or
 * from a lock file (the working copy's or one in git). Used by `distill runs`, `metrics diff`,
 * `params diff` and `distill ui`.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { CacheEntry } from '../cache/store.js';
import { lockFileRelativePath, parseLockFile, readLockFile } from './lock.js';
import { readRunRecords, type RunRecord } from './record.js';
import type { Workspace } from './workspace.js';

/** One stage as a snapshot knows it. */
export interface SnapshotStage {
  /** Validated params; absent when unknown (a failed stage, or its cache entry is gone). */
  params?: unknown;
  metrics: Record<string, number>;
  key?: string;
  status?: string;
}

/** The params and metrics of one pipeline at one point: a run, or a lock file. */
export interface Snapshot {
  /** A run id, or "<rev>:locks/<pipeline>.lock.json", or the lock's path. */
  label: string;
  pipeline: string;
  stages: Record<string, SnapshotStage>;
}

/** A flattened value: "stage.a.b" -> JSON text of the value. */
export type Flat = Map<string, string>;

/** Params of a cache entry, read without verifying its objects (only the params are wanted). */
function entryParams(ws: Workspace, key: string | undefined): unknown {
  if (!key) return undefined;
  try {
    return (JSON.parse(readFileSync(ws.store.entryPath(key), 'utf8')) as CacheEntry).parts.params;
  } catch {
    return undefined;
  }
}

export function snapshotOfRun(ws: Workspace, record: RunRecord): Snapshot {
  const stages: Record<string, SnapshotStage> = {};
  for (const s of record.stages) {
    const done = s.status === 'ran' || s.status === 'cached';
    stages[s.id] = {
      metrics: s.metrics,
      status: s.status,
      ...(s.key ? { key: s.key } : {}),
      ...(done ? { params: entryParams(ws, s.key) } : {}),
    };
  }
  return { label: record.runId, pipeline: record.pipeline, stages };
}

/** Params of every stage flattened to "stage.path" (arrays as one JSON value). */
export function flattenParams(snapshot: Snapshot): Flat {
  const flat: Flat = new Map();
  const walk = (value: unknown, path: string): void => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) walk(v, `${path}.${k}`);
    } else flat.set(path, JSON.stringify(value));
  };
  for (const [id, stage] of Object.entries(snapshot.stages)) if (stage.params !== undefined) walk(stage.params, id);
  return flat;
}

/** Metrics of every stage as "stage.metric" -> value. */
export function flattenMetrics(snapshot: Snapshot): Map<string, number> {
  const flat = new Map<string, number>();
  for (const [id, stage] of Object.entries(snapshot.stages))
    for (const [name, v] of Object.entries(stage.metrics)) flat.set(`${id}.${name}`, v);
  return flat;
}

/** One row of a diff: a name, its value in A and in B (undefined: absent there). */
export interface DiffRow<T> {
  name: string;
  a: T | undefined;
  b: T | undefined;
}

/**
 * Names whose value differs between A and B (all names with `all`), sorted. For params, a stage
 * whose params one side does not know (failed there) is left out rather than shown as removed.
 */
export function diffMaps<T>(a: Map<string, T>, b: Map<string, T>, all = false): DiffRow<T>[] {
  const names = [...new Set([...a.keys(), ...b.keys()])].sort();
  return names.map((name) => ({ name, a: a.get(name), b: b.get(name) })).filter((r) => all || r.a !== r.b);
}

/** Params changed from `previous` to `current`, as "stage.path=value" (only stages both know). */
export function changedParams(previous: Snapshot, current: Snapshot): string[] {
  const known = (s: Snapshot) =>
    new Set(
      Object.entries(s.stages)
        .filter(([, v]) => v.params !== undefined)
        .map(([k]) => k),
    );
  const both = new Set([...known(previous)].filter((id) => known(current).has(id)));
  const stageOf = (name: string) => name.slice(0, name.indexOf('.'));
  return diffMaps(flattenParams(previous), flattenParams(current))
    .filter((r) => both.has(stageOf(r.name)))
    .map((r) => `${r.name}=${r.b ?? 'unset'}`);
}

/** What a snapshot reference names; errors list what would have been accepted. */
export interface ResolveOptions {
  ws: Workspace;
  /** Pipeline name; needed for lock files. */
  pipeline?: string;
}

/**
 * A reference to a snapshot: a run id (or a unique prefix of one), "lock" (the working copy's lock
 * file), or a git revision (its committed lock file).
 */
export function resolveSnapshot(ref: string, options: ResolveOptions): Snapshot {
  const { ws } = options;
  const records = readRunRecords(ws.runsDir(), options.pipeline);
  const exact = records.find((r) => r.runId === ref);
  const prefixed = records.filter((r) => r.runId.startsWith(ref));
  if (exact) return snapshotOfRun(ws, exact);
  if (prefixed.length === 1) return snapshotOfRun(ws, prefixed[0] as RunRecord);
  if (prefixed.length > 1)
    throw new Error(`run id prefix "${ref}" is ambiguous: ${prefixed.map((r) => r.runId).join(', ')}`);
  const pipeline = options.pipeline;
  if (!pipeline) throw new Error(`"${ref}" is not a run id and no pipeline is known to read a lock file for`);
  const path = lockFileRelativePath(pipeline);
  if (ref === 'lock') {
    const lock = readLockFile(ws.root, pipeline);
    if (!lock) throw new Error(`${path} does not exist (distill run writes it)`);
    return snapshotOfLock(lock, path);
  }
  let text: string;
  try {
    text = execFileSync('git', ['show', `${ref}:${path}`], {
      cwd: ws.root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    const why = ((error as { stderr?: string }).stderr ?? '').trim().split('\n')[0] ?? '';
    throw new Error(
      `"${ref}" is neither a run of ${pipeline} (distill runs lists them) nor a git revision holding ${path}${why ? ` (git: ${why})` : ''}`,
    );
  }
  return snapshotOfLock(parseLockFile(text, `${ref}:${path}`), `${ref}:${path}`);
}

function snapshotOfLock(lock: ReturnType<typeof parseLockFile>, label: string): Snapshot {
  const stages: Record<string, SnapshotStage> = {};
  for (const [id, s] of Object.entries(lock.stages)) stages[id] = { params: s.params, metrics: s.metrics, key: s.key };
  return { label, pipeline: lock.pipeline, stages };
}

/**
 * The two snapshots a diff compares: given refs, or by default the pipeline's last run (B) and the
 * one before it (A). With one ref: that ref (A) against the last run (B).
 */
export function diffPair(ws: Workspace, refs: string[], pipeline?: string): [Snapshot, Snapshot] {
  const records = readRunRecords(ws.runsDir(), pipeline);
  const name = pipeline ?? records[0]?.pipeline;
  if (refs.length > 2) throw new Error(`at most two runs or revisions to compare, got ${refs.length}`);
  if (refs.length === 2)
    return [
      resolveSnapshot(refs[0] as string, { ws, pipeline: name }),
      resolveSnapshot(refs[1] as string, { ws, pipeline: name }),
    ];
  const last = records.find((r) => r.pipeline === name);
  if (!last) throw new Error(`no runs recorded${pipeline ? ` for pipeline ${pipeline}` : ''} in ${ws.runsDir()}`);
  if (refs.length === 1) return [resolveSnapshot(refs[0] as string, { ws, pipeline: name }), snapshotOfRun(ws, last)];
  const previous = records.filter((r) => r.pipeline === name)[1];
  if (!previous) throw new Error(`pipeline ${name} has one recorded run (${last.runId}); nothing to compare it with`);
  return [snapshotOfRun(ws, previous), snapshotOfRun(ws, last)];
}
