/**
 * The content-addressed store inside the workspace (.distill/):
 *
 *   store/objects/ab/cdef...   file contents by sha256, read-only
 *   store/trees/<hash>.json    TreeManifest of a stage output
 *   cache/ab/<key>.json        CacheEntry: stage key -> output tree (this is also the run-cache)
 *
 * Outputs are materialised into the workspace by reflink, else hardlink, else copy.
 */
import { constants, existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { tempSibling, writeFileAtomic } from '../util/fs.js';
import { hashTreeManifest, type HashCache, type TreeManifest } from './hash.js';
import type { KeyParts } from './key.js';

/** What the cache remembers about one successful stage execution. */
export interface CacheEntry {
  key: string;
  /** Stage instance that produced it (informational: the key does not depend on the id). */
  stage: string;
  plugin: string;
  /** Output tree hash. */
  tree: string;
  parts: KeyParts;
  metrics: Record<string, number>;
  durationMs: number;
  createdAt: string;
}

/**
 * A shared artifact store (a shared filesystem path, S3-compatible object storage) that several
 * machines use besides their local store. Objects are verified against their hash on download.
 */
export interface RemoteStore {
  /** For messages, e.g. "s3://bucket/prefix". */
  describe(): string;
  /** Copies the cache entry for `key`, its tree and objects into `local`; false when the remote lacks it. */
  pull(key: string, local: LocalStore): Promise<boolean>;
  /** Uploads the local cache entry for `key`, its tree and the objects the remote lacks. */
  push(key: string, local: LocalStore): Promise<void>;
}

export type MaterialiseMethod = 'reflink' | 'hardlink' | 'copy';

export class LocalStore {
  readonly objectsDir: string;
  readonly treesDir: string;
  readonly cacheDir: string;
  readonly tmpDir: string;

  constructor(readonly dir: string) {
    this.objectsDir = join(dir, 'store', 'objects');
    this.treesDir = join(dir, 'store', 'trees');
    this.cacheDir = join(dir, 'cache');
    this.tmpDir = join(dir, 'tmp');
  }

  objectPath(hash: string): string {
    return join(this.objectsDir, hash.slice(0, 2), hash.slice(2));
  }

  entryPath(key: string): string {
    return join(this.cacheDir, key.slice(0, 2), `${key}.json`);
  }

  readEntry(key: string): CacheEntry | undefined {
    try {
      const entry = JSON.parse(readFileSync(this.entryPath(key), 'utf8')) as CacheEntry;
      // An entry is trusted only if its tree and every object are present.
      return this.hasTreeSync(entry.tree) ? entry : undefined;
    } catch {
      return undefined;
    }
  }

  async writeEntry(entry: CacheEntry): Promise<void> {
    await writeFileAtomic(this.entryPath(entry.key), JSON.stringify(entry, null, 1));
  }

  readTree(hash: string): TreeManifest | undefined {
    try {
      return JSON.parse(readFileSync(join(this.treesDir, `${hash}.json`), 'utf8')) as TreeManifest;
    } catch {
      return undefined;
    }
  }

  private hasTreeSync(hash: string): boolean {
    const tree = this.readTree(hash);
    return tree !== undefined && tree.files.every((f) => existsSync(this.objectPath(f.hash)));
  }

  /**
   * Moves every file of a finished stage's output directory into the store (rename: same
   * filesystem), records the tree, and returns its hash. The directory is consumed.
   */
  async ingest(dir: string, hashes: HashCache): Promise<{ hash: string; manifest: TreeManifest }> {
    const { hash, manifest } = await hashes.hashTree(dir);
    for (const file of manifest.files) {
      const target = this.objectPath(file.hash);
      const source = join(dir, ...file.path.split('/'));
      if (existsSync(target)) {
        await unlink(source);
        continue;
      }
      await mkdir(dirname(target), { recursive: true });
      await chmod(source, file.exec ? 0o555 : 0o444);
      await rename(source, target);
    }
    await writeFileAtomic(join(this.treesDir, `${hash}.json`), JSON.stringify(manifest));
    if (hashTreeManifest(manifest) !== hash) throw new Error('internal: tree hash mismatch');
    return { hash, manifest };
  }

  /** Makes `dest` hold exactly the tree, replacing what was there in one rename. */
  async materialise(treeHash: string, dest: string): Promise<MaterialiseMethod> {
    const tree = this.readTree(treeHash);
    if (!tree) throw new Error(`tree ${treeHash} is missing from the store`);
    const staging = tempSibling(dest);
    let method: MaterialiseMethod = 'reflink';
    try {
      await mkdir(staging, { recursive: true });
      for (const file of tree.files) {
        const target = join(staging, ...file.path.split('/'));
        await mkdir(dirname(target), { recursive: true });
        method = worst(method, await linkOrCopy(this.objectPath(file.hash), target));
      }
      await replaceDirectory(staging, dest);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      throw error;
    }
    return tree.files.length === 0 ? 'hardlink' : method;
  }

  /** Reads the objects of a tree (for checks and remote upload). */
  async readObject(hash: string): Promise<Buffer> {
    return readFile(this.objectPath(hash));
  }

  async objectSize(hash: string): Promise<number> {
    return (await stat(this.objectPath(hash))).size;
  }
}

const ORDER: MaterialiseMethod[] = ['reflink', 'hardlink', 'copy'];
function worst(a: MaterialiseMethod, b: MaterialiseMethod): MaterialiseMethod {
  return ORDER.indexOf(a) >= ORDER.indexOf(b) ? a : b;
}

async function linkOrCopy(source: string, target: string): Promise<MaterialiseMethod> {
  try {
    await copyFile(source, target, constants.COPYFILE_FICLONE_FORCE);
    return 'reflink';
  } catch {
    try {
      await link(source, target);
      return 'hardlink';
    } catch {
      await copyFile(source, target);
      return 'copy';
    }
  }
}

/** Swaps `staging` into `dest` (an existing `dest` is moved aside first, then removed). */
export async function replaceDirectory(staging: string, dest: string): Promise<void> {
  await mkdir(dirname(dest), { recursive: true });
  if (existsSync(dest)) {
    const old = tempSibling(dest);
    await rename(dest, old);
    await rename(staging, dest);
    await rm(old, { recursive: true, force: true });
  } else {
    await rename(staging, dest);
  }
}
