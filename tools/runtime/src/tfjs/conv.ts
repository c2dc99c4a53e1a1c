/**
 * 2-D convolution and 2x2 max pooling with hand-written backward passes that land on the backend's
 * fast forward convolution (XNNPACK on tfjs-backend-wasm).
 *
 * Why: on tfjs-backend-wasm the forward Conv2D runs on XNNPACK, but autodiff of tf.conv2d uses the
 * backend's Conv2DBackpropInput and (wasm has no Conv2DBackpropFilter) Conv3DBackpropFilterV2,
 * plain loops measured 20-90x slower per FLOP than the forward (issue 15's figures; numbers in
 * plugins/student-train/README.md). Both gradients of a stride-1 convolution are themselves
 * stride-1 convolutions (docs/methods.md, "Convolution gradients as convolutions"):
 *
 *   y = x * W (+ b)          x [n, H, W, ci], W [k, k, ci, co], y [n, Ho, Wo, co]
 *   dx = pad(dy) * rot180(W)^T                 (filter [k, k, co, ci], flipped in both spatial axes)
 *   dW = (x^T) * (dy^T), re-ordered            (batch and channels swapped: x^T [ci, Hp, Wp, n] is the
 *                                              "image", dy^T [Ho, Wo, n, co] the "filter"; out [ci, k, k, co])
 *
 * so a training step makes three XNNPACK convolutions per layer and no slow kernel.
 */
import * as tf from '@tensorflow/tfjs-core';

export type ConvPadding = 'same' | 'valid';
export type ConvActivation = 'linear' | 'relu';

export interface ConvOptions {
  /** 'same' (odd kernels only: output H x W) or 'valid' (output (H-k+1) x (W-k+1)). */
  padding: ConvPadding;
  activation: ConvActivation;
  /** false for a first layer fed with data: skips the input-gradient convolution. */
  inputGrad: boolean;
}

type Pads = [[number, number], [number, number], [number, number], [number, number]];

/** Explicit pads of the forward convolution and of its input-gradient convolution. */
function convPads(k: number, padding: ConvPadding): { forward: Pads; inputGrad: Pads } {
  if (padding === 'same') {
    if (k % 2 !== 1) throw new Error(`conv2d: 'same' padding needs an odd kernel, got ${k}`);
    const p = (k - 1) / 2;
    const same: Pads = [
      [0, 0],
      [p, p],
      [p, p],
      [0, 0],
    ];
    return { forward: same, inputGrad: same };
  }
  const full = k - 1;
  return {
    forward: [
      [0, 0],
      [0, 0],
      [0, 0],
      [0, 0],
    ],
    inputGrad: [
      [0, 0],
      [full, full],
      [full, full],
      [0, 0],
    ],
  };
}

/** Gradient w.r.t. the filter: one forward convolution with batch and channels swapped. */
export function conv2dFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, k: number, padding: ConvPadding): tf.Tensor4D {
  const pads = convPads(k, padding).forward;
  const xT = tf.transpose(x, [3, 1, 2, 0]) as tf.Tensor4D; // [ci, H, W, n]
  const dyT = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D; // [Ho, Wo, n, co]
  const out = tf.conv2d(xT, dyT, 1, pads); // [ci, k, k, co]
  return tf.transpose(out, [1, 2, 0, 3]) as tf.Tensor4D; // [k, k, ci, co]
}

/** Gradient w.r.t. the input: the output gradient convolved with the flipped, channel-swapped filter. */
export function conv2dInputGrad(dy: tf.Tensor4D, weight: tf.Tensor4D, padding: ConvPadding): tf.Tensor4D {
  const k = weight.shape[0];
  const flipped = tf.transpose(tf.reverse(weight, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D; // [k, k, co, ci]
  return tf.conv2d(dy, flipped, 1, convPads(k, padding).inputGrad);
}

/**
 * y = act(conv(x, W) + b), stride 1, square kernel. x [n, H, W, ci], W [k, k, ci, co], b [co] or
 * null (no bias). Differentiable w.r.t. W (and b) always, and w.r.t. x when `inputGrad`.
 */
export function conv2d(
  x: tf.Tensor4D,
  weight: tf.Tensor4D,
  bias: tf.Tensor1D | null,
  options: ConvOptions,
): tf.Tensor4D {
  const [k, k2] = weight.shape;
  if (k !== k2) throw new Error(`conv2d: square kernels only, got ${k}x${k2}`);
  if (x.shape[3] !== weight.shape[2])
    throw new Error(`conv2d: input has ${x.shape[3]} channels, filter expects ${weight.shape[2]}`);
  const { padding, activation } = options;
  const pads = convPads(k, padding).forward;
  const forward = (w: tf.Tensor4D, b: tf.Tensor1D | null, input: tf.Tensor4D, save: tf.GradSaveFunc) => {
    const y = tf.fused.conv2d({ x: input, filter: w, strides: 1, pad: pads, ...(b ? { bias: b } : {}), activation });
    save([input, w, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]): tf.Tensor[] => {
        const [xs, ws, ys] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
        const dz = activation === 'relu' ? (tf.mul(dy, tf.step(ys)) as tf.Tensor4D) : dy;
        const grads: tf.Tensor[] = [conv2dFilterGrad(xs, dz, k, padding)];
        if (b) grads.push(tf.sum(dz, [0, 1, 2]));
        if (options.inputGrad) grads.push(conv2dInputGrad(dz, ws, padding));
        return grads;
      },
    };
  };
  // Inputs that need no gradient are captured rather than passed: the tape then asks for none.
  const save = (args: (tf.Tensor | tf.GradSaveFunc)[]) => args[args.length - 1] as tf.GradSaveFunc;
  const t = (args: (tf.Tensor | tf.GradSaveFunc)[], i: number) => args[i] as tf.Tensor;
  if (bias && options.inputGrad) {
    return tf.customGrad((...a) =>
      forward(t(a, 0) as tf.Tensor4D, t(a, 1) as tf.Tensor1D, t(a, 2) as tf.Tensor4D, save(a)),
    )(weight, bias, x) as tf.Tensor4D;
  }
  if (bias)
    return tf.customGrad((...a) => forward(t(a, 0) as tf.Tensor4D, t(a, 1) as tf.Tensor1D, x, save(a)))(
      weight,
      bias,
    ) as tf.Tensor4D;
  if (options.inputGrad)
    return tf.customGrad((...a) => forward(t(a, 0) as tf.Tensor4D, null, t(a, 1) as tf.Tensor4D, save(a)))(
      weight,
      x,
    ) as tf.Tensor4D;
  return tf.customGrad((...a) => forward(t(a, 0) as tf.Tensor4D, null, x, save(a)))(weight) as tf.Tensor4D;
}

/**
 * 2x2 max pooling, stride 2, 'valid' (an odd last row or column is dropped, as ONNX MaxPool and
 * torch.nn.MaxPool2d(2) do). The gradient goes to the window's maximum: a mask built by comparing
 * each input with its window's maximum, in place of the backend's MaxPoolGrad (slower, and in
 * tfjs-backend-wasm 4.22 it disagreed with the formula for batches of several images in our test). Exact ties (all but impossible for float activations except exact zeros)
 * each receive the gradient; torch gives it to the first.
 */
export function maxPool2x2(x: tf.Tensor4D): tf.Tensor4D {
  const [n, height, width, c] = x.shape;
  const h = Math.floor(height / 2);
  const w = Math.floor(width / 2);
  if (h < 1 || w < 1) throw new Error(`maxPool2x2: input ${height}x${width} is smaller than the 2x2 window`);
  return tf.customGrad((input, save) => {
    const xs = input as tf.Tensor4D;
    const y = tf.maxPool(xs, 2, 2, 'valid');
    (save as tf.GradSaveFunc)([xs, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]): tf.Tensor => {
        const [xsaved, ysaved] = saved as [tf.Tensor4D, tf.Tensor4D];
        const even =
          height === 2 * h && width === 2 * w ? xsaved : tf.slice(xsaved, [0, 0, 0, 0], [n, 2 * h, 2 * w, c]);
        // Nearest-neighbour upsampling by 2 (ResizeNearestNeighbor: source row floor(r / 2)) puts each
        // window's maximum and output gradient beside its four inputs; measured faster on wasm than
        // tile or concat with a broadcast comparison, and than the backend's MaxPoolGrad.
        const up = (t: tf.Tensor4D) => tf.image.resizeNearestNeighbor(t, [2 * h, 2 * w]);
        // mask = [x == max] computed as 1 - step(max - x) (max - x >= 0): wasm's Equal is a slow generic loop.
        const mask = tf.sub(1, tf.step(tf.sub(up(ysaved), even)));
        const dxEven = tf.mul(mask, up(dy)) as tf.Tensor4D;
        if (even === xsaved) return dxEven;
        return tf.pad(dxEven, [
          [0, 0],
          [0, height - 2 * h],
          [0, width - 2 * w],
          [0, 0],
        ]);
      },
    };
  })(x) as tf.Tensor4D;
}
