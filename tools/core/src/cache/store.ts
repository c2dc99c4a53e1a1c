/**
 * The content-addressed store inside the workspace (.distill/):
 *
 *   store/objects/ab/cdef...   file contents by sha256, read-only
 *   store/trees/<hash>.json    TreeManifest of a stage output
 *   cache/ab/<key>.json        CacheEntry: stage key -> output tree (this is also the run-cache)
 *
 *   store/quarantine/<hash>.<t>  objects that failed verification, kept for inspection
 *
 * Integrity: an object is verified before an entry that names it is trusted. Its size must match
 * the tree, and its (inode, size, mtime) must match what the hash cache recorded when the object
 * was stored; when they differ (someone wrote to it), the object is re-hashed. A corrupt object
 * is moved to quarantine and the entry is a miss, so the stage reruns.
 *
 * Outputs are materialised into the workspace as reflinks where the filesystem supports them
 * (copy-on-write: an edit of out/ never reaches the store), else as copies. Hardlinks are opt-in
 * (DISTILL_CACHE_TYPE=reflink,hardlink,copy): no extra space, but an in-place write to an out/
 * file then changes the store object; verification catches that and the stage reruns.
 */
import { constants, existsSync, mkdirSync, readFileSync, renameSync, statSync, type Stats } from 'node:fs';
import { chmod, copyFile, link, mkdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { faultPoint } from '../util/faults.js';
import { tempSibling, writeFileAtomic } from '../util/fs.js';
import { hashFileContentSync, hashTreeManifest, type HashCache, type TreeFile, type TreeManifest } from './hash.js';
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

/** Materialisation methods tried in order (DVC's cache.type): from DISTILL_CACHE_TYPE, default reflink then copy. */
export function linkTypesFromEnv(value = process.env.DISTILL_CACHE_TYPE): MaterialiseMethod[] {
  if (!value) return ['reflink', 'copy'];
  const types = value
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  const bad = types.filter((t) => !ORDER.includes(t as MaterialiseMethod));
  if (bad.length > 0 || types.length === 0)
    throw new Error(`DISTILL_CACHE_TYPE=${value}: expected a comma-separated list of reflink, hardlink, copy`);
  return types as MaterialiseMethod[];
}

/** The outcome of checking one object against the tree that names it. */
export type ObjectState = 'ok' | 'missing' | 'corrupt';

export class LocalStore {
  readonly objectsDir: string;
  readonly treesDir: string;
  readonly cacheDir: string;
  readonly tmpDir: string;
  readonly quarantineDir: string;
  /** Problems found by verification since the last `takeProblems()`: one line each. */
  private problems: string[] = [];

  /**
   * @param hashes the workspace's hash cache: it remembers each object's identity when stored, so
   *   verification re-hashes only objects that changed. Without it only sizes are checked.
   * @param linkTypes how outputs are materialised, tried in order; the last must not fail.
   */
  constructor(
    readonly dir: string,
    private readonly hashes?: HashCache,
    readonly linkTypes: MaterialiseMethod[] = linkTypesFromEnv(),
  ) {
    this.objectsDir = join(dir, 'store', 'objects');
    this.treesDir = join(dir, 'store', 'trees');
    this.cacheDir = join(dir, 'cache');
    this.tmpDir = join(dir, 'tmp');
    this.quarantineDir = join(dir, 'store', 'quarantine');
  }

  /** Verification problems found since the last call (and forgets them). */
  takeProblems(): string[] {
    const problems = this.problems;
    this.problems = [];
    return problems;
  }

  /**
   * Checks one object: present, of the tree's size, and (with a hash cache) either unchanged
   * since it was stored or re-hashed to its name. A corrupt object is quarantined.
   */
  verifyObject(file: Pick<TreeFile, 'hash' | 'size' | 'path'>): ObjectState {
    const path = this.objectPath(file.hash);
    let stats: Stats;
    try {
      stats = statSync(path);
    } catch {
      this.problems.push(`object ${file.hash.slice(0, 12)} (${file.path}) is missing from the store`);
      return 'missing';
    }
    let reason: string | undefined;
    if (stats.size !== file.size) reason = `has ${stats.size} bytes, expected ${file.size}`;
    else if (this.hashes && this.hashes.lookup(path, stats) !== file.hash) {
      const actual = hashFileContentSync(path);
      if (actual === file.hash) this.hashes.remember(path, stats, actual);
      else reason = `content changed (sha256 ${actual.slice(0, 12)})`;
    }
    if (reason === undefined) return 'ok';
    const moved = this.quarantine(file.hash);
    this.problems.push(
      `object ${file.hash.slice(0, 12)} (${file.path}) ${reason}${moved ? `; moved to ${moved}` : ''}`,
    );
    return 'corrupt';
  }

  /** Records a freshly stored object's identity in the hash cache (after a verified download). */
  async recordObject(hash: string): Promise<void> {
    const path = this.objectPath(hash);
    this.hashes?.remember(path, await stat(path), hash);
  }

  /** Moves a bad object out of the store (kept for inspection); returns where, or undefined if it was gone. */
  quarantine(hash: string): string | undefined {
    const target = join(this.quarantineDir, `${hash}.${Date.now()}`);
    try {
      mkdirSync(this.quarantineDir, { recursive: true });
      renameSync(this.objectPath(hash), target);
      this.hashes?.forget(this.objectPath(hash));
      return target;
    } catch {
      return undefined;
    }
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
      // An entry is trusted only if its tree is present and every object verifies.
      return this.verifyTreeSync(entry.tree, entry.stage) ? entry : undefined;
    } catch {
      return undefined;
    }
  }

  /** The entry as stored, without checking its objects (for explanations, never for serving). */
  peekEntry(key: string): CacheEntry | undefined {
    try {
      return JSON.parse(readFileSync(this.entryPath(key), 'utf8')) as CacheEntry;
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

  private verifyTreeSync(hash: string, stage: string): boolean {
    const tree = this.readTree(hash);
    if (!tree) return false;
    const before = this.problems.length;
    // Every object is checked (not just up to the first bad one), so one run reports them all.
    const states = tree.files.map((f) => this.verifyObject(f));
    for (let i = before; i < this.problems.length; i++) this.problems[i] = `${stage}: ${this.problems[i]}`;
    return states.every((s) => s === 'ok');
  }

  /**
   * Moves every file of a finished stage's output directory into the store (rename: same
   * filesystem), records the tree, and returns its hash. The directory is consumed.
   */
  async ingest(
    dir: string,
    hashes: HashCache,
    beforeMove?: (manifest: TreeManifest) => Promise<void> | void,
  ): Promise<{ hash: string; manifest: TreeManifest }> {
    const { hash, manifest } = await hashes.hashTree(dir);
    await beforeMove?.(manifest);
    for (const file of manifest.files) {
      const target = this.objectPath(file.hash);
      const source = join(dir, ...file.path.split('/'));
      this.hashes?.forget(source);
      // An object already there is reused only if it verifies: a corrupt one is replaced by these
      // fresh bytes (this is how --force repairs the store).
      if (existsSync(target) && this.verifyObject(file) === 'ok') {
        await unlink(source);
        continue;
      }
      await mkdir(dirname(target), { recursive: true });
      await chmod(source, file.exec ? 0o555 : 0o444);
      await rename(source, target);
      this.hashes?.remember(target, await stat(target), file.hash);
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
    let method: MaterialiseMethod = this.linkTypes[0] ?? 'copy';
    try {
      await mkdir(staging, { recursive: true });
      for (const file of tree.files) {
        const target = join(staging, ...file.path.split('/'));
        await mkdir(dirname(target), { recursive: true });
        method = worst(method, await linkOrCopy(this.objectPath(file.hash), target, this.linkTypes));
      }
      await replaceDirectory(staging, dest);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      throw error;
    }
    return method;
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

/** The first method in `types` that works for this file (a copy always works, given space). */
async function linkOrCopy(source: string, target: string, types: MaterialiseMethod[]): Promise<MaterialiseMethod> {
  let lastError: unknown;
  for (const type of types) {
    try {
      if (type === 'reflink') await copyFile(source, target, constants.COPYFILE_FICLONE_FORCE);
      else if (type === 'hardlink') await link(source, target);
      else await copyFile(source, target);
      return type;
    } catch (error) {
      lastError = error;
      // ENOSPC and the like are real failures, not "this method is unsupported".
      if (type === 'copy') throw error;
    }
  }
  throw lastError instanceof Error ? lastError : new Error(`cannot materialise ${source}`);
}

/** Swaps `staging` into `dest` (an existing `dest` is moved aside first, then removed). */
export async function replaceDirectory(staging: string, dest: string): Promise<void> {
  await mkdir(dirname(dest), { recursive: true });
  if (existsSync(dest)) {
    const old = tempSibling(dest);
    await rename(dest, old);
    faultPoint('during-swap', basename(dest));
    await rename(staging, dest);
    await rm(old, { recursive: true, force: true });
  } else {
    await rename(staging, dest);
  }
}
