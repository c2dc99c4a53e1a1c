import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { openShardSet, parseDatasetSchema } from '@distillery/runtime/shards';
import plugin from '../src/plugin.js';
import { idx, makeCtx } from './helpers.js';

async function rowsOf(dir: string) {
  const set = await openShardSet(dir);
  const rows = [];
  for await (const r of set.rows()) rows.push(r);
  return { info: parseDatasetSchema(set.schema), rows, set };
}

function npy(descr: string, shape: number[], data: ArrayBufferView): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const pre = Buffer.alloc(10);
  Buffer.from([0x93]).copy(pre);
  pre.write('NUMPY', 1, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([
    pre,
    Buffer.from(header, 'latin1'),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength),
  ]);
}

test('dataset import: IDX (gzip and plain, two splits), NPY float features', async () => {
  const root = mkdtempSync(join(tmpdir(), 'import-'));
  try {
    const n = 1500; // more than one reader chunk
    const px = Uint8Array.from({ length: n * 6 }, (_, i) => (i * 13) % 256);
    const lb = Uint8Array.from({ length: n }, (_, i) => (i * 7) % 5);
    writeFileSync(join(root, 'img.gz'), gzipSync(idx(8, [n, 2, 3], px)));
    writeFileSync(join(root, 'lab'), idx(8, [n], lb));
    writeFileSync(join(root, 'img2'), idx(8, [2, 2, 3], px.subarray(0, 12)));
    writeFileSync(join(root, 'lab2.gz'), gzipSync(idx(8, [2], lb.subarray(0, 2))));
    const { ctx } = makeCtx(
      plugin,
      {
        format: 'idx',
        rowsPerShard: 1000,
        sources: [
          { split: 'train', path: 'img.gz', labels: 'lab' },
          { split: 'test', path: 'img2', labels: 'lab2.gz' },
        ],
      },
      { outDir: join(root, 'out'), pipelineDir: root },
    );
    await plugin.run(ctx);
    const { info, rows } = await rowsOf(join(root, 'out'));
    assert.deepEqual(info.shape, [2, 3, 1]);
    assert.equal(info.numClasses, 5);
    assert.equal(rows.length, n + 2);
    for (const i of [0, 999, 1000, 1499]) {
      assert.equal(rows[i]!.id, `train/${i}`);
      assert.equal(rows[i]!.label, lb[i]);
      assert.deepEqual(Array.from(rows[i]!.pixels as Uint8Array), Array.from(px.subarray(i * 6, i * 6 + 6)));
    }
    assert.equal(rows[n + 1]!.split, 'test');

    const x = Float64Array.from({ length: 30 }, (_, i) => i / 3 - 2);
    writeFileSync(join(root, 'x.npy'), npy('<f8', [10, 3], x));
    writeFileSync(
      join(root, 'y.npy'),
      npy(
        '<i8',
        [10],
        BigInt64Array.from({ length: 10 }, (_, i) => BigInt(i % 4)),
      ),
    );
    const { ctx: c2 } = makeCtx(
      plugin,
      { format: 'npy', sources: [{ split: 'train', path: 'x.npy', labels: 'y.npy' }] },
      { outDir: join(root, 'npy'), pipelineDir: root },
    );
    await plugin.run(c2);
    const got = await rowsOf(join(root, 'npy'));
    assert.equal(got.info.input, 'features');
    assert.equal(got.rows[7]!.label, 3);
    assert.deepEqual(
      Array.from(got.rows[7]!.features as Float32Array),
      Array.from(Float32Array.from(x.subarray(21, 24))),
    );

    // Truncated IDX: clear error, nothing left.
    writeFileSync(join(root, 'short'), idx(8, [n, 2, 3], px.subarray(0, 100)));
    const { ctx: c3 } = makeCtx(
      plugin,
      { format: 'idx', numClasses: 5, sources: [{ split: 'train', path: 'short', labels: 'lab' }] },
      { outDir: join(root, 'bad'), pipelineDir: root },
    );
    await assert.rejects(
      plugin.run(c3),
      (e: Error) => e.message.includes(join(root, 'short')) && /truncated/.test(e.message),
    );
    assert.deepEqual(readdirSync(join(root, 'bad')), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('dataset import: PNG + JPEG folder, CSV, Parquet, synthetic', async () => {
  const root = mkdtempSync(join(tmpdir(), 'import-'));
  try {
    for (const c of ['cat', 'dog']) mkdirSync(join(root, 'imgs', c), { recursive: true });
    const png = new PNG({ width: 2, height: 2 });
    const rgba = [10, 20, 30, 255, 40, 50, 60, 255, 70, 80, 90, 255, 100, 110, 120, 255];
    rgba.forEach((v, i) => {
      png.data[i] = v;
    });
    writeFileSync(join(root, 'imgs', 'cat', 'a.png'), PNG.sync.write(png));
    const flat = Buffer.from(Array.from({ length: 16 }, (_, i) => (i % 4 === 3 ? 255 : 128)));
    writeFileSync(join(root, 'imgs', 'dog', 'b.jpg'), jpeg.encode({ data: flat, width: 2, height: 2 }, 100).data);
    const { ctx } = makeCtx(
      plugin,
      { format: 'images', sources: [{ split: 'train', path: 'imgs' }] },
      { outDir: join(root, 'img-out'), pipelineDir: root },
    );
    await plugin.run(ctx);
    const im = await rowsOf(join(root, 'img-out'));
    assert.deepEqual(im.info.classNames, ['cat', 'dog']);
    assert.deepEqual(im.info.shape, [2, 2, 3]);
    assert.equal(im.rows[0]!.id, 'cat/a.png');
    assert.deepEqual(
      Array.from(im.rows[0]!.pixels as Uint8Array),
      rgba.filter((_, i) => i % 4 !== 3),
    ); // PNG is lossless
    assert.equal(im.rows[1]!.label, 1);
    for (const v of im.rows[1]!.pixels as Uint8Array) assert.ok(Math.abs(v - 128) <= 2); // JPEG q100 of a flat image

    writeFileSync(join(root, 't.csv'), 'name,f1,f2,label\nx,1.5,-2,1\ny,0,3.25,0\n');
    const { ctx: c2 } = makeCtx(
      plugin,
      { format: 'csv', idColumn: 'name', sources: [{ split: 'val', path: 't.csv' }] },
      { outDir: join(root, 'csv'), pipelineDir: root },
    );
    await plugin.run(c2);
    const csv = await rowsOf(join(root, 'csv'));
    assert.deepEqual(
      csv.rows.map((r) => [r.id, r.split, r.label, Array.from(r.features as Float32Array)]),
      [
        ['x', 'val', 1, [1.5, -2]],
        ['y', 'val', 0, [0, 3.25]],
      ],
    );
    writeFileSync(join(root, 'bad.csv'), 'f1,label\n1,0\nabc,1\n');
    const { ctx: c3 } = makeCtx(
      plugin,
      { format: 'csv', numClasses: 2, sources: [{ split: 'train', path: 'bad.csv' }] },
      { outDir: join(root, 'bad'), pipelineDir: root },
    );
    await assert.rejects(plugin.run(c3), /bad\.csv row 2: column f1 value "abc" is not a finite number/);

    const { parquetWriteFile } = await import('hyparquet-writer');
    parquetWriteFile({
      filename: join(root, 't.parquet'),
      columnData: [
        { name: 'a', data: [1, 2, 3], type: 'DOUBLE' },
        { name: 'b', data: [4, 5, 6], type: 'FLOAT' },
        { name: 'label', data: [2, 0, 1], type: 'INT32' },
      ],
    });
    const { ctx: c4 } = makeCtx(
      plugin,
      { format: 'parquet', sources: [{ split: 'train', path: 't.parquet' }] },
      { outDir: join(root, 'pq'), pipelineDir: root },
    );
    await plugin.run(c4);
    const pq = await rowsOf(join(root, 'pq'));
    assert.deepEqual(
      pq.rows.map((r) => [r.label, Array.from(r.features as Float32Array)]),
      [
        [2, [1, 4]],
        [0, [2, 5]],
        [1, [3, 6]],
      ],
    );
    assert.equal(pq.info.numClasses, 3);

    const { ctx: c5 } = makeCtx(
      plugin,
      { format: 'synthetic', dim: 3, classes: 4, seed: 5, sources: [{ split: 'train', samples: 2000 }] },
      { outDir: join(root, 'syn'), pipelineDir: root },
    );
    await plugin.run(c5);
    const syn = await rowsOf(join(root, 'syn'));
    assert.equal(syn.rows.length, 2000);
    // Labels are drawn uniformly: each of 4 classes gets ~500 of 2000 (binomial sd ~19).
    const sums = Array.from({ length: 4 }, () => [0, 0, 0, 0]);
    for (const r of syn.rows) {
      const s = sums[r.label as number]!;
      s[3]! += 1;
      (r.features as Float32Array).forEach((v, k) => {
        s[k]! += v;
      });
    }
    assert.ok(
      sums.every((s) => s[3]! > 350),
      'labels roughly uniform',
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('dataset import: holdout carves a seeded validation split out of a source, row by row', async () => {
  const root = mkdtempSync(join(tmpdir(), 'import-'));
  try {
    const n = 3000; // several reader chunks
    writeFileSync(
      join(root, 'x.idx'),
      idx(
        0x08,
        [n, 2, 2],
        Uint8Array.from({ length: n * 4 }, (_, i) => i % 251),
      ),
    );
    writeFileSync(
      join(root, 'y.idx'),
      idx(
        0x08,
        [n],
        Uint8Array.from({ length: n }, (_, i) => i % 3),
      ),
    );
    const run = async (seed: number, out: string) => {
      const source = { split: 'train', path: 'x.idx', labels: 'y.idx', holdout: { split: 'val', fraction: 0.2, seed } };
      const { ctx } = makeCtx(
        plugin,
        { format: 'idx', sources: [source] },
        { outDir: join(root, out), pipelineDir: root },
      );
      await plugin.run(ctx);
      return (await rowsOf(join(root, out))).rows;
    };
    const a = await run(4, 'a');
    const b = await run(4, 'b');
    const c = await run(5, 'c');
    // Every row is kept, in order, with its id; only the split column changes.
    assert.deepEqual(
      a.map((r) => r.id),
      Array.from({ length: n }, (_, i) => `train/${i}`),
    );
    const val = (rows: typeof a) => rows.filter((r) => r.split === 'val').map((r) => r.id);
    assert.ok(a.every((r) => r.split === 'train' || r.split === 'val'));
    // Binomial(3000, 0.2): mean 600, sd 21.9; 4 sd either side.
    assert.ok(Math.abs(val(a).length - 600) < 88, `held out ${val(a).length}`);
    assert.deepEqual(val(a), val(b), 'same seed, same rows');
    assert.notDeepEqual(val(a), val(c), 'another seed, other rows');
    const { ctx: bad } = makeCtx(
      plugin,
      {
        format: 'idx',
        sources: [
          { split: 'train', path: 'x.idx', labels: 'y.idx', holdout: { split: 'train', fraction: 0.2, seed: 0 } },
        ],
      },
      { outDir: join(root, 'bad'), pipelineDir: root },
    );
    await assert.rejects(plugin.run(bad), /holdout.split "train" is the source's own split/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
