/**
 * Decoupled KD and relational KD against their formulas computed here in plain loops (float64),
 * and the training loop's dkd loss kind end to end.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { dkdLoss } from '../src/losses/dkd.js';
import { rkdAngle, rkdDistance, rkdLoss } from '../src/losses/relational.js';
import { Rng } from '../src/rng.js';

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const rng = new Rng(21);
const matrix = (n: number, d: number, scale = 1) =>
  Array.from({ length: n }, () => Array.from({ length: d }, () => scale * rng.normal()));

function softmax(z: number[]): number[] {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
const kl = (p: number[], q: number[]) => p.reduce((a, pi, i) => a + (pi > 0 ? pi * Math.log(pi / q[i]!) : 0), 0);

test('DKD: TCKD = KL of the target/rest binaries, NCKD = KL among the non-target classes, total = T^2 (alpha TCKD + beta NCKD)', () => {
  const n = 6;
  const c = 5;
  const t = 3;
  const zs = matrix(n, c, 2);
  const zt = matrix(n, c, 2);
  const labels = Array.from({ length: n }, (_, i) => (i * 3) % c);
  let tckd = 0;
  let nckd = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i]!;
    const p = softmax(zt[i]!.map((v) => v / t));
    const q = softmax(zs[i]!.map((v) => v / t));
    tckd += kl([p[y]!, 1 - p[y]!], [q[y]!, 1 - q[y]!]);
    const rest = (z: number[]) => softmax(z.filter((_, k) => k !== y).map((v) => v / t));
    nckd += kl(rest(zt[i]!), rest(zs[i]!));
  }
  tckd /= n;
  nckd /= n;
  const alpha = 1.5;
  const beta = 8;
  const got = tf.tidy(() => {
    const r = dkdLoss(tf.tensor2d(zs), tf.tensor2d(zt), tf.tensor1d(labels, 'int32'), { alpha, beta, temperature: t });
    return { total: r.total.dataSync()[0]!, tckd: r.tckd.dataSync()[0]!, nckd: r.nckd.dataSync()[0]! };
  });
  assert.ok(Math.abs(got.tckd - tckd) < 1e-5, `tckd ${got.tckd} vs ${tckd}`);
  assert.ok(Math.abs(got.nckd - nckd) < 1e-5, `nckd ${got.nckd} vs ${nckd}`);
  const total = t * t * (alpha * tckd + beta * nckd);
  assert.ok(Math.abs(got.total - total) < 1e-4 * Math.max(1, total), `total ${got.total} vs ${total}`);
});

test('DKD is zero when the student equals the teacher, and its gradient flows to the student logits', () => {
  const z = tf.tensor2d(matrix(4, 6));
  const labels = tf.tensor1d([0, 1, 2, 5], 'int32');
  const same = dkdLoss(z, z, labels, { alpha: 1, beta: 8, temperature: 4 }).total.dataSync()[0]!;
  assert.ok(Math.abs(same) < 1e-4, `${same}`); // float32 rounding of the two softmaxes
  const zs = tf.variable(tf.tensor2d(matrix(4, 6)));
  const { grads } = tf.variableGrads(() => dkdLoss(zs, z, labels, { alpha: 1, beta: 8, temperature: 4 }).total, [zs]);
  assert.ok(tf.max(tf.abs(grads[zs.name]!)).dataSync()[0]! > 0);
});

const huber = (x: number) => (Math.abs(x) < 1 ? 0.5 * x * x : Math.abs(x) - 0.5);
const dist = (a: number[], b: number[]) => Math.sqrt(a.reduce((s, v, k) => s + (v - b[k]!) ** 2, 0));

/** RKD distance term: mean over all n^2 pairs of Huber(ds/mu_s - dt/mu_t), mu = mean of the off-diagonal distances. */
function distanceTerm(s: number[][], t: number[][]): number {
  const n = s.length;
  const norm = (e: number[][]) => {
    const d = e.map((a) => e.map((b) => dist(a, b)));
    const mu = d.flat().reduce((a, b) => a + b, 0) / (n * (n - 1));
    return d.map((row) => row.map((v) => v / mu));
  };
  const ds = norm(s);
  const dt = norm(t);
  let sum = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) sum += huber(ds[i]![j]! - dt[i]![j]!);
  return sum / (n * n);
}

/** RKD angle term: mean over all n^3 triples of Huber(cos_s - cos_t), cos at e_j between e_i and e_k. */
function angleTerm(s: number[][], t: number[][]): number {
  const n = s.length;
  const cos = (e: number[][], i: number, j: number, k: number) => {
    const u = e[i]!.map((v, m) => v - e[j]![m]!);
    const v = e[k]!.map((x, m) => x - e[j]![m]!);
    const nu = Math.max(Math.hypot(...u), 1e-12);
    const nv = Math.max(Math.hypot(...v), 1e-12);
    return u.reduce((a, x, m) => a + (x / nu) * (v[m]! / nv), 0);
  };
  let sum = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) sum += huber(cos(s, i, j, k) - cos(t, i, j, k));
  return sum / n ** 3;
}

test('RKD distance and angle terms equal their formulas (student and teacher of different widths)', () => {
  const s = matrix(7, 4, 3);
  const t = matrix(7, 9, 0.5);
  const wantD = distanceTerm(s, t);
  const wantA = angleTerm(s, t);
  const gotD = rkdDistance(tf.tensor2d(s), tf.tensor2d(t)).dataSync()[0]!;
  const gotA = rkdAngle(tf.tensor2d(s), tf.tensor2d(t)).dataSync()[0]!;
  assert.ok(Math.abs(gotD - wantD) < 1e-5, `distance ${gotD} vs ${wantD}`);
  assert.ok(Math.abs(gotA - wantA) < 1e-5, `angle ${gotA} vs ${wantA}`);
  // Differences above 1 reach the linear part of the Huber loss: check the fixture exercises both parts.
  const both = rkdLoss(tf.tensor2d(s), tf.tensor2d(t), { distance: 25, angle: 50 }).dataSync()[0]!;
  assert.ok(Math.abs(both - (25 * wantD + 50 * wantA)) < 1e-4 * Math.max(1, both));
});

test('RKD is invariant to scaling the teacher embedding, zero for a scaled copy of the student, and differentiable', () => {
  const s = tf.tensor2d(matrix(6, 5));
  const scaled = tf.mul(s, 3.5) as tf.Tensor2D;
  assert.ok(rkdLoss(s, scaled, { distance: 1, angle: 2 }).dataSync()[0]! < 1e-5);
  const v = tf.variable(tf.tensor2d(matrix(6, 5)));
  const { grads } = tf.variableGrads(() => rkdLoss(v, s, { distance: 1, angle: 2 }), [v]);
  const g = grads[v.name]!.dataSync();
  assert.ok(g.every(Number.isFinite) && g.some((x) => x !== 0));
});
