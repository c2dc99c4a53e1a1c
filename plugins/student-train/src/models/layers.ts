/**
 * Building blocks shared by the student architectures: seeded parameter creation, dense layers
 * (tfjs forward and ONNX export) and the flatten node.
 */
import * as tf from '@tensorflow/tfjs-core';
import { dense } from '@distillery/runtime/tfjs';
import type { GraphBuilder } from '@distillery/runtime/onnx';
import type { NamedVariable } from '@distillery/runtime/optim';
import type { Rng } from '../rng.js';

// tfjs variable names are process-global: one counter for every model keeps them unique.
let nextVariableId = 0;

export function prod(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Shared bookkeeping: creates named variables with seeded He-uniform initialisation. */
export class ParamStore {
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
    const variable = tf.variable(init, trainable, `${name}#${nextVariableId++}`);
    init.dispose();
    (trainable ? this.params : this.buffers).push({ name, variable });
    return variable;
  }
}

/** Float32 copy of a variable for an ONNX initializer (synchronous: export is a one-off). */
export function values(v: tf.Tensor): Float32Array {
  return v.dataSync() as Float32Array;
}

export interface DenseLayer {
  w: tf.Variable;
  b: tf.Variable;
  name: string;
  inDim: number;
  outDim: number;
}

export function makeDense(store: ParamStore, name: string, inDim: number, outDim: number): DenseLayer {
  return {
    name,
    inDim,
    outDim,
    w: store.weight(`${name}.weight`, [inDim, outDim], inDim),
    b: store.constant(`${name}.bias`, [outDim], 0),
  };
}

export function onnxDense(builder: GraphBuilder, layer: DenseLayer, input: string, relu: boolean): string {
  builder.initializer(`${layer.name}.weight`, values(layer.w), [layer.inDim, layer.outDim]);
  builder.initializer(`${layer.name}.bias`, values(layer.b), [layer.outDim]);
  const out = `${layer.name}.out`;
  builder.node(
    'Gemm',
    [input, `${layer.name}.weight`, `${layer.name}.bias`],
    [relu ? `${out}.pre` : out],
    {},
    { name: layer.name },
  );
  if (relu) builder.node('Relu', [`${out}.pre`], [out]);
  return out;
}

/** Runs dense layers (relu on all but, when `lastLinear`, the last); `onLayer` sees each layer's output. */
export function applyStack(
  layers: DenseLayer[],
  x: tf.Tensor2D,
  lastLinear: boolean,
  inputGrad: boolean,
  onLayer?: (index: number, out: tf.Tensor2D) => void,
): tf.Tensor2D {
  let h = x;
  layers.forEach((layer, i) => {
    const linear = lastLinear && i === layers.length - 1;
    h = dense(h, layer.w as tf.Tensor2D, layer.b as tf.Tensor1D, linear ? 'linear' : 'relu', inputGrad || i > 0);
    onLayer?.(i, h);
  });
  return h;
}

export function onnxStack(builder: GraphBuilder, layers: DenseLayer[], input: string, lastLinear: boolean): string {
  let h = input;
  layers.forEach((layer, i) => (h = onnxDense(builder, layer, h, !(lastLinear && i === layers.length - 1))));
  return h;
}

export function onnxFlatten(builder: GraphBuilder, input: string, name: string): string {
  builder.node('Flatten', [input], [name], { axis: { i: 1 } });
  return name;
}
