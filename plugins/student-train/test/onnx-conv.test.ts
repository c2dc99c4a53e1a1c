/**
 * The imported students' convolution and pooling (src/models/onnx/conv.ts): values and gradients
 * equal tfjs' own ops and autodiff, run on the cpu backend (its gradient kernels are the
 * reference; wasm lacks Conv2DBackpropFilter), for groups, strides, dilations, asymmetric pads and
 * both strides and dilations above 1 (tfjs' own gradient refuses dilations: the reference uses
 * an explicitly dilated filter).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { convNhwc, poolNhwc, type ConvGeometry, type PoolGeometry } from '../src/models/onnx/conv.js';

before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'cpu' });
  tf.util.assert(tf.getBackend() === 'cpu', () => 'cpu backend');
});

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  return tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;
}

/** tf.conv2d per group, with the dilation written into the filter (tfjs' gradient handles no dilation). */
function referenceConv(x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D, g: ConvGeometry): tf.Tensor4D {
  const [kh, kw, ciG, co] = w.shape;
  const [dh, dw] = g.dilations;
  const coG = co / g.groups;
  const grid = tf.pad(tf.reshape(w, [kh, 1, kw, 1, ciG, co]), [
    [0, 0],
    [0, dh - 1],
    [0, 0],
    [0, dw - 1],
    [0, 0],
    [0, 0],
  ]);
  const dilated = tf.slice(
    tf.reshape(grid, [kh * dh, kw * dw, ciG, co]),
    [0, 0, 0, 0],
    [(kh - 1) * dh + 1, (kw - 1) * dw + 1, ciG, co],
  ) as tf.Tensor4D;
  const [pt, pl, pb, pr] = g.pads;
  const parts = Array.from({ length: g.groups }, (_, i) =>
    tf.conv2d(
      tf.slice(x, [0, 0, 0, i * ciG], [-1, -1, -1, ciG]) as tf.Tensor4D,
      tf.slice(dilated, [0, 0, 0, i * coG], [-1, -1, -1, coG]) as tf.Tensor4D,
      g.strides,
      [
        [0, 0],
        [pt, pb],
        [pl, pr],
        [0, 0],
      ],
    ),
  );
  return tf.add(tf.concat(parts, 3), b) as tf.Tensor4D;
}

const CONVS: { name: string; g: ConvGeometry; k: [number, number]; ci: number; co: number }[] = [
  {
    name: 'stride 1, same (tools/core fast path)',
    g: { groups: 1, strides: [1, 1], dilations: [1, 1], pads: [1, 1, 1, 1] },
    k: [3, 3],
    ci: 3,
    co: 4,
  },
  {
    name: 'groups 2',
    g: { groups: 2, strides: [1, 1], dilations: [1, 1], pads: [1, 1, 1, 1] },
    k: [3, 3],
    ci: 4,
    co: 6,
  },
  {
    name: 'depthwise (groups = channels)',
    g: { groups: 3, strides: [1, 1], dilations: [1, 1], pads: [0, 0, 0, 0] },
    k: [3, 3],
    ci: 3,
    co: 3,
  },
  {
    name: 'stride 2, asymmetric pads',
    g: { groups: 1, strides: [2, 2], dilations: [1, 1], pads: [1, 1, 0, 0] },
    k: [3, 3],
    ci: 4,
    co: 3,
  },
  {
    name: 'strides 2 x 1, rectangular kernel',
    g: { groups: 1, strides: [2, 1], dilations: [1, 1], pads: [0, 2, 1, 0] },
    k: [3, 2],
    ci: 3,
    co: 2,
  },
  {
    name: 'stride 3 (rows left over)',
    g: { groups: 1, strides: [3, 3], dilations: [1, 1], pads: [0, 0, 0, 0] },
    k: [2, 2],
    ci: 2,
    co: 2,
  },
  {
    name: 'dilation 2',
    g: { groups: 1, strides: [1, 1], dilations: [2, 2], pads: [1, 1, 1, 1] },
    k: [2, 2],
    ci: 4,
    co: 3,
  },
  {
    name: 'stride 2 and dilation 2',
    g: { groups: 1, strides: [2, 2], dilations: [2, 2], pads: [1, 1, 1, 1] },
    k: [3, 3],
    ci: 2,
    co: 2,
  },
];

for (const c of CONVS) {
  test(`Conv ${c.name}: value, input, filter and bias gradients equal tfjs' conv2d`, () => {
    const x = tf.randomNormal([2, 9, 8, c.ci], 0, 1, 'float32', 1) as tf.Tensor4D;
    const w = tf.randomNormal([c.k[0], c.k[1], c.ci / c.g.groups, c.co], 0, 1, 'float32', 2) as tf.Tensor4D;
    const b = tf.randomNormal([c.co], 0, 1, 'float32', 3) as tf.Tensor1D;
    const ours = convNhwc(x, w, b, c.g, true);
    const ref = referenceConv(x, w, b, c.g);
    assert.ok(maxDiff(ours, ref) < 1e-4);
    const r = tf.randomNormal(ref.shape, 0, 1, 'float32', 4);
    const grads = (f: typeof convNhwc | typeof referenceConv) =>
      tf.grads((xs, ws, bs) =>
        tf.sum(tf.mul(f(xs as tf.Tensor4D, ws as tf.Tensor4D, bs as tf.Tensor1D, c.g, true), r)),
      )([x, w, b]);
    const [gx, gw, gb] = grads(convNhwc);
    const [rx, rw, rb] = grads(referenceConv);
    assert.ok(maxDiff(gx!, rx!) < 1e-4, 'input gradient');
    assert.ok(maxDiff(gw!, rw!) < 1e-4, 'filter gradient');
    assert.ok(maxDiff(gb!, rb!) < 1e-4, 'bias gradient');
  });
}

const POOLS: { name: string; kind: 'max' | 'avg'; p: PoolGeometry }[] = [
  {
    name: 'MaxPool 2x2 stride 2 (tools/core maxPool2x2)',
    kind: 'max',
    p: { kernel: [2, 2], strides: [2, 2], pads: [0, 0, 0, 0], countIncludePad: false },
  },
  {
    name: 'MaxPool 3x3 stride 2 pads 1',
    kind: 'max',
    p: { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], countIncludePad: false },
  },
  {
    name: 'MaxPool 3x2 stride 1',
    kind: 'max',
    p: { kernel: [3, 2], strides: [1, 1], pads: [0, 0, 0, 0], countIncludePad: false },
  },
  {
    name: 'AveragePool 3x3 stride 1 pads 1, padding not counted',
    kind: 'avg',
    p: { kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], countIncludePad: false },
  },
  {
    name: 'AveragePool 3x3 stride 2 pads 1, padding counted',
    kind: 'avg',
    p: { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], countIncludePad: true },
  },
];

/** Pooling written out: the window's max, or its sum over the covered (or all) cells. */
function referencePool(x: tf.Tensor4D, kind: 'max' | 'avg', p: PoolGeometry): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const [pt, pl, pb, pr] = p.pads;
  const padded = tf.pad(
    x,
    [
      [0, 0],
      [pt, pb],
      [pl, pr],
      [0, 0],
    ],
    kind === 'max' ? -1e30 : 0,
  );
  const ones = tf.pad(tf.ones([1, h, w, 1]), [
    [0, 0],
    [pt, pb],
    [pl, pr],
    [0, 0],
  ]);
  const ho = Math.floor((h + pt + pb - p.kernel[0]) / p.strides[0]) + 1;
  const wo = Math.floor((w + pl + pr - p.kernel[1]) / p.strides[1]) + 1;
  const rows: tf.Tensor[] = [];
  for (let i = 0; i < ho; i++) {
    const cols: tf.Tensor[] = [];
    for (let j = 0; j < wo; j++) {
      const begin = [0, i * p.strides[0], j * p.strides[1], 0];
      const window = tf.slice(padded, begin, [n, p.kernel[0], p.kernel[1], c]);
      if (kind === 'max') cols.push(tf.max(window, [1, 2]));
      else {
        const cells = p.countIncludePad
          ? p.kernel[0] * p.kernel[1]
          : tf.sum(tf.slice(ones, begin, [1, p.kernel[0], p.kernel[1], 1])).dataSync()[0]!;
        cols.push(tf.div(tf.sum(window, [1, 2]), cells));
      }
    }
    rows.push(tf.stack(cols, 1));
  }
  return tf.stack(rows, 1) as tf.Tensor4D;
}

for (const c of POOLS) {
  test(`${c.name}: value and gradient equal the pooling written out`, () => {
    const x = tf.randomNormal([2, 7, 6, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
    const ours = poolNhwc(x, c.kind, c.p);
    const ref = referencePool(x, c.kind, c.p);
    assert.ok(maxDiff(ours, ref) < 1e-5);
    const r = tf.randomNormal(ref.shape, 0, 1, 'float32', 6);
    const [g] = tf.grads((xs) => tf.sum(tf.mul(poolNhwc(xs as tf.Tensor4D, c.kind, c.p), r)))([x]);
    const [gr] = tf.grads((xs) => tf.sum(tf.mul(referencePool(xs as tf.Tensor4D, c.kind, c.p), r)))([x]);
    assert.ok(maxDiff(g!, gr!) < 1e-5);
  });
}
