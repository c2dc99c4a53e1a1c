import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DIVERGENCES,
  generatorWeights,
  hOf,
  RatioNormaliser,
  DEFAULT_RATIO_OPTIONS,
  type DivergenceName,
} from '../src/divergence.js';

/**
 * Generator functions f of each divergence (docs/methods.md, "f-divergence losses" and "f-distill:
 * f-divergence distribution matching"), D_f(p||q) = E_q[f(p/q)].
 */
const F: Record<DivergenceName, (t: number) => number> = {
  reverse_kl: (t) => -Math.log(t),
  forward_kl: (t) => t * Math.log(t),
  js: (t) => t * Math.log(t) - (t + 1) * Math.log((t + 1) / 2),
  squared_hellinger: (t) => 0.5 * (Math.sqrt(t) - 1) ** 2,
  jeffreys: (t) => (t - 1) * Math.log(t),
  softened_rkl: (t) => (t + 1) * Math.log((t + 1) / (2 * t)),
};

test("h(r) equals f''(r) r^2 (central second difference) for every divergence", () => {
  for (const d of DIVERGENCES) {
    for (const r of [0.05, 0.3, 1, 2.5, 17]) {
      const e = 1e-4 * r;
      const f2 = (F[d](r + e) - 2 * F[d](r) + F[d](r - e)) / (e * e);
      const expected = f2 * r * r;
      assert.ok(
        Math.abs(hOf(d, r) - expected) < 1e-4 * Math.max(1, Math.abs(expected)),
        `${d} at r=${r}: h=${hOf(d, r)} vs ${expected}`,
      );
    }
  }
});

/** Gauss-Hermite-free quadrature on a wide grid: integral of g(x) N(x; mean, 1) dx. */
function expectNormal(mean: number, g: (x: number) => number): number {
  let s = 0;
  const dx = 1e-3;
  for (let x = mean - 12; x <= mean + 12; x += dx)
    s += ((g(x) * Math.exp(-0.5 * (x - mean) ** 2)) / Math.sqrt(2 * Math.PI)) * dx;
  return s;
}

test('E_q[h(r) (s_q - s_p)] is the gradient of D_f(p || q_theta) for p = N(0,1), q_theta = N(theta,1)', () => {
  // r(x) = p/q = exp(theta^2/2 - theta x); s_q - s_p = -(x - theta) + x = theta; dx/dtheta = 1.
  const theta = 0.7;
  const r = (th: number) => (x: number) => Math.exp((th * th) / 2 - th * x);
  for (const d of DIVERGENCES) {
    const divergence = (th: number) => expectNormal(th, (x) => F[d](r(th)(x)));
    const numeric = (divergence(theta + 1e-3) - divergence(theta - 1e-3)) / 2e-3;
    const formula = expectNormal(theta, (x) => hOf(d, r(theta)(x)) * theta);
    assert.ok(
      Math.abs(numeric - formula) < 2e-3 * Math.max(1, Math.abs(numeric)),
      `${d}: dD/dtheta ${numeric} vs E[h(r)(s_q - s_p)] ${formula}`,
    );
  }
  // Forward KL between unit Gaussians is theta^2 / 2: its gradient is theta, E_q[r] = 1.
  assert.ok(Math.abs(expectNormal(theta, (x) => hOf('forward_kl', r(theta)(x)) * theta) - theta) < 1e-6);
});

test('ratio weights: the optimal discriminator D = log r gives h(r) with the clamps and normalisations', () => {
  // q = N(theta, 1), p = N(0, 1): E_q[r] = 1 exactly, so the per-bin running mean is ~1.
  const theta = 0.5;
  let seed = 7;
  const uniform = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) + 0.5) / 2147483648;
  const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const n = 20000;
  const xs = Float64Array.from({ length: n }, () => theta + normal());
  const logits = xs.map((x) => (theta * theta) / 2 - theta * x);
  const u = Float64Array.from({ length: n }, (_, i) => (i % 10) / 10 + 0.05); // every bin used
  const norm = new RatioNormaliser({ ...DEFAULT_RATIO_OPTIONS, normaliseH: false });
  const { rRaw, r, h } = norm.weights('forward_kl', logits, u);
  for (const m of norm.means) assert.ok(Math.abs(m - 1) < 0.05, `bin mean ${m} should be ~E_q[r] = 1`);
  for (let i = 0; i < n; i++) {
    const expected = Math.min(20, Math.max(0.1, rRaw[i]! / norm.means[norm.binOf(u[i]!)]!));
    assert.equal(r[i], expected);
    assert.equal(h[i], expected); // forward KL: h = r
    assert.ok(Math.abs(rRaw[i]! - Math.exp(logits[i]!)) < 1e-12);
  }
  // Clamps: D is clamped to [-10, 10] before exp; the normalised r to [0.1, 20].
  const slow = new RatioNormaliser({ ...DEFAULT_RATIO_OPTIONS, normaliseH: false, bins: 1, momentum: 0.999 });
  slow.weights('jeffreys', [0, 0], [0.5, 0.5]); // bin mean 1
  const big = slow.weights('jeffreys', [50], [0.5]);
  assert.equal(big.rRaw[0], Math.exp(10));
  assert.ok(Math.abs(slow.means[0]! - (0.999 + 0.001 * Math.exp(10))) < 1e-9);
  assert.equal(big.r[0], 20); // e^10 / 23.0 = 957 -> 20
  assert.equal(big.h[0], 21); // Jeffreys h = r + 1
  const small = slow.weights('jeffreys', [-50], [0.5]);
  assert.equal(small.rRaw[0], Math.exp(-10));
  assert.equal(small.r[0], 0.1);
  // h normalised to batch mean 1 (JS: h = r / (r + 1)); r = rRaw / batch mean (1 + 3) / 2.
  const hn = new RatioNormaliser({ ...DEFAULT_RATIO_OPTIONS, bins: 1 }).weights('js', [0, Math.log(3)], [0.2, 0.2]);
  const raw = [0.5 / 1.5, 1.5 / 2.5];
  const m = (raw[0]! + raw[1]!) / 2;
  assert.ok(Math.abs(hn.h[0]! - raw[0]! / m) < 1e-12 && Math.abs(hn.h[1]! - raw[1]! / m) < 1e-12, `${hn.h}`);
});

test('discriminator warm-up: h = 1 before warmupSteps, then the ratio weighting, with statistics kept warm', () => {
  const logits = [-2, -0.5, 0, 0.7, 1.5, 3];
  // One noise-level bin, so r = r_raw / (that bin's running mean) keeps the spread of the logits.
  const u = [0.51, 0.52, 0.53, 0.55, 0.57, 0.59];
  const warm = new RatioNormaliser(DEFAULT_RATIO_OPTIONS);
  const cold = new RatioNormaliser(DEFAULT_RATIO_OPTIONS);
  for (let step = 0; step < 3; step++) {
    const w = generatorWeights(warm, 'forward_kl', logits, u, step, 3);
    assert.equal(w.warmingUp, true);
    assert.deepEqual(Array.from(w.h), [1, 1, 1, 1, 1, 1], `step ${step}: h = 1 during warm-up`);
    cold.weights('forward_kl', logits, u);
  }
  // Running means were updated during warm-up exactly as without it.
  assert.deepEqual(Array.from(warm.means), Array.from(cold.means));
  const after = generatorWeights(
    warm,
    'forward_kl',
    logits.map((l) => l + 1),
    u,
    3,
    3,
  );
  const reference = cold.weights(
    'forward_kl',
    logits.map((l) => l + 1),
    u,
  );
  assert.equal(after.warmingUp, false);
  assert.deepEqual(Array.from(after.h), Array.from(reference.h));
  // forward KL's h = r varies with the logits, so the two phases really differ.
  assert.ok(Math.max(...after.h) - Math.min(...after.h) > 0.1, `h spread ${Array.from(after.h)}`);
  // warmupSteps 0: no warm-up at all.
  assert.equal(generatorWeights(new RatioNormaliser(DEFAULT_RATIO_OPTIONS), 'js', logits, u, 0, 0).warmingUp, false);
});
