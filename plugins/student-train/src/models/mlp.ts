/** The configurable MLP student: flatten -> dense layers (relu) -> linear output layer. */
import * as tf from '@tensorflow/tfjs-core';
import { denseColumns } from '@distillery/runtime/tfjs';
import type { GraphBuilder } from '@distillery/runtime/onnx';
import type { Imprintable, ImprintHead } from '../imprint.js';
import type { NamedVariable } from '@distillery/runtime/optim';
import { Rng } from '../rng.js';
import { applyStack, makeDense, onnxFlatten, onnxStack, ParamStore, prod, type DenseLayer } from './layers.js';
import type { MlpConfig, Student } from './types.js';

export class Mlp implements Student, Imprintable {
  readonly params: NamedVariable[];
  readonly buffers: NamedVariable[];
  private readonly layers: DenseLayer[];
  constructor(
    readonly config: MlpConfig,
    readonly inputShape: number[],
    readonly numClasses: number,
    seed: number,
  ) {
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
    const logits = applyStack(this.layers, tf.reshape(x, [x.shape[0]!, -1]) as tf.Tensor2D, true, false, (i, h) =>
      activations.set(this.layers[i]!.name, h),
    );
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
    return denseColumns(
      h,
      last.w as tf.Tensor2D,
      last.b as tf.Tensor1D,
      tf.tensor1d(columns, 'int32'),
      body.length > 0,
    );
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
    return [
      {
        classes: Int32Array.from({ length: this.numClasses }, (_, c) => c),
        offset: 0,
        width: last.inDim,
        weight: last.w,
        bias: last.b,
      },
    ];
  }
}
