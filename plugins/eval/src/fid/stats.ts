/**
 * Gaussian statistics of feature matrices (mean and N-1 covariance, float64, as pytorch-fid's
 * np.mean / np.cov(rowvar=False)), accumulated chunk by chunk so memory stays at O(D^2).
 */
import { EvalInputError } from '../errors.js';
import { accumulateGram } from './onnx-gemm.js';
import { streamNpyRows } from './npy.js';

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
 * product so that cancellation in Σxxᵀ - n·μμᵀ stays at rounding level.
 */
export class GaussianAccumulator {
  private shift: Float64Array | undefined;
  private readonly sum: Float64Array;
  private readonly gram: Float64Array;
  private n = 0;

  /** `source` names the input in error messages. */
  constructor(
    readonly dim: number,
    private readonly source: string,
  ) {
    this.sum = new Float64Array(dim);
    this.gram = new Float64Array(dim * dim);
  }

  /** Adds `rows` rows (row-major, `rows` x dim). Throws on NaN/Inf, naming the source and row. */
  async add(chunk: Float64Array, rows: number): Promise<void> {
    const d = this.dim;
    if (chunk.length < rows * d) throw new Error(`GaussianAccumulator.add: chunk holds fewer than ${rows} x ${d} values`);
    for (let i = 0; i < rows * d; i++) {
      if (!Number.isFinite(chunk[i]!)) {
        throw new EvalInputError(`${this.source}: feature row ${this.n + Math.floor(i / d)} has a non-finite value (${chunk[i]}) in column ${i % d}`);
      }
    }
    if (rows === 0) return;
    if (!this.shift) {
      this.shift = new Float64Array(d);
      for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) this.shift[j]! += chunk[r * d + j]!;
      for (let j = 0; j < d; j++) this.shift[j]! /= rows;
    }
    const centred = new Float64Array(rows * d);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < d; j++) {
        const v = chunk[r * d + j]! - this.shift[j]!;
        centred[r * d + j] = v;
        this.sum[j]! += v;
      }
    }
    await accumulateGram(centred, rows, d, this.gram);
    this.n += rows;
  }

  finish(): GaussianStats {
    const d = this.dim;
    const n = this.n;
    if (n < 2 || !this.shift) throw new EvalInputError(`${this.source}: need at least 2 feature rows for a covariance, got ${n}`);
    const meanShifted = this.sum.map((s) => s / n);
    const mu = meanShifted.map((m, j) => m + this.shift![j]!);
    const sigma = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) {
        sigma[i * d + j] = (this.gram[i * d + j]! - n * meanShifted[i]! * meanShifted[j]!) / (n - 1);
      }
    }
    return { dim: d, mu, sigma, count: n };
  }
}

/** Statistics of an in-memory feature matrix (rows x cols, row-major). */
export async function statsFromMatrix(data: Float64Array, rows: number, cols: number, source = 'features'): Promise<GaussianStats> {
  const acc = new GaussianAccumulator(cols, source);
  const chunk = 8192;
  for (let r = 0; r < rows; r += chunk) {
    const count = Math.min(chunk, rows - r);
    await acc.add(data.subarray(r * cols, (r + count) * cols), count);
  }
  return acc.finish();
}

/** Statistics of a .npy feature matrix (N x D, float32 or float64), streamed in row chunks. */
export async function statsFromNpy(path: string, chunkRows = 8192): Promise<GaussianStats> {
  let acc: GaussianAccumulator | undefined;
  const { rows, cols } = await streamNpyRows(path, chunkRows, async (chunk, count) => {
    acc ??= new GaussianAccumulator(chunk.length / count, path);
    await acc.add(chunk, count);
  });
  if (!acc) throw new EvalInputError(`${path}: need at least 2 feature rows for a covariance, got ${rows} (D = ${cols})`);
  return acc.finish();
}
