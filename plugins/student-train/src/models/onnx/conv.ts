/**
 * ONNX Conv (any strides, dilations, explicit pads, groups) and pooling on NHWC tensors, with
 * backward passes made of forward convolutions (XNNPACK on tfjs-backend-wasm), as
 * tools/core/src/tfjs/conv.ts does for the stride-1 square case (which this file uses unchanged
 * when the node is that case). Per spatial axis, with y[o] = sum_k x[o*s + k*d - p0] W[k]:
 *
 *   dx[i] = sum_k' u[i + k'*d] Wflip[k']   u = dy with s-1 zeros between rows, padded by
 *                                          (K-1)*d - p0 before and to length H + (K-1)*d after
 *   dW[k] = sum_o xpad[k*d + o*s] dy[o]    a convolution of x^T ([ci, Hp, Wp, n]) with dy^T as the
 *                                          filter, stride d and dilation s (docs/methods.md,
 *                                          "Convolution gradients as convolutions")
 *
 * tfjs refuses a convolution with both stride and dilation above 1: such a node runs as a strided
 * convolution with an explicitly dilated filter (zeros between the taps).
 */
import * as tf from '@tensorflow/tfjs-core';
import { conv2d as fastConv2d, maxPool2x2 } from '@distillery/runtime/tfjs';

/** Geometry of one 2-D convolution (ONNX attribute order: [h, w]; pads [top, left, bottom, right]). */
export interface ConvGeometry {
  strides: [number, number];
  dilations: [number, number];
  pads: [number, number, number, number];
  groups: number;
}

type Pads4 = [[number, number], [number, number], [number, number], [number, number]];

/** Output size of one axis. */
export function convOutSize(
  size: number,
  k: number,
  stride: number,
  dilation: number,
  padBegin: number,
  padEnd: number,
): number {
  return Math.floor((size + padBegin + padEnd - (k - 1) * dilation - 1) / stride) + 1;
}

/** Pads (negative: crops) the two spatial axes of an NHWC tensor. */
function padOrCrop(x: tf.Tensor4D, top: number, bottom: number, left: number, right: number): tf.Tensor4D {
  let y = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = y.shape;
    const t0 = Math.max(0, -top),
      b0 = Math.max(0, -bottom),
      l0 = Math.max(0, -left),
      r0 = Math.max(0, -right);
    y = tf.slice(y, [0, t0, l0, 0], [n, h - t0 - b0, w - l0 - r0, c]);
  }
  const pads: Pads4 = [
    [0, 0],
    [Math.max(0, top), Math.max(0, bottom)],
    [Math.max(0, left), Math.max(0, right)],
    [0, 0],
  ];
  return pads.some(([a, b]) => a > 0 || b > 0) ? tf.pad(y, pads) : y;
}

/** dy [n, Ho, Wo, c] with s-1 zero rows (columns) after each row (column): [n, (Ho-1)*sh+1, (Wo-1)*sw+1, c]. */
function spreadRows(dy: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return dy;
  const [n, ho, wo, c] = dy.shape;
  const grid = tf.pad(tf.reshape(dy, [n, ho, 1, wo, 1, c]), [
    [0, 0],
    [0, 0],
    [0, sh - 1],
    [0, 0],
    [0, sw - 1],
    [0, 0],
  ]);
  const full = tf.reshape(grid, [n, ho * sh, wo * sw, c]) as tf.Tensor4D;
  return tf.slice(full, [0, 0, 0, 0], [n, (ho - 1) * sh + 1, (wo - 1) * sw + 1, c]);
}

/** One group's convolution y = x * W (no bias), x [n, H, W, ci], W [kh, kw, ci, co]. */
function convGroup(x: tf.Tensor4D, weight: tf.Tensor4D, g: ConvGeometry, inputGrad: boolean): tf.Tensor4D {
  const [sh, sw] = g.strides;
  const [dh, dw] = g.dilations;
  const [pt, pl, pb, pr] = g.pads;
  const pads: Pads4 = [
    [0, 0],
    [pt, pb],
    [pl, pr],
    [0, 0],
  ];
  const forward = (input: tf.Tensor4D, w: tf.Tensor4D) => tf.conv2d(input, w, [sh, sw], pads, 'NHWC', [dh, dw]);
  if ((sh > 1 || sw > 1) && (dh > 1 || dw > 1)) {
    // tfjs has no convolution with both: the same convolution with an explicitly dilated filter.
    return convGroup(x, dilatedFilter(weight, g.dilations), { ...g, dilations: [1, 1] }, inputGrad);
  }
  const [, height, width] = x.shape;
  const [kh, kw] = weight.shape;
  const body = (w: tf.Tensor4D, input: tf.Tensor4D, save: tf.GradSaveFunc) => {
    const y = forward(input, w);
    save([input, w]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]): tf.Tensor[] => {
        const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
        const [ho, wo] = [dy.shape[1], dy.shape[2]];
        // dW: x^T [ci, Hp, Wp, n] convolved with dy^T [Ho, Wo, n, co], stride d, dilation s.
        const xT = tf.transpose(padOrCrop(xs, pt, pb, pl, pr), [3, 1, 2, 0]) as tf.Tensor4D;
        const dyT = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
        const full = tf.conv2d(xT, dyT, [dh, dw], 'valid', 'NHWC', [sh, sw]); // [ci, >=kh, >=kw, co]
        const dW = tf.transpose(tf.slice(full, [0, 0, 0, 0], [full.shape[0], kh, kw, full.shape[3]]), [1, 2, 0, 3]);
        if (!inputGrad) return [dW];
        // dx: spread dy, pad, convolve with the flipped, channel-swapped filter at dilation d.
        const u = spreadRows(dy, sh, sw);
        const top = (kh - 1) * dh - pt;
        const left = (kw - 1) * dw - pl;
        const bottom = height + (kh - 1) * dh - top - ((ho - 1) * sh + 1);
        const right = width + (kw - 1) * dw - left - ((wo - 1) * sw + 1);
        const flipped = tf.transpose(tf.reverse(ws, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
        const dx = tf.conv2d(padOrCrop(u, top, bottom, left, right), flipped, 1, 'valid', 'NHWC', [dh, dw]);
        return [dW, dx];
      },
    };
  };
  if (inputGrad)
    return tf.customGrad((w, input, save) => body(w as tf.Tensor4D, input as tf.Tensor4D, save as tf.GradSaveFunc))(
      weight,
      x,
    ) as tf.Tensor4D;
  return tf.customGrad((w, save) => body(w as tf.Tensor4D, x, save as tf.GradSaveFunc))(weight) as tf.Tensor4D;
}

/** The filter with dilation - 1 zeros between taps (differentiable: pad, reshape and slice). */
function dilatedFilter(weight: tf.Tensor4D, [dh, dw]: [number, number]): tf.Tensor4D {
  const [kh, kw, ci, co] = weight.shape;
  const grid = tf.pad(tf.reshape(weight, [kh, 1, kw, 1, ci, co]), [
    [0, 0],
    [0, dh - 1],
    [0, 0],
    [0, dw - 1],
    [0, 0],
    [0, 0],
  ]);
  return tf.slice(
    tf.reshape(grid, [kh * dh, kw * dw, ci, co]),
    [0, 0, 0, 0],
    [(kh - 1) * dh + 1, (kw - 1) * dw + 1, ci, co],
  ) as tf.Tensor4D;
}

/** True when the node is the stride-1, square, 'same' or 'valid' case tools/core's conv2d handles. */
function fastCase(weight: tf.Tensor4D, g: ConvGeometry): 'same' | 'valid' | undefined {
  const [kh, kw] = weight.shape;
  if (g.groups !== 1 || kh !== kw || g.strides.some((s) => s !== 1) || g.dilations.some((d) => d !== 1))
    return undefined;
  if (g.pads.every((p) => p === 0)) return 'valid';
  if (kh % 2 === 1 && g.pads.every((p) => p === (kh - 1) / 2)) return 'same';
  return undefined;
}

/**
 * ONNX Conv on NHWC: x [n, H, W, C], weight [kh, kw, C / groups, co] (HWIO), bias [co] or null.
 * `inputGrad` false skips the input gradient (the graph input).
 */
export function convNhwc(
  x: tf.Tensor4D,
  weight: tf.Tensor4D,
  bias: tf.Tensor1D | null,
  g: ConvGeometry,
  inputGrad: boolean,
): tf.Tensor4D {
  const [, , ciG, co] = weight.shape;
  const c = x.shape[3];
  if (c !== ciG * g.groups)
    throw new Error(`Conv: input has ${c} channels, the filter expects ${ciG} x ${g.groups} groups`);
  if (co % g.groups !== 0) throw new Error(`Conv: ${co} output channels are not divisible by ${g.groups} groups`);
  const fast = fastCase(weight, g);
  if (fast) return fastConv2d(x, weight, bias, { padding: fast, activation: 'linear', inputGrad });
  let y: tf.Tensor4D;
  if (g.groups === 1) y = convGroup(x, weight, g, inputGrad);
  else {
    const coG = co / g.groups;
    const parts: tf.Tensor4D[] = [];
    for (let i = 0; i < g.groups; i++) {
      const xi = tf.slice(x, [0, 0, 0, i * ciG], [-1, -1, -1, ciG]) as tf.Tensor4D;
      const wi = tf.slice(weight, [0, 0, 0, i * coG], [-1, -1, -1, coG]) as tf.Tensor4D;
      parts.push(convGroup(xi, wi, g, inputGrad));
    }
    y = tf.concat(parts, 3) as tf.Tensor4D;
  }
  return bias ? (tf.add(y, bias) as tf.Tensor4D) : y;
}

/** Geometry of a pooling window. */
export interface PoolGeometry {
  kernel: [number, number];
  strides: [number, number];
  pads: [number, number, number, number];
  /** AveragePool: count the padded cells in the divisor. */
  countIncludePad: boolean;
}

/**
 * Max pooling with any window, strides and pads on NHWC (padded cells never win). The gradient
 * goes to each window's maximum, built per window offset from strided slices (tfjs-backend-wasm's
 * MaxPoolGrad disagreed with the formula on batches in 4.22; tools/core/src/tfjs/conv.ts): every
 * input equal to its window's maximum receives that window's gradient (exact ties all do).
 */
function maxPoolGeneral(x: tf.Tensor4D, p: PoolGeometry): tf.Tensor4D {
  const [pt, pl, pb, pr] = p.pads;
  const [kh, kw] = p.kernel;
  const [sh, sw] = p.strides;
  return tf.customGrad((input, save) => {
    const xs = input as tf.Tensor4D;
    const padded =
      pt + pl + pb + pr > 0
        ? (tf.pad(
            xs,
            [
              [0, 0],
              [pt, pb],
              [pl, pr],
              [0, 0],
            ],
            -3.4e38,
          ) as tf.Tensor4D)
        : xs;
    const y = tf.maxPool(padded, [kh, kw], [sh, sw], 'valid');
    (save as tf.GradSaveFunc)([padded, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]): tf.Tensor => {
        const [xp, ys] = saved as [tf.Tensor4D, tf.Tensor4D];
        const [n, hp, wp, c] = xp.shape;
        const [, ho, wo] = ys.shape;
        let dx: tf.Tensor4D | undefined;
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const window = tf.stridedSlice(
              xp,
              [0, ky, kx, 0],
              [n, ky + (ho - 1) * sh + 1, kx + (wo - 1) * sw + 1, c],
              [1, sh, sw, 1],
            ) as tf.Tensor4D;
            const hit = tf.mul(tf.sub(1, tf.step(tf.sub(ys, window))), dy) as tf.Tensor4D;
            const spread = spreadRows(hit, sh, sw);
            const placed = tf.pad(spread, [
              [0, 0],
              [ky, hp - ky - spread.shape[1]],
              [kx, wp - kx - spread.shape[2]],
              [0, 0],
            ]) as tf.Tensor4D;
            dx = dx ? (tf.add(dx, placed) as tf.Tensor4D) : placed;
          }
        }
        const [, h, w] = xs.shape;
        return tf.slice(dx!, [0, pt, pl, 0], [n, h, w, c]);
      },
    };
  })(x) as tf.Tensor4D;
}

/** Geometry of a pooling window. */
export interface PoolGeometry {
  kernel: [number, number];
  strides: [number, number];
  pads: [number, number, number, number];
  /** AveragePool: count the padded cells in the divisor. */
  countIncludePad: boolean;
}

/**
 * MaxPool / AveragePool on NHWC. A 2x2 stride-2 unpadded max pool uses tools/core's maxPool2x2
 * (the built-in CNN's), any other maxPoolGeneral. Average: zero padding divided by the window
 * cells actually covered unless countIncludePad (tfjs' AvgPool gradient).
 */
export function poolNhwc(x: tf.Tensor4D, kind: 'max' | 'avg', p: PoolGeometry): tf.Tensor4D {
  const [pt, pl, pb, pr] = p.pads;
  const padded = pt + pl + pb + pr > 0;
  if (kind === 'max') {
    if (!padded && p.kernel[0] === 2 && p.kernel[1] === 2 && p.strides[0] === 2 && p.strides[1] === 2)
      return maxPool2x2(x);
    return maxPoolGeneral(x, p);
  }
  if (!padded) return tf.avgPool(x, p.kernel, p.strides, 'valid');
  const cellsPerWindow = p.kernel[0] * p.kernel[1];
  const sum = tf.mul(
    tf.avgPool(
      tf.pad(x, [
        [0, 0],
        [pt, pb],
        [pl, pr],
        [0, 0],
      ]) as tf.Tensor4D,
      p.kernel,
      p.strides,
      'valid',
    ),
    cellsPerWindow,
  );
  if (p.countIncludePad) return tf.div(sum, cellsPerWindow) as tf.Tensor4D;
  const [, h, w] = x.shape;
  const ones = tf.pad(tf.ones([1, h, w, 1]), [
    [0, 0],
    [pt, pb],
    [pl, pr],
    [0, 0],
  ]) as tf.Tensor4D;
  const cells = tf.mul(tf.avgPool(ones, p.kernel, p.strides, 'valid'), cellsPerWindow);
  return tf.div(sum, cells) as tf.Tensor4D;
}
