/**
 * f-divergence weighting of the distribution-matching gradient (docs/methods.md, "f-distill:
 * f-divergence distribution matching").
 *
 * r = p/q (teacher over student density of noised samples). The generator gradient is
 * E[w_t h(r(x_t)) (s_fake(x_t) - s_teacher(x_t)) dx_t/dtheta] with h(r) = f''(r) r^2.
 * r comes from a discriminator D (logit) trained with softplus(D(fake)) + softplus(-D(real)),
 * whose optimum is D = log r. Stabilisers (as in the reference code): D clamped to [-10, 10];
 * r divided by a running mean of r over generator samples per noise-level bin (E_q[p/q] = 1, so
 * this removes the discriminator's bias), then clamped to [0.1, 20]; h divided by its batch mean.
 * The order normalise-then-clamp is our choice (the sources do not fix it).
 */

export const DIVERGENCES = ['reverse_kl', 'softened_rkl', 'js', 'squared_hellinger', 'forward_kl', 'jeffreys'] as const;
export type DivergenceName = (typeof DIVERGENCES)[number];

/** h(r) = f''(r) r^2 of each divergence (Hellinger with f(t) = (sqrt(t) - 1)^2 / 2). */
export function hOf(divergence: DivergenceName, r: number): number {
  switch (divergence) {
    case 'reverse_kl':
      return 1;
    case 'softened_rkl':
      return 1 / (r + 1);
    case 'js':
      return r / (r + 1);
    case 'squared_hellinger':
      return Math.sqrt(r) / 4;
    case 'forward_kl':
      return r;
    case 'jeffreys':
      return r + 1;
  }
}

/** Clamps and normalisation constants of the weighting. */
export interface RatioOptions {
  /** |D| is clamped to this (10). */
  logitClamp: number;
  /** r is clamped to [rMin, rMax] after normalisation (0.1, 20). */
  rMin: number;
  rMax: number;
  /** Number of noise-level bins of the running mean (over the sampled fraction u in [0, 1]). */
  bins: number;
  /** EMA factor of the running mean per bin: m <- momentum m + (1 - momentum) batch mean. */
  momentum: number;
  /** Divide h by its batch mean. */
  normaliseH: boolean;
}

export const DEFAULT_RATIO_OPTIONS: RatioOptions = {
  logitClamp: 10,
  rMin: 0.1,
  rMax: 20,
  bins: 10,
  momentum: 0.9,
  normaliseH: true,
};

/** Running mean of r per noise-level bin; bins start at 1 (a perfect discriminator's mean under q). */
export class RatioNormaliser {
  readonly means: Float64Array;
  private readonly seen: Uint8Array;
  constructor(readonly options: RatioOptions = DEFAULT_RATIO_OPTIONS) {
    this.means = new Float64Array(options.bins).fill(1);
    this.seen = new Uint8Array(options.bins);
  }

  binOf(u: number): number {
    return Math.min(this.options.bins - 1, Math.max(0, Math.floor(u * this.options.bins)));
  }

  /**
   * Per-sample weights h(r) for discriminator logits of generator samples at noise fractions `u`.
   * Updates the running means with this batch first (the first batch seen in a bin sets it).
   * Returns the raw ratio, the normalised clamped ratio and the weights.
   */
  weights(
    divergence: DivergenceName,
    logits: ArrayLike<number>,
    u: ArrayLike<number>,
  ): { rRaw: Float64Array; r: Float64Array; h: Float64Array } {
    const o = this.options;
    const n = logits.length;
    const rRaw = new Float64Array(n);
    const sum = new Float64Array(o.bins);
    const count = new Float64Array(o.bins);
    for (let i = 0; i < n; i++) {
      const d = Math.min(o.logitClamp, Math.max(-o.logitClamp, logits[i]!));
      rRaw[i] = Math.exp(d);
      const b = this.binOf(u[i]!);
      sum[b]! += rRaw[i]!;
      count[b]! += 1;
    }
    for (let b = 0; b < o.bins; b++) {
      if (count[b]! === 0) continue;
      const batchMean = sum[b]! / count[b]!;
      this.means[b] = this.seen[b] ? o.momentum * this.means[b]! + (1 - o.momentum) * batchMean : batchMean;
      this.seen[b] = 1;
    }
    const r = new Float64Array(n);
    const h = new Float64Array(n);
    let hSum = 0;
    for (let i = 0; i < n; i++) {
      r[i] = Math.min(o.rMax, Math.max(o.rMin, rRaw[i]! / this.means[this.binOf(u[i]!)]!));
      h[i] = hOf(divergence, r[i]!);
      hSum += h[i]!;
    }
    if (o.normaliseH && hSum > 0) {
      const mean = hSum / n;
      for (let i = 0; i < n; i++) h[i]! /= mean;
    }
    return { rRaw, r, h };
  }
}

/**
 * The generator's per-sample weights at generator step `step`: during the discriminator warm-up
 * (step < warmupSteps) h = 1 for every sample (the reverse-KL / DMD gradient), because an
 * undertrained discriminator's ratio is mostly noise; the running means are still updated, so the
 * ratio weighting starts from warm statistics. From step warmupSteps on: the normaliser's h(r).
 */
export function generatorWeights(
  normaliser: RatioNormaliser,
  divergence: DivergenceName,
  logits: ArrayLike<number>,
  u: ArrayLike<number>,
  step: number,
  warmupSteps: number,
): { rRaw: Float64Array; h: Float64Array; warmingUp: boolean } {
  const { rRaw, h } = normaliser.weights(divergence, logits, u);
  if (step < warmupSteps) return { rRaw, h: new Float64Array(h.length).fill(1), warmingUp: true };
  return { rRaw, h, warmingUp: false };
}
