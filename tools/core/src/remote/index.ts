/**
 * Shared artifact stores, opened from the URL given by --store or DISTILL_STORE:
 *
 *   /mnt/shared/distill, ./relative/dir, file:///mnt/shared/distill   a directory (shared filesystem)
 *   s3://bucket/prefix?endpoint=...&region=...&forcePathStyle=true     S3-compatible object storage
 *
 * See tools/core/REMOTE.md.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RemoteStore } from '../cache/store.js';
import { ContentRemoteStore } from './content-store.js';
import { DirectoryBackend } from './dir.js';
import { parseS3Url, S3Backend } from './s3.js';

export { ContentRemoteStore, remoteKeys } from './content-store.js';
export { IntegrityError } from '../errors.js';
export type { ObjectBackend } from './backend.js';
export { DirectoryBackend } from './dir.js';
export { parseS3Url, S3Backend, type S3Location } from './s3.js';

export function openRemoteStore(url: string): RemoteStore {
  return openContentStore(url);
}

/** As openRemoteStore, with the concrete type (for `has` and the backend). */
export function openContentStore(url: string): ContentRemoteStore {
  if (!url) throw new Error('empty store URL');
  if (url.startsWith('s3://')) return new ContentRemoteStore(new S3Backend(parseS3Url(url)));
  if (url.startsWith('file://')) return new ContentRemoteStore(new DirectoryBackend(fileURLToPath(url)));
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (scheme)
    throw new Error(
      `store URL ${url}: unsupported scheme "${scheme[1]}" (use a directory path, file:///path or s3://bucket/prefix)`,
    );
  return new ContentRemoteStore(new DirectoryBackend(resolve(url)));
}
