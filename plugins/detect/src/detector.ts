/**
 * The detector trained by `detect-train`: a small convolutional backbone and a CenterNet head
 * (X. Zhou et al. 2019, "Objects as Points"), in TensorFlow.js on the project's fast convolutions
 * (tools/runtime/src/tfjs/conv.ts: both gradients are XNNPACK forward convolutions), exported to
 * ONNX following ./model-contract.ts.
 *
 *   pixels [n, H, W, 1]
 *   -> blocks i = 0..B-1: conv kxk 'same' + bias -> relu -> (2x2 max pool while i < pools)
 *   -> feature [n, h, w, F]  (h = H / 2^pools; F = the last block's channels)
 *   -> [conv 3x3 F -> headWidth -> relu]  (when headWidth > 0; shared by the three heads)
 *   -> conv 1x1 -> C + 4 channels: heatmap logits (C), size (2), offset (2)
 *
 * The heatmap bias starts at -log((1 - 0.1) / 0.1) = -2.19 as in the reference code, so every
 * cell starts at probability 0.1 and the focal loss is not swamped by the background at step 0.
 */
import * as tf from '@tensorflow/tfjs-core';
import { conv2d, maxPool2x2 } from '@distillery/runtime/tfjs';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';
import type { NamedVariable } from '@distillery/runtime/optim';
import { Rng } from '@distillery/runtime/rng';
import { DETECTOR_INPUT, DETECTOR_METADATA_KEY, DETECTOR_OUTPUTS, type DetectorGeometry } from './model-contract.js';

/** Architecture of a detector. */
export interface DetectorConfig {
  /** Output channels of each backbone block. */
  channels: number[];
  /** The first `pools` blocks end with a 2x2 max pool: the output stride is 2^pools. */
  pools: number;
  /** Kernel size of the backbone convolutions (odd). */
  kernel: number;
  /** Width of the 3x3 head convolution; 0 = the 1x1 output convolution reads the feature directly. */
  headWidth: number;
}

/** What one forward pass gives, all NHWC at output resolution. */
export interface DetectorOutputs {
  heatmapLogits: tf.Tensor4D;
  size: tf.Tensor4D;
  offset: tf.Tensor4D;
  feature: tf.Tensor4D;
}

interface ConvLayer {
  name: string;
  w: tf.Variable;
  b: tf.Variable;
  k: number;
  cin: number;
  cout: number;
}

const HEATMAP_PRIOR = 0.1;

export class Detector {
  readonly params: NamedVariable[] = [];
  readonly geometry: DetectorGeometry;
  private readonly blocks: ConvLayer[];
  private readonly headConv: ConvLayer | undefined;
  private readonly out: ConvLayer;

  constructor(
    readonly config: DetectorConfig,
    input: { width: number; height: number },
    numClasses: number,
    seed: number,
  ) {
    const { channels, pools, kernel, headWidth } = config;
    if (channels.length === 0) throw new Error('detector: channels must name at least one block');
    if (!(Number.isInteger(pools) && pools >= 0 && pools <= channels.length))
      throw new Error(`detector: pools must be an integer in [0, ${channels.length}] (one per block), got ${pools}`);
    if (kernel % 2 !== 1) throw new Error(`detector: kernel must be odd ('same' padding), got ${kernel}`);
    const stride = 2 ** pools;
    if (input.width % stride !== 0 || input.height % stride !== 0)
      throw new Error(`detector: input ${input.width}x${input.height} is not a multiple of the stride ${stride}`);
    const rng = new Rng(seed);
    let cin = 1;
    this.blocks = channels.map((cout, i) => {
      const layer = this.conv(rng, `backbone.${i}`, kernel, cin, cout);
      cin = cout;
      return layer;
    });
    const feature = cin;
    this.headConv = headWidth > 0 ? this.conv(rng, 'head.conv', 3, feature, headWidth) : undefined;
    this.out = this.conv(rng, 'head.out', 1, headWidth > 0 ? headWidth : feature, numClasses + 4);
    // Heatmap bias prior (first C channels of the output convolution).
    const bias = new Float32Array(numClasses + 4);
    bias.fill(-Math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR), 0, numClasses);
    this.out.b.assign(tf.tensor1d(bias));
    this.geometry = {
      inputWidth: input.width,
      inputHeight: input.height,
      stride,
      numClasses,
      featureChannels: feature,
    };
  }

  /** He-normal weights (fan-in), zero bias. */
  private conv(rng: Rng, name: string, k: number, cin: number, cout: number): ConvLayer {
    const std = Math.sqrt(2 / (k * k * cin));
    const w = new Float32Array(k * k * cin * cout);
    for (let i = 0; i < w.length; i++) w[i] = rng.normal() * std;
    const layer: ConvLayer = {
      name,
      w: tf.variable(tf.tensor4d(w, [k, k, cin, cout]), true),
      b: tf.variable(tf.zeros([cout]), true),
      k,
      cin,
      cout,
    };
    this.params.push({ name: `${name}.weight`, variable: layer.w }, { name: `${name}.bias`, variable: layer.b });
    return layer;
  }

  parameterCount(): number {
    return this.params.reduce((s, p) => s + p.variable.size, 0);
  }

  /** x: [n, H, W, 1] pixels / 255. */
  apply(x: tf.Tensor4D): DetectorOutputs {
    let h = x;
    this.blocks.forEach((layer, i) => {
      // Max pool commutes with relu and the per-channel bias, so both go after the pool on the
      // pooled blocks (a quarter of the elementwise work; docs/methods.md, "Relu and bias after the pool").
      if (i < this.config.pools) {
        const y = maxPool2x2(
          conv2d(h, layer.w as tf.Tensor4D, null, { padding: 'same', activation: 'linear', inputGrad: i > 0 }),
        );
        h = tf.relu(tf.add(y, layer.b)) as tf.Tensor4D;
      } else {
        h = conv2d(h, layer.w as tf.Tensor4D, layer.b as tf.Tensor1D, {
          padding: 'same',
          activation: 'relu',
          inputGrad: i > 0,
        });
      }
    });
    const feature = h;
    let head = feature;
    if (this.headConv)
      head = conv2d(head, this.headConv.w as tf.Tensor4D, this.headConv.b as tf.Tensor1D, {
        padding: 'same',
        activation: 'relu',
        inputGrad: true,
      });
    const out = conv2d(head, this.out.w as tf.Tensor4D, this.out.b as tf.Tensor1D, {
      padding: 'same',
      activation: 'linear',
      inputGrad: true,
    });
    const C = this.geometry.numClasses;
    const [heatmapLogits, size, offset] = tf.split(out, [C, 2, 2], 3) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    return { heatmapLogits, size, offset, feature };
  }

  /** Writes the model as ONNX (./model-contract.ts), weights as they are now. */
  writeOnnx(path: string, metadata: Record<string, string> = {}): void {
    const g = this.geometry;
    const builder = new GraphBuilder('detector', {
      opset: 17,
      metadata: { ...metadata, [DETECTOR_METADATA_KEY]: JSON.stringify(g) },
    });
    builder.input(DETECTOR_INPUT, 'float32', ['N', g.inputHeight, g.inputWidth, 1]);
    builder.node('Transpose', [DETECTOR_INPUT], ['nchw'], { perm: { ints: [0, 3, 1, 2] } });
    const conv = (layer: ConvLayer, input: string, output: string) => {
      builder.initializer(`${layer.name}.weight`, oihw(layer), [layer.cout, layer.cin, layer.k, layer.k]);
      builder.initializer(`${layer.name}.bias`, layer.b.dataSync() as Float32Array, [layer.cout]);
      const pad = (layer.k - 1) / 2;
      builder.node('Conv', [input, `${layer.name}.weight`, `${layer.name}.bias`], [output], {
        kernel_shape: { ints: [layer.k, layer.k] },
        pads: { ints: [pad, pad, pad, pad] },
        strides: { ints: [1, 1] },
      });
    };
    let h = 'nchw';
    this.blocks.forEach((layer, i) => {
      conv(layer, h, `${layer.name}.conv`);
      builder.node('Relu', [`${layer.name}.conv`], [`${layer.name}.relu`]);
      h = `${layer.name}.relu`;
      if (i < this.config.pools) {
        builder.node('MaxPool', [h], [`${layer.name}.pool`], {
          kernel_shape: { ints: [2, 2] },
          strides: { ints: [2, 2] },
        });
        h = `${layer.name}.pool`;
      }
    });
    builder.node('Identity', [h], [DETECTOR_OUTPUTS.feature]);
    let head = DETECTOR_OUTPUTS.feature as string;
    if (this.headConv) {
      conv(this.headConv, head, 'head.conv.out');
      builder.node('Relu', ['head.conv.out'], ['head.conv.relu']);
      head = 'head.conv.relu';
    }
    conv(this.out, head, 'head.out');
    const C = g.numClasses;
    builder.initializer('head.split', BigInt64Array.from([C, 2, 2].map(BigInt)), [3]);
    builder.node(
      'Split',
      ['head.out', 'head.split'],
      [DETECTOR_OUTPUTS.heatmapLogits, DETECTOR_OUTPUTS.size, DETECTOR_OUTPUTS.offset],
      { axis: { i: 1 } },
    );
    builder.node('Sigmoid', [DETECTOR_OUTPUTS.heatmapLogits], [DETECTOR_OUTPUTS.heatmap]);
    const [h0, w0] = [g.inputHeight / g.stride, g.inputWidth / g.stride];
    builder.output(DETECTOR_OUTPUTS.heatmap, 'float32', ['N', C, h0, w0]);
    builder.output(DETECTOR_OUTPUTS.heatmapLogits, 'float32', ['N', C, h0, w0]);
    builder.output(DETECTOR_OUTPUTS.size, 'float32', ['N', 2, h0, w0]);
    builder.output(DETECTOR_OUTPUTS.offset, 'float32', ['N', 2, h0, w0]);
    builder.output(DETECTOR_OUTPUTS.feature, 'float32', ['N', g.featureChannels, h0, w0]);
    writeModelFile(path, builder.build());
  }

  dispose(): void {
    for (const p of this.params) p.variable.dispose();
  }
}

/** tfjs HWIO [k, k, cin, cout] -> ONNX OIHW [cout, cin, k, k]. */
function oihw(layer: ConvLayer): Float32Array {
  const { k, cin, cout } = layer;
  const w = layer.w.dataSync() as Float32Array;
  const out = new Float32Array(w.length);
  for (let o = 0; o < cout; o++)
    for (let c = 0; c < cin; c++)
      for (let dy = 0; dy < k; dy++)
        for (let dx = 0; dx < k; dx++)
          out[((o * cin + c) * k + dy) * k + dx] = w[((dy * k + dx) * cin + c) * cout + o]!;
  return out;
}
