/**
 * Student's t distribution for integer degrees of freedom, in float64: the CDF from the exact
 * finite series of Abramowitz & Stegun 26.7.3 / 26.7.4 and the quantile by bisection on it.
 *
 * Why by hand: seed aggregation needs t quantiles only at integer dof (n - 1 seeds), where the
 * CDF is a finite sum of cos^k terms, exact to rounding; @stdlib's t quantile would bring 232
 * packages into the lockfile and jstat's is accurate to ~1e-8 only (measured 2026-12-03:
 * jstat.studentt.inv(0.975, 30) = 2.0422724212 vs 2.0422724563).
 *
 * With theta = atan(t / sqrt(dof)), A(t | dof) = P(|T| <= t) for t >= 0 is
 *   dof odd:  (2/pi) (theta + sin(theta) [cos(theta) + (2/3) cos^3 + (2*4)/(3*5) cos^5 + ... up to cos^(dof-2)])
 *             (for dof = 1 the bracket is empty: 2 theta / pi)
 *   dof even: sin(theta) [1 + (1/2) cos^2 + (1*3)/(2*4) cos^4 + ... up to cos^(dof-2)]
 * A rises monotonically in theta over [0, pi/2), so bisection on theta finds the quantile to the
 * last bit of theta; t = sqrt(dof) tan(theta).
 */

function checkDof(dof: number): void {
  if (!Number.isInteger(dof) || dof < 1)
    throw new RangeError(`Student t: degrees of freedom must be an integer >= 1 (got ${dof})`);
}

/** A(t | dof) as a function of theta = atan(t / sqrt(dof)), theta in [0, pi/2]. */
function twoSidedMassAtAngle(theta: number, dof: number): number {
  const c = Math.cos(theta);
  const s = Math.sin(theta);
  const c2 = c * c;
  if (dof % 2 === 1) {
    let sum = 0;
    let term = c; // cos^1 term
    for (let k = 1; k <= dof - 2; k += 2) {
      sum += term;
      term *= ((k + 1) / (k + 2)) * c2;
    }
    return (2 / Math.PI) * (theta + s * sum);
  }
  let sum = 0;
  let term = 1; // cos^0 term
  for (let k = 0; k <= dof - 2; k += 2) {
    sum += term;
    term *= ((k + 1) / (k + 2)) * c2;
  }
  return s * sum;
}

/** P(T <= t) for Student's t with `dof` (integer >= 1) degrees of freedom. */
export function studentTCdf(t: number, dof: number): number {
  checkDof(dof);
  if (Number.isNaN(t)) return NaN;
  if (t === Infinity) return 1;
  if (t === -Infinity) return 0;
  const a = twoSidedMassAtAngle(Math.atan(Math.abs(t) / Math.sqrt(dof)), dof);
  return t >= 0 ? 0.5 + a / 2 : 0.5 - a / 2;
}

/** The p-quantile of Student's t with `dof` (integer >= 1) degrees of freedom, p in (0, 1). */
export function studentTQuantile(p: number, dof: number): number {
  checkDof(dof);
  if (!(p > 0 && p < 1)) throw new RangeError(`Student t quantile: probability must lie in (0, 1) (got ${p})`);
  if (p === 0.5) return 0;
  if (p < 0.5) return -studentTQuantile(1 - p, dof);
  const target = 2 * p - 1; // exact for p >= 0.5 (Sterbenz)
  let lo = 0;
  let hi = Math.PI / 2;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (mid <= lo || mid >= hi) break; // theta resolved to the last bit
    if (twoSidedMassAtAngle(mid, dof) < target) lo = mid;
    else hi = mid;
  }
  return Math.sqrt(dof) * Math.tan((lo + hi) / 2);
}
