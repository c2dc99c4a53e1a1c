/**
 * The networks of this package on tfjs-core: a relu MLP built on the runtime's fast dense layer, wrapped
 * as a class- and noise-conditioned net (EDM denoiser, discriminator logit) or a classifier; Adam;
 * weight files; ONNX export with GraphBuilder (run by onnxruntime-node).
 *
 * Conditioned input row: [c_in * x, c_noise, sin(f c_noise)..., cos(f c_noise)..., onehot(class)].
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { dense } from '@distillery/runtime/tfjs';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';
import { Rng } from '@distillery/runtime/rng';
import { adamConfig, minimiseStep, Optimizer, type NamedVariable } from '@distillery/runtime/optim';
import { preconditioning, TIME_EMBEDDING_WIDTH, TIME_FREQUENCIES, type EdmConfig } from './edm.js';
import { writeFileAtomicSync } from '@distillery/core/plugin';

/** Layer widths of a relu MLP (linear last layer). */
export interface MlpSpec {
  input: number;
  hidden: number[];
  output: number;
}

/** Relu MLP; weights He-initialised from a seed. */
export class Mlp {
  readonly params: NamedVariable[] = [];
  readonly layers: { w: tf.Variable; b: tf.Variable }[] = [];
  constructor(
    readonly spec: MlpSpec,
    seed: number,
    readonly prefix: string,
  ) {
    const rng = new Rng(seed);
    const widths = [spec.input, ...spec.hidden, spec.output];
    for (let l = 0; l + 1 < widths.length; l++) {
      const fanIn = widths[l]!;
      const fanOut = widths[l + 1]!;
      const scale = Math.sqrt(2 / fanIn) * (l + 2 === widths.length ? 0.1 : 1);
      const data = new Float32Array(fanIn * fanOut);
      for (let i = 0; i < data.length; i++) data[i] = rng.normal() * scale;
      const w = tf.variable(tf.tensor2d(data, [fanIn, fanOut]), true, `${prefix}.l${l}.w.${uniqueId()}`);
      const b = tf.variable(tf.zeros([fanOut]), true, `${prefix}.l${l}.b.${uniqueId()}`);
      this.layers.push({ w, b });
      this.params.push({ name: `${prefix}.l${l}.w`, variable: w }, { name: `${prefix}.l${l}.b`, variable: b });
    }
  }

  /** Output [n, output]; `penultimate` also returns the last hidden activation. */
  apply(x: tf.Tensor2D, inputGrad: boolean): { out: tf.Tensor2D; penultimate: tf.Tensor2D } {
    let h = x;
    let penultimate = x;
    this.layers.forEach((layer, l) => {
      const last = l + 1 === this.layers.length;
      if (last) penultimate = h;
      h = dense(
        h,
        layer.w as tf.Variable<tf.Rank.R2>,
        layer.b as tf.Variable<tf.Rank.R1>,
        last ? 'linear' : 'relu',
        l > 0 || inputGrad,
      );
    });
    return { out: h, penultimate };
  }

  /** Appends Gemm (+Relu) nodes reading `input`; returns the output and penultimate value names. */
  toOnnx(builder: GraphBuilder, input: string): { out: string; penultimate: string } {
    let h = input;
    let penultimate = input;
    this.layers.forEach((layer, l) => {
      const last = l + 1 === this.layers.length;
      if (last) penultimate = h;
      const w = `${this.prefix}.l${l}.w`;
      const b = `${this.prefix}.l${l}.b`;
      builder.initializer(w, layer.w.dataSync() as Float32Array, layer.w.shape);
      builder.initializer(b, layer.b.dataSync() as Float32Array, layer.b.shape);
      const z = `${this.prefix}.l${l}.z`;
      builder.node('Gemm', [h, w, b], [z]);
      if (last) h = z;
      else {
        builder.node('Relu', [z], [`${this.prefix}.l${l}.a`]);
        h = `${this.prefix}.l${l}.a`;
      }
    });
    return { out: h, penultimate };
  }

  parameterCount(): number {
    return this.params.reduce((a, p) => a + p.variable.size, 0);
  }

  /** Copies another MLP's weights (same spec) into this one. */
  copyFrom(other: Mlp): void {
    if (JSON.stringify(other.spec) !== JSON.stringify(this.spec))
      throw new Error(`cannot copy ${JSON.stringify(other.spec)} weights into ${JSON.stringify(this.spec)}`);
    this.layers.forEach((l, i) => {
      l.w.assign(other.layers[i]!.w);
      l.b.assign(other.layers[i]!.b);
    });
  }

  dispose(): void {
    for (const p of this.params) p.variable.dispose();
  }
}

let idCounter = 0;
function uniqueId(): number {
  return idCounter++;
}

/** What a conditioned net computes: an EDM denoiser D(x; sigma, c) or a scalar logit. */
export type ConditionedKind = 'denoiser' | 'logit';

/** Architecture of a conditioned net; stored in weight files and ONNX metadata. */
export interface ConditionedSpec {
  kind: ConditionedKind;
  /** Data dimension D. */
  dim: number;
  numClasses: number;
  hidden: number[];
  edm: EdmConfig;
}

/** Per-sample conditioning for a batch: [n, TIME_EMBEDDING_WIDTH + C] plus the EDM factors. */
export function conditioning(
  sigmas: ArrayLike<number>,
  classes: ArrayLike<number>,
  numClasses: number,
  sigmaData: number,
) {
  const n = sigmas.length;
  const width = TIME_EMBEDDING_WIDTH + numClasses;
  const cond = new Float32Array(n * width);
  const cIn = new Float32Array(n);
  const cSkip = new Float32Array(n);
  const cOut = new Float32Array(n);
  const K = TIME_FREQUENCIES.length;
  for (let i = 0; i < n; i++) {
    const p = preconditioning(sigmas[i]!, sigmaData);
    cIn[i] = p.cIn;
    cSkip[i] = p.cSkip;
    cOut[i] = p.cOut;
    const row = i * width;
    // float32 rounding of c_noise first, as the ONNX graph computes it in float32.
    const cn = Math.fround(Math.fround(Math.log(Math.fround(sigmas[i]!))) * 0.25);
    cond[row] = cn;
    for (let k = 0; k < K; k++) {
      const a = Math.fround(cn * TIME_FREQUENCIES[k]!);
      cond[row + 1 + k] = Math.sin(a);
      cond[row + 1 + K + k] = Math.cos(a);
    }
    const c = classes[i]!;
    if (!Number.isInteger(c) || c < 0 || c >= numClasses)
      throw new Error(`class ${c} of sample ${i} is outside [0, ${numClasses})`);
    cond[row + TIME_EMBEDDING_WIDTH + c] = 1;
  }
  return { cond, width, cIn, cSkip, cOut };
}

/** A class- and noise-conditioned MLP (denoiser or discriminator). */
export class ConditionedNet {
  readonly mlp: Mlp;
  constructor(
    readonly spec: ConditionedSpec,
    seed: number,
    prefix: string,
  ) {
    this.mlp = new Mlp(
      {
        input: spec.dim + TIME_EMBEDDING_WIDTH + spec.numClasses,
        hidden: spec.hidden,
        output: spec.kind === 'denoiser' ? spec.dim : 1,
      },
      seed,
      prefix,
    );
  }

  get params(): NamedVariable[] {
    return this.mlp.params;
  }

  /**
   * Denoiser: D(x; sigma, c) [n, D]; logit: [n, 1]. `inputGrad`: whether gradients flow to x.
   * Call inside tf.tidy / variableGrads.
   */
  apply(x: tf.Tensor2D, sigmas: ArrayLike<number>, classes: ArrayLike<number>, inputGrad = false): tf.Tensor2D {
    const n = x.shape[0];
    const c = conditioning(sigmas, classes, this.spec.numClasses, this.spec.edm.sigmaData);
    const cIn = tf.tensor2d(c.cIn, [n, 1]);
    const input = tf.concat([tf.mul(x, cIn), tf.tensor2d(c.cond, [n, c.width])], 1) as tf.Tensor2D;
    const f = this.mlp.apply(input, inputGrad).out;
    if (this.spec.kind === 'logit') return f;
    return tf.add(tf.mul(x, tf.tensor2d(c.cSkip, [n, 1])), tf.mul(f, tf.tensor2d(c.cOut, [n, 1]))) as tf.Tensor2D;
  }

  /** Denoising loss of EDM on clean x0 (F-space MSE, equal to lambda(sigma)-weighted D-space MSE). */
  denoisingLoss(x0: tf.Tensor2D, sigmas: ArrayLike<number>, noise: tf.Tensor2D, classes: ArrayLike<number>): tf.Scalar {
    const n = x0.shape[0];
    const sig = tf.tensor2d(Float32Array.from(sigmas), [n, 1]);
    const xt = tf.add(x0, tf.mul(noise, sig)) as tf.Tensor2D;
    const denoised = this.apply(xt, sigmas, classes);
    const c = conditioning(sigmas, classes, this.spec.numClasses, this.spec.edm.sigmaData);
    // ||F - target||^2 = ||D - x0||^2 / c_out^2
    const err = tf.div(tf.sub(denoised, x0), tf.tensor2d(c.cOut, [n, 1]));
    return tf.mean(tf.square(err));
  }

  copyFrom(other: ConditionedNet): void {
    this.mlp.copyFrom(other.mlp);
  }

  dispose(): void {
    this.mlp.dispose();
  }
}

/** Adam (torch.optim.Adam semantics) at a fixed learning rate over named variables: the runtime's Optimizer. */
export function adam(params: NamedVariable[], lr: number, beta1 = 0.9, beta2 = 0.999): Optimizer {
  return new Optimizer(adamConfig(lr, beta1, beta2), params);
}

/** Minimises `loss` over `params` with `opt`; returns the loss value. */
export const trainStep = minimiseStep;

// ---------------------------------------------------------------- weight files

/** On-disk weights: a JSON document with the spec and float32 tensors in base64. */
interface WeightFile<S> {
  format: 'distillery-f-distill-weights/1';
  spec: S;
  tensors: Record<string, { shape: number[]; data: string }>;
}

export function saveWeights<S>(path: string, spec: S, params: NamedVariable[]): void {
  const tensors: WeightFile<S>['tensors'] = {};
  for (const p of params) {
    const data = p.variable.dataSync() as Float32Array;
    tensors[p.name] = {
      shape: p.variable.shape,
      data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64'),
    };
  }
  const doc: WeightFile<S> = { format: 'distillery-f-distill-weights/1', spec, tensors };
  writeFileAtomicSync(path, JSON.stringify(doc));
}

export function readWeightSpec<S>(path: string): WeightFile<S> {
  let doc: WeightFile<S>;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8')) as WeightFile<S>;
  } catch (error) {
    throw new Error(`weights ${path}: cannot read (${(error as Error).message})`);
  }
  if (doc.format !== 'distillery-f-distill-weights/1')
    throw new Error(`weights ${path}: not a distillery-f-distill-weights/1 file`);
  return doc;
}

/** Loads tensors by name into `params` (names must match one to one, shapes exactly). */
export function loadWeights(
  path: string,
  doc: WeightFile<unknown>,
  params: NamedVariable[],
  rename: (name: string) => string = (n) => n,
): void {
  for (const p of params) {
    const t = doc.tensors[rename(p.name)];
    if (!t) throw new Error(`weights ${path}: no tensor ${rename(p.name)}`);
    if (t.shape.join(',') !== p.variable.shape.join(','))
      throw new Error(
        `weights ${path}: tensor ${rename(p.name)} has shape [${t.shape}], expected [${p.variable.shape}]`,
      );
    const bytes = Buffer.from(t.data, 'base64');
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    p.variable.assign(tf.tensor(data, t.shape));
  }
}

// ---------------------------------------------------------------- ONNX export

/**
 * Writes a conditioned net as ONNX.
 * - denoiser: inputs x float32 [batch, D], sigma float32 [batch, 1], class int64 [batch]; output "denoised".
 * - generator (a denoiser evaluated at sigma = sigmaMax on x = sigmaMax z): inputs z [batch, D],
 *   class int64 [batch]; output "sample".
 * - logit: inputs as denoiser; output "logit" [batch, 1].
 */
export function exportConditionedOnnx(
  net: ConditionedNet,
  path: string,
  mode: 'denoiser' | 'generator' | 'logit',
  metadata: Record<string, string> = {},
): void {
  const { dim: D, numClasses: C, edm } = net.spec;
  const b = new GraphBuilder(`f-distill-${mode}`, {
    opset: 17,
    metadata: { 'distillery.spec': JSON.stringify(net.spec), 'distillery.mode': mode, ...metadata },
  });
  const f32 = (name: string, values: number[], dims: number[]) => b.initializer(name, Float32Array.from(values), dims);
  if (mode === 'generator') {
    b.input('z', 'float32', ['batch', D]);
    b.input('class', 'int64', ['batch']);
    f32('sigma_max', [edm.sigmaMax], [1]);
    f32('zero', [0], [1]);
    b.initializer('slice_start', BigInt64Array.from([0n]), [1]);
    b.initializer('slice_end', BigInt64Array.from([1n]), [1]);
    b.initializer('slice_axis', BigInt64Array.from([1n]), [1]);
    b.node('Mul', ['z', 'sigma_max'], ['x']);
    b.node('Slice', ['z', 'slice_start', 'slice_end', 'slice_axis'], ['z_col']);
    b.node('Mul', ['z_col', 'zero'], ['z_zero']);
    b.node('Add', ['z_zero', 'sigma_max'], ['sigma']);
  } else {
    b.input('x', 'float32', ['batch', D]);
    b.input('sigma', 'float32', ['batch', 1]);
    b.input('class', 'int64', ['batch']);
  }
  const sd = edm.sigmaData;
  f32('sd2', [sd * sd], [1]);
  f32('sd', [sd], [1]);
  f32('quarter', [0.25], [1]);
  f32('freqs', TIME_FREQUENCIES, [1, TIME_FREQUENCIES.length]);
  const eye = new Float32Array(C * C);
  for (let i = 0; i < C; i++) eye[i * C + i] = 1;
  b.initializer('class_eye', eye, [C, C]);
  b.node('Mul', ['sigma', 'sigma'], ['s2']);
  b.node('Add', ['s2', 'sd2'], ['var']);
  b.node('Sqrt', ['var'], ['rs']);
  b.node('Reciprocal', ['rs'], ['c_in']);
  b.node('Div', ['sd2', 'var'], ['c_skip']);
  b.node('Mul', ['sigma', 'sd'], ['sigma_sd']);
  b.node('Div', ['sigma_sd', 'rs'], ['c_out']);
  b.node('Log', ['sigma'], ['log_sigma']);
  b.node('Mul', ['log_sigma', 'quarter'], ['c_noise']);
  b.node('Mul', ['c_noise', 'freqs'], ['angles']);
  b.node('Sin', ['angles'], ['sin']);
  b.node('Cos', ['angles'], ['cos']);
  b.node('Gather', ['class_eye', 'class'], ['onehot'], { axis: { i: 0 } });
  b.node('Mul', ['x', 'c_in'], ['x_in']);
  b.node('Concat', ['x_in', 'c_noise', 'sin', 'cos', 'onehot'], ['h0'], { axis: { i: 1 } });
  const { out } = net.mlp.toOnnx(b, 'h0');
  if (mode === 'logit') {
    b.node('Identity', [out], ['logit']);
    b.output('logit', 'float32', ['batch', 1]);
  } else {
    b.node('Mul', ['x', 'c_skip'], ['skip']);
    b.node('Mul', [out, 'c_out'], ['scaled']);
    const name = mode === 'generator' ? 'sample' : 'denoised';
    b.node('Add', ['skip', 'scaled'], [name]);
    b.output(name, 'float32', ['batch', D]);
  }
  writeModelFile(path, b.build());
}

/** Classifier ONNX: input "input" [batch, D]; outputs "features" (penultimate, first) and "logits". */
export function exportClassifierOnnx(mlp: Mlp, path: string, metadata: Record<string, string> = {}): void {
  const b = new GraphBuilder('f-distill-classifier', { opset: 17, metadata });
  b.input('input', 'float32', ['batch', mlp.spec.input]);
  const { out, penultimate } = mlp.toOnnx(b, 'input');
  b.node('Identity', [penultimate], ['features']);
  b.node('Identity', [out], ['logits']);
  b.output('features', 'float32', ['batch', mlp.spec.hidden[mlp.spec.hidden.length - 1] ?? mlp.spec.input]);
  b.output('logits', 'float32', ['batch', mlp.spec.output]);
  writeModelFile(path, b.build());
}
