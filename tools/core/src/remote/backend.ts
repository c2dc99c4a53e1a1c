/**
 * What a shared artifact store needs from the storage underneath it: named objects that are
 * written whole or not at all, and read as streams. The store's layout and its integrity rules
 * live in ContentRemoteStore (content-store.ts); a backend only moves bytes.
 */
import type { Readable } from 'node:stream';

export interface ObjectBackend {
  /** For messages, e.g. "s3://bucket/prefix" or "file:///mnt/shared/distill". */
  describe(): string;
  /** Where one object lives, for messages. */
  url(key: string): string;
  /** The object's content as a stream, or undefined when there is no such object. */
  get(key: string): Promise<Readable | undefined>;
  /** The object's size in bytes, or undefined when there is no such object. */
  size(key: string): Promise<number | undefined>;
  /**
   * Uploads a local file, streamed. A reader sees the whole object or none: an interrupted upload
   * leaves no object under `key` (a temporary name or an unfinished multipart upload at most).
   */
  putFile(key: string, path: string, size: number): Promise<void>;
  /** Writes a small text object, with the same all-or-nothing rule. */
  putText(key: string, text: string): Promise<void>;
}

/** Reads a whole (small) object as UTF-8 text; undefined when absent. */
export async function getText(backend: ObjectBackend, key: string): Promise<string | undefined> {
  const stream = await backend.get(key);
  if (!stream) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  return Buffer.concat(chunks).toString('utf8');
}
