/**
 * Garbage collection of the store: temporary directories of dead runs, and objects and trees no
 * cache entry references. Refuses to run while another distill process holds a stage lock.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import type { CacheEntry } from '../cache/store.js';
import { readRunRecords } from '../runner/record.js';
import type { Workspace } from '../runner/workspace.js';

export interface GcResult {
  objects: number;
  trees: number;
  entries: number;
  tmp: number;
  bytes: number;
}

function list(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

export async function collectGarbage(ws: Workspace, options: { workspaceOnly: boolean; dryRun: boolean }): Promise<GcResult> {
  const locksDir = join(ws.stateRoot, 'locks');
  for (const name of list(locksDir).filter((n) => !n.endsWith('.lock'))) {
    if (await lockfile.check(join(locksDir, name), { realpath: false, stale: 10_000 })) {
      throw new Error('another distill run is in progress (a stage lock is held); run gc when it has finished');
    }
  }
  const result: GcResult = { objects: 0, trees: 0, entries: 0, tmp: 0, bytes: 0 };
  const remove = async (path: string): Promise<void> => {
    if (!options.dryRun) await rm(path, { recursive: true, force: true });
  };
  for (const name of list(ws.store.tmpDir)) {
    result.tmp++;
    await remove(join(ws.store.tmpDir, name));
  }
  // Staging directories of materialisations a kill interrupted: out/<pipeline>/<stage>.tmp-*.
  const outDir = join(ws.root, 'out');
  for (const pipeline of list(outDir)) {
    for (const name of list(join(outDir, pipeline)).filter((n) => /\.tmp-\d+-[0-9a-f]+$/.test(n))) {
      result.tmp++;
      await remove(join(outDir, pipeline, name));
    }
  }
  // Keys the latest run of each pipeline used, when only those are kept.
  const keep = new Set<string>();
  if (options.workspaceOnly) {
    const latest = new Map<string, string[]>();
    for (const record of readRunRecords(ws.runsDir())) {
      if (!latest.has(record.pipeline)) latest.set(record.pipeline, record.stages.map((s) => s.key).filter((k): k is string => Boolean(k)));
    }
    latest.forEach((keys) => keys.forEach((k) => keep.add(k)));
  }
  const liveTrees = new Set<string>();
  for (const shard of list(ws.store.cacheDir)) {
    for (const name of list(join(ws.store.cacheDir, shard))) {
      const path = join(ws.store.cacheDir, shard, name);
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
  const liveObjects = new Set<string>();
  for (const name of list(ws.store.treesDir)) {
    const hash = name.replace(/\.json$/, '');
    if (liveTrees.has(hash)) {
      ws.store.readTree(hash)?.files.forEach((f) => liveObjects.add(f.hash));
    } else {
      result.trees++;
      await remove(join(ws.store.treesDir, name));
    }
  }
  for (const prefix of list(ws.store.objectsDir)) {
    for (const rest of list(join(ws.store.objectsDir, prefix))) {
      if (liveObjects.has(prefix + rest)) continue;
      const path = join(ws.store.objectsDir, prefix, rest);
      result.objects++;
      result.bytes += statSync(path).size;
      await remove(path);
    }
  }
  return result;
}
