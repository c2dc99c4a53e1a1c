/**
 * The pipeline lock file (like dvc.lock): `locks/<pipeline>.lock.json` under the project root,
 * written by `distill run`, meant to be committed. For each stage it holds the cache key, the
 * params and the metrics of its last successful execution; outputs stay in the store. Because it
 * is in git, `distill metrics diff HEAD~1` and `distill params diff HEAD~1` can compare commits.
 *
 * The file holds no run id or time, so a run that changed nothing leaves it byte-identical (and
 * it is not rewritten), and its keys are sorted so diffs between commits stay small.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalJson } from '../cache/hash.js';
import type { Pipeline } from '../pipeline/model.js';
import { writeFileAtomicSync } from '../util/fs.js';
import type { RunRecord } from './record.js';

export const LOCK_FORMAT = 'distill-lock';

/** One stage's entry: what produced its current output and what that output measured. */
export interface LockedStage {
  plugin: string;
  key: string;
  /** Output tree hash (content of out/<pipeline>/<stage>). */
  tree: string;
  /** Validated params with defaults (paths as written), as in the cache key. */
  params: unknown;
  metrics: Record<string, number>;
}

export interface LockFile {
  format: typeof LOCK_FORMAT;
  version: 1;
  pipeline: string;
  /** Stage instance id -> entry, for every stage that has completed at least once. */
  stages: Record<string, LockedStage>;
}

/** locks/<pipeline>.lock.json, relative to the project root (the same path in git). */
export function lockFileRelativePath(pipelineName: string): string {
  return join('locks', `${pipelineName}.lock.json`);
}

/** Parses a lock file's text; errors name `source` (a path, or rev:path for git). */
export function parseLockFile(text: string, source: string): LockFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: malformed JSON (${(error as Error).message})`);
  }
  const lock = value as Partial<LockFile> | null;
  if (!lock || lock.format !== LOCK_FORMAT || typeof lock.stages !== 'object' || lock.stages === null) {
    throw new Error(`${source}: not a distill lock file (expected "format": "${LOCK_FORMAT}" and "stages")`);
  }
  if (lock.version !== 1)
    throw new Error(
      `${source}: lock file version ${String(lock.version)} is not supported (this build reads version 1)`,
    );
  return lock as LockFile;
}

export function readLockFile(root: string, pipelineName: string): LockFile | undefined {
  const path = join(root, lockFileRelativePath(pipelineName));
  if (!existsSync(path)) return undefined;
  return parseLockFile(readFileSync(path, 'utf8'), path);
}

/**
 * The lock after a run: stages that ran or were served from the cache take this run's key, params
 * and metrics; a stage that failed or was skipped keeps its previous entry (its output in out/ is
 * still the previous one); stages no longer in the pipeline are dropped.
 */
export function updatedLock(previous: LockFile | undefined, pipeline: Pipeline, record: RunRecord): LockFile {
  const stages: Record<string, LockedStage> = {};
  for (const stage of pipeline.stages) {
    const done = record.stages.find((s) => s.id === stage.id);
    if (done && (done.status === 'ran' || done.status === 'cached') && done.key && done.tree) {
      stages[stage.id] = {
        plugin: stage.plugin.name,
        key: done.key,
        tree: done.tree,
        params: stage.params,
        metrics: done.metrics,
      };
    } else if (previous?.stages[stage.id]) {
      stages[stage.id] = previous.stages[stage.id] as LockedStage;
    }
  }
  return { format: LOCK_FORMAT, version: 1, pipeline: pipeline.name, stages };
}

/** Writes the lock (atomically) when its content changed; returns its path. */
export function writeLockFile(root: string, pipeline: Pipeline, record: RunRecord): string {
  const path = join(root, lockFileRelativePath(pipeline.name));
  const previous = existsSync(path) ? safeRead(path) : undefined;
  const next = updatedLock(previous, pipeline, record);
  // Canonical JSON sorts keys; re-indented for people and line-based diffs.
  const text = `${JSON.stringify(JSON.parse(canonicalJson(next)), null, 1)}\n`;
  if (!existsSync(path) || readFileSync(path, 'utf8') !== text) writeFileAtomicSync(path, text);
  return path;
}

/** A lock file that cannot be read is replaced rather than failing the run that just finished. */
function safeRead(path: string): LockFile | undefined {
  try {
    return parseLockFile(readFileSync(path, 'utf8'), path);
  } catch {
    return undefined;
  }
}
