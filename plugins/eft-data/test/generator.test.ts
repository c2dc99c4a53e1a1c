import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openShardSet, parseDatasetSchema } from '@distillery/runtime/shards';
import {
  DEFAULT_GEOMETRY,
  EftGenerator,
  Permutation,
  buildTaxonomy,
  overlapStatistics,
  verticalSizes,
  type EftGeometry,
} from '../src/generator.js';
import { generateEft } from '../src/generate.js';
import { readTaxonomy, validateTaxonomy, verticalClasses } from '../src/taxonomy.js';

const SMALL: EftGeometry = { ...DEFAULT_GEOMETRY, classes: 300, verticals: 5, groupSize: 20 };

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'eft-data-'));
}

test('vertical sizes: hand-computed largest-remainder rounding, long tail, sum', () => {
  // weights 1, 1/2, 1/3 of 7 spare classes: 3.818, 1.909, 1.273 -> floors 3,1,1 (+1 reserved each) = 8,
  // two left go to the largest remainders (v1: .909, v0: .818).
  assert.deepEqual(verticalSizes(10, 3, 1), [5, 3, 2]);
  assert.deepEqual(verticalSizes(12, 4, 0), [3, 3, 3, 3]);
  const sizes = verticalSizes(100_000, 20, 1);
  assert.equal(
    sizes.reduce((a, b) => a + b, 0),
    100_000,
  );
  for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i]! <= sizes[i - 1]!, 'sizes fall with rank');
  // Zipf(1) over 20: largest / smallest = 20 (within rounding).
  assert.ok(Math.abs(sizes[0]! / sizes[19]! - 20) < 0.1, `ratio ${sizes[0]! / sizes[19]!}`);
  assert.throws(() => verticalSizes(3, 5, 1), /classes \(3\) must be an integer >= verticals \(5\)/);
});

test('taxonomy: hierarchy vertical -> group -> class, contiguous vertical ranges, validation errors', () => {
  const t = buildTaxonomy({ classes: 1000, verticals: 7, tailExponent: 1, groupSize: 30 }, 'test');
  validateTaxonomy(t, 't');
  const classes = verticalClasses(t);
  let next = 0;
  classes.forEach((ids, v) => {
    assert.equal(ids.length, t.verticals[v]!.size);
    assert.deepEqual(
      ids,
      Array.from({ length: ids.length }, (_, i) => next + i),
      'contiguous ids',
    );
    next += ids.length;
    assert.equal(t.verticals[v]!.groups, Math.ceil(ids.length / 30));
  });
  const groupSizes = new Map<number, number>();
  for (const g of t.classGroup) groupSizes.set(g, (groupSizes.get(g) ?? 0) + 1);
  for (const size of groupSizes.values()) assert.ok(size >= 1 && size <= 30);
  // Each group lies in one vertical.
  t.classGroup.forEach((g, c) => assert.equal(t.groupVertical[g], t.classVertical[c]));
  const broken = { ...t, classGroup: [...t.classGroup] };
  broken.classGroup[0] = t.classGroup[t.classGroup.length - 1]!;
  assert.throws(
    () => validateTaxonomy(broken, 'x.json'),
    /x\.json: class 0 is in vertical 0 but its group \d+ belongs to vertical 6/,
  );
});

test('permutation: a bijection of [0, n) that depends on the seed', () => {
  for (const n of [1, 7, 1000, 12345]) {
    const p = new Permutation(n, 42);
    const seen = new Uint8Array(n);
    for (let i = 0; i < n; i++) seen[p.at(i)]!++;
    assert.ok(
      seen.every((s) => s === 1),
      `n=${n}`,
    );
  }
  const a = new Permutation(1000, 1);
  const b = new Permutation(1000, 2);
  let same = 0;
  for (let i = 0; i < 1000; i++) if (a.at(i) === b.at(i)) same++;
  assert.ok(same < 20, `${same} fixed points shared`);
});

test('samples: noise energy matches the geometry, sample mean converges to the prototype', () => {
  const g = { ...SMALL, classes: 50, verticals: 2 };
  const gen = new EftGenerator(g);
  const d = g.dim;
  const p = new Float64Array(d);
  gen.prototype(7, p);
  const x = new Float32Array(d);
  const n = 3000;
  const mean = new Float64Array(d);
  let energy = 0;
  for (let i = 0; i < n; i++) {
    gen.sample('train', 7, i, x);
    for (let j = 0; j < d; j++) {
      mean[j]! += x[j]! / n;
      energy += (x[j]! - p[j]!) ** 2 / n;
    }
  }
  // Orthonormal bases: E||x - p||^2 = d iso^2 + r within^2 + q nuisance^2.
  const expected =
    d * g.isotropicNoise ** 2 + g.subspaceRank * g.withinNoise ** 2 + g.nuisanceRank * g.nuisanceStd ** 2;
  assert.ok(Math.abs(energy / expected - 1) < 0.03, `energy ${energy} vs ${expected}`);
  let err = 0;
  for (let j = 0; j < d; j++) err += (mean[j]! - p[j]!) ** 2;
  // E||mean - p||^2 = expected / n; allow 1.5x.
  assert.ok(err < (1.5 * expected) / n, `mean error ${err}`);
});

test('overlap: neither trivial nor hopeless at the defaults, confusions inside groups, withinNoise sets difficulty', () => {
  const base = { ...DEFAULT_GEOMETRY, classes: 1000 };
  const s = overlapStatistics(new EftGenerator(base), 300);
  assert.ok(s.oracleTop1 > 0.5 && s.oracleTop1 < 0.97, `oracle top-1 ${s.oracleTop1}`);
  assert.ok(s.oracleTop5 > s.oracleTop1);
  assert.ok(s.errorsInGroup >= 0.9, `errors in group ${s.errorsInGroup}`);
  // The noise norm exceeds the sibling spacing, yet most samples are nearest their own prototype.
  assert.ok(s.meanNoiseNorm > s.meanSiblingDistance);
  const easy = overlapStatistics(new EftGenerator({ ...base, withinNoise: 0.2 }), 300);
  const hard = overlapStatistics(new EftGenerator({ ...base, withinNoise: 1.2 }), 300);
  assert.ok(
    easy.oracleTop1 > s.oracleTop1 && s.oracleTop1 > hard.oracleTop1,
    `${easy.oracleTop1} > ${s.oracleTop1} > ${hard.oracleTop1}`,
  );
});

async function readAll(dir: string) {
  const set = await openShardSet(dir);
  const ids: string[] = [];
  const splits: string[] = [];
  const labels: number[] = [];
  const features: number[] = [];
  for await (const b of set.batches()) {
    ids.push(...b.strings('id'));
    splits.push(...b.strings('split'));
    labels.push(...b.numeric('label'));
    const xs = b.numeric('features');
    for (let r = 0; r < b.numRows; r++) features.push(xs[r * 256]!, xs[r * 256 + 255]!);
  }
  return { set, ids, splits, labels, features };
}

test('generate: split sizes, every class perClass times, dataset/1 schema, taxonomy files', async () => {
  const dir = tmp();
  try {
    const r = await generateEft({
      geometry: SMALL,
      perClass: { train: 3, val: 1, test: 2 },
      outDir: dir,
      rowsPerShard: 500,
      chunkRows: 128,
      statsSamples: 20,
    });
    assert.equal(r.manifest.totalRows, 300 * 6);
    const { set, ids, splits, labels } = await readAll(dir);
    const info = parseDatasetSchema(set.schema);
    assert.deepEqual([info.input, info.labels, info.numClasses, info.width], ['features', 'single', 300, 256]);
    assert.equal(new Set(ids).size, ids.length, 'ids unique');
    for (const [split, per] of [
      ['train', 3],
      ['val', 1],
      ['test', 2],
    ] as const) {
      const counts = new Array<number>(300).fill(0);
      splits.forEach((s, i) => s === split && counts[labels[i]!]!++);
      assert.ok(
        counts.every((c) => c === per),
        `${split}: every class ${per} times`,
      );
    }
    // Rows are mixed: the first 100 training rows span many verticals.
    const t = readTaxonomy(dir);
    assert.ok(new Set(labels.slice(0, 100).map((y) => t.classVertical[y])).size >= 4);
    const map = JSON.parse(readFileSync(join(dir, 'verticals', `${t.verticals[1]!.name}.json`), 'utf8')) as number[];
    assert.deepEqual(map, verticalClasses(t)[1]);
    const stats = JSON.parse(readFileSync(join(dir, 'stats.json'), 'utf8')) as { overlap: { samples: number } };
    assert.equal(stats.overlap.samples, 20);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('generate: same seed gives the same bytes; same content whatever the chunking; another seed differs', async () => {
  const dirs = [tmp(), tmp(), tmp(), tmp()];
  try {
    const run = (dir: string, seed: number, chunkRows: number) =>
      generateEft({
        geometry: { ...SMALL, seed },
        perClass: { train: 2, val: 0, test: 1 },
        outDir: dir,
        rowsPerShard: 400,
        chunkRows,
        statsSamples: 0,
      });
    const a = await run(dirs[0]!, 5, 64);
    const again = await run(dirs[3]!, 5, 64);
    assert.deepEqual(
      a.manifest.shards.map((s) => s.sha256),
      again.manifest.shards.map((s) => s.sha256),
    );
    await run(dirs[1]!, 5, 1000); // other record-batch sizes inside the shards, same rows
    await run(dirs[2]!, 6, 64);
    const [ra, rb, rc] = await Promise.all(dirs.slice(0, 3).map((d) => readAll(d)));
    assert.deepEqual([ra!.ids, ra!.labels, ra!.features], [rb!.ids, rb!.labels, rb!.features]);
    assert.notDeepEqual(ra!.labels, rc!.labels);
    assert.notDeepEqual(ra!.features, rc!.features);
    assert.equal(
      readFileSync(join(dirs[0]!, 'taxonomy.json'), 'utf8'),
      readFileSync(join(dirs[1]!, 'taxonomy.json'), 'utf8'),
    );
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('generate: an abort leaves no shard, manifest or taxonomy behind; bad geometry names the parameter', async () => {
  const dir = tmp();
  try {
    const controller = new AbortController();
    await assert.rejects(
      generateEft({
        geometry: SMALL,
        perClass: { train: 4, val: 0, test: 1 },
        outDir: dir,
        rowsPerShard: 100,
        chunkRows: 100,
        statsSamples: 0,
        signal: controller.signal,
        progress: (done) => done >= 500 && controller.abort(),
      }),
      /aborted after 500 rows/,
    );
    assert.deepEqual(readdirSync(dir), []);
    await assert.rejects(
      generateEft({
        geometry: { ...SMALL, withinNoise: -1 },
        perClass: { train: 1, val: 0, test: 0 },
        outDir: dir,
        rowsPerShard: 100,
        chunkRows: 100,
        statsSamples: 0,
      }),
      /withinNoise must be a finite number >= 0/,
    );
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
