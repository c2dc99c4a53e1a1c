/**
 * Summary statistics over seeds, in float64: mean and sample standard deviation (n - 1), and the
 * paired t-interval of a difference a - b whose values are paired by seed.
 */
import { studentTQuantile } from './student-t.js';

/** Mean and sample standard deviation of values over seeds. */
export interface SeedSummary {
  n: number;
  mean: number;
  /** Sample standard deviation (divisor n - 1). */
  std: number;
}

/** Where the interval of a - b lies relative to 0. */
export type PairedVerdict = 'within noise' | 'a > b' | 'a < b';

/** Paired t-interval of the mean of d_i = a_i - b_i over n seeds. */
export interface PairedInterval {
  n: number;
  /** Mean of the per-seed differences a_i - b_i. */
  meanDifference: number;
  /** Sample standard deviation of the differences (n - 1). */
  stdDifference: number;
  /** stdDifference / sqrt(n). */
  standardError: number;
  /** Two-sided confidence level, e.g. 0.95. */
  confidence: number;
  /** Student t quantile at (1 + confidence) / 2 with n - 1 degrees of freedom. */
  tQuantile: number;
  low: number;
  high: number;
  /** "within noise" when low <= 0 <= high. */
  verdict: PairedVerdict;
}

function requireTwo(n: number, what: string): void {
  if (n < 2) throw new RangeError(`${what}: needs at least 2 seeds to estimate a spread (got ${n})`);
}

/** Mean and sample std (two-pass, float64); at least two values. */
export function summarize(values: readonly number[], what = 'summary'): SeedSummary {
  requireTwo(values.length, what);
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / values.length;
  let squares = 0;
  for (const v of values) squares += (v - mean) * (v - mean);
  return { n: values.length, mean, std: Math.sqrt(squares / (values.length - 1)) };
}

/**
 * Paired t-interval for mean(a - b): d_i = a[i] - b[i], mean(d) ± t_{(1+c)/2, n-1} · sd(d) / sqrt(n).
 * a and b hold one value per seed, in the same seed order.
 */
export function pairedTInterval(
  a: readonly number[],
  b: readonly number[],
  confidence = 0.95,
  what = 'paired interval',
): PairedInterval {
  if (a.length !== b.length)
    throw new RangeError(
      `${what}: a has ${a.length} values, b ${b.length}; pairing needs one value per seed on both sides`,
    );
  if (!(confidence > 0 && confidence < 1))
    throw new RangeError(`${what}: confidence must lie in (0, 1) (got ${confidence})`);
  const differences = a.map((v, i) => v - b[i]!);
  const { n, mean, std } = summarize(differences, what);
  const standardError = std / Math.sqrt(n);
  const tQuantile = studentTQuantile((1 + confidence) / 2, n - 1);
  const low = mean - tQuantile * standardError;
  const high = mean + tQuantile * standardError;
  const verdict: PairedVerdict = low > 0 ? 'a > b' : high < 0 ? 'a < b' : 'within noise';
  return { n, meanDifference: mean, stdDifference: std, standardError, confidence, tQuantile, low, high, verdict };
}
