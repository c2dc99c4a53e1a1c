/**
 * `distill verify`: re-hashes every object of the store (ignoring the hash cache) and checks that
 * every cache entry's tree and objects are present. Bad objects are reported, and with
 * `quarantine` moved to .distill/store/quarantine/, after which the entries naming them are misses
 * and their stages rerun.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { hashFileContent } from '../cache/hash.js';
import type { CacheEntry } from '../cache/store.js';
import type { Workspace } from '../runner/workspace.js';

export interface VerifyResult {
  /** Objects re-hashed. */
  objects: number;
  bytes: number;
  /** Objects whose content does not hash to their name. */
  corrupt: Array<{ hash: string; actual: string; quarantinedTo?: string }>;
  /** Cache entries whose tree or objects are missing or corrupt: key, stage and what is wrong. */
  brokenEntries: Array<{ key: string; stage: string; problem: string }>;
}

function list(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

export async function verifyStore(ws: Workspace, options: { quarantine: boolean }): Promise<VerifyResult> {
  const store = ws.store;
  const result: VerifyResult = { objects: 0, bytes: 0, corrupt: [], brokenEntries: [] };
  const bad = new Set<string>();
  for (const prefix of list(store.objectsDir)) {
    for (const rest of list(join(store.objectsDir, prefix))) {
      const hash = prefix + rest;
      const path = join(store.objectsDir, prefix, rest);
      const stats = statSync(path);
      const actual = await hashFileContent(path);
      result.objects++;
      result.bytes += stats.size;
      if (actual === hash) {
        ws.hashes.remember(path, stats, hash);
        continue;
      }
      bad.add(hash);
      const quarantinedTo = options.quarantine ? store.quarantine(hash) : undefined;
      result.corrupt.push({ hash, actual, ...(quarantinedTo ? { quarantinedTo } : {}) });
    }
  }
  for (const shard of list(store.cacheDir)) {
    for (const name of list(join(store.cacheDir, shard))) {
      let entry: CacheEntry;
      try {
        entry = JSON.parse(readFileSync(join(store.cacheDir, shard, name), 'utf8')) as CacheEntry;
      } catch (error) {
        result.brokenEntries.push({
          key: name.replace(/\.json$/, ''),
          stage: '?',
          problem: `unreadable entry: ${(error as Error).message}`,
        });
        continue;
      }
      const tree = store.readTree(entry.tree);
      if (!tree) {
        result.brokenEntries.push({
          key: entry.key,
          stage: entry.stage,
          problem: `tree ${entry.tree.slice(0, 12)} is missing`,
        });
        continue;
      }
      const problems: string[] = [];
      for (const file of tree.files) {
        if (bad.has(file.hash)) problems.push(`${file.path}: object ${file.hash.slice(0, 12)} is corrupt`);
        else if (!existsSync(store.objectPath(file.hash)))
          problems.push(`${file.path}: object ${file.hash.slice(0, 12)} is missing`);
        else if (statSync(store.objectPath(file.hash)).size !== file.size)
          problems.push(`${file.path}: object ${file.hash.slice(0, 12)} has the wrong size`);
      }
      if (problems.length > 0)
        result.brokenEntries.push({ key: entry.key, stage: entry.stage, problem: problems.join('; ') });
    }
  }
  ws.hashes.save();
  return result;
}
