/**
 * A Layers model (read.ts) written as an ONNX graph with the project's GraphBuilder, so that it
 * trains through the imported-ONNX path (models/onnx/: the fast convolutions, batch norm with
 * batch statistics, every loss) and exports as model.onnx.
 *
 * Layout: Keras layers are channels-last. The graph takes the dataset's rows as they are
 * ([batch, ...dataset shape], [batch, H, W, C] for images) and holds every 4-d Keras tensor as NCHW,
 * the layout ONNX Conv, pooling and BatchNormalization read: one Transpose after the input, and a
 * Transpose back to NHWC only where the element order matters (Flatten, Reshape, Dense on a map).
 * The imported-ONNX runtime runs those transposes as layout tags (no copy), so the convolutions
 * still run NHWC. Conv kernels are written OIHW (Keras HWIO), a depthwise kernel [kh, kw, C, m] as a
 * grouped Conv (group C) with filter [C * m, 1, kh, kw].
 *
 * Names: each layer's output value and last node carry the layer's name (feature losses name a
 * Keras layer as `studentLayer`); its weights are initializers named `<layer>/<weight>` (kernel,
 * bias, depthwise_kernel, gamma, beta, moving_mean, moving_variance), so `freeze` takes Keras names.
 *
 * The student's output must be logits: a softmax on the output (a final Activation / Softmax layer,
 * or `activation: softmax` of the output layer) is left out, and a note says so.
 */
import { GraphBuilder, type OnnxAttribute, type OnnxModel } from '@distillery/runtime/onnx';
import type { KerasLayer, KerasModel, KerasWeight } from './read.js';

/** Where a Keras weight lives in the ONNX graph. */
export interface WeightBinding {
  /** The weightsManifest entry. */
  manifestName: string;
  /** The ONNX initializer holding it. */
  initializer: string;
  /** The initializer's values (ONNX layout) as the Keras weight's values (Keras shape). */
  toKeras(onnx: Float32Array): Float32Array;
}

export interface Translation {
  model: OnnxModel;
  bindings: WeightBinding[];
  /** Initializers never trained: constants the translation adds, weights of layers with `trainable: false`. */
  frozen: string[];
  /** Layer name -> the initializers of its weights (`freeze` may name a layer). */
  layerWeights: Map<string, string[]>;
  /** What the translation changed in the model, for the log. */
  notes: string[];
}

/** Layer classes translated here. */
export const SUPPORTED_LAYERS = [
  'InputLayer',
  'Dense',
  'Conv2D',
  'DepthwiseConv2D',
  'BatchNormalization',
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'Flatten',
  'Reshape',
  'Dropout',
  'Activation',
  'ReLU',
  'LeakyReLU',
  'Softmax',
  'Add',
  'Multiply',
  'Average',
  'Concatenate',
] as const;

/** Activations (`activation:` of a layer, or an Activation layer). */
export const SUPPORTED_ACTIVATIONS = ['linear', 'relu', 'relu6', 'sigmoid', 'tanh', 'softmax', 'swish', 'gelu'];

/** A Keras tensor: its ONNX value and per-sample Keras shape (3-d: held as NCHW in ONNX). */
interface KTensor {
  value: string;
  shape: number[];
}

function product(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** `data` of `shape` transposed by `perm` (host arrays; weights only). */
export function transposeHost(data: Float32Array, shape: number[], perm: number[]): Float32Array {
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p]!);
  const stride = new Array<number>(rank).fill(1);
  for (let a = rank - 2; a >= 0; a--) stride[a] = stride[a + 1]! * shape[a + 1]!;
  const out = new Float32Array(data.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let a = 0; a < rank; a++) src += idx[a]! * stride[perm[a]!]!;
    out[o] = data[src]!;
    for (let a = rank - 1; a >= 0; a--) {
      if (++idx[a]! < outShape[a]!) break;
      idx[a] = 0;
    }
  }
  return out;
}

/** TensorFlow's SAME padding of one axis: [before, after], the extra cell after. */
function samePads(size: number, k: number, stride: number, dilation: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max(0, (out - 1) * stride + (k - 1) * dilation + 1 - size);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

/** The layer being translated: config readers and the graph operations, each error naming the layer and file. */
class LayerContext {
  private count = 0;
  readonly where: string;

  constructor(
    readonly layer: KerasLayer,
    private readonly b: GraphBuilder,
    private readonly weights: Map<string, KerasWeight>,
    private readonly out: Translation,
    file: string,
  ) {
    this.where = `student model ${file}: layer "${layer.name}" (${layer.className})`;
  }

  fail(message: string): never {
    throw new Error(`${this.where}: ${message}`);
  }

  has(key: string): boolean {
    return this.layer.config[key] !== undefined && this.layer.config[key] !== null;
  }
  num(key: string, fallback: number): number {
    const v = this.layer.config[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number') this.fail(`${key} is ${JSON.stringify(v)}, expected a number`);
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.layer.config[key];
    return typeof v === 'boolean' ? v : fallback;
  }
  str(key: string, fallback: string): string {
    const v = this.layer.config[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string') this.fail(`${key} is ${JSON.stringify(v)}, expected a string`);
    return v;
  }
  /** A pair (kernel_size, strides, ...): a number or [h, w]. */
  pair(key: string, fallback: [number, number]): [number, number] {
    const v = this.layer.config[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v === 'number') return [v, v];
    if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number'))
      return [v[0] as number, v[1] as number];
    return this.fail(`${key} is ${JSON.stringify(v)}, expected a number or [h, w]`);
  }
  channelsLast(): void {
    const f = this.str('data_format', 'channels_last');
    if (f !== 'channels_last') this.fail(`data_format ${f} is not supported (channels_last only)`);
  }

  /** Adds a node; the layer's last node carries the layer's name and outputs the value of that name. */
  op(opType: string, inputs: string[], attributes: Record<string, OnnxAttribute> = {}, last = false): string {
    const name = last ? this.layer.name : `${this.layer.name}/${opType}${this.count++ || ''}`;
    this.b.node(opType, inputs, [name], attributes, { name });
    return name;
  }

  /** A constant initializer (never trained). */
  constant(suffix: string, data: Float32Array | BigInt64Array, dims: number[]): string {
    const name = `${this.layer.name}/${suffix}`;
    this.b.initializer(name, data, dims);
    if (data instanceof Float32Array) this.out.frozen.push(name);
    return name;
  }

  /**
   * The Keras weight `weight` of this layer as an initializer: its manifest entry found as tfjs
   * finds it (`<layer>/<weight>`, `<layer>/<scope>/<weight>`, or Keras 3's `<layer>/<index>`),
   * checked against `shape`, written in the ONNX layout by `toOnnx`.
   */
  weight(
    weight: string,
    index: number,
    shape: number[],
    convert: { dims: number[]; toOnnx: (k: Float32Array) => Float32Array; toKeras: (o: Float32Array) => Float32Array },
  ): string {
    const l = this.layer.name;
    const found =
      this.weights.get(`${l}/${weight}`) ??
      [...this.weights.values()].find((w) => {
        const t = w.name.replace(/:0$/, '').split('/');
        return t[0] === l && t[t.length - 1] === weight;
      }) ??
      this.weights.get(`${l}/${index}`);
    if (!found) this.fail(`weight "${l}/${weight}" is not in the weightsManifest`);
    if (found.shape.join() !== shape.join())
      this.fail(`weight "${found.name}" has shape [${found.shape}], the layer needs [${shape}]`);
    if (found.dtype !== 'float32') this.fail(`weight "${found.name}" is ${found.dtype}, expected float32`);
    this.weights.delete(found.name);
    const name = `${l}/${weight}`;
    this.b.initializer(name, convert.toOnnx(found.data as Float32Array), convert.dims);
    this.out.bindings.push({ manifestName: found.name, initializer: name, toKeras: convert.toKeras });
    const list = this.out.layerWeights.get(l) ?? [];
    list.push(name);
    this.out.layerWeights.set(l, list);
    if (this.layer.config.trainable === false) this.out.frozen.push(name);
    return name;
  }

  /** A weight stored as it is (Dense kernels, biases, batch-norm vectors). */
  plainWeight(weight: string, index: number, shape: number[]): string {
    return this.weight(weight, index, shape, { dims: shape, toOnnx: (k) => k, toKeras: (o) => o });
  }

  /** Transposes a 4-d value between the ONNX layout (NCHW) and Keras' (NHWC). */
  toNhwc(value: string): string {
    return this.op('Transpose', [value], { perm: { ints: [0, 2, 3, 1] } });
  }
  toNchw(value: string, last = false): string {
    return this.op('Transpose', [value], { perm: { ints: [0, 3, 1, 2] } }, last);
  }

  /** Applies a Keras activation to `value` (per-sample shape `shape`); `last`: the layer's final node. */
  activation(value: string, shape: number[], activation: string, last: boolean): string {
    switch (activation) {
      case 'linear':
        return last ? this.op('Identity', [value], {}, true) : value;
      case 'relu':
        return this.op('Relu', [value], {}, last);
      case 'relu6':
        return this.op(
          'Clip',
          [value, this.constant('zero', new Float32Array([0]), []), this.constant('six', new Float32Array([6]), [])],
          {},
          last,
        );
      case 'sigmoid':
        return this.op('Sigmoid', [value], {}, last);
      case 'tanh':
        return this.op('Tanh', [value], {}, last);
      case 'softmax':
        return this.op('Softmax', [value], { axis: { i: shape.length === 3 ? 1 : -1 } }, last);
      case 'swish':
        return this.op('Mul', [value, this.op('Sigmoid', [value])], {}, last);
      case 'gelu': {
        // x * 0.5 * (1 + erf(x / sqrt 2)), tfjs-layers' gelu (opset 17 has no Gelu op).
        const scaled = this.op('Div', [value, this.constant('sqrt2', new Float32Array([Math.SQRT2]), [])]);
        const cdf = this.op('Add', [this.op('Erf', [scaled]), this.constant('one', new Float32Array([1]), [])]);
        return this.op(
          'Mul',
          [this.op('Mul', [value, cdf]), this.constant('half', new Float32Array([0.5]), [])],
          {},
          last,
        );
      }
      default:
        return this.fail(
          `activation "${activation}" is not supported (supported: ${SUPPORTED_ACTIVATIONS.join(', ')})`,
        );
    }
  }

  /**
   * The layer's op(s) built by `build` and then its `activation`: `build(last)` makes its final node
   * the layer's when no activation follows. `strip`: a softmax activation is left out.
   */
  activated(shape: number[], strip: boolean, build: (last: boolean) => string): KTensor {
    const activation = this.activationName(strip);
    const y = build(activation === 'linear');
    return { value: activation === 'linear' ? y : this.activation(y, shape, activation, true), shape };
  }

  /** The layer's `activation` config (linear when stripped). */
  activationName(stripSoftmax: boolean): string {
    const a = this.layer.config.activation;
    if (a === undefined || a === null) return 'linear';
    if (typeof a !== 'string') this.fail(`activation ${JSON.stringify(a)} is not a name`);
    return stripSoftmax && a === 'softmax' ? 'linear' : a;
  }
}

/** [before..., after...] pads and the output size of a 2-d window op. */
function windowGeometry(
  ctx: LayerContext,
  shape: number[],
  kernel: [number, number],
  strides: [number, number],
  dilations: [number, number],
): { pads: number[]; out: [number, number] } {
  const padding = ctx.str('padding', 'valid');
  if (padding !== 'same' && padding !== 'valid') ctx.fail(`padding ${padding} is not supported (same, valid)`);
  const pads = [0, 0, 0, 0];
  const out: [number, number] = [0, 0];
  for (let a = 0; a < 2; a++) {
    const size = shape[a]!;
    if (padding === 'same') {
      const [before, after] = samePads(size, kernel[a]!, strides[a]!, dilations[a]!);
      pads[a] = before;
      pads[a + 2] = after;
      out[a] = Math.ceil(size / strides[a]!);
    } else out[a] = Math.floor((size - (kernel[a]! - 1) * dilations[a]! - 1) / strides[a]!) + 1;
    if (out[a]! < 1) ctx.fail(`a ${kernel[a]}-wide window does not fit the ${size}-wide input`);
  }
  return { pads, out };
}

function needsMap(ctx: LayerContext, x: KTensor): [number, number, number] {
  if (x.shape.length !== 3) ctx.fail(`expects a 4-d input [batch, h, w, c], got [batch, ${x.shape}]`);
  ctx.channelsLast();
  return x.shape as [number, number, number];
}

type Translate = (ctx: LayerContext, inputs: KTensor[], stripSoftmax: boolean) => KTensor;

function one(ctx: LayerContext, inputs: KTensor[]): KTensor {
  if (inputs.length !== 1) ctx.fail(`reads ${inputs.length} tensors, expected 1`);
  return inputs[0]!;
}

const dense: Translate = (ctx, inputs, strip) => {
  const x = one(ctx, inputs);
  const units = ctx.num('units', 0);
  const k = x.shape[x.shape.length - 1]!;
  const w = ctx.plainWeight('kernel', 0, [k, units]);
  const b = ctx.bool('use_bias', true) ? ctx.plainWeight('bias', 1, [units]) : undefined;
  return ctx.activated([...x.shape.slice(0, -1), units], strip, (last) => {
    if (x.shape.length === 1) return ctx.op('Gemm', b ? [x.value, w, b] : [x.value, w], {}, last);
    // Dense on the last axis of a map: in Keras' NHWC order, then back to NCHW.
    const input = x.shape.length === 3 ? ctx.toNhwc(x.value) : x.value;
    const product = ctx.op('MatMul', [input, w]);
    const biased = b ? ctx.op('Add', [product, b]) : product;
    if (x.shape.length === 3) return ctx.toNchw(biased, last);
    return last ? ctx.op('Identity', [biased], {}, true) : biased;
  });
};

/** A Conv2D kernel [kh, kw, C / groups, filters] as an OIHW initializer. */
function convKernel(
  ctx: LayerContext,
  c: number,
  kernel: [number, number],
): { weight: string; groups: number; channels: number } {
  const filters = ctx.num('filters', 0);
  const groups = ctx.num('groups', 1);
  if (c % groups !== 0 || filters % groups !== 0)
    ctx.fail(`${c} input and ${filters} output channels do not split into ${groups} groups`);
  const shape = [kernel[0], kernel[1], c / groups, filters];
  const dims = [filters, c / groups, kernel[0], kernel[1]];
  const weight = ctx.weight('kernel', 0, shape, {
    dims,
    toOnnx: (k) => transposeHost(k, shape, [3, 2, 0, 1]),
    toKeras: (o) => transposeHost(o, dims, [2, 3, 1, 0]),
  });
  return { weight, groups, channels: filters };
}

/** A DepthwiseConv2D kernel [kh, kw, C, m] as a grouped Conv's [C * m, 1, kh, kw] (output channel c * m + j). */
function depthwiseKernel(
  ctx: LayerContext,
  c: number,
  kernel: [number, number],
): { weight: string; groups: number; channels: number } {
  const m = ctx.num('depth_multiplier', 1);
  const dims = [c * m, 1, kernel[0], kernel[1]];
  const weight = ctx.weight('depthwise_kernel', 0, [kernel[0], kernel[1], c, m], {
    dims,
    toOnnx: (k) => transposeHost(k, [kernel[0], kernel[1], c * m, 1], [2, 3, 0, 1]),
    toKeras: (o) => transposeHost(o, dims, [2, 3, 0, 1]),
  });
  return { weight, groups: c, channels: c * m };
}

/** Conv2D and DepthwiseConv2D: one ONNX Conv (+ bias, + activation). */
function convolution(kernelOf: typeof convKernel): Translate {
  return (ctx, inputs, strip) => {
    const x = one(ctx, inputs);
    const [h, w, c] = needsMap(ctx, x);
    const kernel = ctx.pair('kernel_size', [1, 1]);
    const strides = ctx.pair('strides', [1, 1]);
    const dilations = ctx.pair('dilation_rate', [1, 1]);
    const { pads, out } = windowGeometry(ctx, [h, w], kernel, strides, dilations);
    const { weight, groups, channels } = kernelOf(ctx, c, kernel);
    const bias = ctx.bool('use_bias', true) ? [ctx.plainWeight('bias', 1, [channels])] : [];
    const attributes: Record<string, OnnxAttribute> = {
      kernel_shape: { ints: kernel },
      strides: { ints: strides },
      dilations: { ints: dilations },
      pads: { ints: pads },
      group: { i: groups },
    };
    return ctx.activated([out[0], out[1], channels], strip, (last) =>
      ctx.op('Conv', [x.value, weight, ...bias], attributes, last),
    );
  };
}

function pooling(kind: 'MaxPool' | 'AveragePool'): Translate {
  return (ctx, inputs) => {
    const x = one(ctx, inputs);
    const [h, w, c] = needsMap(ctx, x);
    const kernel = ctx.pair('pool_size', [2, 2]);
    const strides = ctx.pair('strides', kernel);
    const { pads, out } = windowGeometry(ctx, [h, w], kernel, strides, [1, 1]);
    // Keras' average over a SAME window divides by the cells inside the image: count_include_pad 0.
    const y = ctx.op(
      kind,
      [x.value],
      { kernel_shape: { ints: kernel }, strides: { ints: strides }, pads: { ints: pads } },
      true,
    );
    return { value: y, shape: [out[0], out[1], c] };
  };
}

const globalAveragePooling2d: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  const [, , c] = needsMap(ctx, x);
  const keep = ctx.bool('keepdims', false);
  const pooled = ctx.op('GlobalAveragePool', [x.value], {}, keep);
  if (keep) return { value: pooled, shape: [1, 1, c] };
  return { value: ctx.op('Flatten', [pooled], { axis: { i: 1 } }, true), shape: [c] };
};

const flatten: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  if (x.shape.length === 3) ctx.channelsLast();
  const input = x.shape.length === 3 ? ctx.toNhwc(x.value) : x.value;
  return { value: ctx.op('Flatten', [input], { axis: { i: 1 } }, true), shape: [product(x.shape)] };
};

const reshape: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  const target = ctx.layer.config.target_shape;
  if (!Array.isArray(target) || !target.every((d) => typeof d === 'number'))
    ctx.fail(`target_shape ${JSON.stringify(target)} is not a list of sizes`);
  const dims = target as number[];
  const known = product(dims.filter((d) => d !== -1));
  const shape = dims.map((d) => (d === -1 ? product(x.shape) / known : d));
  if (product(shape) !== product(x.shape) || !shape.every(Number.isInteger))
    ctx.fail(`cannot reshape [${x.shape}] to [${dims}]`);
  const input = x.shape.length === 3 ? ctx.toNhwc(x.value) : x.value;
  const to = ctx.constant('shape', BigInt64Array.from([0, ...shape].map(BigInt)), [shape.length + 1]);
  const y = ctx.op('Reshape', [input, to], {}, shape.length !== 3);
  return { value: shape.length === 3 ? ctx.toNchw(y, true) : y, shape };
};

const dropout: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  const ratio = ctx.constant('rate', new Float32Array([ctx.num('rate', 0)]), []);
  return { value: ctx.op('Dropout', [x.value, ratio], {}, true), shape: x.shape };
};

const batchNormalization: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  const rank = x.shape.length + 1;
  const rawAxis = ctx.layer.config.axis ?? -1;
  const axisList = Array.isArray(rawAxis) ? rawAxis : [rawAxis];
  if (axisList.length !== 1 || typeof axisList[0] !== 'number' || (axisList[0] + rank) % rank !== rank - 1)
    ctx.fail(`axis ${JSON.stringify(rawAxis)}: only the last (channel) axis is supported`);
  if (rank !== 2 && rank !== 4)
    ctx.fail(`input of rank ${rank} (2-d [batch, c] and 4-d [batch, h, w, c] are supported)`);
  const c = x.shape[x.shape.length - 1]!;
  const ones = () => ctx.constant('gamma', new Float32Array(c).fill(1), [c]);
  const zeros = () => ctx.constant('beta', new Float32Array(c), [c]);
  const center = ctx.bool('center', true);
  const scaled = ctx.bool('scale', true);
  let index = 0;
  const gamma = scaled ? ctx.plainWeight('gamma', index++, [c]) : ones();
  const beta = center ? ctx.plainWeight('beta', index++, [c]) : zeros();
  const mean = ctx.plainWeight('moving_mean', index++, [c]);
  const variance = ctx.plainWeight('moving_variance', index++, [c]);
  const y = ctx.op(
    'BatchNormalization',
    [x.value, gamma, beta, mean, variance],
    { epsilon: { f: ctx.num('epsilon', 1e-3) }, momentum: { f: ctx.num('momentum', 0.99) } },
    true,
  );
  return { value: y, shape: x.shape };
};

const activationLayer: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  return { value: ctx.activation(x.value, x.shape, ctx.activationName(false), true), shape: x.shape };
};

const relu: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  if (ctx.num('threshold', 0) !== 0) ctx.fail('threshold other than 0 is not supported');
  const slope = ctx.num('negative_slope', 0);
  if (ctx.has('max_value')) {
    if (slope !== 0) ctx.fail('max_value with negative_slope is not supported');
    const max = ctx.constant('max', new Float32Array([ctx.num('max_value', 0)]), []);
    return {
      value: ctx.op('Clip', [x.value, ctx.constant('min', new Float32Array([0]), []), max], {}, true),
      shape: x.shape,
    };
  }
  if (slope !== 0) return { value: ctx.op('LeakyRelu', [x.value], { alpha: { f: slope } }, true), shape: x.shape };
  return { value: ctx.op('Relu', [x.value], {}, true), shape: x.shape };
};

const leakyRelu: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  const alpha = ctx.num('alpha', ctx.num('negative_slope', 0.3));
  return { value: ctx.op('LeakyRelu', [x.value], { alpha: { f: alpha } }, true), shape: x.shape };
};

/** Keras axis of a rank-`rank` tensor -> the ONNX axis (4-d tensors are held NCHW). */
function onnxAxis(ctx: LayerContext, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 1 || a >= rank) ctx.fail(`axis ${axis} of a rank-${rank} tensor (the batch axis cannot be used)`);
  return rank === 4 ? [0, 2, 3, 1][a]! : a;
}

const softmaxLayer: Translate = (ctx, inputs) => {
  const x = one(ctx, inputs);
  const axis = onnxAxis(ctx, ctx.num('axis', -1), x.shape.length + 1);
  return { value: ctx.op('Softmax', [x.value], { axis: { i: axis } }, true), shape: x.shape };
};

function merge(kind: 'Add' | 'Mul' | 'Average'): Translate {
  return (ctx, inputs) => {
    if (inputs.length < 2) ctx.fail(`reads ${inputs.length} tensors, expected two or more`);
    const shape = inputs[0]!.shape;
    for (const t of inputs)
      if (t.shape.join() !== shape.join())
        ctx.fail(`inputs of shapes [${inputs.map((i) => `[${i.shape}]`).join(', ')}] differ`);
    const op = kind === 'Average' ? 'Add' : kind;
    let y = inputs[0]!.value;
    inputs.slice(1).forEach((t, i) => {
      y = ctx.op(op, [y, t.value], {}, kind !== 'Average' && i === inputs.length - 2);
    });
    if (kind === 'Average')
      y = ctx.op('Mul', [y, ctx.constant('scale', new Float32Array([1 / inputs.length]), [])], {}, true);
    return { value: y, shape };
  };
}

const concatenate: Translate = (ctx, inputs) => {
  if (inputs.length < 2) ctx.fail(`reads ${inputs.length} tensors, expected two or more`);
  const rank = inputs[0]!.shape.length + 1;
  const raw = ctx.num('axis', -1);
  const keras = (raw < 0 ? raw + rank : raw) - 1;
  const shape = [...inputs[0]!.shape];
  for (const t of inputs.slice(1)) {
    if (t.shape.length !== shape.length || t.shape.some((d, i) => i !== keras && d !== shape[i]))
      ctx.fail(`inputs of shapes ${inputs.map((i) => `[${i.shape}]`).join(', ')} do not concatenate on axis ${raw}`);
    shape[keras] = shape[keras]! + t.shape[keras]!;
  }
  const axis = onnxAxis(ctx, raw, rank);
  return {
    value: ctx.op(
      'Concat',
      inputs.map((t) => t.value),
      { axis: { i: axis } },
      true,
    ),
    shape,
  };
};

const TRANSLATE: Record<Exclude<(typeof SUPPORTED_LAYERS)[number], 'InputLayer'>, Translate> = {
  Dense: dense,
  Conv2D: convolution(convKernel),
  DepthwiseConv2D: convolution(depthwiseKernel),
  BatchNormalization: batchNormalization,
  MaxPooling2D: pooling('MaxPool'),
  AveragePooling2D: pooling('AveragePool'),
  GlobalAveragePooling2D: globalAveragePooling2d,
  Flatten: flatten,
  Reshape: reshape,
  Dropout: dropout,
  Activation: activationLayer,
  ReLU: relu,
  LeakyReLU: leakyRelu,
  Softmax: softmaxLayer,
  Add: merge('Add'),
  Multiply: merge('Mul'),
  Average: merge('Average'),
  Concatenate: concatenate,
};

/** Lists every layer whose class is not supported (empty: all are). */
export function unsupportedLayers(model: KerasModel): string[] {
  return model.layers
    .filter((l) => l.className !== 'InputLayer' && !(l.className in TRANSLATE))
    .map((l) => `layer "${l.name}" (${l.className})`);
}

/** A name not used by any layer (graph input and output names). */
function freeName(model: KerasModel, wanted: string): string {
  const taken = new Set(model.layers.map((l) => l.name));
  let name = wanted;
  for (let i = 1; taken.has(name); i++) name = `${wanted}_${i}`;
  return name;
}

/**
 * The ONNX graph of `model` for rows of `datasetShape`. The graph's input takes those rows
 * ([batch, ...datasetShape]; reshaped to the Keras input when the two differ in shape but not in
 * size); its output is the logits.
 */
export function layersToOnnx(model: KerasModel, datasetShape: number[], opset: number): Translation {
  const where = `student model ${model.file}`;
  const bad = unsupportedLayers(model);
  if (bad.length > 0)
    throw new Error(
      `${where}: unsupported ${bad.length === 1 ? 'layer' : 'layers'}: ${bad.join(', ')} (supported: ${SUPPORTED_LAYERS.join(', ')})`,
    );
  const out: Translation = {
    model: undefined as unknown as OnnxModel,
    bindings: [],
    frozen: [],
    layerWeights: new Map(),
    notes: [],
  };
  // The output must be logits: a softmax at the end is left out.
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const last = byName.get(model.output)!;
  let logitsLayer = last.name;
  let stripOn: string | undefined;
  const lastActivation = last.config.activation;
  if (
    (last.className === 'Activation' && lastActivation === 'softmax') ||
    (last.className === 'Softmax' && (last.config.axis ?? -1) === -1)
  ) {
    logitsLayer = last.inbound[0]!;
    out.notes.push(
      `${where}: the final ${last.className} layer "${last.name}" (softmax) is left out: the student's output is the logits of "${logitsLayer}" (model.json written back keeps it)`,
    );
  } else if (lastActivation === 'softmax') {
    stripOn = last.name;
    out.notes.push(
      `${where}: the softmax activation of the output layer "${last.name}" (${last.className}) is left out: the student's output is its logits (model.json written back keeps it)`,
    );
  }
  const inputName = freeName(model, 'input');
  const b = new GraphBuilder(`tfjs-layers ${model.input}`, {
    opset,
    producerName: 'distillery (from a tfjs-layers model)',
  });
  b.input(inputName, 'float32', ['batch', ...datasetShape]);
  const weights = new Map(model.weights.map((w) => [w.name, w]));
  const tensors = new Map<string, KTensor>();
  for (const layer of model.layers) {
    if (layer.name === last.name && logitsLayer !== last.name) continue;
    const ctx = new LayerContext(layer, b, weights, out, model.file);
    if (layer.className === 'InputLayer') {
      tensors.set(layer.name, inputTensor(ctx, model, inputName, datasetShape));
      continue;
    }
    const inputs = layer.inbound.map((n) => tensors.get(n)!);
    tensors.set(layer.name, TRANSLATE[layer.className as keyof typeof TRANSLATE](ctx, inputs, layer.name === stripOn));
  }
  const logits = tensors.get(logitsLayer)!;
  if (logits.shape.length !== 1)
    throw new Error(
      `${where}: the output "${logitsLayer}" has per-sample shape [${logits.shape}]; a student's output is logits [batch, classes]`,
    );
  const outputName = freeName(model, 'logits');
  b.node('Identity', [logits.value], [outputName], {}, { name: outputName });
  b.output(outputName, 'float32', ['batch', logits.shape[0]!]);
  out.model = b.build();
  return out;
}

/** The InputLayer: the dataset rows, reshaped to the Keras input if needed, as NCHW when 4-d. */
function inputTensor(ctx: LayerContext, model: KerasModel, inputName: string, datasetShape: number[]): KTensor {
  const declared = model.inputShape;
  // Unknown sizes (null) take the dataset's.
  const shape =
    declared.length === datasetShape.length
      ? declared.map((d, i) => d ?? datasetShape[i]!)
      : declared.map((d) => d ?? -1);
  if (shape.some((d) => d < 0) || product(shape) !== product(datasetShape))
    ctx.fail(`input shape [${declared.map((d) => d ?? 'null')}] does not fit the dataset's rows [${datasetShape}]`);
  let value = inputName;
  if (shape.join() !== datasetShape.join())
    value = ctx.op('Reshape', [
      value,
      ctx.constant('shape', BigInt64Array.from([0, ...shape].map(BigInt)), [shape.length + 1]),
    ]);
  value = shape.length === 3 ? ctx.toNchw(value, true) : ctx.op('Identity', [value], {}, true);
  return { value, shape };
}
