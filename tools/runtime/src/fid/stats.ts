/**
 * Gaussian statistics of feature matrices (mean and N-1 covariance, float64, as pytorch-fid's
 * np.mean / np.cov(rowvar=False)), accumulated chunk by chunk so memory stays at O(D^2).
 */
import { InputError } from '@distillery/core/plugin';
import { accumulateChunk, gramMatrix, newGramState, type GramState } from './onnx-gemm.js';

/** Mean and covariance of D-dimensional features; `count` is N when computed from features. */
export interface GaussianStats {
  dim: number;
  mu: Float64Array;
  /** Row-major D x D. */
  sigma: Float64Array;
  count?: number;
}

/**
 * Streaming mean/covariance. Rows are shifted by the mean of the first chunk before the Gram
 * product so that cancellation in Σxxᵀ - n·μμᵀ stays at rounding level. Each chunk (float32 or
 * float64, as read) goes to onnxruntime as is: the float64 cast, the shift, the column sums and
 * the Gram blocks are one graph run (onnx-gemm.ts), so the JS thread does no per-value work.
 * Non-finite values make the column sums non-finite; only then is the chunk scanned to name
 * the first bad row and column.
 */
export class GaussianAccumulator {
  private shift: Float64Array | undefined;
  private readonly state: GramState;
  private n = 0;

  /** `source` names the input in error messages. */
  constructor(
    readonly dim: number,
    private readonly source: string,
    blocks = 8,
  ) {
    this.state = newGramState(dim, blocks);
  }

  /** Adds `rows` rows (row-major, `rows` x dim). Throws on NaN/Inf, naming the source and row. */
  async add(chunk: Float32Array | Float64Array, rows: number): Promise<void> {
    const d = this.dim;
    if (chunk.length < rows * d)
      throw new Error(`GaussianAccumulator.add: chunk holds fewer than ${rows} x ${d} values`);
    if (rows === 0) return;
    const x = chunk.length === rows * d ? chunk : chunk.subarray(0, rows * d);
    if (!this.shift) {
      const shift = new Float64Array(d);
      for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) shift[j]! += x[r * d + j]!;
      for (let j = 0; j < d; j++) shift[j]! /= rows;
      this.checkFinite(shift, x, rows);
      this.shift = shift;
    }
    await accumulateChunk(this.state, x, rows, this.shift);
    this.checkFinite(this.state.colsum, x, rows);
    this.n += rows;
  }

  /** When `sums` is not finite, finds the first non-finite value of the chunk and throws. */
  private checkFinite(sums: Float64Array, x: Float32Array | Float64Array, rows: number): void {
    if (sums.every(Number.isFinite)) return;
    const d = this.dim;
    for (let i = 0; i < rows * d; i++) {
      if (!Number.isFinite(x[i]!)) {
        throw new InputError(
          `${this.source}: feature row ${this.n + Math.floor(i / d)} has a non-finite value (${x[i]}) in column ${i % d}`,
        );
      }
    }
    throw new InputError(`${this.source}: feature sums overflow float64 in rows ${this.n}..${this.n + rows - 1}`);
  }

  finish(): GaussianStats {
    const d = this.dim;
    const n = this.n;
    if (n < 2 || !this.shift)
      throw new InputError(`${this.source}: need at least 2 feature rows for a covariance, got ${n}`);
    const gram = gramMatrix(this.state);
    const meanShifted = this.state.colsum.map((s) => s / n);
    const mu = meanShifted.map((m, j) => m + this.shift![j]!);
    const sigma = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = i; j < d; j++) {
        const v = (gram[i * d + j]! - n * meanShifted[i]! * meanShifted[j]!) / (n - 1);
        sigma[i * d + j] = v;
        sigma[j * d + i] = v; // exactly symmetric, as np.cov's result
      }
    }
    return { dim: d, mu, sigma, count: n };
  }
}

/** Statistics of an in-memory feature matrix (rows x cols, row-major). */
export async function statsFromMatrix(
  data: Float64Array,
  rows: number,
  cols: number,
  source = 'features',
): Promise<GaussianStats> {
  const acc = new GaussianAccumulator(cols, source);
  const chunk = 4096;
  for (let r = 0; r < rows; r += chunk) {
    const count = Math.min(chunk, rows - r);
    await acc.add(data.subarray(r * cols, (r + count) * cols), count);
  }
  return acc.finish();
}
