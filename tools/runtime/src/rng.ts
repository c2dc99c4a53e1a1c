/**
 * The project's one seeded random number generator (mulberry32 + Box-Muller): identical streams on
 * every machine and backend, so that every stage is reproducible from its seed.
 */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = (Math.floor(seed) ^ 0x9e3779b9) >>> 0;
  }
  /** A generator whose state is `state` itself (no seed mixing), e.g. a seed already hashed. */
  static fromState(state: number): Rng {
    const rng = new Rng(0);
    rng.snapshot = state;
    return rng;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Standard normal. */
  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  /** n values uniform in [-limit, limit). */
  uniformArray(n: number, limit: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (2 * this.next() - 1) * limit;
    return out;
  }
  /** Fisher-Yates shuffle in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j] as T, items[i] as T];
    }
    return items;
  }
  /** Internal state, for checkpoints. */
  get snapshot(): number {
    return this.state;
  }
  set snapshot(value: number) {
    this.state = value >>> 0;
  }
}

/** `new Rng(seed).next` as a function: a uniform [0, 1) stream. */
export function uniformStream(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

/**
 * Standard normals by Box-Muller that use both values of each pair (cos first, then sin): half the
 * uniform draws of Rng.normal. Its own stream (the Rng is built from the raw state); eft-data's
 * generator draws its geometry and samples from it.
 */
export class PairedNormals {
  private readonly rng: Rng;
  private spare = NaN;
  constructor(state: number) {
    this.rng = Rng.fromState(state);
  }
  /** Standard normal. */
  normal(): number {
    if (!Number.isNaN(this.spare)) {
      const s = this.spare;
      this.spare = NaN;
      return s;
    }
    const u = 1 - this.rng.next(); // (0, 1]
    const r = Math.sqrt(-2 * Math.log(u));
    const a = 2 * Math.PI * this.rng.next();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
  }
  /** Fills `out` with N(0, std^2) values. */
  fill(out: Float32Array | Float64Array, std: number): void {
    for (let i = 0; i < out.length; i++) out[i] = std * this.normal();
  }
}
