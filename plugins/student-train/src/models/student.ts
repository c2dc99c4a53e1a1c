/**
 * Student architectures on tfjs-core: configurable MLP, small CNN (conv, batch norm, relu,
 * pooling, dropout) and the Knowledge Concentration head (structurally connected layers + self-paced
 * per-vertical scales: docs/methods.md, "Structurally connected layers" and "Self-paced scaling").
 * Each model knows how to write itself as ONNX.
 *
 * Inputs are float32 [n, ...inputShape] in the dataset's layout (HWC for images); logits come out
 * in GLOBAL class order [n, numClasses].
 */
import * as tf from '@tensorflow/tfjs-core';
import { conv2d, maxPool2x2 } from '@distillery/runtime/tfjs';
import { dense, denseColumns, rowNormsSquared } from '@distillery/runtime/tfjs';
import type { GraphBuilder } from '@distillery/runtime/onnx';
import type { Imprintable, ImprintHead } from '../imprint.js';
import type { NamedVariable } from '@distillery/runtime/optim';
import { Rng } from '../rng.js';

export interface MlpConfig {
  arch: 'mlp';
  /** Hidden layer widths (relu), e.g. [1024, 1024]. */
  hidden: number[];
}

export interface CnnConfig {
  arch: 'cnn';
  /** Output channels of each conv block (conv kxk same-padding -> [batch norm] -> relu -> 2x2 max pool). */
  channels: number[];
  kernel: number;
  batchNorm: boolean;
  /** Dense hidden widths after the conv blocks. */
  hidden: number[];
  /** 'same' (default; odd kernels) or 'valid' convolutions. */
  padding?: 'same' | 'valid';
  /** Dropout rate on the input of each dense head layer while training (default 0). */
  dropout?: number;
}

export interface KcConfig {
  arch: 'kc';
  /** Hidden widths of the shared trunk before the SC head (empty: the head reads the input). */
  hidden: number[];
  /** Width s1 of the shared FC layer. */
  sharedWidth: number;
  /** Width s2 of each vertical's hidden block. */
  verticalWidth: number;
  /** Global class ids of each vertical; together they must cover every class exactly once. */
  verticals: number[][];
  /** Self-paced learning: y_v = gamma_v * x_v / ||x_v||_2 with gamma_v learnable. */
  selfPaced: boolean;
}

export type StudentConfig = MlpConfig | CnnConfig | KcConfig;

/** A model: trainable params, non-trainable buffers (batch-norm running stats), forward, ONNX. */
export interface Student {
  readonly config: StudentConfig;
  readonly inputShape: number[];
  readonly numClasses: number;
  readonly params: NamedVariable[];
  readonly buffers: NamedVariable[];
  /**
   * Logits [n, numClasses]. `training` selects batch statistics (and updates running stats) and
   * dropout; `step` seeds the step's dropout masks.
   */
  apply(x: tf.Tensor, training: boolean, step?: number): tf.Tensor2D;
  /**
   * Logits at the given distinct global class ids only, [n, columns.length] in that order; equal
   * to apply(x)[:, columns] (self-paced norms still over each whole vertical) without computing
   * the other classes' logits. Absent where the architecture has no cheaper path (cnn).
   */
  applyColumns?(x: tf.Tensor, training: boolean, columns: Int32Array): tf.Tensor2D;
  /** Appends the inference graph reading `input` (float32 [n, ...inputShape]); returns the logits name. */
  toOnnx(builder: GraphBuilder, input: string): string;
  /**
   * The same forward pass as apply(), also returning named intermediate activations (for feature
   * distillation): `conv<i>` = conv block i's output after relu and pooling, [n, h, w, c] (NHWC);
   * `fc<i>` = dense layer i's output (after relu; the last one is the logits), [n, width].
   * Absent where the architecture exposes none (kc).
   */
  applyWithActivations?(x: tf.Tensor, training: boolean, step?: number): { logits: tf.Tensor2D; activations: Map<string, tf.Tensor> };
  /**
   * ONNX value names and shapes (after the batch dim, in the ONNX graph's layout: NCHW for conv
   * blocks) of the activations applyWithActivations returns, as toOnnx writes them.
   */
  onnxActivations?(): Map<string, { value: string; shape: number[] }>;
}

let nextVariableId = 0;
const BN_EPS = 1e-5;
const BN_MOMENTUM = 0.1;
const L2_EPS = 1e-12;

function prod(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Shared bookkeeping: creates named variables with seeded He-uniform initialisation. */
class ParamStore {
  readonly params: NamedVariable[] = [];
  readonly buffers: NamedVariable[] = [];
  constructor(private readonly rng: Rng) {}
  weight(name: string, shape: number[], fanIn: number): tf.Variable {
    const limit = Math.sqrt(6 / fanIn);
    return this.add(name, tf.tensor(this.rng.uniformArray(prod(shape), limit), shape), true);
  }
  constant(name: string, shape: number[], value: number, trainable = true): tf.Variable {
    return this.add(name, tf.fill(shape, value), trainable);
  }
  add(name: string, init: tf.Tensor, trainable: boolean): tf.Variable {
    // tfjs variable names are process-global: a counter keeps them unique across models.
    const variable = tf.variable(init, trainable, `${name}#${nextVariableId++}`);
    init.dispose();
    (trainable ? this.params : this.buffers).push({ name, variable });
    return variable;
  }
}

/** Float32 copy of a variable for an ONNX initializer (synchronous: export is a one-off). */
function values(v: tf.Tensor): Float32Array {
  return v.dataSync() as Float32Array;
}

interface DenseLayer {
  w: tf.Variable;
  b: tf.Variable;
  name: string;
  inDim: number;
  outDim: number;
}

function makeDense(store: ParamStore, name: string, inDim: number, outDim: number): DenseLayer {
  return { name, inDim, outDim, w: store.weight(`${name}.weight`, [inDim, outDim], inDim), b: store.constant(`${name}.bias`, [outDim], 0) };
}

function onnxDense(builder: GraphBuilder, layer: DenseLayer, input: string, relu: boolean): string {
  builder.initializer(`${layer.name}.weight`, values(layer.w), [layer.inDim, layer.outDim]);
  builder.initializer(`${layer.name}.bias`, values(layer.b), [layer.outDim]);
  const out = `${layer.name}.out`;
  builder.node('Gemm', [input, `${layer.name}.weight`, `${layer.name}.bias`], [relu ? `${out}.pre` : out], {}, { name: layer.name });
  if (relu) builder.node('Relu', [`${out}.pre`], [out]);
  return out;
}

/** Runs dense layers (relu on all but, when `lastLinear`, the last); `onLayer` sees each layer's output. */
function applyStack(layers: DenseLayer[], x: tf.Tensor2D, lastLinear: boolean, inputGrad: boolean, onLayer?: (index: number, out: tf.Tensor2D) => void): tf.Tensor2D {
  let h = x;
  layers.forEach((layer, i) => {
    const linear = lastLinear && i === layers.length - 1;
    h = dense(h, layer.w as tf.Tensor2D, layer.b as tf.Tensor1D, linear ? 'linear' : 'relu', inputGrad || i > 0);
    onLayer?.(i, h);
  });
  return h;
}

function onnxStack(builder: GraphBuilder, layers: DenseLayer[], input: string, lastLinear: boolean): string {
  let h = input;
  layers.forEach((layer, i) => (h = onnxDense(builder, layer, h, !(lastLinear && i === layers.length - 1))));
  return h;
}

function onnxFlatten(builder: GraphBuilder, input: string, name: string): string {
  builder.node('Flatten', [input], [name], { axis: { i: 1 } });
  return name;
}

class Mlp implements Student, Imprintable {
  readonly params: NamedVariable[];
  readonly buffers: NamedVariable[];
  private readonly layers: DenseLayer[];
  constructor(readonly config: MlpConfig, readonly inputShape: number[], readonly numClasses: number, seed: number) {
    const store = new ParamStore(new Rng(seed));
    const widths = [prod(inputShape), ...config.hidden, numClasses];
    this.layers = widths.slice(1).map((w, i) => makeDense(store, `fc${i}`, widths[i]!, w));
    this.params = store.params;
    this.buffers = store.buffers;
  }
  apply(x: tf.Tensor, _training: boolean): tf.Tensor2D {
    return applyStack(this.layers, tf.reshape(x, [x.shape[0]!, -1]) as tf.Tensor2D, true, false);
  }
  applyWithActivations(x: tf.Tensor, _training: boolean): { logits: tf.Tensor2D; activations: Map<string, tf.Tensor> } {
    const activations = new Map<string, tf.Tensor>();
    const logits = applyStack(this.layers, tf.reshape(x, [x.shape[0]!, -1]) as tf.Tensor2D, true, false, (i, h) => activations.set(this.layers[i]!.name, h));
    return { logits, activations };
  }
  onnxActivations(): Map<string, { value: string; shape: number[] }> {
    return new Map(this.layers.map((l) => [l.name, { value: `${l.name}.out`, shape: [l.outDim] }]));
  }
  applyColumns(x: tf.Tensor, _training: boolean, columns: Int32Array): tf.Tensor2D {
    const flat = tf.reshape(x, [x.shape[0]!, -1]) as tf.Tensor2D;
    const body = this.layers.slice(0, -1);
    const last = this.layers[this.layers.length - 1]!;
    const h = body.length > 0 ? applyStack(body, flat, false, false) : flat;
    return denseColumns(h, last.w as tf.Tensor2D, last.b as tf.Tensor1D, tf.tensor1d(columns, 'int32'), body.length > 0);
  }
  toOnnx(builder: GraphBuilder, input: string): string {
    return onnxStack(builder, this.layers, onnxFlatten(builder, input, 'flat'), true);
  }
  penultimate(x: tf.Tensor): tf.Tensor2D {
    const flat = tf.reshape(x, [x.shape[0]!, -1]) as tf.Tensor2D;
    const body = this.layers.slice(0, -1);
    return body.length > 0 ? applyStack(body, flat, false, false) : flat;
  }
  heads(): ImprintHead[] {
    const last = this.layers[this.layers.length - 1]!;
    return [{ classes: Int32Array.from({ length: this.numClasses }, (_, c) => c), offset: 0, width: last.inDim, weight: last.w, bias: last.b }];
  }
}

interface ConvBlock {
  name: string;
  w: tf.Variable; // [k, k, cin, cout] (HWIO; the same memory order as im2col rows (dy*k + dx)*cin + c)
  b: tf.Variable;
  gamma?: tf.Variable;
  beta?: tf.Variable;
  runningMean?: tf.Variable;
  runningVar?: tf.Variable;
  cin: number;
  cout: number;
}

/**
 * Small CNN: blocks of conv kxk (stride 1, `padding`) -> [batch norm] -> relu -> 2x2 max pool, then
 * a dense head with optional dropout before each dense layer. Convolutions and pooling use
 * tools/core/src/tfjs/conv.ts, whose backward passes are forward convolutions (XNNPACK on wasm).
 */
class Cnn implements Student {
  readonly params: NamedVariable[];
  readonly buffers: NamedVariable[];
  private readonly blocks: ConvBlock[];
  private readonly head: DenseLayer[];
  private readonly h0: number;
  private readonly w0: number;
  constructor(readonly config: CnnConfig, readonly inputShape: number[], readonly numClasses: number, private readonly seed: number) {
    if (inputShape.length !== 3) throw new Error(`cnn student: input shape must be [H, W, C], got [${inputShape}]`);
    const padding = config.padding ?? 'same';
    if (padding === 'same' && config.kernel % 2 !== 1) throw new Error(`cnn student: 'same' padding needs an odd kernel, got ${config.kernel}`);
    const dropout = config.dropout ?? 0;
    if (!(dropout >= 0 && dropout < 1)) throw new Error(`cnn student: dropout must be in [0, 1), got ${dropout}`);
    const store = new ParamStore(new Rng(seed));
    let [h, w, c] = inputShape as [number, number, number];
    this.h0 = h;
    this.w0 = w;
    const k = config.kernel;
    this.blocks = config.channels.map((cout, i) => {
      const name = `conv${i}`;
      const block: ConvBlock = {
        name,
        cin: c,
        cout,
        w: store.weight(`${name}.weight`, [k, k, c, cout], k * k * c),
        b: store.constant(`${name}.bias`, [cout], 0),
      };
      if (config.batchNorm) {
        block.gamma = store.constant(`${name}.bn.gamma`, [cout], 1);
        block.beta = store.constant(`${name}.bn.beta`, [cout], 0);
        block.runningMean = store.constant(`${name}.bn.running_mean`, [cout], 0, false);
        block.runningVar = store.constant(`${name}.bn.running_var`, [cout], 1, false);
      }
      if (padding === 'valid') {
        h -= k - 1;
        w -= k - 1;
      }
      if (h < 2 || w < 2) throw new Error(`cnn student: too many conv/pool blocks for input [${inputShape}] (block ${i} sees ${h}x${w})`);
      h = Math.floor(h / 2);
      w = Math.floor(w / 2);
      c = cout;
      return block;
    });
    const widths = [h * w * c, ...config.hidden, numClasses];
    this.head = widths.slice(1).map((width, i) => makeDense(store, `fc${i}`, widths[i]!, width));
    this.params = store.params;
    this.buffers = store.buffers;
  }

  /**
   * The last block's pooled features [n, h, w, c] (NHWC). Each block computes conv -> [bn] -> relu ->
   * max pool as conv -> [bn] -> max pool -> relu, and without batch norm adds the bias after the
   * pool: max commutes with relu and with a per-channel constant, exactly in float arithmetic
   * (rounding is monotone), so the value is identical and the elementwise work of the forward and
   * backward passes runs on a quarter of the elements. The ONNX graph keeps the usual order
   * (docs/methods.md, "Relu and bias after the pool").
   */
  features(x: tf.Tensor, training: boolean, onBlock?: (index: number, out: tf.Tensor4D) => void): tf.Tensor4D {
    const n = x.shape[0]!;
    const padding = this.config.padding ?? 'same';
    let h = tf.reshape(x, [n, this.h0, this.w0, this.inputShape[2]!]) as tf.Tensor4D;
    this.blocks.forEach((block, index) => {
      const options = { padding, activation: 'linear' as const, inputGrad: index > 0 };
      if (block.gamma !== undefined) {
        const y = this.batchNorm(block, conv2d(h, block.w as tf.Tensor4D, block.b as tf.Tensor1D, options), training);
        h = tf.relu(maxPool2x2(y));
      } else {
        h = tf.relu(tf.add(maxPool2x2(conv2d(h, block.w as tf.Tensor4D, null, options)), block.b)) as tf.Tensor4D;
      }
      onBlock?.(index, h);
    });
    return h;
  }

  apply(x: tf.Tensor, training: boolean, step = 0): tf.Tensor2D {
    return this.forward(x, training, step);
  }

  applyWithActivations(x: tf.Tensor, training: boolean, step = 0): { logits: tf.Tensor2D; activations: Map<string, tf.Tensor> } {
    const activations = new Map<string, tf.Tensor>();
    const logits = this.forward(x, training, step, (name, out) => activations.set(name, out));
    return { logits, activations };
  }

  /** Block i's output is ONNX value conv<i>.pool [c, h, w]; dense layer i's is fc<i>.out. */
  onnxActivations(): Map<string, { value: string; shape: number[] }> {
    const out = new Map<string, { value: string; shape: number[] }>();
    const padding = this.config.padding ?? 'same';
    let [h, w] = [this.h0, this.w0];
    for (const block of this.blocks) {
      if (padding === 'valid') [h, w] = [h - (this.config.kernel - 1), w - (this.config.kernel - 1)];
      [h, w] = [Math.floor(h / 2), Math.floor(w / 2)];
      out.set(block.name, { value: `${block.name}.pool`, shape: [block.cout, h, w] });
    }
    for (const layer of this.head) out.set(layer.name, { value: `${layer.name}.out`, shape: [layer.outDim] });
    return out;
  }

  /** The forward pass; `onLayer` (when given) sees each block's and dense layer's output by name. */
  private forward(x: tf.Tensor, training: boolean, step: number, onLayer?: (name: string, out: tf.Tensor) => void): tf.Tensor2D {
    const n = x.shape[0]!;
    const blockOut = onLayer ? (i: number, out: tf.Tensor4D) => onLayer(this.blocks[i]!.name, out) : undefined;
    let h = tf.reshape(this.features(x, training, blockOut), [n, -1]) as tf.Tensor2D;
    const rate = this.config.dropout ?? 0;
    this.head.forEach((layer, i) => {
      // Inverted dropout on each dense layer's input; the mask is a function of (seed, step, layer),
      // so a resumed run draws the same masks as an uninterrupted one.
      if (training && rate > 0) h = tf.dropout(h, rate, undefined, (this.seed * 1000003 + step * 7919 + i * 104729 + 1) >>> 0) as tf.Tensor2D;
      h = dense(h, layer.w as tf.Tensor2D, layer.b as tf.Tensor1D, i === this.head.length - 1 ? 'linear' : 'relu');
      onLayer?.(layer.name, h);
    });
    return h;
  }

  /** Batch norm over [n, h, w, c] per channel; training uses batch stats and updates running stats. */
  private batchNorm(block: ConvBlock, y: tf.Tensor4D, training: boolean): tf.Tensor4D {
    if (!training) {
      const scale = tf.mul(block.gamma!, tf.rsqrt(tf.add(block.runningVar!, BN_EPS)));
      return tf.add(tf.mul(tf.sub(y, block.runningMean!), scale), block.beta!) as tf.Tensor4D;
    }
    const { mean, variance } = tf.moments(y, [0, 1, 2]);
    const rows = y.size / block.cout;
    // Running stats as torch.nn.BatchNorm2d: momentum 0.1, unbiased variance.
    tf.tidy(() => {
      // Not on the loss path: the tape never differentiates these.
      const v = tf.mul(variance, rows / Math.max(1, rows - 1));
      block.runningMean!.assign(tf.add(tf.mul(block.runningMean!, 1 - BN_MOMENTUM), tf.mul(mean, BN_MOMENTUM)));
      block.runningVar!.assign(tf.add(tf.mul(block.runningVar!, 1 - BN_MOMENTUM), tf.mul(v, BN_MOMENTUM)));
    });
    const normalised = tf.mul(tf.sub(y, mean), tf.rsqrt(tf.add(variance, BN_EPS)));
    return tf.add(tf.mul(normalised, block.gamma!), block.beta!) as tf.Tensor4D;
  }

  toOnnx(builder: GraphBuilder, input: string): string {
    const k = this.config.kernel;
    const pad = (this.config.padding ?? 'same') === 'same' ? (k - 1) / 2 : 0;
    builder.node('Transpose', [input], ['nchw'], { perm: { ints: [0, 3, 1, 2] } });
    let h = 'nchw';
    for (const block of this.blocks) {
      // [k, k, cin, cout] (HWIO)  ->  ONNX [cout, cin, k, k] (OIHW)
      const w = values(block.w);
      const onnxW = new Float32Array(block.cout * block.cin * k * k);
      for (let o = 0; o < block.cout; o++) {
        for (let c = 0; c < block.cin; c++) {
          for (let dy = 0; dy < k; dy++) {
            for (let dx = 0; dx < k; dx++) onnxW[((o * block.cin + c) * k + dy) * k + dx] = w[((dy * k + dx) * block.cin + c) * block.cout + o]!;
          }
        }
      }
      builder.initializer(`${block.name}.weight`, onnxW, [block.cout, block.cin, k, k]);
      builder.initializer(`${block.name}.bias`, values(block.b), [block.cout]);
      const conv = `${block.name}.out`;
      builder.node('Conv', [h, `${block.name}.weight`, `${block.name}.bias`], [conv], {
        kernel_shape: { ints: [k, k] },
        pads: { ints: [pad, pad, pad, pad] },
        strides: { ints: [1, 1] },
      });
      let act = conv;
      if (block.gamma) {
        for (const [suffix, v] of [['gamma', block.gamma], ['beta', block.beta!], ['running_mean', block.runningMean!], ['running_var', block.runningVar!]] as const) {
          builder.initializer(`${block.name}.bn.${suffix}`, values(v), [block.cout]);
        }
        act = `${block.name}.bn.out`;
        builder.node(
          'BatchNormalization',
          [conv, `${block.name}.bn.gamma`, `${block.name}.bn.beta`, `${block.name}.bn.running_mean`, `${block.name}.bn.running_var`],
          [act],
          { epsilon: { f: BN_EPS } },
        );
      }
      builder.node('Relu', [act], [`${block.name}.relu`]);
      builder.node('MaxPool', [`${block.name}.relu`], [`${block.name}.pool`], { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } });
      h = `${block.name}.pool`;
    }
    // Back to NHWC so the flatten order matches tfjs.
    builder.node('Transpose', [h], ['features.nhwc'], { perm: { ints: [0, 2, 3, 1] } });
    return onnxStack(builder, this.head, onnxFlatten(builder, 'features.nhwc', 'flat'), true);
  }
}

/**
 * Column permutation with the inverse permutation as its gradient (tf.gather's own gradient
 * needs UnsortedSegmentSum, which tfjs-backend-wasm lacks).
 */
function permuteColumns(x: tf.Tensor2D, perm: tf.Tensor1D, inverse: tf.Tensor1D): tf.Tensor2D {
  return tf.customGrad((input, save) => {
    // Saved, so a per-step index tensor outlives the forward pass's tidy.
    (save as tf.GradSaveFunc)([inverse]);
    return { value: tf.gather(input as tf.Tensor2D, perm, 1) as tf.Tensor2D, gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => tf.gather(dy, saved[0]! as tf.Tensor1D, 1) };
  })(x) as tf.Tensor2D;
}

/**
 * Knowledge Concentration student: trunk -> shared FC (s1, relu) -> per-vertical blocks
 * (s2, relu) each wired only to its vertical's outputs -> optional self-paced scaling.
 * The M first-layer blocks share their input, so they are computed as one [s1, M*s2] product
 * (the same parameters as M separate [s1, s2] blocks). Parameters of the SC part:
 * s1*s2*M + s2*N (+ biases), plus s_b*s1 for the shared FC (docs/methods.md, "Structurally
 * connected layers").
 */
class KcStudent implements Student, Imprintable {
  readonly params: NamedVariable[];
  readonly buffers: NamedVariable[];
  private readonly trunk: DenseLayer[];
  private readonly shared: DenseLayer;
  private readonly blocks: DenseLayer;
  private readonly outputs: DenseLayer[];
  private readonly gammas: tf.Variable[] = [];
  private readonly perm: tf.Tensor1D;
  private readonly inverse: tf.Tensor1D;
  private readonly permArray: Int32Array;
  /** True when verticals are contiguous ascending id ranges: the concatenation is already global order. */
  private readonly identityOrder: boolean;
  private readonly verticalOf: Int32Array;
  private readonly localIndex: Int32Array;
  constructor(readonly config: KcConfig, readonly inputShape: number[], readonly numClasses: number, seed: number) {
    const rng = new Rng(seed);
    const store = new ParamStore(rng);
    const seen = new Int32Array(numClasses).fill(-1);
    const concatOrder: number[] = [];
    config.verticals.forEach((classes, v) => {
      if (classes.length === 0) throw new Error(`kc student: vertical ${v} has no classes`);
      for (const c of classes) {
        if (!Number.isInteger(c) || c < 0 || c >= numClasses) throw new Error(`kc student: vertical ${v} names class ${c}, outside [0, ${numClasses})`);
        if (seen[c] !== -1) throw new Error(`kc student: class ${c} is in verticals ${seen[c]} and ${v}`);
        seen[c] = v;
        concatOrder.push(c);
      }
    });
    const missing = seen.indexOf(-1);
    if (missing >= 0) throw new Error(`kc student: class ${missing} belongs to no vertical (verticals must partition the classes)`);
    // perm[g] = concatenated column holding global class g.
    this.permArray = new Int32Array(numClasses);
    concatOrder.forEach((g, col) => (this.permArray[g] = col));
    this.perm = tf.tensor1d(this.permArray, 'int32');
    this.inverse = tf.tensor1d(Int32Array.from(concatOrder), 'int32');
    this.identityOrder = concatOrder.every((g, col) => g === col);
    this.verticalOf = Int32Array.from(seen);
    this.localIndex = new Int32Array(numClasses);
    config.verticals.forEach((classes) => classes.forEach((c, i) => (this.localIndex[c] = i)));
    const widths = [prod(inputShape), ...config.hidden];
    this.trunk = widths.slice(1).map((w, i) => makeDense(store, `trunk${i}`, widths[i]!, w));
    const sb = widths[widths.length - 1]!;
    const m = config.verticals.length;
    this.shared = makeDense(store, 'sc.shared', sb, config.sharedWidth);
    this.blocks = makeDense(store, 'sc.blocks', config.sharedWidth, m * config.verticalWidth);
    this.outputs = config.verticals.map((classes, v) => makeDense(store, `sc.out${v}`, config.verticalWidth, classes.length));
    if (config.selfPaced) {
      config.verticals.forEach((classes, v) => {
        const init = Math.sqrt(classes.length) + 1e-3 * rng.normal();
        this.gammas.push(store.constant(`sc.gamma${v}`, [1], init));
      });
    }
    this.params = store.params;
    this.buffers = store.buffers;
  }

  /** [n, M*s2]: the per-vertical hidden blocks side by side. */
  private verticalHidden(x: tf.Tensor): tf.Tensor2D {
    const n = x.shape[0]!;
    const flat = tf.reshape(x, [n, -1]) as tf.Tensor2D;
    const features = this.trunk.length > 0 ? applyStack(this.trunk, flat, false, false) : flat;
    const s = dense(features, this.shared.w as tf.Tensor2D, this.shared.b as tf.Tensor1D, 'relu', this.trunk.length > 0);
    return dense(s, this.blocks.w as tf.Tensor2D, this.blocks.b as tf.Tensor1D, 'relu');
  }

  /**
   * Per vertical: logits at that vertical's requested classes (denseColumns), and with self-paced
   * scaling the exact L2 norm over ALL the vertical's classes from its s2 x s2 Gram matrix
   * (rowNormsSquared), so no [n, N_v] logits are formed.
   */
  applyColumns(x: tf.Tensor, _training: boolean, columns: Int32Array): tf.Tensor2D {
    const n = x.shape[0]!;
    const hidden = this.verticalHidden(x);
    const s2 = this.config.verticalWidth;
    const positions: number[][] = this.outputs.map(() => []);
    columns.forEach((c, pos) => {
      if (!(c >= 0 && c < this.numClasses)) throw new Error(`kc student: column ${c} outside [0, ${this.numClasses})`);
      positions[this.verticalOf[c]!]!.push(pos);
    });
    const parts: tf.Tensor2D[] = [];
    const order: number[] = [];
    this.outputs.forEach((layer, v) => {
      const pos = positions[v]!;
      if (pos.length === 0) return;
      const hv = tf.slice(hidden, [0, v * s2], [n, s2]) as tf.Tensor2D;
      const local = tf.tensor1d(Int32Array.from(pos, (p) => this.localIndex[columns[p]!]!), 'int32');
      let out = denseColumns(hv, layer.w as tf.Tensor2D, layer.b as tf.Tensor1D, local);
      if (this.config.selfPaced) {
        const norm = tf.sqrt(tf.add(tf.reshape(rowNormsSquared(hv, layer.w as tf.Tensor2D, layer.b as tf.Tensor1D), [n, 1]), L2_EPS));
        out = tf.mul(tf.div(out, norm), this.gammas[v]!) as tf.Tensor2D;
      }
      parts.push(out);
      order.push(...pos);
    });
    const joined = parts.length === 1 ? parts[0]! : (tf.concat(parts, 1) as tf.Tensor2D);
    if (order.every((p, i) => p === i)) return joined; // columns already grouped by vertical
    const perm = new Int32Array(order.length);
    order.forEach((p, i) => (perm[p] = i));
    return permuteColumns(joined, tf.tensor1d(perm, 'int32'), tf.tensor1d(Int32Array.from(order), 'int32'));
  }

  penultimate(x: tf.Tensor): tf.Tensor2D {
    return this.verticalHidden(x);
  }

  /** Vertical v's output block reads its own s2 slice of the hidden blocks. */
  heads(): ImprintHead[] {
    const s2 = this.config.verticalWidth;
    return this.outputs.map((layer, v) => ({ classes: Int32Array.from(this.config.verticals[v]!), offset: v * s2, width: s2, weight: layer.w, bias: layer.b }));
  }

  apply(x: tf.Tensor, _training: boolean): tf.Tensor2D {
    const n = x.shape[0]!;
    const hidden = this.verticalHidden(x);
    const s2 = this.config.verticalWidth;
    const parts = this.outputs.map((layer, v) => {
      const hv = tf.slice(hidden, [0, v * s2], [n, s2]) as tf.Tensor2D;
      let out = dense(hv, layer.w as tf.Tensor2D, layer.b as tf.Tensor1D, 'linear');
      if (this.config.selfPaced) {
        const norm = tf.sqrt(tf.add(tf.sum(tf.square(out), 1, true), L2_EPS));
        out = tf.mul(tf.div(out, norm), this.gammas[v]!) as tf.Tensor2D;
      }
      return out;
    });
    const joined = tf.concat(parts, 1) as tf.Tensor2D;
    // Contiguous ascending verticals (as eft-generate makes them): the permutation is the identity.
    return this.identityOrder ? joined : permuteColumns(joined, this.perm, this.inverse);
  }

  toOnnx(builder: GraphBuilder, input: string): string {
    const flat = onnxFlatten(builder, input, 'flat');
    const features = this.trunk.length > 0 ? onnxStack(builder, this.trunk, flat, false) : flat;
    const s = onnxDense(builder, this.shared, features, true);
    const hidden = onnxDense(builder, this.blocks, s, true);
    const s2 = this.config.verticalWidth;
    builder.initializer('sc.axes1', new BigInt64Array([1n]), [1]);
    // Only the self-paced normalisation reads it (an unused initializer makes onnxruntime warn).
    if (this.config.selfPaced) builder.initializer('sc.l2eps', new Float32Array([L2_EPS]), []);
    const parts = this.outputs.map((layer, v) => {
      builder.initializer(`sc.slice${v}.start`, new BigInt64Array([BigInt(v * s2)]), [1]);
      builder.initializer(`sc.slice${v}.end`, new BigInt64Array([BigInt((v + 1) * s2)]), [1]);
      builder.node('Slice', [hidden, `sc.slice${v}.start`, `sc.slice${v}.end`, 'sc.axes1'], [`sc.h${v}`]);
      const out = onnxDense(builder, layer, `sc.h${v}`, false);
      if (!this.config.selfPaced) return out;
      const p = `sc.sp${v}`;
      builder.initializer(`sc.gamma${v}`, values(this.gammas[v]!), [1]);
      builder.node('Mul', [out, out], [`${p}.sq`]);
      builder.node('ReduceSum', [`${p}.sq`, 'sc.axes1'], [`${p}.ss`], { keepdims: { i: 1 } });
      builder.node('Add', [`${p}.ss`, 'sc.l2eps'], [`${p}.ss_eps`]);
      builder.node('Sqrt', [`${p}.ss_eps`], [`${p}.norm`]);
      builder.node('Div', [out, `${p}.norm`], [`${p}.unit`]);
      builder.node('Mul', [`${p}.unit`, `sc.gamma${v}`], [`${p}.out`]);
      return `${p}.out`;
    });
    if (this.identityOrder) {
      builder.node('Concat', parts, ['logits.global'], { axis: { i: 1 } });
      return 'logits.global';
    }
    builder.node('Concat', parts, ['sc.concat'], { axis: { i: 1 } });
    builder.initializer('sc.perm', Int32Array.from(this.permArray), [this.numClasses]);
    builder.node('Gather', ['sc.concat', 'sc.perm'], ['logits.global'], { axis: { i: 1 } });
    return 'logits.global';
  }
}

/** Builds a student with seeded initialisation. */
export function createStudent(config: StudentConfig, inputShape: number[], numClasses: number, seed: number): Student {
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new Error(`student: numClasses must be a positive integer, got ${numClasses}`);
  switch (config.arch) {
    case 'mlp':
      return new Mlp(config, inputShape, numClasses, seed);
    case 'cnn':
      return new Cnn(config, inputShape, numClasses, seed);
    case 'kc':
      return new KcStudent(config, inputShape, numClasses, seed);
  }
}

/** Number of trainable scalars. */
export function parameterCount(student: Student): number {
  return student.params.reduce((a, p) => a + p.variable.size, 0);
}
