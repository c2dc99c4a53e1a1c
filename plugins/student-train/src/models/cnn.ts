/** The small CNN student: conv blocks (conv, batch norm, relu, pooling) and a dense head with dropout. */
import * as tf from '@tensorflow/tfjs-core';
import { conv2d, maxPool2x2 } from '@distillery/runtime/tfjs';
import { dense } from '@distillery/runtime/tfjs';
import type { GraphBuilder } from '@distillery/runtime/onnx';
import type { NamedVariable } from '@distillery/runtime/optim';
import { Rng } from '../rng.js';
import { makeDense, onnxFlatten, onnxStack, ParamStore, values, type DenseLayer } from './layers.js';
import type { CnnConfig, Student } from './types.js';

const BN_EPS = 1e-5;
const BN_MOMENTUM = 0.1;

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
export class Cnn implements Student {
  readonly params: NamedVariable[];
  readonly buffers: NamedVariable[];
  private readonly blocks: ConvBlock[];
  private readonly head: DenseLayer[];
  private readonly h0: number;
  private readonly w0: number;
  constructor(
    readonly config: CnnConfig,
    readonly inputShape: number[],
    readonly numClasses: number,
    private readonly seed: number,
  ) {
    if (inputShape.length !== 3) throw new Error(`cnn student: input shape must be [H, W, C], got [${inputShape}]`);
    const padding = config.padding ?? 'same';
    if (padding === 'same' && config.kernel % 2 !== 1)
      throw new Error(`cnn student: 'same' padding needs an odd kernel, got ${config.kernel}`);
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
      if (h < 2 || w < 2)
        throw new Error(`cnn student: too many conv/pool blocks for input [${inputShape}] (block ${i} sees ${h}x${w})`);
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

  applyWithActivations(
    x: tf.Tensor,
    training: boolean,
    step = 0,
  ): { logits: tf.Tensor2D; activations: Map<string, tf.Tensor> } {
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
  private forward(
    x: tf.Tensor,
    training: boolean,
    step: number,
    onLayer?: (name: string, out: tf.Tensor) => void,
  ): tf.Tensor2D {
    const n = x.shape[0]!;
    const blockOut = onLayer ? (i: number, out: tf.Tensor4D) => onLayer(this.blocks[i]!.name, out) : undefined;
    let h = tf.reshape(this.features(x, training, blockOut), [n, -1]) as tf.Tensor2D;
    const rate = this.config.dropout ?? 0;
    this.head.forEach((layer, i) => {
      // Inverted dropout on each dense layer's input; the mask is a function of (seed, step, layer),
      // so a resumed run draws the same masks as an uninterrupted one.
      if (training && rate > 0)
        h = tf.dropout(h, rate, undefined, (this.seed * 1000003 + step * 7919 + i * 104729 + 1) >>> 0) as tf.Tensor2D;
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
            for (let dx = 0; dx < k; dx++)
              onnxW[((o * block.cin + c) * k + dy) * k + dx] = w[((dy * k + dx) * block.cin + c) * block.cout + o]!;
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
        for (const [suffix, v] of [
          ['gamma', block.gamma],
          ['beta', block.beta!],
          ['running_mean', block.runningMean!],
          ['running_var', block.runningVar!],
        ] as const) {
          builder.initializer(`${block.name}.bn.${suffix}`, values(v), [block.cout]);
        }
        act = `${block.name}.bn.out`;
        builder.node(
          'BatchNormalization',
          [
            conv,
            `${block.name}.bn.gamma`,
            `${block.name}.bn.beta`,
            `${block.name}.bn.running_mean`,
            `${block.name}.bn.running_var`,
          ],
          [act],
          { epsilon: { f: BN_EPS } },
        );
      }
      builder.node('Relu', [act], [`${block.name}.relu`]);
      builder.node('MaxPool', [`${block.name}.relu`], [`${block.name}.pool`], {
        kernel_shape: { ints: [2, 2] },
        strides: { ints: [2, 2] },
      });
      h = `${block.name}.pool`;
    }
    // Back to NHWC so the flatten order matches tfjs.
    builder.node('Transpose', [h], ['features.nhwc'], { perm: { ints: [0, 2, 3, 1] } });
    return onnxStack(builder, this.head, onnxFlatten(builder, 'features.nhwc', 'flat'), true);
  }
}
