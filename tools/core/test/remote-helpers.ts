/** Shared fixtures for the remote-store, stage-run and Argo tests: local entries and an S3 server on loopback. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createServer, connect, type Server, type Socket } from 'node:net';
import S3rver from 's3rver';
import { HashCache } from '../src/cache/hash.js';
import { cacheKey, type KeyParts } from '../src/cache/key.js';
import { LocalStore } from '../src/cache/store.js';

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `distill-${prefix}-`));
}

/** Deterministic pseudo-random bytes (xorshift32) so content is incompressible and reproducible. */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Puts a stage output holding `files` into `store` with a cache entry; returns its key and tree hash. */
export async function addEntry(
  store: LocalStore,
  files: Record<string, Buffer | string>,
  seed: number,
  exec: string[] = [],
): Promise<{ key: string; tree: string }> {
  mkdirSync(store.tmpDir, { recursive: true });
  const dir = mkdtempSync(join(store.tmpDir, 'fixture-'));
  for (const [rel, content] of Object.entries(files)) {
    const path = join(dir, rel);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content, { mode: exec.includes(rel) ? 0o755 : 0o644 });
  }
  const { hash } = await store.ingest(dir, new HashCache());
  const parts: KeyParts = {
    plugin: 'fixture',
    version: '1',
    code: 'code',
    params: { seed },
    paths: {},
    inputs: {},
    after: [],
  };
  const key = cacheKey(parts);
  await store.writeEntry({
    key,
    stage: `fixture-${seed}`,
    plugin: 'fixture',
    tree: hash,
    parts,
    metrics: { seed },
    durationMs: 1,
    createdAt: new Date(0).toISOString(),
  });
  return { key, tree: hash };
}

export interface S3Fixture {
  port: number;
  bucket: string;
  dir: string;
  url(prefix: string, extra?: string): string;
  close(): Promise<void>;
}

/** Starts s3rver on 127.0.0.1 (random port) with one bucket; sets the AWS credential env vars it accepts. */
export async function startS3(): Promise<S3Fixture> {
  const dir = tempDir('s3rver');
  const bucket = 'distill-test';
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const { port } = await server.run();
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  return {
    port,
    bucket,
    dir,
    url: (prefix, extra = '') =>
      `s3://${bucket}/${prefix}?endpoint=http://127.0.0.1:${port}&region=us-east-1&forcePathStyle=true${extra}`,
    close: () => server.close(),
  };
}

/**
 * A TCP proxy on loopback that forwards to `targetPort` but cuts every connection once the client
 * has sent more than `cutAfterBytes`: an upload interrupted by the network, deterministically.
 */
export async function startCuttingProxy(
  targetPort: number,
  cutAfterBytes: number,
): Promise<{ port: number; cuts: () => number; close(): Promise<void> }> {
  let cuts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let sent = 0;
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (sent > cutAfterBytes) {
        cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    cuts: () => cuts,
    close: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}
