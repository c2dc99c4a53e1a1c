/**
 * Row-sparse ("lazy") Adam for a large output layer held in host memory, one row per class
 * (issue 17; docs/methods.md, "Row-sparse Adam").
 *
 * Why: with sampled negatives a step's loss reads only the rows of the batch's positive classes and
 * of the sampled negatives (a few thousand of 100,000). Dense Adam (optim.ts) still reads and writes
 * every row's weights and both moments each step; at 100K classes that full-size traffic, not the
 * arithmetic, bounds the step (plugins/eft-data/README.md). Here a step touches only the given rows.
 *
 * Semantics (as TensorFlow's LazyAdamOptimizer and torch.optim.SparseAdam): for a touched row,
 *   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,
 *   w <- w - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * with t the optimiser's global step; untouched rows keep their weights AND their moments (dense Adam
 * would keep moving them with decayed momentum). Adam is elementwise, so a row touched at every step
 * follows exactly the trajectory dense Adam gives it: the arithmetic below is float32 with the same
 * operation order as optim.ts (Math.fround after every operation; float64 rounding of a single +, -,
 * *, /, sqrt to float32 equals the float32 operation), so the values are bitwise equal
 * (test/sparse-adam.test.ts). Decoupled weight decay, when set, applies to touched rows only.
 */
import type { OptimizerConfig } from '@distillery/runtime/optim';

const f = Math.fround;

/** Host-memory rows [rows, width] (row-major) and their Adam moments. */
export class RowSparseAdam {
  /** Steps applied so far (the bias corrections use it). */
  step = 0;
  readonly m: Float32Array;
  readonly v: Float32Array;

  constructor(
    readonly config: Pick<OptimizerConfig, 'beta1' | 'beta2' | 'eps' | 'weightDecay'>,
    readonly rows: number,
    readonly width: number,
  ) {
    if (!(Number.isInteger(rows) && rows > 0 && Number.isInteger(width) && width > 0))
      throw new Error(`row-sparse Adam: rows and width must be positive integers, got ${rows} x ${width}`);
    this.m = new Float32Array(rows * width);
    this.v = new Float32Array(rows * width);
  }

  /**
   * One step: `grads` [ids.length, width] row-major holds the gradient of row ids[i] in its i-th row;
   * `params` [rows, width] is updated in place at those rows only. Ids must be distinct and in range.
   */
  apply(params: Float32Array, ids: ArrayLike<number>, grads: Float32Array, lr: number): void {
    const w = this.width;
    if (params.length !== this.rows * w)
      throw new Error(`row-sparse Adam: params hold ${params.length} values, expected ${this.rows} x ${w}`);
    if (grads.length !== ids.length * w)
      throw new Error(`row-sparse Adam: ${ids.length} ids need ${ids.length * w} gradient values, got ${grads.length}`);
    this.checkIds(ids);
    this.step += 1;
    const c = this.config;
    const t = this.step;
    // As optim.ts: scalars are float32 tensors there.
    const b1 = f(c.beta1);
    const b2 = f(c.beta2);
    const oneMinusB1 = f(1 - c.beta1);
    const oneMinusB2 = f(1 - c.beta2);
    const bc2 = f(Math.sqrt(1 - Math.pow(c.beta2, t)));
    const stepSize = f(lr / (1 - Math.pow(c.beta1, t)));
    const eps = f(c.eps);
    const decay = f(lr * c.weightDecay);
    const { m, v } = this;
    for (let i = 0; i < ids.length; i++) {
      const base = ids[i]! * w;
      const gBase = i * w;
      for (let j = 0; j < w; j++) {
        const k = base + j;
        const g = grads[gBase + j]!;
        const m1 = f(f(m[k]! * b1) + f(g * oneMinusB1));
        const v1 = f(f(v[k]! * b2) + f(f(g * g) * oneMinusB2));
        m[k] = m1;
        v[k] = v1;
        const update = f(m1 / f(f(f(Math.sqrt(v1)) / bc2) + eps));
        const p = params[k]!;
        let next = f(p - f(update * stepSize));
        if (c.weightDecay > 0) next = f(next - f(p * decay));
        params[k] = next;
      }
    }
  }

  /** Moments for a checkpoint: m and v, [rows, width] each. */
  state(): { m: Float32Array; v: Float32Array } {
    return { m: this.m, v: this.v };
  }

  /** Restores state() and the step count. */
  load(state: { m: ArrayLike<number>; v: ArrayLike<number> }, step: number): void {
    if (state.m.length !== this.m.length || state.v.length !== this.v.length)
      throw new Error(
        `checkpoint: row-sparse Adam moments of ${state.m.length} / ${state.v.length} values, expected ${this.m.length}`,
      );
    this.m.set(state.m);
    this.v.set(state.v);
    this.step = step;
  }

  private checkIds(ids: ArrayLike<number>): void {
    const seen = new Set<number>();
    for (let i = 0; i < ids.length; i++) {
      const r = ids[i]!;
      if (!(Number.isInteger(r) && r >= 0 && r < this.rows))
        throw new Error(`row-sparse Adam: row id ${r} at position ${i} outside [0, ${this.rows})`);
      if (seen.has(r))
        throw new Error(`row-sparse Adam: row id ${r} appears twice in one step (sum its gradients first)`);
      seen.add(r);
    }
  }
}
