/**
 * Frechet distance between two Gaussians, as pytorch-fid's calculate_frechet_distance:
 *   d = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)).
 *
 * tr(sqrtm(S1 S2)) is computed without a general matrix square root: with S1 = L Lᵀ, S1 S2 is
 * similar to the symmetric PSD matrix M = Lᵀ S2 L, so tr(sqrtm(S1 S2)) = Σ sqrt(eig(M)).
 * L is the Cholesky factor of S1 (or of S2, the product's eigenvalues being the same), or,
 * when both are singular (N < D), V·sqrt(Λ) from S1's eigendecomposition (ml-matrix) restricted
 * to its positive eigenvalues. Eigenvalues of M that rounding pushes below 0 count as 0, so no
 * imaginary part arises. As in pytorch-fid, if the result is not finite, eps·I is added to both
 * covariances and the trace recomputed.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { InputError } from '@distillery/core/plugin';
import { cholesky, symmetricEigenvalues } from './linalg.js';
import { congruence } from './onnx-gemm.js';
import type { GaussianStats } from './stats.js';

/** A factor F (d x r, row-major) with F Fᵀ = S for symmetric PSD S. */
function psdFactor(s: Float64Array, d: number): { f: Float64Array; r: number } {
  const eig = new EigenvalueDecomposition(
    new Matrix(Array.from({ length: d }, (_, i) => Array.from(s.subarray(i * d, i * d + d)))),
    {
      assumeSymmetric: true,
    },
  );
  const values = eig.realEigenvalues;
  const vectors = eig.eigenvectorMatrix;
  const maxAbs = Math.max(...values.map(Math.abs), 0);
  // Eigenvalues at rounding level of the largest are the null space of a singular covariance.
  const keep = values.map((v, i) => [v, i] as const).filter(([v]) => v > maxAbs * d * 2 ** -52);
  const r = keep.length;
  const f = new Float64Array(d * Math.max(r, 1));
  keep.forEach(([v, col], c) => {
    const sq = Math.sqrt(v);
    for (let i = 0; i < d; i++) f[i * r + c] = vectors.get(i, col) * sq;
  });
  return { f, r };
}

/** tr(sqrtm(S1 S2)) for symmetric PSD S1, S2 (row-major d x d). */
export async function traceSqrtProduct(s1: Float64Array, s2: Float64Array, d: number): Promise<number> {
  let factor: { f: Float64Array; r: number };
  let other: Float64Array;
  const l1 = cholesky(s1, d);
  if (l1) {
    factor = { f: l1, r: d };
    other = s2;
  } else {
    const l2 = cholesky(s2, d);
    if (l2) {
      factor = { f: l2, r: d };
      other = s1;
    } else {
      factor = psdFactor(s1, d);
      other = s2;
    }
  }
  const { f, r } = factor;
  if (r === 0) return 0;
  const m = await congruence(f, other, d, r);
  // Symmetrise away rounding asymmetry (the eigensolver reads the upper triangle only).
  for (let i = 0; i < r; i++) for (let j = i + 1; j < r; j++) m[i * r + j] = 0.5 * (m[i * r + j]! + m[j * r + i]!);
  const eig = symmetricEigenvalues(m, r);
  let tr = 0;
  for (const v of eig) if (v > 0) tr += Math.sqrt(v);
  return tr;
}

/** Options of frechetDistance. */
export interface FrechetOptions {
  /** Diagonal offset used when the first attempt is not finite (pytorch-fid's eps). */
  eps?: number;
}

/** FID between two sets of statistics; `names` label them in error messages. */
export async function frechetDistance(
  a: GaussianStats,
  b: GaussianStats,
  options: FrechetOptions = {},
  names: [string, string] = ['first', 'second'],
): Promise<number> {
  const eps = options.eps ?? 1e-6;
  if (a.dim !== b.dim) {
    throw new InputError(`feature widths differ: ${names[0]} has D = ${a.dim}, ${names[1]} has D = ${b.dim}`);
  }
  const d = a.dim;
  let diff = 0;
  for (let i = 0; i < d; i++) diff += (a.mu[i]! - b.mu[i]!) ** 2;
  let tr1 = 0;
  let tr2 = 0;
  for (let i = 0; i < d; i++) {
    tr1 += a.sigma[i * d + i]!;
    tr2 += b.sigma[i * d + i]!;
  }
  let trCov = await traceSqrtProduct(a.sigma, b.sigma, d);
  if (!Number.isFinite(trCov)) {
    const s1 = Float64Array.from(a.sigma);
    const s2 = Float64Array.from(b.sigma);
    for (let i = 0; i < d; i++) {
      s1[i * d + i]! += eps;
      s2[i * d + i]! += eps;
    }
    trCov = await traceSqrtProduct(s1, s2, d);
  }
  if (!Number.isFinite(trCov)) throw new Error(`FID: tr(sqrtm(S1 S2)) is not finite even with eps = ${eps}`);
  return diff + tr1 + tr2 - 2 * trCov;
}
