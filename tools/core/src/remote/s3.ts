/**
 * S3-compatible object storage (AWS S3, MinIO, Ceph RGW, GCS in interoperability mode, s3rver):
 *
 *   s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true
 *
 * Credentials come from the AWS SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_SESSION_TOKEN, AWS_PROFILE, web identity, instance metadata). The SDK is imported on first
 * use, so commands that never touch the store do not load it.
 *
 * Uploads go through @aws-sdk/lib-storage: a file larger than one part is sent as a multipart
 * upload reading one part at a time (memory stays at partSize x queueSize), and S3 only shows the
 * object once the upload completes; a failed upload is aborted. Downloads are streamed.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { ObjectBackend } from './backend.js';

/** Connection settings read from the store URL's query string. */
export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing slash; may be empty. */
  prefix: string;
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  /** Multipart part size in bytes (query `partSizeMiB`, at least 5). */
  partSize: number;
  /** Parts uploaded at once per object (query `queueSize`). */
  queueSize: number;
}

const QUERY_KEYS = new Set(['endpoint', 'region', 'forcePathStyle', 'partSizeMiB', 'queueSize']);

export function parseS3Url(url: string): S3Location {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`store URL ${url}: not a valid URL (expected s3://bucket/prefix?endpoint=...)`);
  }
  const bucket = parsed.hostname;
  if (!bucket) throw new Error(`store URL ${url}: no bucket (expected s3://bucket/prefix)`);
  for (const key of parsed.searchParams.keys()) {
    if (!QUERY_KEYS.has(key))
      throw new Error(`store URL ${url}: unknown option "${key}" (known: ${[...QUERY_KEYS].join(', ')})`);
  }
  const q = parsed.searchParams;
  const partSizeMiB = Number(q.get('partSizeMiB') ?? 16);
  const queueSize = Number(q.get('queueSize') ?? 4);
  if (!Number.isFinite(partSizeMiB) || partSizeMiB < 5)
    throw new Error(`store URL ${url}: partSizeMiB must be at least 5 (S3's minimum part size)`);
  if (!Number.isInteger(queueSize) || queueSize < 1)
    throw new Error(`store URL ${url}: queueSize must be a positive integer`);
  const endpoint = q.get('endpoint') ?? undefined;
  return {
    bucket,
    prefix: decodeURIComponent(parsed.pathname).replace(/^\/+|\/+$/g, ''),
    ...(endpoint ? { endpoint } : {}),
    region: q.get('region') ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    // Custom endpoints (MinIO, s3rver) usually need path-style addressing.
    forcePathStyle: q.has('forcePathStyle') ? q.get('forcePathStyle') === 'true' : endpoint !== undefined,
    partSize: Math.round(partSizeMiB * 1024 * 1024),
    queueSize,
  };
}

export class S3Backend implements ObjectBackend {
  private clientPromise: Promise<S3Client> | undefined;

  constructor(readonly location: S3Location) {}

  describe(): string {
    const { bucket, prefix, endpoint } = this.location;
    return `s3://${bucket}/${prefix}${endpoint ? ` (${endpoint})` : ''}`;
  }

  url(key: string): string {
    return `s3://${this.location.bucket}/${this.objectKey(key)}`;
  }

  private objectKey(key: string): string {
    return this.location.prefix ? `${this.location.prefix}/${key}` : key;
  }

  private client(): Promise<S3Client> {
    this.clientPromise ??= (async () => {
      // The SDK warns on every process about Node versions it will drop in the future.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      const { S3Client } = await import('@aws-sdk/client-s3');
      const { endpoint, region, forcePathStyle } = this.location;
      return new S3Client({
        region,
        forcePathStyle,
        ...(endpoint ? { endpoint } : {}),
        // Content is verified against its sha256 on download (content-store.ts); the SDK's own
        // CRC32 trailers are not understood by several S3-compatible servers.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
    })();
    return this.clientPromise;
  }

  async get(key: string): Promise<Readable | undefined> {
    const client = await this.client();
    const { GetObjectCommand } = await import('@aws-sdk/client-s3');
    try {
      const result = await client.send(
        new GetObjectCommand({ Bucket: this.location.bucket, Key: this.objectKey(key) }),
      );
      const body = result.Body;
      if (!body) return Readable.from([]);
      return body instanceof Readable
        ? body
        : Readable.fromWeb(
            (body as { transformToWebStream(): import('node:stream/web').ReadableStream }).transformToWebStream(),
          );
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.wrap('download', key, error);
    }
  }

  async size(key: string): Promise<number | undefined> {
    const client = await this.client();
    const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
    try {
      const result = await client.send(
        new HeadObjectCommand({ Bucket: this.location.bucket, Key: this.objectKey(key) }),
      );
      return result.ContentLength ?? 0;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.wrap('stat', key, error);
    }
  }

  async putFile(key: string, path: string, size: number): Promise<void> {
    const client = await this.client();
    const { Upload } = await import('@aws-sdk/lib-storage');
    const body = createReadStream(path, { highWaterMark: 1 << 20 });
    try {
      const upload = new Upload({
        client,
        params: {
          Bucket: this.location.bucket,
          Key: this.objectKey(key),
          Body: body,
          ...(size < this.location.partSize ? { ContentLength: size } : {}),
        },
        partSize: this.location.partSize,
        queueSize: this.location.queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
    } catch (error) {
      throw this.wrap('upload', key, error);
    } finally {
      body.destroy();
    }
  }

  async putText(key: string, text: string): Promise<void> {
    const client = await this.client();
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    try {
      await client.send(
        new PutObjectCommand({
          Bucket: this.location.bucket,
          Key: this.objectKey(key),
          Body: text,
          ContentType: 'application/json',
        }),
      );
    } catch (error) {
      throw this.wrap('upload', key, error);
    }
  }

  private wrap(what: string, key: string, error: unknown): Error {
    const err = error as Error & { name?: string; $metadata?: { httpStatusCode?: number } };
    const status = err.$metadata?.httpStatusCode;
    return new Error(
      `${this.url(key)}: ${what} failed: ${err.name && err.name !== 'Error' ? `${err.name}: ` : ''}${err.message}${status ? ` (HTTP ${status})` : ''}`,
    );
  }
}

function isNotFound(error: unknown): boolean {
  const err = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (err.name === 'NoSuchBucket') return false;
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata?.httpStatusCode === 404;
}
