/**
 * Sample-quality metrics: Frechet distance (eval's pytorch-fid-equivalent code) on raw
 * coordinates or extractor features, improved precision and recall (Kynkaanniemi et al. 2019:
 * k-NN balls around each real / each generated sample), and mode coverage for the 2-D toy.
 */
import { frechetDistance, statsFromMatrix } from '@distillery/runtime/fid';
import { Rng } from '@distillery/runtime/rng';

/** Frechet distance between the Gaussian fits of two row-major float sets of width dim. */
export async function frechetOfSets(a: Float32Array, b: Float32Array, dim: number): Promise<number> {
  const sa = await statsFromMatrix(Float64Array.from(a), a.length / dim, dim, 'reference');
  const sb = await statsFromMatrix(Float64Array.from(b), b.length / dim, dim, 'candidate');
  return frechetDistance(sa, sb, {}, ['reference', 'candidate']);
}

/** A bootstrap interval of the Frechet distance. */
export interface FrechetInterval {
  /** Lower and upper percentile bounds (level 0.95: the 2.5th and 97.5th percentiles). */
  low: number;
  high: number;
  level: number;
  resamples: number;
  seed: number;
}

/** The q-quantile of sorted values, linear interpolation between order statistics (numpy's default). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new Error('quantile of an empty list');
  const at = q * (n - 1);
  const lo = Math.floor(at);
  const hi = Math.min(n - 1, lo + 1);
  return (sorted[lo] as number) + (at - lo) * ((sorted[hi] as number) - (sorted[lo] as number));
}

function resampleRows(x: Float32Array, dim: number, rng: Rng): Float32Array {
  const n = x.length / dim;
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++) {
    const r = rng.int(n);
    out.set(x.subarray(r * dim, (r + 1) * dim), i * dim);
  }
  return out;
}

/**
 * Percentile bootstrap interval of the Frechet distance: `resamples` times, both sets are
 * resampled with replacement (same sizes; seeded, so the interval is reproducible) and the distance
 * recomputed; the interval is the (1 - level)/2 and (1 + level)/2 quantiles. It covers the
 * sampling variability of both the generated and the reference set, not the training seed's.
 */
export async function frechetBootstrap(
  a: Float32Array,
  b: Float32Array,
  dim: number,
  resamples: number,
  seed: number,
  level = 0.95,
): Promise<FrechetInterval> {
  if (!Number.isInteger(resamples) || resamples < 2)
    throw new Error(`bootstrap: resamples must be an integer >= 2, got ${resamples}`);
  if (!(level > 0 && level < 1)) throw new Error(`bootstrap: level must be in (0, 1), got ${level}`);
  const rng = new Rng(seed);
  const values = new Float64Array(resamples);
  for (let i = 0; i < resamples; i++)
    values[i] = await frechetOfSets(resampleRows(a, dim, rng), resampleRows(b, dim, rng), dim);
  values.sort();
  return {
    low: quantileSorted(values, (1 - level) / 2),
    high: quantileSorted(values, (1 + level) / 2),
    level,
    resamples,
    seed,
  };
}

/** Squared Euclidean distances between every row of a and every row of b (float64). */
function pairwise(a: Float32Array, na: number, b: Float32Array, nb: number, dim: number): Float64Array {
  const out = new Float64Array(na * nb);
  const normA = new Float64Array(na);
  const normB = new Float64Array(nb);
  for (let i = 0; i < na; i++) for (let d = 0; d < dim; d++) normA[i]! += a[i * dim + d]! ** 2;
  for (let j = 0; j < nb; j++) for (let d = 0; d < dim; d++) normB[j]! += b[j * dim + d]! ** 2;
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += a[i * dim + d]! * b[j * dim + d]!;
      out[i * nb + j] = Math.max(0, normA[i]! + normB[j]! - 2 * dot);
    }
  }
  return out;
}

/** Squared distance from each row to its k-th nearest other row of the same set. */
function kthNeighbourRadii(x: Float32Array, n: number, dim: number, k: number): Float64Array {
  if (n <= k) throw new Error(`precision/recall: need more than k = ${k} samples per set, got ${n}`);
  const d = pairwise(x, n, x, n, dim);
  const radii = new Float64Array(n);
  const row = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    row.set(d.subarray(i * n, (i + 1) * n));
    row[i] = Infinity; // exclude the point itself
    row.sort();
    radii[i] = row[k - 1]!;
  }
  return radii;
}

/** Fraction of rows of `query` inside at least one k-NN ball of `support`. */
function coverage(
  query: Float32Array,
  nq: number,
  support: Float32Array,
  ns: number,
  radii: Float64Array,
  dim: number,
): number {
  const d = pairwise(query, nq, support, ns, dim);
  let inside = 0;
  for (let i = 0; i < nq; i++) {
    for (let j = 0; j < ns; j++) {
      if (d[i * ns + j]! <= radii[j]!) {
        inside++;
        break;
      }
    }
  }
  return inside / nq;
}

/**
 * Improved precision (generated samples inside the real manifold) and recall (real samples inside
 * the generated manifold), manifolds = unions of k-NN balls (k = 3 in the paper).
 */
export function precisionRecall(
  real: Float32Array,
  fake: Float32Array,
  dim: number,
  k = 3,
): { precision: number; recall: number } {
  const nr = real.length / dim;
  const nf = fake.length / dim;
  const realRadii = kthNeighbourRadii(real, nr, dim, k);
  const fakeRadii = kthNeighbourRadii(fake, nf, dim, k);
  return {
    precision: coverage(fake, nf, real, nr, realRadii, dim),
    recall: coverage(real, nr, fake, nf, fakeRadii, dim),
  };
}

/**
 * Mode coverage for mixtures where each reference class is one mode: mode c is covered when at
 * least `minShare` of the count an even split would give (n / modes) of the generated points lie
 * within `radiusStd` pooled reference standard deviations of the mode's centre (the reference
 * class mean). Returns the covered fraction and the fraction of points near no mode.
 */
export function modeCoverage(
  ref: { x: Float32Array; labels: Int32Array; numClasses: number },
  fake: Float32Array,
  dim: number,
  options: { radiusStd?: number; minShare?: number } = {},
): { coverage: number; offMode: number } {
  const M = ref.numClasses;
  const centres = new Float64Array(M * dim);
  const counts = new Float64Array(M);
  const n = ref.labels.length;
  for (let i = 0; i < n; i++) {
    const c = ref.labels[i]!;
    counts[c]! += 1;
    for (let d = 0; d < dim; d++) centres[c * dim + d]! += ref.x[i * dim + d]!;
  }
  for (let c = 0; c < M; c++) for (let d = 0; d < dim; d++) centres[c * dim + d]! /= Math.max(1, counts[c]!);
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const c = ref.labels[i]!;
    for (let d = 0; d < dim; d++) ss += (ref.x[i * dim + d]! - centres[c * dim + d]!) ** 2;
  }
  const std = Math.sqrt(ss / (n * dim));
  const radius = (options.radiusStd ?? 3) * std;
  const nf = fake.length / dim;
  const hits = new Float64Array(M);
  let off = 0;
  for (let i = 0; i < nf; i++) {
    let best = -1;
    let bestD = Infinity;
    for (let c = 0; c < M; c++) {
      let dd = 0;
      for (let d = 0; d < dim; d++) dd += (fake[i * dim + d]! - centres[c * dim + d]!) ** 2;
      if (dd < bestD) {
        bestD = dd;
        best = c;
      }
    }
    if (Math.sqrt(bestD) <= radius) hits[best]! += 1;
    else off++;
  }
  const need = (options.minShare ?? 0.25) * (nf / M);
  let covered = 0;
  for (let c = 0; c < M; c++) if (hits[c]! >= need) covered++;
  return { coverage: covered / M, offMode: off / nf };
}
