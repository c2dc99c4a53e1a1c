/**
 * EDM noise parameterisation (Karras et al. 2022; docs/methods.md, "EDM preconditioning and the
 * Heun sampler"), used by the teacher, the fake-score network and
 * the generator: x_t = x_0 + sigma * eps (a_t = 1, s_t = sigma), a denoiser
 * D(x; sigma, c) = c_skip x + c_out F(c_in x, c_noise, c), score s(x) = (D(x) - x) / sigma^2,
 * and the deterministic Heun sampler on the rho-spaced sigma grid.
 */

/** Noise-schedule constants shared by training, sampling and ONNX export. */
export interface EdmConfig {
  /** Standard deviation of the data (EDM's sigma_data). */
  sigmaData: number;
  sigmaMin: number;
  sigmaMax: number;
  /** Exponent of the sampler's sigma spacing. */
  rho: number;
}

export const DEFAULT_EDM: EdmConfig = { sigmaData: 0.5, sigmaMin: 0.002, sigmaMax: 80, rho: 7 };

/** Preconditioning factors for one sigma. */
export interface Preconditioning {
  cSkip: number;
  cOut: number;
  cIn: number;
  cNoise: number;
}

export function preconditioning(sigma: number, sigmaData: number): Preconditioning {
  const v = sigma * sigma + sigmaData * sigmaData;
  return {
    cSkip: (sigmaData * sigmaData) / v,
    cOut: (sigma * sigmaData) / Math.sqrt(v),
    cIn: 1 / Math.sqrt(v),
    cNoise: Math.log(sigma) / 4,
  };
}

/** Sigma at fraction u in [0, 1] of the rho-spaced path from sigmaMax (u = 0) to sigmaMin (u = 1). */
export function sigmaAtFraction(u: number, cfg: EdmConfig): number {
  const a = Math.pow(cfg.sigmaMax, 1 / cfg.rho);
  const b = Math.pow(cfg.sigmaMin, 1 / cfg.rho);
  return Math.pow(a + u * (b - a), cfg.rho);
}

/** The sampler's grid: `steps` sigmas from sigmaMax down to sigmaMin, then 0 (length steps + 1). */
export function samplerSigmas(steps: number, cfg: EdmConfig): Float64Array {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`sampler steps must be a positive integer, got ${steps}`);
  const out = new Float64Array(steps + 1);
  for (let i = 0; i < steps; i++) out[i] = sigmaAtFraction(steps === 1 ? 0 : i / (steps - 1), cfg);
  out[steps] = 0;
  return out;
}

/** Network evaluations of the Heun sampler with `steps` sigmas (the last step is Euler). */
export function heunEvaluations(steps: number): number {
  return 2 * steps - 1;
}

/**
 * Deterministic Heun sampling (EDM algorithm 1 without churn). `denoise(x, sigma)` returns D(x;
 * sigma) for a batch laid out like `x` (n rows of dim values). Starts from x = sigmaMax * noise.
 */
export async function heunSample(
  noise: Float32Array,
  sigmas: Float64Array,
  denoise: (x: Float32Array, sigma: number) => Promise<Float32Array>,
): Promise<Float32Array> {
  const x = new Float32Array(noise.length);
  const s0 = sigmas[0]!;
  for (let i = 0; i < x.length; i++) x[i] = s0 * noise[i]!;
  for (let k = 0; k + 1 < sigmas.length; k++) {
    const s = sigmas[k]!;
    const next = sigmas[k + 1]!;
    const d0 = await denoise(x, s);
    const slope = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) slope[i] = (x[i]! - d0[i]!) / s;
    const euler = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) euler[i] = x[i]! + (next - s) * slope[i]!;
    if (next === 0) {
      x.set(euler);
      continue;
    }
    const d1 = await denoise(euler, next);
    for (let i = 0; i < x.length; i++) {
      const slope1 = (euler[i]! - d1[i]!) / next;
      x[i] = x[i]! + (next - s) * 0.5 * (slope[i]! + slope1);
    }
  }
  return x;
}

/** Time-embedding frequencies applied to c_noise (sin and cos of each, plus c_noise itself). */
export const TIME_FREQUENCIES = [1, 2, 4, 8, 16, 32];

/** Width of the time embedding [c_noise, sin(f c_noise)..., cos(f c_noise)...]. */
export const TIME_EMBEDDING_WIDTH = 1 + 2 * TIME_FREQUENCIES.length;
