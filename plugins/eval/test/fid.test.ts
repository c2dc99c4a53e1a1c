import { Rng } from '@distillery/runtime/rng';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EigenvalueDecomposition, Matrix, inverse } from 'ml-matrix';
import { GraphBuilder, encodeModel } from '@distillery/runtime/onnx';
import {
  encodeNpy,
  extractFeatureStats,
  frechetDistance,
  loadFidInput,
  parseNpy,
  readNpzStats,
  statsFromMatrix,
  GaussianAccumulator,
  statsFromNpy,
  symmetricEigenvalues,
  writeNpzStats,
  type GaussianStats,
} from '../src/index.js';

/** Seeded standard normal samples (the project's Rng). */
function normals(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.normal();
}

/** N x D features x = z A + b with z standard normal (row-major). */
function features(seed: number, n: number, d: number, mix: number[][], shift: number): Float64Array {
  const z = normals(seed);
  const out = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    const zr = Array.from({ length: d }, z);
    for (let j = 0; j < d; j++) {
      let s = shift;
      for (let k = 0; k < d; k++) s += zr[k]! * mix[k]![j]!;
      out[r * d + j] = s;
    }
  }
  return out;
}

function randomMatrix(seed: number, d: number, scale: number): number[][] {
  const z = normals(seed);
  return Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => (i === j ? 1 : 0) + scale * z()));
}

const toMatrix = (a: Float64Array, d: number): Matrix =>
  new Matrix(Array.from({ length: d }, (_, i) => Array.from(a.subarray(i * d, i * d + d))));

/** Principal square root by the Denman-Beavers iteration: an algorithm independent of the code under test. */
function sqrtmDenmanBeavers(a: Matrix): Matrix {
  let y = a.clone();
  let z = Matrix.eye(a.rows);
  for (let it = 0; it < 60; it++) {
    const yNext = y.clone().add(inverse(z)).mul(0.5);
    const zNext = z.clone().add(inverse(y)).mul(0.5);
    y = yNext;
    z = zNext;
  }
  return y;
}

function relClose(actual: number, expected: number, rel: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= rel * Math.abs(expected),
    `${what}: ${actual} vs ${expected} (rel ${Math.abs(actual - expected) / Math.abs(expected)})`,
  );
}

test('npy: float64 round trip and a hand-written float32 file', () => {
  const data = Float64Array.from([1.5, -2, 3.25, 1e-300, 7, 8]);
  const back = parseNpy(encodeNpy(data, [2, 3]), 'x.npy');
  assert.deepEqual(back.shape, [2, 3]);
  assert.deepEqual(Array.from(back.data), Array.from(data));
  // Version 1.0 header, '<f4', shape (2,), padded to a 64-byte multiple as numpy writes it.
  let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  header += ' '.repeat(128 - 10 - header.length - 1) + '\n';
  const bytes = new Uint8Array(128 + 8);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length, 0]);
  bytes.set(new TextEncoder().encode(header), 10);
  new DataView(bytes.buffer).setFloat32(128, 0.25, true);
  new DataView(bytes.buffer).setFloat32(132, -3, true);
  assert.deepEqual(Array.from(parseNpy(bytes, 'f.npy').data), [0.25, -3]);
  assert.throws(() => parseNpy(bytes.subarray(0, 134), 'short.npy'), /short\.npy: expected 8 data bytes/);
});

test('streamed statistics equal the two-pass mean and N-1 covariance', async () => {
  const n = 37;
  const d = 5;
  const x = features(3, n, d, randomMatrix(4, d, 0.5), 100); // large offset tests the shifted accumulation
  const dir = mkdtempSync(join(tmpdir(), 'fid-test-'));
  try {
    const path = join(dir, 'f.npy');
    writeFileSync(path, encodeNpy(x, [n, d]));
    const streamed = await statsFromNpy(path, 4); // chunk boundary inside the data
    const mu = new Float64Array(d);
    for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) mu[j]! += x[r * d + j]! / n;
    for (let i = 0; i < d; i++) {
      relClose(streamed.mu[i]!, mu[i]!, 1e-13, `mu[${i}]`);
      for (let j = 0; j < d; j++) {
        let c = 0;
        for (let r = 0; r < n; r++) c += (x[r * d + i]! - mu[i]!) * (x[r * d + j]! - mu[j]!);
        relClose(streamed.sigma[i * d + j]!, c / (n - 1), 1e-9, `sigma[${i},${j}]`);
      }
    }
    assert.equal(streamed.count, n);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('1-D and diagonal cases match the closed form', async () => {
  const a: GaussianStats = {
    dim: 3,
    mu: Float64Array.from([0, 1, 2]),
    sigma: Float64Array.from([4, 0, 0, 0, 1, 0, 0, 0, 9]),
  };
  const b: GaussianStats = {
    dim: 3,
    mu: Float64Array.from([1, 1, 0]),
    sigma: Float64Array.from([1, 0, 0, 0, 4, 0, 0, 0, 0.25]),
  };
  // sum (mu diff)^2 + sum (sqrt(a_i) - sqrt(b_i))^2 = 5 + (1 + 1 + 6.25)
  relClose(await frechetDistance(a, b), 13.25, 1e-14, 'diagonal');
  const x = features(9, 200, 1, [[2]], 1);
  const y = features(10, 150, 1, [[0.5]], -1);
  const sx = await statsFromMatrix(x, 200, 1);
  const sy = await statsFromMatrix(y, 150, 1);
  const expected = (sx.mu[0]! - sy.mu[0]!) ** 2 + (Math.sqrt(sx.sigma[0]!) - Math.sqrt(sy.sigma[0]!)) ** 2;
  relClose(await frechetDistance(sx, sy), expected, 1e-12, '1-D');
});

test('general covariances agree with an independent sqrtm (Denman-Beavers)', async () => {
  const d = 6;
  const sx = await statsFromMatrix(features(1, 400, d, randomMatrix(2, d, 0.4), 0.3), 400, d);
  const sy = await statsFromMatrix(features(5, 300, d, randomMatrix(6, d, 0.6), -0.2), 300, d);
  const prod = toMatrix(sx.sigma, d).mmul(toMatrix(sy.sigma, d));
  const root = sqrtmDenmanBeavers(prod);
  let tr = 0;
  for (let i = 0; i < d; i++) tr += root.get(i, i);
  let diff = 0;
  let t1 = 0;
  let t2 = 0;
  for (let i = 0; i < d; i++) {
    diff += (sx.mu[i]! - sy.mu[i]!) ** 2;
    t1 += sx.sigma[i * d + i]!;
    t2 += sy.sigma[i * d + i]!;
  }
  const fid = await frechetDistance(sx, sy);
  relClose(fid, diff + t1 + t2 - 2 * tr, 1e-9, 'FID');
  assert.ok(Math.abs(await frechetDistance(sx, sx)) < 1e-10, 'FID of a set with itself is 0');
});

test('N < D uses the singular covariances and matches the Gram-matrix identity', async () => {
  // tr sqrtm(S1 S2) = sum of singular values of X1c X2cᵀ / sqrt((n1-1)(n2-1)).
  const d = 12;
  const n1 = 5;
  const n2 = 7;
  const x = features(21, n1, d, randomMatrix(22, d, 0.5), 0.5);
  const y = features(23, n2, d, randomMatrix(24, d, 0.5), 0);
  const sx = await statsFromMatrix(x, n1, d);
  const sy = await statsFromMatrix(y, n2, d);
  const centred = (m: Float64Array, n: number, mu: Float64Array) =>
    new Matrix(Array.from({ length: n }, (_, r) => Array.from({ length: d }, (_, j) => m[r * d + j]! - mu[j]!)));
  const c = centred(x, n1, sx.mu)
    .mmul(centred(y, n2, sy.mu).transpose())
    .div(Math.sqrt((n1 - 1) * (n2 - 1)));
  const eig = new EigenvalueDecomposition(c.mmul(c.transpose()), { assumeSymmetric: true }).realEigenvalues;
  const tr = eig.reduce((s, v) => s + Math.sqrt(Math.max(v, 0)), 0);
  let rest = 0;
  for (let i = 0; i < d; i++) rest += (sx.mu[i]! - sy.mu[i]!) ** 2 + sx.sigma[i * d + i]! + sy.sigma[i * d + i]!;
  relClose(await frechetDistance(sx, sy), rest - 2 * tr, 1e-6, 'FID N<D');
});

test('symmetric eigenvalues agree with ml-matrix', () => {
  const d = 9;
  const m = randomMatrix(31, d, 1);
  const sym = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) sym[i * d + j] = m[i]![j]! + m[j]![i]!;
  const ours = Array.from(symmetricEigenvalues(sym, d)).sort((a, b) => a - b);
  const ref = new EigenvalueDecomposition(toMatrix(sym, d), { assumeSymmetric: true }).realEigenvalues.sort(
    (a, b) => a - b,
  );
  ours.forEach((v, i) => assert.ok(Math.abs(v - ref[i]!) < 1e-12, `eigenvalue ${i}: ${v} vs ${ref[i]}`));
});

test('npz statistics round trip; bad inputs are named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fid-test-'));
  try {
    const d = 4;
    const x = features(41, 50, d, randomMatrix(42, d, 0.3), 0);
    const npy = join(dir, 'x.npy');
    writeFileSync(npy, encodeNpy(x, [50, d]));
    const stats = await loadFidInput(npy);
    const npz = join(dir, 'x.npz');
    await writeNpzStats(npz, stats);
    const back = await readNpzStats(npz);
    assert.deepEqual(Array.from(back.mu), Array.from(stats.mu));
    assert.deepEqual(Array.from(back.sigma), Array.from(stats.sigma));
    assert.ok(Math.abs(await frechetDistance(stats, back)) < 1e-10);

    const wide = join(dir, 'wide.npy');
    writeFileSync(wide, encodeNpy(new Float64Array(15), [3, 5]));
    await assert.rejects(
      async () => frechetDistance(stats, await loadFidInput(wide), {}, [npy, wide]),
      /feature widths differ: .*x\.npy has D = 4, .*wide\.npy has D = 5/,
    );
    const nan = Float64Array.from(x);
    nan[2 * d + 1] = Number.NaN;
    const bad = join(dir, 'nan.npy');
    writeFileSync(bad, encodeNpy(nan, [50, d]));
    await assert.rejects(loadFidInput(bad), /nan\.npy: feature row 2 has a non-finite value \(NaN\) in column 1/);
    await assert.rejects(loadFidInput(join(dir, 'x.txt')), /expected a \.npy feature matrix/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('features from an ONNX extractor give the statistics of the model outputs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fid-test-'));
  try {
    const w = Float32Array.from([1, 0.5, -1, 0, 2, 0.25, 0.5, -0.5, 1, 1, 0, 3]); // 4 x 3
    const model = new GraphBuilder('extractor')
      .input('x', 'float32', ['batch', 4])
      .initializer('w', w, [4, 3])
      .node('MatMul', ['x', 'w'], ['y'])
      .node('Relu', ['y'], ['features'])
      .output('features', 'float32', ['batch', 3])
      .build();
    const path = join(dir, 'extractor.onnx');
    writeFileSync(path, encodeModel(model));
    const z = normals(51);
    const inputs = Float32Array.from({ length: 40 * 4 }, z);
    const batches = [0, 16, 32].map((s) => {
      const rows = Math.min(16, 40 - s);
      return { data: inputs.slice(s * 4, (s + rows) * 4), shape: [rows, 4] };
    });
    const stats = await extractFeatureStats(path, batches);
    // Expected: the same features computed here in float32 arithmetic order (x·w then ReLU).
    const feats = new Float64Array(40 * 3);
    for (let r = 0; r < 40; r++) {
      for (let j = 0; j < 3; j++) {
        let s = 0;
        for (let k = 0; k < 4; k++) s += inputs[r * 4 + k]! * w[k * 3 + j]!;
        feats[r * 3 + j] = Math.max(0, Math.fround(s));
      }
    }
    const expected = await statsFromMatrix(feats, 40, 3);
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(stats.mu[i]! - expected.mu[i]!) < 1e-5, `mu[${i}]`);
    for (let i = 0; i < 9; i++) assert.ok(Math.abs(stats.sigma[i]! - expected.sigma[i]!) < 1e-5, `sigma[${i}]`);
    assert.equal(stats.count, 40);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('streaming statistics: any column-block split and float32 or float64 chunks give the two-pass float64 mean and N-1 covariance', async () => {
  const n = 37;
  const d = 13;
  const x = features(11, n, d, randomMatrix(12, d, 0.5), 3.0);
  // Two-pass reference in float64, written out here.
  const mu = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) mu[j]! += x[r * d + j]! / n;
  const cov = new Float64Array(d * d);
  for (let r = 0; r < n; r++)
    for (let i = 0; i < d; i++)
      for (let j = 0; j < d; j++) cov[i * d + j]! += ((x[r * d + i]! - mu[i]!) * (x[r * d + j]! - mu[j]!)) / (n - 1);
  const x32 = Float32Array.from(x);
  const mu32 = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) mu32[j]! += x32[r * d + j]! / n;
  for (const blocks of [1, 2, 4, 5, 13]) {
    for (const [name, data, wantMu] of [
      ['float64', x, mu],
      ['float32', x32, mu32],
    ] as const) {
      const acc = new GaussianAccumulator(d, 'test', blocks);
      // Uneven chunks: 10, 10, 10, 7 rows.
      for (let r = 0; r < n; r += 10) await acc.add(data.subarray(r * d, Math.min(n, r + 10) * d), Math.min(10, n - r));
      const s = acc.finish();
      for (let j = 0; j < d; j++)
        assert.ok(Math.abs(s.mu[j]! - wantMu[j]!) < 1e-12, `${name} blocks ${blocks}: mu[${j}]`);
      for (let i = 0; i < d * d; i++) {
        const tol = name === 'float64' ? 1e-12 : 1e-5; // float32 inputs differ from x by rounding
        assert.ok(
          Math.abs(s.sigma[i]! - cov[i]!) <= tol * Math.max(1, Math.abs(cov[i]!)),
          `${name} blocks ${blocks}: sigma[${i}] ${s.sigma[i]} vs ${cov[i]}`,
        );
        assert.equal(s.sigma[i], s.sigma[(i % d) * d + Math.floor(i / d)], 'symmetric');
      }
    }
  }
  const bad = Float32Array.from(x32);
  bad[2 * d + 5] = Number.NaN;
  bad[20 * d + 2 * d + 5] = Number.POSITIVE_INFINITY;
  const acc = new GaussianAccumulator(d, 'feats.npy', 4);
  await assert.rejects(
    acc.add(bad.subarray(0, 20 * d), 20),
    /feats\.npy: feature row 2 has a non-finite value \(NaN\) in column 5/,
  );
  const acc2 = new GaussianAccumulator(d, 'feats.npy', 4);
  await acc2.add(x32.subarray(0, 20 * d), 20);
  await assert.rejects(
    acc2.add(bad.subarray(20 * d, 37 * d), 17),
    /feats\.npy: feature row 22 has a non-finite value \(Infinity\) in column 5/,
  );
});
