import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/rng.js';
import {
  ShardWriter,
  datasetSchema,
  openShardSet,
  parseDatasetSchema,
  parseTeacherSchema,
  teacherOutputSchema,
  type ColumnValues,
  type ShardSchema,
} from '../src/shards/index.js';

/** Seeded uniform [0, 1) stream (the project's Rng), so fixtures are reproducible. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

const schema: ShardSchema = {
  columns: [
    { name: 'id', type: 'utf8' },
    { name: 'label', type: 'int32' },
    { name: 'vec', type: 'float32', width: 3 },
    { name: 'tags', type: 'uint16', list: true },
  ],
  metadata: { 'distillery.schema': 'test/1', note: 'héllo' },
};

/** Row r of the fixture, computed independently of the writer. */
function expectedRow(r: number): { id: string; label: number; vec: number[]; tags: number[] } {
  return {
    id: `s-${r}-é`,
    label: r * 7 - 3,
    vec: [r, r + 0.5, -r],
    tags: Array.from({ length: r % 4 }, (_, j) => (r + j) % 65536),
  };
}

function columnsFor(a: number, b: number): Record<string, ColumnValues> {
  const n = b - a;
  const ids: string[] = [];
  const label = new Int32Array(n);
  const vec = new Float32Array(n * 3);
  const offsets = new Int32Array(n + 1);
  const tags: number[] = [];
  for (let i = 0; i < n; i++) {
    const e = expectedRow(a + i);
    ids.push(e.id);
    label[i] = e.label;
    vec.set(e.vec, i * 3);
    tags.push(...e.tags);
    offsets[i + 1] = tags.length;
  }
  return { id: ids, label, vec, tags: { offsets, values: Uint16Array.from(tags) } };
}

async function writeFixture(dir: string, total: number, rowsPerShard: number, seed: number): Promise<void> {
  const writer = await ShardWriter.create({ dir, schema, rowsPerShard, minBatchRows: 16 });
  const r = rng(seed);
  let row = 0;
  while (row < total) {
    const n = Math.min(total - row, [1, 7, 40, 300][Math.floor(r() * 4)]!);
    const cols = columnsFor(row, row + n);
    writer.append(cols, n);
    // The writer must have copied what it kept: scribble over the caller's buffers.
    (cols.vec as Float32Array).fill(NaN);
    (cols.label as Int32Array).fill(-999);
    row += n;
  }
  await writer.close();
}

test('shards round trip: values, shard sizes, manifest hashes, order across shards', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shards-'));
  try {
    await writeFixture(join(dir, 'set'), 1003, 100, 1);
    const set = await openShardSet(join(dir, 'set'));
    assert.equal(set.totalRows, 1003);
    assert.deepEqual(
      set.manifest.shards.map((s) => s.rows),
      [100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 3],
    );
    for (const s of set.manifest.shards) {
      const bytes = readFileSync(join(dir, 'set', s.file));
      assert.equal(bytes.byteLength, s.bytes);
      assert.equal(createHash('sha256').update(bytes).digest('hex'), s.sha256);
    }
    assert.deepEqual(
      readdirSync(join(dir, 'set')).filter((f) => f.endsWith('.tmp')),
      [],
    );
    assert.equal(set.schema.metadata.note, 'héllo');
    let r = 0;
    for await (const row of set.rows()) {
      const e = expectedRow(r);
      assert.equal(row.id, e.id);
      assert.equal(row.label, e.label);
      assert.deepEqual(Array.from(row.vec as Float32Array), e.vec);
      assert.deepEqual(Array.from(row.tags as Uint16Array), e.tags);
      r++;
    }
    assert.equal(r, 1003);
    // Reading each shard into the buffer of the shard two back (reuseBuffers) gives the same
    // values to a consumer that is done with a batch before asking for the next.
    let seen = 0;
    for await (const b of set.batches({ reuseBuffers: true })) {
      const ids = b.strings('id');
      const vec = b.numeric('vec');
      for (let i = 0; i < b.numRows; i++) {
        const e = expectedRow(b.startRow + i);
        assert.equal(ids[i], e.id);
        assert.deepEqual(Array.from(vec.subarray(i * 3, i * 3 + 3)), e.vec);
      }
      seen += b.numRows;
    }
    assert.equal(seen, 1003);
    // Batches report their global start row.
    let next = 0;
    for await (const b of set.batches({ verify: 'size' })) {
      assert.equal(b.startRow, next);
      assert.equal(b.strings('id')[0], expectedRow(next).id);
      next += b.numRows;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('shards: truncated or corrupt shard gives an error naming the file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shards-'));
  try {
    const set = join(dir, 'set');
    await writeFixture(set, 250, 100, 2);
    const victim = join(set, 'part-00001.arrow');
    const original = readFileSync(victim);

    truncateSync(victim, original.byteLength - 10);
    await assert.rejects(
      async () => {
        for await (const _ of (await openShardSet(set)).batches()) void _;
      },
      (e: Error) => e.message.includes(victim) && /truncated/.test(e.message),
    );

    const flipped = Buffer.from(original);
    const mid = Math.floor(flipped.byteLength / 2);
    flipped[mid] = flipped[mid]! ^ 0xff;
    writeFileSync(victim, flipped);
    await assert.rejects(
      async () => {
        for await (const _ of (await openShardSet(set)).batches()) void _;
      },
      (e: Error) => e.message.includes(victim) && /corrupt/.test(e.message),
    );

    // Without the hash check a truncated file (manifest bytes patched to match) still fails on the Arrow footer.
    writeFileSync(victim, original.subarray(0, original.byteLength - 10));
    const manifest = JSON.parse(readFileSync(join(set, 'manifest.json'), 'utf8'));
    manifest.shards[1].bytes = original.byteLength - 10;
    writeFileSync(join(set, 'manifest.json'), JSON.stringify(manifest));
    await assert.rejects(
      async () => {
        for await (const _ of (await openShardSet(set)).batches({ verify: 'size' })) void _;
      },
      (e: Error) => e.message.includes(victim),
    );

    await assert.rejects(openShardSet(join(dir, 'nope')), /no manifest.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('shards: abort removes every file, bad appends are rejected naming the column', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shards-'));
  try {
    const writer = await ShardWriter.create({ dir, schema, rowsPerShard: 50 });
    writer.append(columnsFor(0, 120), 120);
    assert.ok(readdirSync(dir).length > 0);
    assert.throws(() => writer.append({ ...columnsFor(0, 2), vec: new Float32Array(5) }, 2), /column vec/);
    assert.throws(
      () => writer.append({ ...columnsFor(0, 2), label: new Float32Array(2) }, 2),
      /column label: expected Int32Array/,
    );
    await writer.abort();
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('shards: dataset and teacher schemas round trip through file metadata', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shards-'));
  try {
    const ds = datasetSchema({
      shape: [2, 2, 1],
      input: 'pixels',
      labels: 'single',
      numClasses: 3,
      classNames: ['a', 'b', 'c'],
    });
    const w = await ShardWriter.create({ dir: join(dir, 'ds'), schema: ds, rowsPerShard: 10 });
    w.append(
      {
        id: ['x', 'y'],
        split: ['train', 'test'],
        label: Int32Array.from([2, -1]),
        pixels: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
      },
      2,
    );
    await w.close();
    const set = await openShardSet(join(dir, 'ds'));
    const info = parseDatasetSchema(set.schema);
    assert.deepEqual(info.shape, [2, 2, 1]);
    assert.equal(info.width, 4);
    assert.deepEqual(info.classNames, ['a', 'b', 'c']);
    // The single .arrow file opens on its own too (foreign-file path).
    const single = await openShardSet(join(dir, 'ds', 'part-00000.arrow'));
    const rows = [];
    for await (const row of single.rows()) rows.push(row);
    assert.deepEqual(Array.from(rows[1]!.pixels as Uint8Array), [5, 6, 7, 8]);
    assert.equal(rows[1]!.split, 'test');

    const ts = teacherOutputSchema({
      teacherId: 't1',
      modelSha256: 'ab',
      temperature: 2,
      activation: 'sigmoid',
      numClasses: 10,
      classMap: [3, 4, 9],
      storage: { dense: true, topk: { k: 2 }, sampled: { draws: 8, tau: 0.5, seed: 1 }, features: { dim: 4 } },
    });
    assert.deepEqual(
      ts.columns.map((c) => c.name),
      [
        'id',
        'logits',
        'topk_ids',
        'topk_logprobs',
        'topk_missing_mass',
        'sample_ids',
        'sample_counts',
        'sample_weights',
        'features',
      ],
    );
    assert.equal(ts.columns[1]!.width, 3);
    const parsed = parseTeacherSchema(ts);
    assert.deepEqual(parsed.classMap, [3, 4, 9]);
    assert.equal(parsed.temperature, 2);
    assert.throws(() => parseDatasetSchema(ts), /not a dataset shard set/);
    assert.ok(statSync(join(dir, 'ds', 'manifest.json')).size > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
