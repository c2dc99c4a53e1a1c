import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Rng } from '@distillery/runtime/rng';
import { openShardSet, parseDatasetSchema } from '@distillery/runtime/shards';
import { randomPartition, routingTable } from '../src/partition.js';
import subsetPlugin from '../src/subset-plugin.js';
import bundlePlugin from '../src/bundle-plugin.js';
import { MsdBundle, type MsdBundleManifest } from '../src/bundle-runner.js';
import { orderStudents } from '../src/bundle.js';
import { argmax, linearRow, makeCtx, writeDataset, writeLinear } from './helpers.js';

const dim = 5,
  C = 10,
  K = 3;

function fixture(seed: number, n: number) {
  const rng = new Rng(seed);
  const x = Float32Array.from({ length: n * dim }, () => rng.normal());
  // Every 7th row unlabelled; splits alternate.
  const labels = Array.from({ length: n }, (_, i) => (i % 7 === 3 ? -1 : rng.int(C)));
  const splits = labels.map((_, i) => (i % 3 === 0 ? 'test' : 'train'));
  const table = routingTable(C, randomPartition(C, K, seed), 'random', seed);
  return { x, labels, splits, table };
}

async function readRows(dir: string) {
  const set = await openShardSet(dir);
  const rows: Record<string, unknown>[] = [];
  for await (const r of set.rows()) rows.push(r);
  return { set, rows };
}

test("partition-subset: student k keeps its partition's rows with local labels and class_map.json; router relabels by partition", async () => {
  const root = mkdtempSync(join(tmpdir(), 'msd-subset-'));
  try {
    const n = 120;
    const { x, labels, splits, table } = fixture(3, n);
    await writeDataset(join(root, 'data'), x, dim, labels, splits, C);
    mkdirSync(join(root, 'part'));
    writeFileSync(join(root, 'part', 'routing.json'), JSON.stringify(table));
    const inputs = {
      dataset: [['data', join(root, 'data')]] as [string, string][],
      routing: [['part', join(root, 'part')]] as [string, string][],
    };
    let total = 0;
    for (let k = 0; k < K; k++) {
      const out = join(root, `s${k}`);
      const result = await subsetPlugin.run(makeCtx(subsetPlugin, { student: k, rowsPerShard: 10 }, out, inputs));
      const part = table.partitions[k]!;
      assert.deepEqual(JSON.parse(readFileSync(join(out, 'class_map.json'), 'utf8')), part);
      const { set, rows } = await readRows(out);
      const info = parseDatasetSchema(set.schema);
      assert.equal(info.numClasses, part.length);
      assert.deepEqual(
        info.classNames,
        part.map((g) => `c${g}`),
      );
      const expected = labels.map((y, i) => ({ y, i })).filter(({ y }) => y >= 0 && part.includes(y));
      assert.equal(rows.length, expected.length);
      assert.equal(result?.metrics?.rows, expected.length);
      expected.forEach(({ y, i }, r) => {
        const row = rows[r]!;
        assert.equal(row.id, `s${i}`);
        assert.equal(row.split, splits[i]);
        assert.equal(part[row.label as number], y, 'local label maps back to the global class');
        assert.deepEqual(Array.from(row.features as Float32Array), Array.from(x.subarray(i * dim, (i + 1) * dim)));
      });
      const summary = JSON.parse(readFileSync(join(out, 'subset.json'), 'utf8'));
      assert.equal(summary.droppedUnlabelled, labels.filter((y) => y === -1).length);
      total += rows.length;
    }
    assert.equal(total, labels.filter((y) => y >= 0).length, 'the K subsets cover every labelled row once');
    const out = join(root, 'router');
    await subsetPlugin.run(makeCtx(subsetPlugin, { student: 'router' }, out, inputs));
    const { set, rows } = await readRows(out);
    assert.equal(parseDatasetSchema(set.schema).numClasses, K);
    const labelled = labels.map((y, i) => ({ y, i })).filter(({ y }) => y >= 0);
    assert.deepEqual(
      rows.map((r) => r.id),
      labelled.map(({ i }) => `s${i}`),
    );
    assert.deepEqual(
      rows.map((r) => r.label),
      labelled.map(({ y }) => table.classToStudent[y]),
    );
    // Bad student index: an error naming the range, and no shard left behind.
    const bad = join(root, 'bad');
    await assert.rejects(
      subsetPlugin.run(makeCtx(subsetPlugin, { student: K }, bad, inputs)),
      /student 3 is outside 0\.\.2/,
    );
    assert.deepEqual(readdirSync(bad), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("msd-bundle: manifest + onnxruntime end to end; routed predictions equal the chosen student's, standalone runner agrees", async () => {
  // Under the repository, so that the bundle's standalone runner resolves onnxruntime-node as a user's project would.
  const root = mkdtempSync(join(import.meta.dirname, 'tmp-bundle-'));
  try {
    const { table } = fixture(4, 1);
    const rng = new Rng(9);
    const rand = (len: number) => Float32Array.from({ length: len }, () => rng.normal());
    const router = { w: rand(dim * K), b: rand(K) };
    mkdirSync(join(root, 'router'));
    writeLinear(join(root, 'router', 'model.onnx'), router.w, router.b, dim, K);
    const students = table.partitions.map((part, k) => {
      const s = { w: rand(dim * part.length), b: rand(part.length) };
      mkdirSync(join(root, `student${k}`));
      writeLinear(join(root, `student${k}`, 'model.onnx'), s.w, s.b, dim, part.length);
      return s;
    });
    mkdirSync(join(root, 'part'));
    writeFileSync(join(root, 'part', 'routing.json'), JSON.stringify(table));
    const inputs = {
      routing: [['part', join(root, 'part')]] as [string, string][],
      router: [['router', join(root, 'router')]] as [string, string][],
      students: table.partitions.map((_, k) => [`student@${k}`, join(root, `student${k}`)] as [string, string]),
    };
    const out = join(root, 'bundle');
    const result = await bundlePlugin.run(makeCtx(bundlePlugin, {}, out, inputs));
    assert.deepEqual(
      readdirSync(out).sort(),
      ['manifest.json', 'msd-runner.mjs', 'router.onnx', ...table.partitions.map((_, k) => `student_${k}.onnx`)].sort(),
    );
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as MsdBundleManifest;
    assert.deepEqual(
      manifest.studentModels.map((s) => s.classMap),
      table.partitions,
    );
    assert.deepEqual(manifest.input, { name: 'input', shape: [dim], type: 'float32' });
    const sizes = table.partitions.map((p) => dim * p.length + p.length);
    assert.equal(result?.metrics?.total_parameters, dim * K + K + sizes.reduce((a, b) => a + b, 0));
    assert.equal(result?.metrics?.active_parameters, dim * K + K + Math.max(...sizes));

    const n = 64;
    const x = rand(n * dim);
    const bundle = await MsdBundle.open(out);
    let prediction: Awaited<ReturnType<MsdBundle['predict']>>;
    try {
      prediction = await bundle.predict(x, n);
    } finally {
      await bundle.release();
    }
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) {
      const k = argmax(linearRow(x, i, router.w, router.b, dim, K));
      seen.add(k);
      assert.equal(prediction.partition[i], k, `sample ${i}: routed to the router's argmax`);
      const z = linearRow(x, i, students[k]!.w, students[k]!.b, dim, table.partitions[k]!.length);
      assert.equal(
        prediction.label[i],
        table.partitions[k]![argmax(z)],
        `sample ${i}: the chosen student's answer, in global ids`,
      );
      // Composite scores: the student's logits at its classes; softmax puts no mass elsewhere; top-1 = label.
      const row = Array.from(prediction.scores.subarray(i * C, (i + 1) * C));
      table.partitions[k]!.forEach((g, j) => assert.ok(Math.abs(row[g]! - z[j]!) < 1e-4));
      assert.equal(argmax(row), prediction.label[i]);
      const m = Math.max(...row);
      const mass = row.map((v) => Math.exp(v - m));
      const outside = row.reduce((s, _, c) => s + (table.classToStudent[c] === k ? 0 : mass[c]!), 0);
      assert.equal(outside, 0);
    }
    assert.ok(seen.size >= 2, 'the fixture exercises more than one student');
    // The standalone runner inside the bundle (onnxruntime-node only) gives the same answers.
    const samples = Array.from({ length: 8 }, (_, i) => Array.from(x.subarray(i * dim, (i + 1) * dim)));
    writeFileSync(join(root, 'in.json'), JSON.stringify(samples));
    const lines = execFileSync(process.execPath, [join(out, 'msd-runner.mjs'), out, join(root, 'in.json')], {
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { partition: number; label: number });
    assert.deepEqual(
      lines,
      samples.map((_, i) => ({ partition: prediction.partition[i], label: prediction.label[i] })),
    );

    // Errors: students in the wrong order (by fan-out suffix or by width), a router of the wrong width.
    assert.throws(
      () =>
        orderStudents([
          { stage: 's@1', path: 'a' },
          { stage: 's@0', path: 'b' },
        ]),
      /bound at position 0 but its fan-out item names partition 1/,
    );
    assert.throws(
      () =>
        orderStudents([
          { stage: 's@k=0,size=a', path: 'a' },
          { stage: 's@k=2,size=a', path: 'b' },
        ]),
      /position 1 .* partition 2/,
    );
    const swapped = {
      ...inputs,
      students: [inputs.students[1]!, inputs.students[0]!, inputs.students[2]!].map(
        ([, p], k) => [`x${k}`, p] as [string, string],
      ),
    };
    if (table.partitions[0]!.length !== table.partitions[1]!.length) {
      await assert.rejects(
        bundlePlugin.run(makeCtx(bundlePlugin, {}, join(root, 'bad1'), swapped)),
        /student 0 .* outputs \d+ classes, partition 0 has/,
      );
    }
    const wrongRouter = { ...inputs, router: [['s0', join(root, 'student0')]] as [string, string][] };
    if (table.partitions[0]!.length !== K)
      await assert.rejects(
        bundlePlugin.run(makeCtx(bundlePlugin, {}, join(root, 'bad2'), wrongRouter)),
        /outputs \d+ scores, the routing table has 3 partitions/,
      );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
