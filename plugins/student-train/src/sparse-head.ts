/**
 * The output layer trained row-sparsely (issue 17; docs/methods.md, "Row-sparse Adam"): with
 * `headOptimizer: row-sparse` and sampled negatives, the output rows (one per class: weights and
 * bias) live in host memory, a step copies only its columns' rows into small tf variables, the
 * loss's gradient reaches only those, and RowSparseAdam updates only them. The body (trunk, shared
 * and vertical layers, self-paced scales) keeps the dense optimiser. At 100K classes a step then
 * moves a few thousand rows instead of every row and both Adam moments.
 *
 * The student's tf variables of the head are written from the host rows (store) before anything
 * reads them (validation, imprinting, a checkpoint, export) and read back (load) after anything
 * writes them (initialisation, imprinting, a resumed checkpoint).
 *
 * Self-paced KC heads (y = gamma_v z / ||z||, the norm over ALL the vertical's classes): the norm is
 * exact, from the vertical's Gram statistics G_v = W_v W_v^T, W_v b_v and ||b_v||^2, kept in float64
 * and updated by the changed rows after every step. Its gradient reaches the features and gamma_v
 * exactly; the part that would reach the output rows through the norm is dropped (it touches every
 * row of the vertical at every step, which is what the row-sparse head avoids). With the dense head
 * (the default) nothing is dropped.
 */
import * as tf from '@tensorflow/tfjs-core';
import { dense } from '@distillery/runtime/tfjs';
import type { ImprintHead, Imprintable } from './imprint.js';
import type { Student } from './models/student.js';
import type { NamedVariable, OptimizerConfig } from '@distillery/runtime/optim';
import { RowSparseAdam } from './sparse-adam.js';

const L2_EPS = 1e-12;

/** One step's head variables: per head with columns in this step, its rows [width, m_k] and biases [m_k]. */
export interface SparseHeadStep {
  columns: Int32Array;
  parts: { head: number; positions: number[]; classes: Int32Array; weight: tf.Variable; bias: tf.Variable }[];
  /** The variables to differentiate (weight, bias of every part). */
  variables: tf.Variable[];
}

/** Gram statistics of one self-paced head over all its classes (float64). */
interface GramStats {
  gram: Float64Array; // [width, width]
  wb: Float64Array; // [width]
  bb: number;
}

export class SparseHead {
  /** Host rows [numClasses, width + 1]: the class's weights, then its bias. */
  readonly rows: Float32Array;
  readonly optimizer: RowSparseAdam;
  readonly width: number;
  private readonly heads: ImprintHead[];
  private readonly headOf: Int32Array;
  private readonly columnOf: Int32Array;
  private readonly gammas: (tf.Variable | undefined)[];
  private readonly stats: GramStats[] | undefined;

  constructor(
    private readonly student: Student & Imprintable,
    optimizer: Pick<OptimizerConfig, 'beta1' | 'beta2' | 'eps' | 'weightDecay'>,
  ) {
    this.heads = student.heads();
    const widths = new Set(this.heads.map((h) => h.width));
    if (widths.size !== 1)
      throw new Error(`headOptimizer row-sparse: the output blocks have different widths (${[...widths].join(', ')})`);
    this.width = this.heads[0]!.width;
    const c = student.numClasses;
    this.rows = new Float32Array(c * (this.width + 1));
    this.optimizer = new RowSparseAdam(optimizer, c, this.width + 1);
    this.headOf = new Int32Array(c).fill(-1);
    this.columnOf = new Int32Array(c);
    this.heads.forEach((h, k) => h.classes.forEach((cls, col) => ((this.headOf[cls] = k), (this.columnOf[cls] = col))));
    const selfPaced = student.config.arch === 'kc' && student.config.selfPaced;
    this.gammas = this.heads.map((_, k) => (selfPaced ? findParam(student.params, `sc.gamma${k}`) : undefined));
    this.stats = selfPaced
      ? this.heads.map(() => ({
          gram: new Float64Array(this.width * this.width),
          wb: new Float64Array(this.width),
          bb: 0,
        }))
      : undefined;
  }

  /** The head's tf variables (trained here, not by the dense optimiser). */
  variables(): Set<tf.Variable> {
    return new Set(this.heads.flatMap((h) => [h.weight, h.bias]));
  }

  /** Host rows := the student's head variables (and the Gram statistics from them). */
  load(): void {
    const w1 = this.width + 1;
    this.heads.forEach((h) => {
      const n = h.classes.length;
      const weight = h.weight.dataSync() as Float32Array; // [width, n]
      const bias = h.bias.dataSync() as Float32Array;
      h.classes.forEach((cls, col) => {
        for (let j = 0; j < this.width; j++) this.rows[cls * w1 + j] = weight[j * n + col]!;
        this.rows[cls * w1 + this.width] = bias[col]!;
      });
    });
    if (this.stats) this.heads.forEach((h, k) => this.recomputeStats(k, h.classes));
  }

  /** The student's head variables := the host rows. */
  store(): void {
    const w1 = this.width + 1;
    this.heads.forEach((h) => {
      const n = h.classes.length;
      const weight = new Float32Array(this.width * n);
      const bias = new Float32Array(n);
      h.classes.forEach((cls, col) => {
        for (let j = 0; j < this.width; j++) weight[j * n + col] = this.rows[cls * w1 + j]!;
        bias[col] = this.rows[cls * w1 + this.width]!;
      });
      h.weight.assign(tf.tensor2d(weight, [this.width, n]));
      h.bias.assign(tf.tensor1d(bias));
    });
  }

  /** Copies the rows of `columns` (distinct global class ids) into fresh variables, grouped by head. */
  begin(columns: Int32Array): SparseHeadStep {
    const w1 = this.width + 1;
    const byHead = new Map<number, number[]>();
    columns.forEach((cls, pos) => {
      if (!(cls >= 0 && cls < this.student.numClasses))
        throw new Error(`row-sparse head: column ${cls} outside [0, ${this.student.numClasses})`);
      const k = this.headOf[cls]!;
      if (!byHead.has(k)) byHead.set(k, []);
      byHead.get(k)!.push(pos);
    });
    const parts = [...byHead.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([head, positions]) => {
        const m = positions.length;
        const classes = Int32Array.from(positions, (p) => columns[p]!);
        const weight = new Float32Array(this.width * m);
        const bias = new Float32Array(m);
        classes.forEach((cls, i) => {
          for (let j = 0; j < this.width; j++) weight[j * m + i] = this.rows[cls * w1 + j]!;
          bias[i] = this.rows[cls * w1 + this.width]!;
        });
        return {
          head,
          positions,
          classes,
          weight: variableOf(tf.tensor2d(weight, [this.width, m])),
          bias: variableOf(tf.tensor1d(bias)),
        };
      });
    return { columns, parts, variables: parts.flatMap((p) => [p.weight, p.bias]) };
  }

  /**
   * Logits [n, columns.length] in `columns` order from the student's penultimate features (each
   * head reads its slice), equal in value to student.applyColumns(x, columns).
   */
  logits(features: tf.Tensor2D, step: SparseHeadStep): tf.Tensor2D {
    const n = features.shape[0];
    const outs = step.parts.map((part) => {
      const h = this.heads[part.head]!;
      const hv =
        h.offset === 0 && h.width === features.shape[1]
          ? features
          : (tf.slice(features, [0, h.offset], [n, h.width]) as tf.Tensor2D);
      let z = dense(hv, part.weight as tf.Tensor2D, part.bias as tf.Tensor1D, 'linear');
      const gamma = this.gammas[part.head];
      if (gamma) {
        const s = this.stats![part.head]!;
        // ||W^T h + b||^2 = h^T G h + 2 h^T (W b) + ||b||^2 over all the head's classes; G, Wb, ||b||^2 constants.
        const g = tf.tensor2d(Float32Array.from(s.gram), [this.width, this.width]);
        const wb = tf.tensor2d(Float32Array.from(s.wb), [this.width, 1]);
        const sq = tf.add(tf.add(tf.sum(tf.mul(tf.matMul(hv, g), hv), 1, true), tf.mul(tf.matMul(hv, wb), 2)), s.bb);
        const norm = tf.sqrt(tf.add(tf.relu(sq), L2_EPS));
        z = tf.mul(tf.div(z, norm), gamma) as tf.Tensor2D;
      }
      return z;
    });
    const joined = outs.length === 1 ? outs[0]! : (tf.concat(outs, 1) as tf.Tensor2D);
    const order = step.parts.flatMap((p) => p.positions);
    if (order.every((p, i) => p === i)) return joined;
    // Back to `columns` order: a gather whose gradient is the inverse gather.
    const perm = new Int32Array(order.length);
    order.forEach((p, i) => (perm[p] = i));
    const permT = tf.tensor1d(perm, 'int32');
    const inverseT = tf.tensor1d(Int32Array.from(order), 'int32');
    return tf.customGrad((input, save) => {
      (save as tf.GradSaveFunc)([inverseT]);
      return {
        value: tf.gather(input as tf.Tensor2D, permT, 1) as tf.Tensor2D,
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => tf.gather(dy, saved[0]! as tf.Tensor1D, 1),
      };
    })(joined) as tf.Tensor2D;
  }

  /** Row-sparse Adam on the step's rows from their gradients (absent: zero), then disposes the step. */
  apply(step: SparseHeadStep, grads: Map<tf.Variable, tf.Tensor>, lr: number): void {
    const w1 = this.width + 1;
    const ids = step.columns.length;
    const ordered = new Int32Array(ids);
    const packed = new Float32Array(ids * w1);
    let at = 0;
    const olds: { head: number; cls: number; row: Float32Array }[] = [];
    for (const part of step.parts) {
      const m = part.classes.length;
      const gw = grads.get(part.weight);
      const gb = grads.get(part.bias);
      const w = gw ? (gw.dataSync() as Float32Array) : new Float32Array(this.width * m);
      const b = gb ? (gb.dataSync() as Float32Array) : new Float32Array(m);
      part.classes.forEach((cls, i) => {
        ordered[at] = cls;
        for (let j = 0; j < this.width; j++) packed[at * w1 + j] = w[j * m + i]!;
        packed[at * w1 + this.width] = b[i]!;
        if (this.stats) olds.push({ head: part.head, cls, row: this.rows.slice(cls * w1, (cls + 1) * w1) });
        at++;
      });
    }
    this.optimizer.apply(this.rows, ordered, packed, lr);
    if (this.stats) {
      for (const part of step.parts) {
        const changed = olds.filter((o) => o.head === part.head);
        this.updateStatsBatch(
          part.head,
          changed.map((o) => o.row),
          changed.map((o) => this.rows.subarray(o.cls * w1, (o.cls + 1) * w1)),
        );
      }
    }
    for (const v of step.variables) v.dispose();
  }

  private recomputeStats(k: number, classes: Int32Array): void {
    const s = this.stats![k]!;
    s.gram.fill(0);
    s.wb.fill(0);
    s.bb = 0;
    const w1 = this.width + 1;
    const zero = new Float32Array(w1);
    for (const cls of classes) this.updateStats(k, zero, this.rows.subarray(cls * w1, (cls + 1) * w1));
  }

  /**
   * Replaces rows `prev` by rows `next` ([width weights, bias] each) in head k's statistics: the
   * Gram update N^T N - P^T P as two matMuls (a step changes thousands of rows: a scalar loop of
   * width^2 per row would cost more than the step), accumulated in float64.
   */
  private updateStatsBatch(k: number, prev: Float32Array[], next: Float32Array[]): void {
    const s = this.stats![k]!;
    const d = this.width;
    const rows = prev.length;
    if (rows === 0) return;
    // N^T N - P^T P = N^T D + D^T P with D = N - P: the error scales with the change, not with the rows.
    const nT = new Float32Array(d * rows); // [d, rows]: transposed operands, as dense.ts (no transpose flags on wasm)
    const dT = new Float32Array(d * rows);
    const dRows = new Float32Array(rows * d);
    const pRows = new Float32Array(rows * d);
    for (let r = 0; r < rows; r++) {
      const pr = prev[r]!;
      const nr = next[r]!;
      for (let j = 0; j < d; j++) {
        const change = nr[j]! - pr[j]!;
        nT[j * rows + r] = nr[j]!;
        dT[j * rows + r] = change;
        dRows[r * d + j] = change;
        pRows[r * d + j] = pr[j]!;
      }
    }
    const delta = tf.tidy(() =>
      tf.add(
        tf.matMul(tf.tensor2d(nT, [d, rows]), tf.tensor2d(dRows, [rows, d])),
        tf.matMul(tf.tensor2d(dT, [d, rows]), tf.tensor2d(pRows, [rows, d])),
      ),
    );
    const dg = delta.dataSync();
    delta.dispose();
    for (let i = 0; i < d * d; i++) s.gram[i] = s.gram[i]! + dg[i]!;
    for (let r = 0; r < rows; r++) {
      const pr = prev[r]!;
      const nr = next[r]!;
      const bp = pr[d]!;
      const bn = nr[d]!;
      for (let i = 0; i < d; i++) s.wb[i] = s.wb[i]! + nr[i]! * bn - pr[i]! * bp;
      s.bb += bn * bn - bp * bp;
    }
  }

  /** Adds row `next` and removes row `prev` ([width weights, bias]) from head k's Gram statistics. */
  private updateStats(k: number, prev: ArrayLike<number>, next: ArrayLike<number>): void {
    const s = this.stats![k]!;
    const d = this.width;
    const bp = prev[d]!;
    const bn = next[d]!;
    for (let i = 0; i < d; i++) {
      const pi = prev[i]!;
      const ni = next[i]!;
      s.wb[i] = s.wb[i]! + ni * bn - pi * bp;
      const row = i * d;
      for (let j = 0; j < d; j++) s.gram[row + j] = s.gram[row + j]! + ni * next[j]! - pi * prev[j]!;
    }
    s.bb += bn * bn - bp * bp;
  }
}

/** A trainable variable holding `init` (disposed). */
function variableOf(init: tf.Tensor): tf.Variable {
  const v = tf.variable(init, true);
  init.dispose();
  return v;
}

function findParam(params: NamedVariable[], name: string): tf.Variable {
  const p = params.find((q) => q.name === name);
  if (!p) throw new Error(`row-sparse head: the student has no parameter ${name}`);
  return p.variable;
}
