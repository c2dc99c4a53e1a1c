/**
 * The ONNX ops an imported student may contain, each run on tfjs (ai.onnx domain, the semantics of
 * opsets 13-17 as PyTorch's exporter emits them for classifiers). Dense layers and convolutions go
 * through the hand-written backward passes of tools/core/src/tfjs (dense.ts, conv.ts via conv.ts
 * here), the same kernels the built-in students use.
 */
import * as tf from '@tensorflow/tfjs-core';
import { dense } from '@distillery/runtime/tfjs';
import type { OnnxAttribute, OnnxNode, OnnxTensor } from '@distillery/runtime/onnx';
import { convNhwc, poolNhwc, type ConvGeometry } from './conv.js';
import {
  alignToNhwc,
  axisOf,
  hostInts,
  hostValue,
  NHWC_AXIS,
  onnxShape,
  product,
  tensorValue,
  toNhwc,
  toOnnxLayout,
  type HostValue,
  type Value,
} from './values.js';

/** How a weight input is held: as in ONNX, HWIO (a Conv filter, ONNX OIHW) or [K, N] (a Gemm transB weight, ONNX [N, K]). */
export type WeightLayout = 'onnx' | 'hwio' | 'kn';

/** What an op sees besides its inputs. */
export interface OpContext {
  training: boolean;
  /** Seeds the step's dropout masks (a resumed run draws the same). */
  dropoutSeed: (nodeIndex: number) => number;
  nodeIndex: number;
  /** The trained variable behind input `i` in `layout`, or undefined when input i is not a variable. */
  weight(i: number, layout: WeightLayout): tf.Tensor | undefined;
  /** Whether input i depends on a trained variable (false: its gradient is never needed). */
  needsGrad(i: number): boolean;
  /** Training-mode batch norm: running = momentum * running + (1 - momentum) * batch statistic (inputs 3 and 4). */
  updateRunningStats(mean: tf.Tensor1D, variance: tf.Tensor1D, momentum: number): void;
}

export type OpFn = (node: OnnxNode, inputs: (Value | undefined)[], ctx: OpContext) => Value[];

/** An attribute's value with its ONNX kind checked. */
function attr(node: OnnxNode, name: string): OnnxAttribute | undefined {
  return node.attributes[name];
}
function attrInt(node: OnnxNode, name: string, fallback: number): number {
  const a = attr(node, name);
  return a && 'i' in a ? a.i : fallback;
}
function attrFloat(node: OnnxNode, name: string, fallback: number): number {
  const a = attr(node, name);
  return a && 'f' in a ? a.f : fallback;
}
function attrInts(node: OnnxNode, name: string): number[] | undefined {
  const a = attr(node, name);
  return a && 'ints' in a ? a.ints : undefined;
}
function attrString(node: OnnxNode, name: string, fallback: string): string {
  const a = attr(node, name);
  return a && 's' in a ? a.s : fallback;
}

function describe(node: OnnxNode): string {
  return `node "${node.name}" (${node.opType})`;
}

function input(node: OnnxNode, inputs: (Value | undefined)[], i: number): Value {
  const v = inputs[i];
  if (!v) throw new Error(`${describe(node)}: input ${i} is missing`);
  return v;
}

/** Float32 data of a host value or an ONNX tensor attribute / initializer as a HostValue. */
export function hostFromTensor(t: OnnxTensor, where: string): HostValue {
  const data = t.data;
  if (!data || Array.isArray(data))
    throw new Error(`${where}: tensor "${t.name}" has ${t.external ? 'external' : 'string'} data, not supported`);
  const isFloat = t.dataType === 'float32' || t.dataType === 'float64';
  const isInt = ['int64', 'int32', 'int8', 'uint8', 'int16', 'uint16', 'uint32', 'bool'].includes(t.dataType);
  if (!isFloat && !isInt) throw new Error(`${where}: tensor "${t.name}" of type ${t.dataType} is not supported`);
  return hostValue(
    isFloat ? 'float' : 'int',
    Array.from(data as ArrayLike<number | bigint>, (x) => Number(x)),
    t.dims,
  );
}

// ------------------------------------------------------------------ host (shape) arithmetic

function broadcastHost(a: HostValue, b: HostValue, f: (x: number, y: number) => number, what: string): HostValue {
  const n = Math.max(a.data.length, b.data.length);
  if (!(a.data.length === n || a.data.length === 1) || !(b.data.length === n || b.data.length === 1))
    throw new Error(`${what}: cannot broadcast constants [${a.dims}] and [${b.dims}]`);
  const data = Array.from({ length: n }, (_, i) =>
    f(a.data[a.data.length === 1 ? 0 : i]!, b.data[b.data.length === 1 ? 0 : i]!),
  );
  const type = a.type === 'float' || b.type === 'float' ? 'float' : 'int';
  return hostValue(
    type,
    type === 'int' ? data.map(Math.trunc) : data,
    a.data.length >= b.data.length ? a.dims : b.dims,
  );
}

// ------------------------------------------------------------------ elementwise

/** Binary elementwise op with ONNX broadcasting, keeping an NHWC operand's layout. */
function binary(host: (x: number, y: number) => number, op: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): OpFn {
  return (node, inputs) => {
    const a = input(node, inputs, 0);
    const b = input(node, inputs, 1);
    if (a.kind === 'host' && b.kind === 'host') return [broadcastHost(a, b, host, describe(node))];
    const nhwc = (a.kind === 'tensor' && a.nhwc) || (b.kind === 'tensor' && b.nhwc);
    if (nhwc) return [tensorValue(op(alignToNhwc(a), alignToNhwc(b)), true)];
    return [tensorValue(op(toOnnxLayout(a), toOnnxLayout(b)))];
  };
}

/** Unary elementwise op: the layout is kept. */
function unary(op: (x: tf.Tensor, node: OnnxNode) => tf.Tensor): OpFn {
  return (node, inputs) => {
    const x = input(node, inputs, 0);
    if (x.kind === 'host') return [tensorValue(op(toOnnxLayout(x), node))];
    return [tensorValue(op(x.t, node), x.nhwc)];
  };
}

const SQRT1_2 = Math.SQRT1_2;
function gelu(x: tf.Tensor, node: OnnxNode): tf.Tensor {
  if (attrString(node, 'approximate', 'none') === 'tanh') {
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  }
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, SQRT1_2)), 1));
}

/** Softmax / LogSoftmax along `axis` (default -1; an NHWC value maps the axis). */
function softmaxOp(log: boolean): OpFn {
  return (node, inputs) => {
    const x = input(node, inputs, 0);
    const t = x.kind === 'tensor' ? x.t : toOnnxLayout(x);
    const rank = t.rank;
    let axis = axisOf(attrInt(node, 'axis', -1), rank, describe(node));
    if (x.kind === 'tensor' && x.nhwc) axis = NHWC_AXIS[axis]!;
    const f = (v: tf.Tensor) => (log ? tf.logSoftmax(v) : tf.softmax(v));
    if (axis === rank - 1) return [tensorValue(f(t), x.kind === 'tensor' && x.nhwc)];
    const perm = Array.from({ length: rank }, (_, i) => i);
    perm[axis] = rank - 1;
    perm[rank - 1] = axis;
    return [tensorValue(tf.transpose(f(tf.transpose(t, perm)), perm), x.kind === 'tensor' && x.nhwc)];
  };
}

// ------------------------------------------------------------------ dense

/** x [n, K] @ W [K, N] + b, through tools/core's dense (plain matMuls in the backward pass). */
function denseProduct(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor | undefined, inputGrad: boolean): tf.Tensor2D {
  const n = w.shape[1];
  if (b && b.rank === 1 && b.shape[0] === n) return dense(x, w, b as tf.Tensor1D, 'linear', inputGrad);
  const y = dense(x, w, tf.zeros([n]), 'linear', inputGrad);
  return b ? (tf.add(y, b) as tf.Tensor2D) : y;
}

const gemm: OpFn = (node, inputs, ctx) => {
  const transA = attrInt(node, 'transA', 0);
  const transB = attrInt(node, 'transB', 0);
  const alpha = attrFloat(node, 'alpha', 1);
  const beta = attrFloat(node, 'beta', 1);
  let a = toOnnxLayout(input(node, inputs, 0)) as tf.Tensor2D;
  if (transA) a = tf.transpose(a);
  const stored = ctx.weight(1, transB ? 'kn' : 'onnx');
  let w = (stored ?? toOnnxLayout(input(node, inputs, 1))) as tf.Tensor2D;
  if (!stored && transB) w = tf.transpose(w);
  if (alpha !== 1) w = tf.mul(w, alpha);
  const cv = inputs[2];
  let c = cv ? (ctx.weight(2, 'onnx') ?? toOnnxLayout(cv)) : undefined;
  if (c && beta !== 1) c = tf.mul(c, beta);
  return [tensorValue(denseProduct(a, w, c, ctx.needsGrad(0) || transA === 1))];
};

const matMul: OpFn = (node, inputs, ctx) => {
  const a = toOnnxLayout(input(node, inputs, 0));
  const b = ctx.weight(1, 'onnx') ?? toOnnxLayout(input(node, inputs, 1));
  if (a.rank === 2 && b.rank === 2)
    return [tensorValue(denseProduct(a as tf.Tensor2D, b as tf.Tensor2D, undefined, ctx.needsGrad(0)))];
  if (a.rank > 2 && b.rank === 2) {
    // [..., K] @ [K, N] as one 2-d product: tfjs' BatchMatMul gradient does not reduce a broadcast b.
    const rows = tf.reshape(a, [-1, a.shape[a.rank - 1]!]) as tf.Tensor2D;
    const y = denseProduct(rows, b as tf.Tensor2D, undefined, ctx.needsGrad(0));
    return [tensorValue(tf.reshape(y, [...a.shape.slice(0, -1), b.shape[1]!]))];
  }
  return [tensorValue(tf.matMul(a, b))];
};

// ------------------------------------------------------------------ convolution, pooling, batch norm

/** Explicit [top, left, bottom, right] pads from `pads` or `auto_pad`. */
function spatialPads(
  node: OnnxNode,
  size: [number, number],
  kernel: [number, number],
  strides: [number, number],
  dilations: [number, number],
): [number, number, number, number] {
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') {
    const p = attrInts(node, 'pads') ?? [0, 0, 0, 0];
    if (p.length !== 4) throw new Error(`${describe(node)}: pads [${p}] (2-d only)`);
    return [p[0]!, p[1]!, p[2]!, p[3]!];
  }
  if (autoPad === 'VALID') return [0, 0, 0, 0];
  if (autoPad !== 'SAME_UPPER' && autoPad !== 'SAME_LOWER') throw new Error(`${describe(node)}: auto_pad ${autoPad}`);
  const begin: number[] = [];
  const end: number[] = [];
  for (let i = 0; i < 2; i++) {
    const out = Math.ceil(size[i]! / strides[i]!);
    const total = Math.max(0, (out - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - size[i]!);
    const small = Math.floor(total / 2);
    begin.push(autoPad === 'SAME_UPPER' ? small : total - small);
    end.push(autoPad === 'SAME_UPPER' ? total - small : small);
  }
  return [begin[0]!, begin[1]!, end[0]!, end[1]!];
}

function pair(values: number[] | undefined, fallback: number, node: OnnxNode, name: string): [number, number] {
  if (!values) return [fallback, fallback];
  if (values.length !== 2) throw new Error(`${describe(node)}: ${name} [${values}] (2-d only)`);
  return [values[0]!, values[1]!];
}

const conv: OpFn = (node, inputs, ctx) => {
  const x = toNhwc(input(node, inputs, 0), describe(node));
  const w = (ctx.weight(1, 'hwio') ?? tf.transpose(toOnnxLayout(input(node, inputs, 1)), [2, 3, 1, 0])) as tf.Tensor4D;
  if (w.rank !== 4) throw new Error(`${describe(node)}: 2-d convolutions only (filter of rank ${w.rank})`);
  const b = inputs[2] ? ((ctx.weight(2, 'onnx') ?? toOnnxLayout(inputs[2])) as tf.Tensor1D) : null;
  const kernel: [number, number] = [w.shape[0], w.shape[1]];
  const strides = pair(attrInts(node, 'strides'), 1, node, 'strides');
  const dilations = pair(attrInts(node, 'dilations'), 1, node, 'dilations');
  const geometry: ConvGeometry = {
    strides,
    dilations,
    groups: attrInt(node, 'group', 1),
    pads: spatialPads(node, [x.shape[1], x.shape[2]], kernel, strides, dilations),
  };
  return [tensorValue(convNhwc(x, w, b, geometry, ctx.needsGrad(0)), true)];
};

function pool(kind: 'max' | 'avg'): OpFn {
  return (node, inputs) => {
    const x = toNhwc(input(node, inputs, 0), describe(node));
    if (attrInt(node, 'ceil_mode', 0) !== 0) throw new Error(`${describe(node)}: ceil_mode 1 is not supported`);
    if (node.outputs.length > 1 && node.outputs[1])
      throw new Error(`${describe(node)}: the Indices output is not supported`);
    const kernel = pair(attrInts(node, 'kernel_shape'), 1, node, 'kernel_shape');
    const strides = pair(attrInts(node, 'strides'), 1, node, 'strides');
    const dilations = pair(attrInts(node, 'dilations'), 1, node, 'dilations');
    if (dilations[0] !== 1 || dilations[1] !== 1)
      throw new Error(`${describe(node)}: dilated pooling is not supported`);
    const pads = spatialPads(node, [x.shape[1], x.shape[2]], kernel, strides, dilations);
    const y = poolNhwc(x, kind, {
      kernel,
      strides,
      pads,
      countIncludePad: attrInt(node, 'count_include_pad', 0) === 1,
    });
    return [tensorValue(y, true)];
  };
}

const globalAveragePool: OpFn = (node, inputs) => [
  tensorValue(tf.mean(toNhwc(input(node, inputs, 0), describe(node)), [1, 2], true), true),
];

/** Torch's running-variance update uses the unbiased batch variance. */
const batchNormalization: OpFn = (node, inputs, ctx) => {
  const x = input(node, inputs, 0);
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const momentum = attrFloat(node, 'momentum', 0.9);
  const get = (i: number) => (ctx.weight(i, 'onnx') ?? toOnnxLayout(input(node, inputs, i))) as tf.Tensor1D;
  const [scale, bias, mean, variance] = [get(1), get(2), get(3), get(4)];
  // Channels are the last axis of an NHWC map and of a [n, C] matrix.
  const t = x.kind === 'tensor' && x.nhwc ? x.t : toOnnxLayout(x);
  const nhwc = x.kind === 'tensor' && x.nhwc;
  if (!nhwc && t.rank === 4)
    return batchNormalization(node, [tensorValue(toNhwc(x, describe(node)), true), ...inputs.slice(1)], ctx);
  if (t.rank !== 2 && !nhwc)
    throw new Error(`${describe(node)}: input of rank ${t.rank} (2-d [n, C] and 4-d NCHW supported)`);
  const axes = nhwc ? [0, 1, 2] : [0];
  if (!ctx.training) {
    const s = tf.mul(scale, tf.rsqrt(tf.add(variance, eps)));
    return [tensorValue(tf.add(tf.mul(tf.sub(t, mean), s), bias), nhwc)];
  }
  const moments = tf.moments(t, axes);
  const rows = t.size / scale.shape[0];
  tf.tidy(() =>
    ctx.updateRunningStats(
      moments.mean as tf.Tensor1D,
      tf.mul(moments.variance, rows / Math.max(1, rows - 1)) as tf.Tensor1D,
      momentum,
    ),
  );
  const normalised = tf.mul(tf.sub(t, moments.mean), tf.rsqrt(tf.add(moments.variance, eps)));
  return [tensorValue(tf.add(tf.mul(normalised, scale), bias), nhwc)];
};

const dropout: OpFn = (node, inputs, ctx) => {
  const x = input(node, inputs, 0);
  const ratioInput = inputs[1];
  let ratio = attrFloat(node, 'ratio', 0.5);
  if (ratioInput) {
    if (ratioInput.kind !== 'host') throw new Error(`${describe(node)}: the ratio must be a constant`);
    ratio = ratioInput.data[0]!;
  }
  if (!ctx.training || ratio === 0 || x.kind === 'host') return [x];
  return [tensorValue(tf.dropout(x.t, ratio, undefined, ctx.dropoutSeed(ctx.nodeIndex)), x.nhwc)];
};

// ------------------------------------------------------------------ shape ops

const flatten: OpFn = (node, inputs) => {
  const x = input(node, inputs, 0);
  const shape = onnxShape(x);
  const axis = axisOf(attrInt(node, 'axis', 1), shape.length + 1, describe(node));
  const dims = [product(shape.slice(0, axis)), product(shape.slice(axis))];
  if (x.kind === 'host') return [hostValue(x.type, x.data, dims)];
  return [tensorValue(tf.reshape(toOnnxLayout(x), dims))];
};

const reshape: OpFn = (node, inputs) => {
  const x = input(node, inputs, 0);
  const shape = onnxShape(x);
  const target = hostInts(input(node, inputs, 1), `${describe(node)} shape`);
  const allowZero = attrInt(node, 'allowzero', 0) === 1;
  const dims = target.map((d, i) => (d === 0 && !allowZero ? shape[i]! : d));
  if (x.kind === 'host') {
    const known = product(dims.filter((d) => d !== -1));
    return [
      hostValue(
        x.type,
        x.data,
        dims.map((d) => (d === -1 ? x.data.length / known : d)),
      ),
    ];
  }
  return [tensorValue(tf.reshape(toOnnxLayout(x), dims))];
};

const transpose: OpFn = (node, inputs) => {
  const x = input(node, inputs, 0);
  const rank = onnxShape(x).length;
  const perm = attrInts(node, 'perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  if (x.kind === 'tensor' && rank === 4) {
    // The transposes around a channels-last model cost nothing: only the layout tag changes.
    if (x.nhwc && perm.join() === '0,2,3,1') return [tensorValue(x.t)];
    if (!x.nhwc && perm.join() === '0,3,1,2') return [tensorValue(x.t, true)];
  }
  return [tensorValue(tf.transpose(toOnnxLayout(x), perm))];
};

const concat: OpFn = (node, inputs) => {
  const values = inputs.filter((v): v is Value => v !== undefined);
  const rank = onnxShape(values[0]!).length;
  const axis = axisOf(attrInt(node, 'axis', 0), rank, describe(node));
  if (values.every((v) => v.kind === 'host')) {
    const hosts = values as HostValue[];
    if (rank !== 1) throw new Error(`${describe(node)}: constant concatenation of rank ${rank} is not supported`);
    return [
      hostValue(
        hosts.some((h) => h.type === 'float') ? 'float' : 'int',
        hosts.flatMap((h) => h.data),
        [hosts.reduce((a, h) => a + h.data.length, 0)],
      ),
    ];
  }
  if (rank === 4 && values.every((v) => v.kind === 'tensor' && v.nhwc))
    return [
      tensorValue(
        tf.concat(
          values.map((v) => (v as { t: tf.Tensor }).t),
          NHWC_AXIS[axis],
        ),
        true,
      ),
    ];
  return [tensorValue(tf.concat(values.map(toOnnxLayout), axis))];
};

const shape: OpFn = (node, inputs) => {
  const dims = onnxShape(input(node, inputs, 0));
  const start = axisOf(attrInt(node, 'start', 0), dims.length + 1, describe(node));
  const endAttr = attrInt(node, 'end', dims.length);
  const end = endAttr < 0 ? endAttr + dims.length : Math.min(endAttr, dims.length);
  const out = dims.slice(start, end);
  return [hostValue('int', out, [out.length])];
};

const gather: OpFn = (node, inputs) => {
  const data = input(node, inputs, 0);
  const indices = hostInts(input(node, inputs, 1), `${describe(node)} indices`);
  const indexDims = (inputs[1] as HostValue).dims;
  const dims = onnxShape(data);
  const axis = axisOf(attrInt(node, 'axis', 0), dims.length, describe(node));
  const fixed = indices.map((i) => (i < 0 ? i + dims[axis]! : i));
  if (data.kind === 'host') {
    if (dims.length !== 1)
      throw new Error(`${describe(node)}: gathering from a constant of rank ${dims.length} is not supported`);
    return [
      hostValue(
        data.type,
        fixed.map((i) => data.data[i]!),
        indexDims,
      ),
    ];
  }
  // Differentiable through slices (tf.gather's gradient needs UnsortedSegmentSum, absent on wasm).
  const t = toOnnxLayout(data);
  const parts = fixed.map((i) => {
    const begin = dims.map(() => 0);
    begin[axis] = i;
    const size = dims.map((d, k) => (k === axis ? 1 : d));
    return tf.slice(t, begin, size);
  });
  const joined = parts.length === 1 ? parts[0]! : tf.concat(parts, axis);
  const outShape = [...dims.slice(0, axis), ...indexDims, ...dims.slice(axis + 1)];
  return [tensorValue(tf.reshape(joined, outShape))];
};

/** Unsqueeze / Squeeze axes: the `axes` input (opset 13+) or attribute. */
function axesOf(node: OnnxNode, inputs: (Value | undefined)[]): number[] | undefined {
  return inputs[1] ? hostInts(inputs[1], `${describe(node)} axes`) : attrInts(node, 'axes');
}

const unsqueeze: OpFn = (node, inputs) => {
  const x = input(node, inputs, 0);
  const dims = onnxShape(x);
  const axes = axesOf(node, inputs) ?? [];
  const rank = dims.length + axes.length;
  const at = new Set(axes.map((a) => axisOf(a, rank, describe(node))));
  const out: number[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(at.has(i) ? 1 : dims[k++]!);
  if (x.kind === 'host') return [hostValue(x.type, x.data, out)];
  return [tensorValue(tf.reshape(toOnnxLayout(x), out))];
};

const squeeze: OpFn = (node, inputs) => {
  const x = input(node, inputs, 0);
  const dims = onnxShape(x);
  const given = axesOf(node, inputs);
  const drop = new Set(
    (given ?? dims.flatMap((d, i) => (d === 1 ? [i] : []))).map((a) => axisOf(a, dims.length, describe(node))),
  );
  const out = dims.filter((_, i) => !drop.has(i));
  if (x.kind === 'host') return [hostValue(x.type, x.data, out)];
  return [tensorValue(tf.reshape(toOnnxLayout(x), out))];
};

const cast: OpFn = (node, inputs) => {
  const x = input(node, inputs, 0);
  const to = attrInt(node, 'to', 1);
  const toFloat = to === 1 || to === 11 || to === 10;
  if (x.kind === 'host')
    return [hostValue(toFloat ? 'float' : 'int', toFloat ? x.data : x.data.map(Math.trunc), x.dims)];
  return [tensorValue(toFloat ? x.t : tf.cast(x.t, 'int32'), x.nhwc)];
};

const constant: OpFn = (node) => {
  const a = node.attributes;
  const v = a.value;
  if (v && 't' in v) return [hostFromTensor(v.t, describe(node))];
  const f = a.value_float;
  if (f && 'f' in f) return [hostValue('float', [f.f], [])];
  const fs = a.value_floats;
  if (fs && 'floats' in fs) return [hostValue('float', fs.floats, [fs.floats.length])];
  const i = a.value_int;
  if (i && 'i' in i) return [hostValue('int', [i.i], [])];
  const is = a.value_ints;
  if (is && 'ints' in is) return [hostValue('int', is.ints, [is.ints.length])];
  throw new Error(`${describe(node)}: only value, value_float(s) and value_int(s) constants are supported`);
};

/** Clip(x, min, max): bounds from the optional constant inputs (opset 11+) or the min / max attributes. */
const clip: OpFn = (node, inputs) => {
  const x = input(node, inputs, 0);
  const bound = (i: number, name: string, fallback: number): number => {
    const v = inputs[i];
    if (!v) return attrFloat(node, name, fallback);
    if (v.kind !== 'host') throw new Error(`${describe(node)}: the ${name} bound must be a constant`);
    return v.data[0]!;
  };
  const lo = bound(1, 'min', -3.4e38);
  const hi = bound(2, 'max', 3.4e38);
  if (x.kind === 'host') return [tensorValue(tf.clipByValue(toOnnxLayout(x), lo, hi))];
  return [tensorValue(tf.clipByValue(x.t, lo, hi), x.nhwc)];
};

const identity: OpFn = (node, inputs) => [input(node, inputs, 0)];

/** Every supported op type (ai.onnx domain). */
export const OPS: Record<string, OpFn> = {
  Gemm: gemm,
  MatMul: matMul,
  Add: binary((x, y) => x + y, tf.add),
  Sub: binary((x, y) => x - y, tf.sub),
  Mul: binary((x, y) => x * y, tf.mul),
  Div: binary((x, y) => x / y, tf.div),
  Conv: conv,
  BatchNormalization: batchNormalization,
  Relu: unary((x) => tf.relu(x)),
  LeakyRelu: unary((x, node) => tf.leakyRelu(x, attrFloat(node, 'alpha', 0.01))),
  Sigmoid: unary((x) => tf.sigmoid(x)),
  Tanh: unary((x) => tf.tanh(x)),
  Erf: unary((x) => tf.erf(x)),
  Gelu: unary(gelu),
  Softmax: softmaxOp(false),
  LogSoftmax: softmaxOp(true),
  MaxPool: pool('max'),
  AveragePool: pool('avg'),
  GlobalAveragePool: globalAveragePool,
  Flatten: flatten,
  Reshape: reshape,
  Transpose: transpose,
  Concat: concat,
  Clip: clip,
  Identity: identity,
  Dropout: dropout,
  Constant: constant,
  Shape: shape,
  Gather: gather,
  Unsqueeze: unsqueeze,
  Squeeze: squeeze,
  Cast: cast,
};
