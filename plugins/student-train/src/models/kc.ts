/**
 * The Knowledge Concentration student: structurally connected layers + self-paced per-vertical
 * scales (docs/methods.md, "Structurally connected layers" and "Self-paced scaling").
 */
import * as tf from '@tensorflow/tfjs-core';
import { dense, denseColumns, rowNormsSquared } from '@distillery/runtime/tfjs';
import type { GraphBuilder } from '@distillery/runtime/onnx';
import type { Imprintable, ImprintHead } from '../imprint.js';
import type { NamedVariable } from '@distillery/runtime/optim';
import { Rng } from '../rng.js';
import {
  applyStack,
  makeDense,
  onnxDense,
  onnxFlatten,
  onnxStack,
  ParamStore,
  prod,
  values,
  type DenseLayer,
} from './layers.js';
import type { KcConfig, Student } from './types.js';

const L2_EPS = 1e-12;

/**
 * Column permutation with the inverse permutation as its gradient (tf.gather's own gradient
 * needs UnsortedSegmentSum, which tfjs-backend-wasm lacks).
 */
function permuteColumns(x: tf.Tensor2D, perm: tf.Tensor1D, inverse: tf.Tensor1D): tf.Tensor2D {
  return tf.customGrad((input, save) => {
    // Saved, so a per-step index tensor outlives the forward pass's tidy.
    (save as tf.GradSaveFunc)([inverse]);
    return {
      value: tf.gather(input as tf.Tensor2D, perm, 1) as tf.Tensor2D,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => tf.gather(dy, saved[0]! as tf.Tensor1D, 1),
    };
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
export class KcStudent implements Student, Imprintable {
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
  constructor(
    readonly config: KcConfig,
    readonly inputShape: number[],
    readonly numClasses: number,
    seed: number,
  ) {
    const rng = new Rng(seed);
    const store = new ParamStore(rng);
    const seen = new Int32Array(numClasses).fill(-1);
    const concatOrder: number[] = [];
    config.verticals.forEach((classes, v) => {
      if (classes.length === 0) throw new Error(`kc student: vertical ${v} has no classes`);
      for (const c of classes) {
        if (!Number.isInteger(c) || c < 0 || c >= numClasses)
          throw new Error(`kc student: vertical ${v} names class ${c}, outside [0, ${numClasses})`);
        if (seen[c] !== -1) throw new Error(`kc student: class ${c} is in verticals ${seen[c]} and ${v}`);
        seen[c] = v;
        concatOrder.push(c);
      }
    });
    const missing = seen.indexOf(-1);
    if (missing >= 0)
      throw new Error(`kc student: class ${missing} belongs to no vertical (verticals must partition the classes)`);
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
    this.outputs = config.verticals.map((classes, v) =>
      makeDense(store, `sc.out${v}`, config.verticalWidth, classes.length),
    );
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
    const s = dense(
      features,
      this.shared.w as tf.Tensor2D,
      this.shared.b as tf.Tensor1D,
      'relu',
      this.trunk.length > 0,
    );
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
      const local = tf.tensor1d(
        Int32Array.from(pos, (p) => this.localIndex[columns[p]!]!),
        'int32',
      );
      let out = denseColumns(hv, layer.w as tf.Tensor2D, layer.b as tf.Tensor1D, local);
      if (this.config.selfPaced) {
        const norm = tf.sqrt(
          tf.add(tf.reshape(rowNormsSquared(hv, layer.w as tf.Tensor2D, layer.b as tf.Tensor1D), [n, 1]), L2_EPS),
        );
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
    return this.outputs.map((layer, v) => ({
      classes: Int32Array.from(this.config.verticals[v]!),
      offset: v * s2,
      width: s2,
      weight: layer.w,
      bias: layer.b,
    }));
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
