import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Rng } from '@distillery/runtime/rng';
import {
  balancedKMeans,
  consecutivePartition,
  randomPartition,
  routingTable,
  verticalPartition,
} from '../src/partition.js';
import partitionPlugin from '../src/partition-plugin.js';
import { makeCtx, writeDataset } from './helpers.js';

function sizes(parts: number[][]): number[] {
  return parts.map((p) => p.length);
}

test('consecutive: contiguous id ranges, sizes differ by at most one', () => {
  const parts = consecutivePartition(10, 3);
  assert.deepEqual(parts, [
    [0, 1, 2, 3],
    [4, 5, 6],
    [7, 8, 9],
  ]);
  const table = routingTable(10, parts, 'consecutive', 0);
  assert.deepEqual(table.classToStudent, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
});

test('random: a seeded permutation, disjoint and complete, different seeds differ', () => {
  const a = randomPartition(100, 4, 1);
  const b = randomPartition(100, 4, 1);
  const c = randomPartition(100, 4, 2);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual(sizes(a), [25, 25, 25, 25]);
  assert.deepEqual(
    a.flat().sort((x, y) => x - y),
    Array.from({ length: 100 }, (_, i) => i),
  );
});

test('vertical: whole verticals kept together, balanced by the LPT rule', () => {
  // verticals of sizes 5, 4, 3, 3, 1 -> two partitions: {5,3} = 8 and {4,3,1} = 8
  const map = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4];
  const parts = verticalPartition(map, 2);
  assert.deepEqual(sizes(parts), [8, 8]);
  for (const part of parts) {
    const verticals = new Set(part.map((c) => map[c]));
    for (const v of verticals)
      assert.equal(
        part.filter((c) => map[c] === v).length,
        map.filter((x) => x === v).length,
        `vertical ${v} is whole`,
      );
  }
  assert.throws(() => verticalPartition(map, 6), /5 verticals among 6 students/);
});

test('balanced k-means recovers well-separated clusters and respects the capacity', () => {
  // 4 clusters of 6 classes each, far apart in 3-d.
  const rng = new Rng(7);
  const centres = [
    [0, 0, 0],
    [20, 0, 0],
    [0, 20, 0],
    [0, 0, 20],
  ];
  const truth: number[] = [];
  const emb = new Float32Array(24 * 3);
  for (let c = 0; c < 24; c++) {
    const g = c % 4;
    truth.push(g);
    for (let d = 0; d < 3; d++) emb[c * 3 + d] = ((centres[g] as number[])[d] as number) + rng.normal();
  }
  const { partitions } = balancedKMeans(emb, 24, 3, 4, 3);
  assert.deepEqual(sizes(partitions), [6, 6, 6, 6]);
  for (const part of partitions)
    assert.equal(new Set(part.map((c) => truth[c])).size, 1, 'each partition is one true cluster');
  // Unbalanced truth (a cluster of 10 and of 2) must still give equal sizes.
  const { partitions: forced } = balancedKMeans(emb.subarray(0, 12 * 3), 12, 3, 3, 1);
  assert.deepEqual(sizes(forced), [4, 4, 4]);
});

test('routing table rejects overlapping, missing or out-of-range classes', () => {
  assert.throws(
    () =>
      routingTable(
        4,
        [
          [0, 1],
          [1, 2, 3],
        ],
        'random',
        0,
      ),
    /class 1 is in partitions 0 and 1/,
  );
  assert.throws(() => routingTable(4, [[0, 1], [2]], 'random', 0), /class 3 is in no partition/);
  assert.throws(
    () =>
      routingTable(
        3,
        [
          [0, 1],
          [2, 5],
        ],
        'random',
        0,
      ),
    /class 5, outside 0..2/,
  );
});

test('balanced k-means: sizes are floor(C/K) or ceil(C/K), never a leftover cluster of one', () => {
  // Three tight groups of three classes and one far outlier class (C = 10, K = 4). A cap of
  // ceil(10/4) = 3 alone yields 3, 3, 3, 1 here: the outlier seeds its own cluster and every
  // other class is nearer one of the three groups.
  const rng = new Rng(11);
  const centres = [
    [0, 0],
    [10, 0],
    [0, 10],
    [100, 100],
  ];
  const group = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3];
  const emb = new Float32Array(10 * 2);
  group.forEach((g, c) => {
    for (let d = 0; d < 2; d++) emb[c * 2 + d] = ((centres[g] as number[])[d] as number) + 0.1 * rng.normal();
  });
  for (const seed of [1, 2, 3, 4, 5]) {
    const { partitions } = balancedKMeans(emb, 10, 2, 4, seed);
    assert.deepEqual(
      sizes(partitions).sort((a, b) => a - b),
      [2, 2, 3, 3],
      `seed ${seed}`,
    );
    assert.deepEqual(
      partitions.flat().sort((a, b) => a - b),
      Array.from({ length: 10 }, (_, i) => i),
    );
  }
});

test('K > C/2 is refused with a message naming the parameter, unless minClasses allows it', () => {
  const emb = Float32Array.from({ length: 20 }, (_, i) => i);
  for (const run of [
    () => consecutivePartition(10, 8),
    () => randomPartition(10, 6, 1),
    () => balancedKMeans(emb, 10, 2, 8, 1),
  ]) {
    assert.throws(
      run,
      /parameter students: K = \d over 10 classes leaves a student fewer than 2 classes.*K <= 5.*minClasses/,
    );
  }
  assert.deepEqual(sizes(consecutivePartition(10, 5)), [2, 2, 2, 2, 2]);
  assert.deepEqual(sizes(consecutivePartition(10, 8, 1)), [2, 2, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual(sizes(consecutivePartition(10, 1)), [10]);
  // Whole verticals: a vertical of one class cannot be paired, so K = 3 here is refused.
  assert.throws(
    () => verticalPartition([0, 0, 0, 1, 1, 1, 2], 3),
    /partition 2 1 class\(es\), fewer than minClasses = 2/,
  );
});

test('partition stage: K > C/2 fails before anything is written, naming the stage and parameter', async () => {
  const root = mkdtempSync(join(tmpdir(), 'msd-partition-'));
  try {
    const labels = Array.from({ length: 40 }, (_, i) => i % 10);
    await writeDataset(
      join(root, 'data'),
      Float32Array.from({ length: 40 * 3 }, (_, i) => Math.sin(i)),
      3,
      labels,
      labels.map(() => 'train'),
      10,
    );
    const inputs = { dataset: [['data', join(root, 'data')]] as [string, string][] };
    const refused = join(root, 'k6');
    mkdirSync(refused);
    await assert.rejects(
      partitionPlugin.run(makeCtx(partitionPlugin, { students: 6, strategy: 'consecutive' }, refused, inputs)),
      /parameter students: K = 6 over 10 classes .*set minClasses to 1/,
    );
    assert.ok(!existsSync(join(refused, 'routing.json')));
    const allowed = join(root, 'k6-allowed');
    mkdirSync(allowed);
    await partitionPlugin.run(
      makeCtx(partitionPlugin, { students: 6, strategy: 'consecutive', minClasses: 1 }, allowed, inputs),
    );
    const table = JSON.parse(readFileSync(join(allowed, 'routing.json'), 'utf8')) as { partitions: number[][] };
    assert.deepEqual(sizes(table.partitions), [2, 2, 2, 2, 1, 1]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
