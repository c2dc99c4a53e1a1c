/**
 * Content hashing (sha256) of files and directory trees, with a persistent hash cache keyed by
 * (inode, size, mtime) so unchanged big artifacts are not re-read on every run.
 */
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, openSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import stringify from 'safe-stable-stringify';
import { writeFileAtomicSync } from '../util/fs.js';

/** One file of a tree: its path relative to the tree root (with /), content hash and size. */
export interface TreeFile {
  path: string;
  hash: string;
  size: number;
  /** True for executable files (mode is restored on materialisation). */
  exec?: boolean;
}

/** A directory's content: the unit the store keeps for each stage output. */
export interface TreeManifest {
  files: TreeFile[];
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Canonical JSON (sorted keys): the form every hashed record is hashed in. */
export function canonicalJson(value: unknown): string {
  return stringify(value) ?? 'null';
}

export function hashTreeManifest(manifest: TreeManifest): string {
  return sha256(manifest.files.map((f) => `${f.path}\t${f.hash}\t${f.size}${f.exec ? '\tx' : ''}`).join('\n'));
}

interface HashCacheEntry {
  ino: number;
  size: number;
  mtimeMs: number;
  hash: string;
}

export class HashCache {
  private entries = new Map<string, HashCacheEntry>();
  private dirty = false;

  constructor(private readonly file?: string) {
    if (!file) return;
    try {
      const data = JSON.parse(readFileSync(file, 'utf8')) as Record<string, HashCacheEntry>;
      this.entries = new Map(Object.entries(data));
    } catch {
      // missing or unreadable: start empty (it is only a cache)
    }
  }

  /** The cached hash when the file's inode, size and mtime are unchanged. */
  lookup(path: string, stats: Stats): string | undefined {
    const entry = this.entries.get(path);
    return entry && entry.ino === stats.ino && entry.size === stats.size && entry.mtimeMs === stats.mtimeMs
      ? entry.hash
      : undefined;
  }

  remember(path: string, stats: Stats, hash: string): void {
    this.entries.set(path, { ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs, hash });
    this.dirty = true;
  }

  /** Drops a path (a temporary file that was moved away) so the cache does not grow without bound. */
  forget(path: string): void {
    if (this.entries.delete(path)) this.dirty = true;
  }

  async hashFile(path: string, stats?: Stats): Promise<string> {
    const s = stats ?? (await stat(path));
    const cached = this.lookup(path, s);
    if (cached) return cached;
    const hash = await hashFileContent(path);
    this.remember(path, s, hash);
    return hash;
  }

  /** Manifest of every regular file below `dir` (sorted), hashing only what changed. */
  async hashTree(
    dir: string,
    filter?: (relativePath: string) => boolean,
  ): Promise<{ hash: string; manifest: TreeManifest }> {
    const files: TreeFile[] = [];
    for (const path of await listFiles(dir)) {
      const rel = relative(dir, path).split(sep).join('/');
      if (filter && !filter(rel)) continue;
      const s = await stat(path);
      files.push({
        path: rel,
        hash: await this.hashFile(path, s),
        size: s.size,
        ...(s.mode & 0o111 ? { exec: true } : {}),
      });
    }
    const manifest = { files };
    return { hash: hashTreeManifest(manifest), manifest };
  }

  /** Hash of a file or a directory (the tree hash), for path params and code versions. */
  async hashPath(path: string, filter?: (relativePath: string) => boolean): Promise<string> {
    const s = statSync(path);
    return s.isDirectory() ? (await this.hashTree(path, filter)).hash : this.hashFile(path, s);
  }

  save(): void {
    if (!this.file || !this.dirty) return;
    writeFileAtomicSync(this.file, JSON.stringify(Object.fromEntries(this.entries)));
    this.dirty = false;
  }
}

export async function hashFileContent(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Synchronous sha256 of a file's content (the store's integrity check runs inside sync lookups). */
export function hashFileContentSync(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Regular files below `dir`, sorted, following no symlinks. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) await walk(p);
      else if (entry.isFile()) out.push(p);
      else if (entry.isSymbolicLink()) throw new Error(`${p}: symbolic links are not allowed in stage outputs`);
    }
  };
  await walk(dir);
  return out;
}
