/**
 * Dense symmetric linear algebra on row-major Float64Array matrices, written for the FID trace
 * term: Cholesky, and eigenvalues only (Householder tridiagonalisation + implicit QL, as EISPACK
 * tred1/tql1). Eigenvectors are never formed, which is what makes D = 2048 affordable.
 */

/**
 * Lower Cholesky factor L (row-major n x n, zeros above the diagonal) with S = L Lᵀ, or null
 * when S is not positive definite (a pivot <= 0).
 */
export function cholesky(s: Float64Array, n: number): Float64Array | null {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let sum = s[ri + j]!;
      for (let k = 0; k < j; k++) sum -= l[ri + k]! * l[rj + k]!;
      if (i === j) {
        if (!(sum > 0)) return null;
        l[ri + i] = Math.sqrt(sum);
      } else {
        l[ri + j] = sum / l[rj + j]!;
      }
    }
  }
  return l;
}

/**
 * Eigenvalues of a symmetric matrix (only the upper triangle of `a` is read; `a` is not changed).
 * Unordered. Throws if QL fails to converge (it does not for finite input).
 */
export function symmetricEigenvalues(a: Float64Array, n: number): Float64Array {
  const w = Float64Array.from(a);
  const d = new Float64Array(n);
  const e = new Float64Array(n); // e[k] couples k and k+1 of the tridiagonal form
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  // Householder reduction working on the upper triangle: step k zeroes row k right of k+1.
  for (let k = 0; k < n - 2; k++) {
    const rk = k * n;
    const m0 = k + 1;
    let norm2 = 0;
    for (let j = m0; j < n; j++) norm2 += w[rk + j]! * w[rk + j]!;
    d[k] = w[rk + k]!;
    const x0 = w[rk + m0]!;
    const norm = Math.sqrt(norm2);
    if (norm === 0 || norm2 === x0 * x0) {
      // Already tridiagonal in this row.
      e[k] = x0;
      continue;
    }
    const alpha = x0 > 0 ? -norm : norm;
    for (let j = m0; j < n; j++) v[j] = w[rk + j]!;
    v[m0] = x0 - alpha;
    let vv = 0;
    for (let j = m0; j < n; j++) vv += v[j]! * v[j]!;
    const beta = 2 / vv;
    e[k] = alpha;
    // p = beta * A22 v, with A22 symmetric stored in its upper triangle.
    p.fill(0, m0, n);
    for (let i = m0; i < n; i++) {
      const ri = i * n;
      const vi = v[i]!;
      let sum = w[ri + i]! * vi;
      for (let j = i + 1; j < n; j++) {
        const aij = w[ri + j]!;
        sum += aij * v[j]!;
        p[j]! += aij * vi;
      }
      p[i]! += sum;
    }
    let pv = 0;
    for (let j = m0; j < n; j++) {
      p[j]! *= beta;
      pv += p[j]! * v[j]!;
    }
    const half = 0.5 * beta * pv;
    for (let j = m0; j < n; j++) p[j]! -= half * v[j]!; // p is now w = p - (beta pᵀv / 2) v
    // A22 -= v wᵀ + w vᵀ (upper triangle).
    for (let i = m0; i < n; i++) {
      const ri = i * n;
      const vi = v[i]!;
      const wi = p[i]!;
      for (let j = i; j < n; j++) w[ri + j]! -= vi * p[j]! + wi * v[j]!;
    }
  }
  if (n >= 2) {
    d[n - 2] = w[(n - 2) * n + n - 2]!;
    e[n - 2] = w[(n - 2) * n + n - 1]!;
  }
  if (n >= 1) d[n - 1] = w[n * n - 1]!;
  e[n - 1] = 0;
  tql1(d, e, n);
  return d;
}

/** Implicit QL with Wilkinson shifts on a symmetric tridiagonal matrix (JAMA tql2 without vectors). */
function tql1(d: Float64Array, e: Float64Array, n: number): void {
  const eps = 2 ** -52;
  let f = 0;
  let tst1 = 0;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]!) > eps * tst1) m++;
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 300) throw new Error('symmetricEigenvalues: QL iteration did not converge');
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i]! -= h;
        f += h;
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}
