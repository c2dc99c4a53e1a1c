/**
 * Shared artifact stores: a directory and S3 (s3rver on loopback). Round trips, refusal of
 * tampered, truncated and malformed objects, and interrupted uploads that leave nothing trusted.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { LocalStore } from '../src/cache/store.js';
import {
  ContentRemoteStore,
  DirectoryBackend,
  IntegrityError,
  openContentStore,
  openRemoteStore,
  parseS3Url,
  remoteKeys,
  type ObjectBackend,
} from '../src/remote/index.js';
import { addEntry, pseudoRandomBytes, startCuttingProxy, startS3, tempDir, type S3Fixture } from './remote-helpers.js';

function listAll(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

describe('store URLs', () => {
  test('paths, file:// and s3:// URLs open the right backend', () => {
    const plain = openContentStore('/mnt/shared/x');
    assert.equal(plain.describe(), 'file:///mnt/shared/x');
    assert.equal(openContentStore('file:///mnt/shared/x').describe(), 'file:///mnt/shared/x');
    const s3 = parseS3Url('s3://bucket/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1&partSizeMiB=8');
    assert.deepEqual(s3, {
      bucket: 'bucket',
      prefix: 'a/b',
      endpoint: 'http://127.0.0.1:9000',
      region: 'eu-west-1',
      forcePathStyle: true,
      partSize: 8 * 1024 * 1024,
      queueSize: 4,
    });
    assert.equal(parseS3Url('s3://bucket?region=us-east-1').forcePathStyle, false);
    assert.equal(openRemoteStore('s3://bucket/p?region=x').describe(), 's3://bucket/p');
  });

  test('bad URLs are refused with the reason', () => {
    assert.throws(() => openRemoteStore('gs://bucket/x'), /unsupported scheme "gs"/);
    assert.throws(() => openRemoteStore('s3://bucket/x?endpont=http://x'), /unknown option "endpont"/);
    assert.throws(() => openRemoteStore('s3://bucket/x?partSizeMiB=1'), /partSizeMiB must be at least 5/);
  });
});

describe('directory store', () => {
  test('push then pull into another project reproduces the output, exec bits included', async () => {
    const a = new LocalStore(join(tempDir('a'), '.distill'));
    const b = new LocalStore(join(tempDir('b'), '.distill'));
    const remote = openContentStore(tempDir('shared'));
    const blob = pseudoRandomBytes(300_000, 7);
    const { key, tree } = await addEntry(
      a,
      { 'model/weights.bin': blob, 'run.sh': '#!/bin/sh\necho hi\n', 'same.txt': 'x', 'same2.txt': 'x' },
      1,
      ['run.sh'],
    );
    assert.equal(await remote.pull(key, b), false, 'nothing published yet');
    await remote.push(key, a);
    await remote.push(key, a); // idempotent
    assert.equal(await remote.has(key), true);
    assert.equal(await remote.pull(key, b), true);
    const entry = b.readEntry(key);
    assert.ok(entry, 'entry is trusted locally');
    assert.equal(entry.tree, tree);
    assert.deepEqual(entry.metrics, { seed: 1 });
    const dest = join(tempDir('mat'), 'out');
    await b.materialise(tree, dest);
    assert.deepEqual(readFileSync(join(dest, 'model/weights.bin')), blob);
    assert.equal(readFileSync(join(dest, 'same2.txt'), 'utf8'), 'x');
    assert.ok(statSync(join(dest, 'run.sh')).mode & 0o100, 'exec bit restored');
    assert.deepEqual(listAll(b.tmpDir), [], 'no temporary files left');
  });

  test('a tampered object (same size) is rejected, naming it, and nothing enters the local store', async () => {
    const a = new LocalStore(join(tempDir('a'), '.distill'));
    const b = new LocalStore(join(tempDir('b'), '.distill'));
    const root = tempDir('shared');
    const remote = openContentStore(root);
    const blob = pseudoRandomBytes(50_000, 3);
    const { key } = await addEntry(a, { 'data.bin': blob, 'ok.txt': 'fine' }, 2);
    await remote.push(key, a);
    const hash = readdirSync(join(root, 'objects'), { recursive: true, withFileTypes: true }).find(
      (e) => e.isFile() && statSync(join(e.parentPath, e.name)).size === blob.length,
    );
    assert.ok(hash);
    const objectFile = join(hash.parentPath, hash.name);
    const tampered = Buffer.from(blob);
    tampered[1234] = (tampered[1234] as number) ^ 0xff;
    writeFileSync(objectFile, tampered);
    await assert.rejects(remote.pull(key, b), (error: Error) => {
      assert.ok(error instanceof IntegrityError);
      assert.match(error.message, /content hash is [0-9a-f]{64}, expected [0-9a-f]{64} \(tampered with or corrupted\)/);
      assert.ok(error.message.includes(`file://${objectFile}`), error.message);
      return true;
    });
    assert.equal(b.readEntry(key), undefined);
    assert.ok(
      !listAll(b.objectsDir).some((p) => statSync(p).size === blob.length),
      'the bad object is not in the local store',
    );
    assert.deepEqual(listAll(b.tmpDir), [], 'no temporary files left');
  });

  test('a truncated object, a longer object and a tampered tree are rejected', async () => {
    const a = new LocalStore(join(tempDir('a'), '.distill'));
    const root = tempDir('shared');
    const remote = openContentStore(root);
    const blob = pseudoRandomBytes(40_000, 5);
    const { key, tree } = await addEntry(a, { 'data.bin': blob }, 3);
    await remote.push(key, a);
    const objectFile = join(root, ...remoteKeys.object(a.readTree(tree)?.files[0]?.hash as string).split('/'));
    truncateSync(objectFile, 10_000);
    await assert.rejects(
      remote.pull(key, new LocalStore(tempDir('b'))),
      /data\.bin|objects\/.*: object is truncated \(10000 of 40000 bytes\)/,
    );
    writeFileSync(objectFile, Buffer.concat([blob, Buffer.from('extra')]));
    await assert.rejects(
      remote.pull(key, new LocalStore(tempDir('b'))),
      /object is longer than the 40000 bytes its tree records/,
    );
    writeFileSync(objectFile, blob);
    assert.equal(await remote.pull(key, new LocalStore(tempDir('b'))), true, 'restored object is accepted');
    const treeFile = join(root, ...remoteKeys.tree(tree).split('/'));
    const manifest = JSON.parse(readFileSync(treeFile, 'utf8')) as { files: Array<{ path: string }> };
    (manifest.files[0] as { path: string }).path = 'other.bin';
    writeFileSync(treeFile, JSON.stringify(manifest));
    await assert.rejects(remote.pull(key, new LocalStore(tempDir('b'))), /tree content does not hash to/);
    const entryFile = join(root, ...remoteKeys.entry(key).split('/'));
    const entry = JSON.parse(readFileSync(entryFile, 'utf8')) as { parts: { params: unknown } };
    entry.parts.params = { seed: 99 };
    writeFileSync(entryFile, JSON.stringify(entry));
    await assert.rejects(remote.pull(key, new LocalStore(tempDir('b'))), /key parts do not hash to/);
  });

  test('an interrupted publish leaves nothing a reader trusts, and a retry completes it', async () => {
    const a = new LocalStore(join(tempDir('a'), '.distill'));
    const root = tempDir('shared');
    const healthy = new DirectoryBackend(root);
    const { key } = await addEntry(
      a,
      {
        'one.bin': pseudoRandomBytes(20_000, 1),
        'two.bin': pseudoRandomBytes(20_000, 2),
        'three.bin': pseudoRandomBytes(20_000, 3),
      },
      4,
    );
    // The connection drops during the second object.
    let uploads = 0;
    const flaky: ObjectBackend = Object.assign(Object.create(healthy) as DirectoryBackend, {
      putFile: async (k: string, path: string) => {
        if (++uploads === 2) throw new Error('connection reset');
        return healthy.putFile(k, path);
      },
    });
    await assert.rejects(new ContentRemoteStore(flaky).push(key, a), /connection reset/);
    const reader = new ContentRemoteStore(healthy);
    assert.equal(await reader.has(key), false);
    assert.equal(
      await reader.pull(key, new LocalStore(tempDir('b'))),
      false,
      'no entry: the reader runs the stage instead',
    );
    assert.ok(!existsSync(join(root, 'cache')), 'the commit point was never written');
    await reader.push(key, a);
    const b = new LocalStore(tempDir('b'));
    assert.equal(await reader.pull(key, b), true);
    assert.ok(b.readEntry(key));
  });
});

describe('S3 store (s3rver on loopback)', () => {
  let s3: S3Fixture;
  let client: S3Client;
  before(async () => {
    s3 = await startS3();
    client = new S3Client({
      endpoint: `http://127.0.0.1:${s3.port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  });
  after(async () => {
    client?.destroy();
    await s3?.close();
  });

  const keysUnder = async (prefix: string): Promise<string[]> => {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
    return (listed.Contents ?? []).map((o) => o.Key as string).sort();
  };

  test('round trip with a multipart object', async () => {
    const a = new LocalStore(join(tempDir('a'), '.distill'));
    const b = new LocalStore(join(tempDir('b'), '.distill'));
    const remote = openContentStore(s3.url('rt', '&partSizeMiB=5&queueSize=2'));
    const big = pseudoRandomBytes(11 * 1024 * 1024 + 17, 11); // three parts
    const { key, tree } = await addEntry(a, { 'big.bin': big, 'small.txt': 'small' }, 10);
    assert.equal(await remote.pull(key, b), false);
    await remote.push(key, a);
    const keys = await keysUnder('rt/');
    assert.ok(
      keys.includes(`rt/${remoteKeys.entry(key)}`) && keys.includes(`rt/${remoteKeys.tree(tree)}`),
      keys.join(' '),
    );
    assert.equal(keys.filter((k) => k.startsWith('rt/objects/')).length, 2);
    assert.equal(await remote.pull(key, b), true);
    const dest = join(tempDir('mat'), 'out');
    await b.materialise(tree, dest);
    assert.ok(readFileSync(join(dest, 'big.bin')).equals(big));
    assert.equal(readFileSync(join(dest, 'small.txt'), 'utf8'), 'small');
  });

  test('tampered and truncated objects are rejected with the object URL', async () => {
    const a = new LocalStore(join(tempDir('a'), '.distill'));
    const remote = openContentStore(s3.url('bad'));
    const blob = pseudoRandomBytes(100_000, 12);
    const { key, tree } = await addEntry(a, { 'blob.bin': blob }, 11);
    await remote.push(key, a);
    const objectHash = a.readTree(tree)?.files[0]?.hash as string;
    const objectKey = `bad/${remoteKeys.object(objectHash)}`;
    const tampered = Buffer.from(blob);
    tampered[0] = (tampered[0] as number) ^ 1;
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: objectKey, Body: tampered }));
    const b = new LocalStore(tempDir('b'));
    await assert.rejects(remote.pull(key, b), (error: Error) => {
      assert.ok(error.message.startsWith(`s3://${s3.bucket}/${objectKey}: content hash is`), error.message);
      return true;
    });
    assert.equal(b.readEntry(key), undefined);
    assert.equal(existsSync(b.objectPath(objectHash)), false);
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: objectKey, Body: blob.subarray(0, 4096) }));
    await assert.rejects(
      remote.pull(key, b),
      new RegExp(`s3://${s3.bucket}/${objectKey}: object is truncated \\(4096 of 100000 bytes\\)`),
    );
    // Publishing again replaces the wrong-sized object, after which the entry is served.
    const entryKey = `bad/${remoteKeys.entry(key)}`;
    await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: entryKey }));
    await remote.push(key, a);
    assert.equal(await remote.pull(key, b), true);
  });

  test('an upload cut by the network leaves no entry; readers see a miss; a retry completes', async () => {
    const a = new LocalStore(join(tempDir('a'), '.distill'));
    const big = pseudoRandomBytes(6 * 1024 * 1024, 21);
    const { key, tree } = await addEntry(a, { 'big.bin': big, 'meta.json': '{"a":1}' }, 20);
    const proxy = await startCuttingProxy(s3.port, 1024 * 1024);
    try {
      const viaProxy = openContentStore(
        `s3://${s3.bucket}/cut?endpoint=http://127.0.0.1:${proxy.port}&region=us-east-1&forcePathStyle=true&partSizeMiB=5`,
      );
      await assert.rejects(viaProxy.push(key, a), (error: Error) => {
        assert.match(error.message, /objects\/.*: upload failed/);
        return true;
      });
      assert.ok(proxy.cuts() > 0, 'the proxy cut a connection');
    } finally {
      await proxy.close();
    }
    const direct = openContentStore(s3.url('cut', '&partSizeMiB=5'));
    const bigHash = a.readTree(tree)?.files.find((f) => f.path === 'big.bin')?.hash as string;
    const keys = await keysUnder('cut/');
    assert.ok(!keys.some((k) => k.startsWith('cut/cache/')), `no cache entry after the cut: ${keys.join(' ')}`);
    assert.ok(!keys.includes(`cut/${remoteKeys.object(bigHash)}`), 'no partial object is visible');
    await assert.rejects(
      client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `cut/${remoteKeys.entry(key)}` })),
    );
    assert.equal(await direct.pull(key, new LocalStore(tempDir('b'))), false);
    await direct.push(key, a);
    const b = new LocalStore(tempDir('b'));
    assert.equal(await direct.pull(key, b), true);
    const dest = join(tempDir('mat'), 'out');
    await b.materialise(tree, dest);
    assert.ok(readFileSync(join(dest, 'big.bin')).equals(big));
  });
});
