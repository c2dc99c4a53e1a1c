import { test } from 'node:test';
import assert from 'node:assert/strict';
import { studentTCdf, studentTQuantile } from '../src/stats/student-t.js';
import { pairedTInterval, summarize } from '../src/stats/paired.js';

const near = (actual: number, expected: number, tol: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tolerance ${tol})`);

test('t quantiles equal printed table values (6 decimals)', () => {
  // Standard two-sided t table entries: [p, dof, t_{p, dof}].
  const table: [number, number, number][] = [
    [0.975, 1, 12.706205],
    [0.975, 2, 4.302653],
    [0.975, 3, 3.182446],
    [0.975, 4, 2.776445],
    [0.975, 9, 2.262157],
    [0.975, 29, 2.04523],
    [0.975, 120, 1.97993],
    [0.995, 2, 9.924843],
    [0.95, 5, 2.015048],
    [0.9, 10, 1.372184],
  ];
  for (const [p, dof, t] of table) near(studentTQuantile(p, dof), t, 5e-7, `t_{${p}, ${dof}}`);
});

test('t quantiles equal the closed forms of 1, 2 and 4 degrees of freedom; symmetric; inverse of the CDF', () => {
  for (const p of [0.51, 0.6, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995]) {
    // dof 1 (Cauchy): tan(pi (p - 1/2)).
    near(studentTQuantile(p, 1), Math.tan(Math.PI * (p - 0.5)), 1e-12 * Math.tan(Math.PI * (p - 0.5)), `dof 1, p ${p}`);
    // dof 2: (2p - 1) / sqrt(2 p (1 - p)).
    const t2 = (2 * p - 1) / Math.sqrt(2 * p * (1 - p));
    near(studentTQuantile(p, 2), t2, 1e-13 * t2, `dof 2, p ${p}`);
    // dof 4: alpha = 4p(1-p), q = cos(acos(sqrt(alpha)) / 3) / sqrt(alpha), t = 2 sqrt(q - 1).
    const alpha = 4 * p * (1 - p);
    const t4 = 2 * Math.sqrt(Math.cos(Math.acos(Math.sqrt(alpha)) / 3) / Math.sqrt(alpha) - 1);
    near(studentTQuantile(p, 4), t4, 1e-12 * t4, `dof 4, p ${p}`);
    for (const dof of [1, 3, 8, 25]) assert.equal(studentTQuantile(1 - p, dof), -studentTQuantile(p, dof));
  }
  assert.equal(studentTQuantile(0.5, 7), 0);
  for (const dof of [1, 2, 3, 5, 6, 11, 40, 201]) {
    for (const p of [0.025, 0.3, 0.7, 0.975, 0.999])
      near(studentTCdf(studentTQuantile(p, dof), dof), p, 1e-14, `cdf(quantile(${p}), ${dof})`);
  }
});

test('t CDF equals the closed form of 3 degrees of freedom (odd series) and of 2 (even series)', () => {
  for (const t of [-7, -1.5, -0.2, 0, 0.3, 1, 2.5, 12]) {
    const u = t / Math.sqrt(3);
    near(studentTCdf(t, 3), 0.5 + (u / (1 + u * u) + Math.atan(u)) / Math.PI, 1e-15, `F3(${t})`);
    near(studentTCdf(t, 2), 0.5 + t / (2 * Math.sqrt(2 + t * t)), 1e-15, `F2(${t})`);
  }
  assert.equal(studentTCdf(Infinity, 3), 1);
  assert.equal(studentTCdf(-Infinity, 4), 0);
});

test('t quantile refuses non-integer or zero dof and p outside (0, 1)', () => {
  assert.throws(() => studentTQuantile(0.975, 0), /degrees of freedom must be an integer >= 1 \(got 0\)/);
  assert.throws(() => studentTQuantile(0.975, 2.5), /got 2\.5/);
  assert.throws(() => studentTQuantile(1, 3), /probability must lie in \(0, 1\) \(got 1\)/);
  assert.throws(() => studentTQuantile(0, 3), /got 0/);
});

test('mean, sample std and the paired 95% t-interval of a 3-seed example computed by hand', () => {
  // a - b per seed: 0.90-0.88, 0.92-0.89, 0.91-0.90 = 0.02, 0.03, 0.01.
  // mean 0.02; deviations 0, 0.01, -0.01; s^2 = 0.0002 / 2 = 0.0001, s = 0.01; se = 0.01 / sqrt(3) = 0.0057735026919;
  // half-width = t_{0.975,2} * se = 4.302652729749 * 0.0057735026919 = 0.0248413771175; interval [-0.0048413771175, 0.0448413771175].
  const a = [0.9, 0.92, 0.91];
  const b = [0.88, 0.89, 0.9];
  const sa = summarize(a);
  near(sa.mean, 0.91, 1e-15, 'mean a');
  near(sa.std, 0.01, 1e-15, 'std a');
  assert.equal(sa.n, 3);
  const r = pairedTInterval(a, b);
  assert.equal(r.n, 3);
  near(r.meanDifference, 0.02, 1e-15, 'mean difference');
  near(r.stdDifference, 0.01, 1e-15, 'std of differences');
  near(r.standardError, 0.0057735026919, 1e-13, 'standard error');
  near(r.tQuantile, 4.302652729749, 1e-12, 't quantile');
  near(r.low, -0.0048413771175, 1e-12, 'low');
  near(r.high, 0.0448413771175, 1e-12, 'high');
  assert.equal(r.verdict, 'within noise');
  // Shifted by 0.02 per seed: differences 0.04, 0.05, 0.03, interval [0.0151586228825, 0.0648413771175] lies above 0.
  const above = pairedTInterval(
    a.map((v) => v + 0.02),
    b,
  );
  near(above.low, 0.0151586228825, 1e-12, 'low (shifted)');
  assert.equal(above.verdict, 'a > b');
  assert.equal(
    pairedTInterval(
      b,
      a.map((v) => v + 0.02),
    ).verdict,
    'a < b',
  );
  // 5 seeds at 90%: differences 1, 2, 3, 4, 5 -> mean 3, s = sqrt(10 / 4) = 1.5811388301, se = 0.7071067812,
  // t_{0.95,4} = 2.131846786 (table 2.131847), half = 1.507443; interval [1.492557, 4.507443].
  const five = pairedTInterval([1, 2, 3, 4, 5], [0, 0, 0, 0, 0], 0.9);
  near(five.low, 1.492557, 1e-6, 'low (5 seeds, 90%)');
  near(five.high, 4.507443, 1e-6, 'high (5 seeds, 90%)');
});

test('paired interval refuses fewer than 2 seeds and unequal lengths', () => {
  assert.throws(() => pairedTInterval([0.9], [0.8]), /needs at least 2 seeds to estimate a spread \(got 1\)/);
  assert.throws(() => pairedTInterval([0.9, 0.8], [0.8]), /a has 2 values, b 1/);
  assert.throws(() => summarize([]), /got 0/);
  assert.throws(() => pairedTInterval([1, 2], [0, 1], 1), /confidence must lie in \(0, 1\)/);
});
