/**
 * The shared artifact store: the same content-addressed layout as the local store, on any
 * ObjectBackend.
 *
 *   <root>/objects/ab/cdef...     file contents by sha256
 *   <root>/trees/<hash>.json      TreeManifest of a stage output
 *   <root>/cache/ab/<key>.json    CacheEntry: stage key -> output tree
 *
 * Publishing uploads objects, then the tree, then the cache entry: the entry is the commit point,
 * so an interrupted upload leaves objects nobody refers to and nothing a reader trusts. Fetching
 * trusts nothing it reads: the entry must hash to its key, the tree to its hash, and every object
 * to its sha256 and size, checked while it streams into the local store's temporary directory
 * and before it is renamed into place.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { cacheKey } from '../cache/key.js';
import { hashTreeManifest, type TreeFile, type TreeManifest } from '../cache/hash.js';
import type { CacheEntry, LocalStore, RemoteStore } from '../cache/store.js';
import { writeFileAtomic } from '../util/fs.js';
import { getText, type ObjectBackend } from './backend.js';
import { IntegrityError } from '../errors.js';

/** Transfers at once per stage output. */
const CONCURRENCY = 4;

export const remoteKeys = {
  object: (hash: string): string => `objects/${hash.slice(0, 2)}/${hash.slice(2)}`,
  tree: (hash: string): string => `trees/${hash}.json`,
  entry: (key: string): string => `cache/${key.slice(0, 2)}/${key}.json`,
};

export class ContentRemoteStore implements RemoteStore {
  constructor(readonly backend: ObjectBackend) {}

  describe(): string {
    return this.backend.describe();
  }

  /** True when the store holds a committed cache entry for `key` (nothing is downloaded). */
  async has(key: string): Promise<boolean> {
    return (await this.backend.size(remoteKeys.entry(key))) !== undefined;
  }

  async pull(key: string, local: LocalStore): Promise<boolean> {
    const entryKey = remoteKeys.entry(key);
    const entryText = await getText(this.backend, entryKey);
    if (entryText === undefined) return false;
    const entry = this.parseEntry(entryText, key);
    const treeKey = remoteKeys.tree(entry.tree);
    const treeText = await getText(this.backend, treeKey);
    if (treeText === undefined)
      throw new Error(
        `${this.backend.url(entryKey)} names output tree ${entry.tree}, which ${this.describe()} lacks (${treeKey})`,
      );
    const tree = this.parseTree(treeText, entry.tree);
    await mkdir(local.tmpDir, { recursive: true });
    await forEachLimit(tree.files, CONCURRENCY, async (file) => {
      // A local copy is reused only if it verifies; a damaged one is quarantined and downloaded again.
      if (!existsSync(local.objectPath(file.hash)) || local.verifyObject(file) !== 'ok')
        await this.fetchObject(file, local);
    });
    // Tree, then entry: the local store trusts an entry only when its tree and objects are there.
    await writeFileAtomic(join(local.treesDir, `${entry.tree}.json`), JSON.stringify(tree));
    await local.writeEntry(entry);
    return true;
  }

  async push(key: string, local: LocalStore): Promise<void> {
    const entry = local.readEntry(key);
    if (!entry)
      throw new Error(
        `cannot publish cache entry ${key} to ${this.describe()}: the local store has no complete entry for it`,
      );
    if (await this.has(key)) return;
    const tree = local.readTree(entry.tree) as TreeManifest;
    await forEachLimit(uniqueByHash(tree.files), CONCURRENCY, async (file) => {
      const objectKey = remoteKeys.object(file.hash);
      // A same-sized object is taken as present; a wrong size (say, a truncated leftover) is replaced.
      if ((await this.backend.size(objectKey)) === file.size) return;
      await this.backend.putFile(objectKey, local.objectPath(file.hash), file.size);
    });
    const treeKey = remoteKeys.tree(entry.tree);
    if ((await this.backend.size(treeKey)) === undefined) await this.backend.putText(treeKey, JSON.stringify(tree));
    await this.backend.putText(remoteKeys.entry(key), JSON.stringify(entry, null, 1));
  }

  private parseEntry(text: string, key: string): CacheEntry {
    const url = this.backend.url(remoteKeys.entry(key));
    let entry: CacheEntry;
    try {
      entry = JSON.parse(text) as CacheEntry;
    } catch (error) {
      throw new IntegrityError(`${url}: cache entry is not valid JSON (${(error as Error).message}); it is not used`);
    }
    if (
      !entry ||
      typeof entry !== 'object' ||
      entry.key !== key ||
      typeof entry.tree !== 'string' ||
      !/^[0-9a-f]{64}$/.test(entry.tree) ||
      !entry.parts
    ) {
      throw new IntegrityError(`${url}: malformed cache entry (expected key ${key} and a tree hash); it is not used`);
    }
    if (cacheKey(entry.parts) !== key)
      throw new IntegrityError(`${url}: the entry's key parts do not hash to ${key} (tampered with?); it is not used`);
    return entry;
  }

  private parseTree(text: string, hash: string): TreeManifest {
    const url = this.backend.url(remoteKeys.tree(hash));
    let tree: TreeManifest;
    try {
      tree = JSON.parse(text) as TreeManifest;
    } catch (error) {
      throw new IntegrityError(`${url}: tree is not valid JSON (${(error as Error).message}); it is not used`);
    }
    const wellFormed =
      tree &&
      Array.isArray(tree.files) &&
      tree.files.every(
        (f) =>
          typeof f.path === 'string' &&
          safeRelativePath(f.path) &&
          typeof f.hash === 'string' &&
          /^[0-9a-f]{64}$/.test(f.hash) &&
          Number.isSafeInteger(f.size) &&
          f.size >= 0,
      );
    if (!wellFormed) throw new IntegrityError(`${url}: malformed tree manifest; it is not used`);
    if (hashTreeManifest(tree) !== hash)
      throw new IntegrityError(`${url}: tree content does not hash to ${hash} (tampered with?); it is not used`);
    return tree;
  }

  /** Streams one object into the local store, hashing as it goes; renamed into place only if it checks out. */
  private async fetchObject(file: TreeFile, local: LocalStore): Promise<void> {
    const key = remoteKeys.object(file.hash);
    const url = this.backend.url(key);
    const source = await this.backend.get(key);
    if (!source) throw new Error(`${url}: object missing from ${this.describe()} (needed for ${file.path})`);
    const target = local.objectPath(file.hash);
    const temp = join(
      local.tmpDir,
      `pull-${file.hash.slice(0, 16)}-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    );
    const hash = createHash('sha256');
    let size = 0;
    const check = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        // Stop early on an object that is longer than it should be, rather than download it all.
        if (size > file.size) {
          callback(
            new IntegrityError(
              `${url}: object is longer than the ${file.size} bytes its tree records (tampered with?); it is not used`,
            ),
          );
          return;
        }
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    try {
      await pipeline(source, check, createWriteStream(temp, { mode: 0o600 }));
      if (size !== file.size) {
        throw new IntegrityError(
          `${url}: object is truncated (${size} of ${file.size} bytes) or damaged; it is not used`,
        );
      }
      const actual = hash.digest('hex');
      if (actual !== file.hash) {
        throw new IntegrityError(
          `${url}: content hash is ${actual}, expected ${file.hash} (tampered with or corrupted); it is not used`,
        );
      }
      await chmod(temp, file.exec ? 0o555 : 0o444);
      await mkdir(dirname(target), { recursive: true });
      await rename(temp, target);
      await local.recordObject(file.hash);
    } catch (error) {
      await rm(temp, { force: true });
      if (error instanceof IntegrityError) throw error;
      throw new Error(`${url}: download failed: ${(error as Error).message}`);
    }
  }
}

/** Runs `fn` over `items` with at most `limit` at once; the first failure is thrown after all settle. */
export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failure) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}

function uniqueByHash(files: TreeFile[]): TreeFile[] {
  const seen = new Map<string, TreeFile>();
  for (const file of files) if (!seen.has(file.hash)) seen.set(file.hash, file);
  return [...seen.values()];
}

/** A tree path must stay inside the output directory when materialised. */
function safeRelativePath(path: string): boolean {
  return (
    path.length > 0 &&
    !path.startsWith('/') &&
    !path.split('/').some((part) => part === '' || part === '.' || part === '..')
  );
}
