/**
 * A store on a filesystem path (a shared NFS/CephFS/EFS mount, or any local directory). Objects are
 * written to a temporary sibling and renamed into place, so readers on other machines never see a
 * partial file.
 */
import { chmod, copyFile, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { tempSibling, writeFileAtomic } from '../util/fs.js';
import type { ObjectBackend } from './backend.js';

export class DirectoryBackend implements ObjectBackend {
  constructor(readonly root: string) {}

  describe(): string {
    return pathToFileURL(this.root).href;
  }

  url(key: string): string {
    return pathToFileURL(this.path(key)).href;
  }

  private path(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  async get(key: string): Promise<Readable | undefined> {
    try {
      // Open first, so that a missing object is told apart from a read error later.
      const handle = await open(this.path(key), 'r');
      return handle.createReadStream({ highWaterMark: 1 << 20 });
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async size(key: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(key))).size;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async putFile(key: string, path: string): Promise<void> {
    const target = this.path(key);
    await mkdir(dirname(target), { recursive: true });
    const temp = tempSibling(target);
    try {
      // copyFile copies in the kernel (or by reflink): the content never passes through this heap.
      await copyFile(path, temp);
      await chmod(temp, 0o444);
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw new Error(`${this.url(key)}: upload failed: ${(error as Error).message}`);
    }
  }

  async putText(key: string, text: string): Promise<void> {
    try {
      await writeFileAtomic(this.path(key), text);
    } catch (error) {
      throw new Error(`${this.url(key)}: write failed: ${(error as Error).message}`);
    }
  }

  /** For tests and tools: the local file behind a key. */
  filePath(key: string): string {
    return this.path(key);
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
