import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '@distillery/runtime/rng';
import { frechetBootstrap, frechetOfSets, modeCoverage, precisionRecall, quantileSorted } from '../src/metrics.js';
import { classMap } from '../src/gen-eval.js';
import type { GeneratorInfo } from '../src/distill.js';

function gaussian(n: number, mean: number[], std: number[], seed: number): Float32Array {
  const rng = new Rng(seed);
  const d = mean.length;
  const x = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) x[i * d + j] = mean[j]! + std[j]! * rng.normal();
  return x;
}

test('Frechet distance of Gaussian samples matches the closed form of their moments', async () => {
  // Near-diagonal covariances: FD ~ |mu1 - mu2|^2 + sum_j (s1_j - s2_j)^2 from the samples' own moments
  // (off-diagonal terms are sampling noise of order 1e-2, contributing ~1e-4).
  const n = 20000;
  const a = gaussian(n, [0, 0], [1, 2], 1);
  const b = gaussian(n, [1, -1], [2, 2], 2);
  const moments = (x: Float32Array, j: number) => {
    let m = 0;
    for (let i = 0; i < n; i++) m += x[2 * i + j]!;
    m /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[2 * i + j]! - m) ** 2;
    return { m, s: Math.sqrt(v / (n - 1)) };
  };
  let closed = 0;
  for (const j of [0, 1]) {
    const ma = moments(a, j);
    const mb = moments(b, j);
    closed += (ma.m - mb.m) ** 2 + (ma.s - mb.s) ** 2;
  }
  const fd = await frechetOfSets(a, b, 2);
  assert.ok(Math.abs(fd - closed) < 0.01, `FD ${fd} vs ${closed}`);
  assert.ok(Math.abs(fd - 3) < 0.3, `FD ${fd} vs population value 3`);
  assert.ok((await frechetOfSets(a, gaussian(n, [0, 0], [1, 2], 3), 2)) < 0.01);
});

test('precision/recall: same distribution high, disjoint zero, a collapsed generator has low recall', () => {
  const real = gaussian(600, [0, 0], [1, 1], 4);
  const same = precisionRecall(real, gaussian(600, [0, 0], [1, 1], 5), 2);
  assert.ok(same.precision > 0.85 && same.recall > 0.85, JSON.stringify(same));
  const far = precisionRecall(real, gaussian(600, [50, 50], [1, 1], 6), 2);
  assert.deepEqual(far, { precision: 0, recall: 0 });
  const collapsed = precisionRecall(real, gaussian(600, [0, 0], [0.1, 0.1], 7), 2);
  assert.ok(collapsed.precision > 0.95 && collapsed.recall < 0.3, JSON.stringify(collapsed));
});

test('mode coverage counts modes with enough nearby samples', () => {
  const centres = [
    [0, 0],
    [10, 0],
    [0, 10],
    [10, 10],
  ];
  const n = 400;
  const x = new Float32Array(n * 2);
  const labels = new Int32Array(n);
  const rng = new Rng(8);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 4;
    x[2 * i] = centres[i % 4]![0]! + 0.5 * rng.normal();
    x[2 * i + 1] = centres[i % 4]![1]! + 0.5 * rng.normal();
  }
  // Generated: 100 points at mode 0, 100 at mode 1, 5 at mode 2, 20 far away.
  const fake: number[] = [];
  for (let i = 0; i < 100; i++) fake.push(0.1, 0, 10, 0.1);
  for (let i = 0; i < 5; i++) fake.push(0, 10);
  for (let i = 0; i < 20; i++) fake.push(5, 5);
  const r = modeCoverage({ x, labels, numClasses: 4 }, Float32Array.from(fake), 2);
  // 225 points, need 0.25 * 225 / 4 = 14 per mode: modes 0 and 1 covered, mode 2 (5 points) not.
  assert.equal(r.coverage, 0.5);
  assert.ok(Math.abs(r.offMode - 20 / 225) < 1e-12);
});

test('class -> generator map: each class owned exactly once', () => {
  const info = (classes: number[]) => ({ numClasses: 4, classes }) as unknown as GeneratorInfo;
  assert.deepEqual(
    [
      ...classMap([
        { stage: 'a', info: info([0, 1]) },
        { stage: 'b', info: info([2, 3]) },
      ]),
    ],
    [0, 0, 1, 1],
  );
  assert.throws(
    () =>
      classMap([
        { stage: 'a', info: info([0, 1]) },
        { stage: 'b', info: info([1, 2, 3]) },
      ]),
    /class 1 is owned by both a and b/,
  );
  assert.throws(() => classMap([{ stage: 'a', info: info([0, 1]) }]), /classes \[2,3\] have no generator/);
});

test('quantileSorted interpolates linearly between order statistics (numpy default)', () => {
  const v = [1, 2, 4, 8, 16];
  assert.equal(quantileSorted(v, 0), 1);
  assert.equal(quantileSorted(v, 1), 16);
  assert.equal(quantileSorted(v, 0.5), 4);
  assert.ok(Math.abs(quantileSorted(v, 0.025) - 1.1) < 1e-12); // at = 0.1: 1 + 0.1 * (2 - 1)
  assert.ok(Math.abs(quantileSorted(v, 0.975) - 15.2) < 1e-12); // at = 3.9: 8 + 0.9 * (16 - 8)
});

test('Frechet bootstrap interval: seeded, brackets the estimate, narrows ~1/sqrt(n), covers the true distance', async () => {
  // N(0, I) vs N(m, I) in 3-d: the true Frechet distance is |m|^2 = 0.5^2 + 0.5^2 = 0.5.
  const mean = [0.5, -0.5, 0];
  const interval = async (n: number, seed: number) => {
    const a = gaussian(n, [0, 0, 0], [1, 1, 1], 100 + n);
    const b = gaussian(n, mean, [1, 1, 1], 200 + n);
    return { point: await frechetOfSets(a, b, 3), ci: await frechetBootstrap(a, b, 3, 60, seed) };
  };
  const small = await interval(300, 1);
  const again = await interval(300, 1);
  const other = await interval(300, 2);
  const large = await interval(3000, 1);
  assert.deepEqual(again.ci, small.ci, 'same seed, same interval');
  assert.notDeepEqual(other.ci, small.ci, 'another seed resamples differently');
  for (const { point, ci } of [small, large])
    assert.ok(ci.low < point && point < ci.high, `${point} in [${ci.low}, ${ci.high}]`);
  const ratio = (small.ci.high - small.ci.low) / (large.ci.high - large.ci.low);
  assert.ok(ratio > 2 && ratio < 5, `10x the samples narrows the interval by ~sqrt(10) = 3.2, got ${ratio}`);
  assert.ok(
    large.ci.low < 0.5 && 0.5 < large.ci.high + 0.02,
    `true distance 0.5 vs [${large.ci.low}, ${large.ci.high}]`,
  );
  await assert.rejects(
    frechetBootstrap(new Float32Array(6), new Float32Array(6), 3, 1, 0),
    /resamples must be an integer >= 2/,
  );
});
