/**
 * Garbage collection of the store: temporary files of dead processes, and objects and trees no
 * cache entry references; with `workspaceOnly`, also cache entries nothing keeps.
 *
 * Safe beside running pipelines (see runner/live.ts): gc holds .distill/locks/gc while it works,
 * and keeps
 * - temporary directories and files whose owner process is alive (the pid is in their names; a
 *   name without one is kept while any run is live);
 * - every cache entry, tree and object a live run has pinned (its plan's keys, the objects it is
 *   committing), and objects and trees changed in the last GRACE_MS while a run is live (a
 *   download from a shared store in progress);
 * - with workspaceOnly: the entries used by the latest finished run of each pipeline and by its
 *   latest finished run without `--set` overrides (the configuration its file describes).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheEntry } from '../cache/store.js';
import { lockForGc, processAlive, readLiveRuns, tempOwner } from '../runner/live.js';
import { readRunRecords, type RunRecord } from '../runner/record.js';
import type { Workspace } from '../runner/workspace.js';

/** Unreferenced objects younger than this are kept while a run is live (they may be mid-download). */
const GRACE_MS = 10 * 60_000;

export interface GcResult {
  objects: number;
  trees: number;
  entries: number;
  tmp: number;
  bytes: number;
  /** What was kept and why (one line each): the runs whose entries were kept, the live runs. */
  kept: string[];
}

function list(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

export async function collectGarbage(
  ws: Workspace,
  options: { workspaceOnly: boolean; dryRun: boolean },
): Promise<GcResult> {
  const release = await lockForGc(ws.stateRoot);
  try {
    return await collect(ws, options);
  } finally {
    await release();
  }
}

async function collect(ws: Workspace, options: { workspaceOnly: boolean; dryRun: boolean }): Promise<GcResult> {
  const live = readLiveRuns(ws.stateRoot);
  const result: GcResult = { objects: 0, trees: 0, entries: 0, tmp: 0, bytes: 0, kept: [] };
  const remove = async (path: string): Promise<void> => {
    if (!options.dryRun) await rm(path, { recursive: true, force: true });
  };
  /** A temporary file or directory may go when its owner is dead (or, unnamed, when no run is live). */
  const deadTemp = (name: string): boolean => {
    const owner = tempOwner(name);
    return owner === undefined ? live.length === 0 : !processAlive(owner);
  };
  for (const name of list(ws.store.tmpDir)) {
    if (!deadTemp(name)) continue;
    result.tmp++;
    await remove(join(ws.store.tmpDir, name));
  }
  // Staging directories of materialisations a kill interrupted: out/<pipeline>/<stage>.tmp-*.
  const outDir = join(ws.root, 'out');
  for (const pipeline of list(outDir)) {
    for (const name of list(join(outDir, pipeline)).filter((n) => tempOwner(n) !== undefined && n.includes('.tmp-'))) {
      if (!deadTemp(name)) continue;
      result.tmp++;
      await remove(join(outDir, pipeline, name));
    }
  }
  for (const run of live)
    result.kept.push(
      `live run ${run.runId} of ${run.pipeline} (pid ${run.pid}): ${run.keys.length} cache entries, ${run.objects.length} objects being stored`,
    );
  const keep = new Set(live.flatMap((run) => run.keys));
  if (options.workspaceOnly) {
    const latest = new Map<string, RunRecord>();
    const plain = new Map<string, RunRecord>();
    for (const record of readRunRecords(ws.runsDir())) {
      if (record.status === 'running') continue;
      if (!latest.has(record.pipeline)) latest.set(record.pipeline, record);
      if (!plain.has(record.pipeline) && !record.overrides?.length) plain.set(record.pipeline, record);
    }
    for (const [pipeline, record] of latest) {
      const keys = record.stages.map((s) => s.key).filter((k): k is string => Boolean(k));
      keys.forEach((k) => keep.add(k));
      result.kept.push(
        `latest run of ${pipeline} (${record.runId}${record.overrides?.length ? `, --set ${record.overrides.join(' ')}` : ''}): ${keys.length} cache entries`,
      );
      const configuration = plain.get(pipeline);
      if (configuration && configuration !== record) {
        const plainKeys = configuration.stages.map((s) => s.key).filter((k): k is string => Boolean(k));
        plainKeys.forEach((k) => keep.add(k));
        result.kept.push(
          `latest run of ${pipeline} without --set (${configuration.runId}): ${plainKeys.length} cache entries`,
        );
      }
    }
  }
  const liveTrees = new Set<string>();
  for (const shard of list(ws.store.cacheDir)) {
    for (const name of list(join(ws.store.cacheDir, shard))) {
      const path = join(ws.store.cacheDir, shard, name);
      if (!name.endsWith('.json')) {
        // A temporary file of an entry being written (writeFileAtomic).
        if (deadTemp(name)) await remove(path);
        continue;
      }
      try {
        const entry = JSON.parse(readFileSync(path, 'utf8')) as CacheEntry;
        if (options.workspaceOnly && !keep.has(entry.key)) {
          result.entries++;
          await remove(path);
        } else {
          liveTrees.add(entry.tree);
        }
      } catch {
        result.entries++;
        await remove(path);
      }
    }
  }
  const recent = (path: string): boolean => live.length > 0 && Date.now() - statSync(path).ctimeMs < GRACE_MS;
  const liveObjects = new Set<string>(live.flatMap((run) => run.objects));
  for (const name of list(ws.store.treesDir)) {
    const path = join(ws.store.treesDir, name);
    if (!name.endsWith('.json')) {
      if (deadTemp(name)) await remove(path);
      continue;
    }
    const hash = name.replace(/\.json$/, '');
    if (liveTrees.has(hash) || recent(path)) {
      ws.store.readTree(hash)?.files.forEach((f) => liveObjects.add(f.hash));
    } else {
      result.trees++;
      await remove(path);
    }
  }
  for (const prefix of list(ws.store.objectsDir)) {
    for (const rest of list(join(ws.store.objectsDir, prefix))) {
      const path = join(ws.store.objectsDir, prefix, rest);
      if (liveObjects.has(prefix + rest) || recent(path)) continue;
      result.objects++;
      result.bytes += statSync(path).size;
      await remove(path);
    }
  }
  if (live.length > 0)
    result.kept.push(
      `objects and trees changed in the last ${GRACE_MS / 60_000} minutes (a live run may be downloading them)`,
    );
  return result;
}
