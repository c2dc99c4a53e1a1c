import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import {
  crossEntropy,
  divergenceLoss,
  hintonKd,
  sigmoidKd,
  gatherColumns,
  type DivergenceName,
  type SparseTarget,
} from '../src/losses/index.js';
import { sparseFromLists } from '../src/targets.js';

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'cpu' });
});

// Independent float64 reference: softmax, and D = sum_i q_i f(p_i / q_i) straight from the definition
// (docs/methods.md, "f-divergence losses").
function softmax(z: number[], t = 1): number[] {
  const m = Math.max(...z.map((v) => v / t));
  const e = z.map((v) => Math.exp(v / t - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
const F: Record<string, (t: number) => number> = {
  forward_kl: (t) => (t === 0 ? 0 : t * Math.log(t)),
  reverse_kl: (t) => -Math.log(t),
  js: (t) => (t === 0 ? 0 : t * Math.log(t)) - (t + 1) * Math.log((t + 1) / 2),
  tv: (t) => Math.abs(t - 1) / 2,
  hellinger: (t) => (Math.sqrt(t) - 1) ** 2,
};
function fdiv(name: string, p: number[], q: number[]): number {
  return p.reduce((acc, pi, i) => acc + q[i]! * F[name]!(pi / q[i]!), 0);
}
function kl(p: number[], q: number[]): number {
  return p.reduce((a, pi, i) => a + (pi === 0 ? 0 : pi * Math.log(pi / q[i]!)), 0);
}
function reference(name: DivergenceName, p: number[], q: number[], a = 0.1): number {
  if (name === 'skew_kl')
    return kl(
      p,
      p.map((pi, i) => a * pi + (1 - a) * q[i]!),
    );
  if (name === 'skew_rkl')
    return kl(
      q,
      p.map((pi, i) => (1 - a) * pi + a * q[i]!),
    );
  return fdiv(name, p, q);
}
const close = (a: number, b: number, tol = 1e-5) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

const zs = [
  [1.0, -0.5, 2.0, 0.3, -1.2],
  [0.2, 0.1, -0.3, 1.5, 0.0],
];
const zt = [
  [2.0, -1.0, 1.0, 0.5, -2.0],
  [-0.5, 0.4, 0.0, 2.5, 0.3],
];

test('cross-entropy matches a hand computation', () => {
  // logits [0, ln 2, ln 3] -> softmax [1/6, 2/6, 3/6]; label 2 -> -ln(1/2) = ln 2.
  const v = crossEntropy(tf.tensor2d([[0, Math.log(2), Math.log(3)]]), tf.tensor1d([2], 'int32')).dataSync()[0]!;
  close(v, Math.log(2));
});

for (const name of ['forward_kl', 'reverse_kl', 'js', 'tv', 'hellinger', 'skew_kl', 'skew_rkl'] as DivergenceName[]) {
  test(`${name} (dense, T=2) matches the float64 f-divergence formula`, () => {
    const T = 2;
    const got = divergenceLoss(name, tf.tensor2d(zs), { kind: 'dense', logits: tf.tensor2d(zt) }, T).dataSync()[0]!;
    const want = zs.reduce((acc, z, b) => acc + reference(name, softmax(zt[b]!, T), softmax(z, T)), 0) / zs.length;
    close(got, want);
  });
}

test('generic f-divergence with f(t) = t log t equals forward KL', () => {
  const f = { f: (t: tf.Tensor) => tf.mul(t, tf.log(tf.maximum(t, 1e-30))) };
  const target = { kind: 'dense' as const, logits: tf.tensor2d(zt) };
  close(
    divergenceLoss(f, tf.tensor2d(zs), target).dataSync()[0]!,
    divergenceLoss('forward_kl', tf.tensor2d(zs), target).dataSync()[0]!,
  );
});

test('Hinton KD: alpha * CE + (1 - alpha) * T^2 * KL, batchmean', () => {
  const T = 4,
    alpha = 0.3,
    labels = [2, 3];
  const r = hintonKd(
    tf.tensor2d(zs),
    tf.tensor1d(labels, 'int32'),
    { kind: 'dense', logits: tf.tensor2d(zt) },
    { temperature: T, alpha },
  );
  let ce = 0,
    klSum = 0;
  zs.forEach((z, b) => {
    ce -= Math.log(softmax(z)[labels[b]!]!);
    klSum += kl(softmax(zt[b]!, T), softmax(z, T));
  });
  close(r.total.dataSync()[0]!, alpha * (ce / 2) + (1 - alpha) * T * T * (klSum / 2));
});

test('top-k targets, both policies, equal the full divergence on the implied teacher distribution', () => {
  // Teacher keeps ids {2, 0} of 5 classes. renormalise: p = kept / sum(kept), 0 elsewhere.
  // rest: classes outside {2,0} form one bucket on both sides.
  const p = softmax(zt[0]!);
  const ids = [2, 0];
  const kept = ids.map((i) => p[i]!);
  const q = softmax(zs[0]!);
  for (const name of ['forward_kl', 'js', 'tv', 'skew_kl', 'skew_rkl', 'hellinger'] as DivergenceName[]) {
    const s = kept.reduce((a, b) => a + b, 0);
    const renorm = sparseFromLists([{ ids, probs: kept.map((v) => v / s), tail: 0 }], 'zero');
    const pFull = p.map((_, i) => (ids.includes(i) ? p[i]! / s : 0));
    close(divergenceLoss(name, tf.tensor2d([zs[0]!]), renorm).dataSync()[0]!, reference(name, pFull, q), 1e-4);
    const rest = sparseFromLists([{ ids, probs: kept, tail: 1 - s }], 'rest');
    const qRest = 1 - ids.reduce((a, i) => a + q[i]!, 0);
    const pB = [...kept, 1 - s];
    const qB = [...ids.map((i) => q[i]!), qRest];
    close(divergenceLoss(name, tf.tensor2d([zs[0]!]), rest).dataSync()[0]!, reference(name, pB, qB), 1e-4);
  }
  assert.throws(
    () =>
      divergenceLoss(
        'reverse_kl',
        tf.tensor2d([zs[0]!]),
        sparseFromLists([{ ids, probs: [0.5, 0.5], tail: 0 }], 'zero'),
      ),
    /infinite/,
  );
});

test('sampled soft labels: forward-KL gradient equals -(1/N) sum_n grad log q(x_n)', () => {
  // Draws: class 1 three times, class 3 once (N = 4) -> t_hat = [0, .75, 0, .25, 0].
  const target = sparseFromLists([{ ids: [1, 3], probs: [0.75, 0.25], tail: 0 }], 'zero');
  const g = tf
    .grad((z: tf.Tensor) => divergenceLoss('forward_kl', z as tf.Tensor2D, target))(tf.tensor2d([zs[0]!]))
    .dataSync();
  const q = softmax(zs[0]!);
  const that = [0, 0.75, 0, 0.25, 0];
  q.forEach((qi, i) => close(g[i]!, qi - that[i]!));
});

test('sparse targets with padding equal the unpadded ones, and gather gradients scatter back', () => {
  const a = sparseFromLists(
    [
      { ids: [1], probs: [1], tail: 0 },
      { ids: [0, 4, 2], probs: [0.5, 0.3, 0.2], tail: 0 },
    ],
    'zero',
  );
  const v = divergenceLoss('js', tf.tensor2d(zs), a).dataSync()[0]!;
  const want =
    (reference('js', [0, 1, 0, 0, 0], softmax(zs[0]!)) + reference('js', [0.5, 0, 0.2, 0, 0.3], softmax(zs[1]!))) / 2;
  close(v, want, 1e-4);
  const ids = tf.tensor2d(
    [
      [3, 1],
      [0, 0],
    ],
    [2, 2],
    'int32',
  );
  const g = tf
    .grad((x: tf.Tensor) => tf.sum(gatherColumns(x as tf.Tensor2D, ids)))(tf.tensor2d(zs))
    .arraySync() as number[][];
  assert.deepEqual(g, [
    [0, 1, 0, 1, 0],
    [2, 0, 0, 0, 0],
  ]);
});

test('sigmoid KD equals the float64 BCE sum, dense and sparse', () => {
  const T = 2;
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const bce = (x: number, p: number) => -(p * Math.log(sig(x)) + (1 - p) * Math.log(1 - sig(x)));
  let want = 0;
  zs.forEach((z, b) => z.forEach((x, i) => (want += bce(x / T, sig(zt[b]![i]! / T)))));
  close(sigmoidKd(tf.tensor2d(zs), { kind: 'dense', logits: tf.tensor2d(zt) }, T).dataSync()[0]!, want / 2);
  const sparse: SparseTarget = sparseFromLists(
    [
      { ids: [2], probs: [0.9], tail: 0 },
      { ids: [3, 0], probs: [0.6, 0.2], tail: 0 },
    ],
    'zero',
  );
  const targets = [
    [0, 0, 0.9, 0, 0],
    [0.2, 0, 0, 0.6, 0],
  ];
  let want2 = 0;
  zs.forEach((z, b) => z.forEach((x, i) => (want2 += bce(x, targets[b]![i]!))));
  close(sigmoidKd(tf.tensor2d(zs), sparse).dataSync()[0]!, want2 / 2);
});
