/**
 * Values of an imported ONNX graph while it runs on tfjs (ops.ts):
 *
 * - tensors: a tfjs tensor; a rank-4 ONNX value (NCHW) may be held transposed as NHWC
 *   (`nhwc: true`), the layout the fast convolutions and pools work in, so a conv stack runs
 *   without a transpose per node. Ops that read the ONNX layout convert with `toOnnxLayout`;
 * - host values: small int or float arrays computed on the CPU (initializers that are not trained,
 *   Constant nodes, and the Shape -> Gather -> Unsqueeze -> Concat arithmetic PyTorch emits for a
 *   flatten), so shape arithmetic never reaches the gradient tape.
 */
import * as tf from '@tensorflow/tfjs-core';

/** A tfjs tensor; `nhwc`: an ONNX NCHW value held as NHWC. */
export interface TensorValue {
  kind: 'tensor';
  t: tf.Tensor;
  nhwc: boolean;
}

/** A host array with its ONNX dims (int: int64 / int32 / bool data; float: float32 / float64). */
export interface HostValue {
  kind: 'host';
  type: 'int' | 'float';
  data: number[];
  dims: number[];
}

export type Value = TensorValue | HostValue;

/** NCHW axis -> the axis holding it in NHWC. */
export const NHWC_AXIS = [0, 3, 1, 2] as const;

export function tensorValue(t: tf.Tensor, nhwc = false): TensorValue {
  return { kind: 'tensor', t, nhwc };
}

export function hostValue(type: 'int' | 'float', data: number[], dims: number[]): HostValue {
  return { kind: 'host', type, data, dims };
}

/** The ONNX shape of a value (NCHW for values held as NHWC). */
export function onnxShape(v: Value): number[] {
  if (v.kind === 'host') return v.dims;
  if (!v.nhwc) return v.t.shape;
  const [n, h, w, c] = v.t.shape as [number, number, number, number];
  return [n, c, h, w];
}

/** The value as a tfjs tensor in the ONNX layout. */
export function toOnnxLayout(v: Value): tf.Tensor {
  if (v.kind === 'host') return tf.tensor(v.data, v.dims, v.type === 'int' ? 'int32' : 'float32');
  return v.nhwc ? tf.transpose(v.t, [0, 3, 1, 2]) : v.t;
}

/** A rank-4 value as an NHWC tensor. */
export function toNhwc(v: Value, what: string): tf.Tensor4D {
  if (v.kind === 'tensor' && v.nhwc) return v.t as tf.Tensor4D;
  const t = toOnnxLayout(v);
  if (t.rank !== 4) throw new Error(`${what}: expected a 4-d NCHW input, got shape [${t.shape}]`);
  return tf.transpose(t, [0, 2, 3, 1]) as tf.Tensor4D;
}

/**
 * `other` made broadcast-compatible with a value held as NHWC: ONNX broadcasting aligns trailing
 * dims of the NCHW shape, so `other` is lifted to rank 4 and transposed the same way.
 */
export function alignToNhwc(other: Value): tf.Tensor {
  if (other.kind === 'tensor' && other.nhwc) return other.t;
  const t = toOnnxLayout(other);
  if (t.rank > 4) throw new Error(`cannot broadcast a rank-${t.rank} value against a 4-d map`);
  if (t.rank === 0) return t;
  const lifted = t.rank === 4 ? t : tf.reshape(t, [...new Array<number>(4 - t.rank).fill(1), ...t.shape]);
  return tf.transpose(lifted, [0, 2, 3, 1]);
}

/** A host value's data as integers (shape arithmetic). */
export function hostInts(v: Value, what: string): number[] {
  if (v.kind !== 'host')
    throw new Error(`${what}: expected a constant (initializer, Constant or shape arithmetic), got a computed tensor`);
  return v.data.map((x) => Math.trunc(x));
}

export function product(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Normalises a possibly negative axis of a rank-r shape. */
export function axisOf(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${what}: axis ${axis} outside a rank-${rank} value`);
  return a;
}
