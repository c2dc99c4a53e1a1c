/**
 * Turning a batch of teacher logits into the stored forms (docs/methods.md, "Top-k soft labels"
 * and "Sampled soft labels"): top-k log-probs
 * with missing mass, sampled soft labels (id, count), for softmax and sigmoid teachers. Pure
 * functions on Float32Array rows; sums and normalisers in float64.
 */
import { uniformStream } from '@distillery/runtime/rng';

/** log(sum_j exp(z_j / T)) over one row, stable. */
export function logSumExp(z: Float32Array, start: number, length: number, invT: number): number {
  let m = -Infinity;
  for (let j = 0; j < length; j++) {
    const v = z[start + j]! * invT;
    if (v > m) m = v;
  }
  let s = 0;
  for (let j = 0; j < length; j++) s += Math.exp(z[start + j]! * invT - m);
  return m + Math.log(s);
}

/** log sigmoid(x) = -softplus(-x), stable for large |x|. */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/**
 * Indices of the k largest values of row z[start..start+length), largest first; ties go to the
 * lower index. A size-k min-heap: O(length log k).
 */
export function topKIndices(z: Float32Array, start: number, length: number, k: number, out: Int32Array): void {
  // heap holds local indices; heap[0] is the worst kept (smallest value, then highest index).
  const heap = out;
  let size = 0;
  const worse = (a: number, b: number) => {
    const va = z[start + a]!;
    const vb = z[start + b]!;
    return va < vb || (va === vb && a > b);
  };
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < size && worse(heap[l]!, heap[w]!)) w = l;
      if (r < size && worse(heap[r]!, heap[w]!)) w = r;
      if (w === i) return;
      const t = heap[i]!;
      heap[i] = heap[w]!;
      heap[w] = t;
      i = w;
    }
  };
  for (let j = 0; j < length; j++) {
    if (size < k) {
      let i = size++;
      heap[i] = j;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!worse(heap[i]!, heap[p]!)) break;
        const t = heap[i]!;
        heap[i] = heap[p]!;
        heap[p] = t;
        i = p;
      }
    } else if (worse(heap[0]!, j)) {
      heap[0] = j;
      siftDown(0);
    }
  }
  // Heap sort in place: repeatedly move the worst to the end -> best first.
  for (let end = size - 1; end > 0; end--) {
    const t = heap[0]!;
    heap[0] = heap[end]!;
    heap[end] = t;
    size = end;
    siftDown(0);
  }
}

/** What a batch of top-k rows is written as (flat, row-major). */
export interface TopKRows {
  ids: Int32Array;
  logprobs: Float32Array;
  missingMass: Float32Array;
}

/**
 * Top-k of n rows of c local logits. `classMap` maps local to global ids (undefined = identity).
 * softmax: logprob = z/T - logsumexp(z/T), missing = 1 - sum exp(kept) (>= 0);
 * sigmoid: logprob = log sigmoid(z/T), missing = sum of sigmoid(z/T) over the classes not kept.
 */
export function topKRows(
  logits: Float32Array,
  n: number,
  c: number,
  k: number,
  temperature: number,
  activation: 'softmax' | 'sigmoid',
  classMap: Int32Array | undefined,
): TopKRows {
  const ids = new Int32Array(n * k);
  const logprobs = new Float32Array(n * k);
  const missingMass = new Float32Array(n);
  const local = new Int32Array(k);
  const invT = 1 / temperature;
  for (let r = 0; r < n; r++) {
    const start = r * c;
    topKIndices(logits, start, c, k, local);
    if (activation === 'softmax') {
      const lse = logSumExp(logits, start, c, invT);
      let kept = 0;
      for (let j = 0; j < k; j++) {
        const lp = logits[start + local[j]!]! * invT - lse;
        logprobs[r * k + j] = lp;
        kept += Math.exp(lp);
      }
      missingMass[r] = Math.max(0, 1 - kept);
    } else {
      let total = 0;
      for (let j = 0; j < c; j++) total += 1 / (1 + Math.exp(-logits[start + j]! * invT));
      let kept = 0;
      for (let j = 0; j < k; j++) {
        const x = logits[start + local[j]!]! * invT;
        logprobs[r * k + j] = logSigmoid(x);
        kept += 1 / (1 + Math.exp(-x));
      }
      missingMass[r] = Math.max(0, total - kept);
    }
    for (let j = 0; j < k; j++) ids[r * k + j] = classMap ? classMap[local[j]!]! : local[j]!;
  }
  return { ids, logprobs, missingMass };
}

/** 32-bit FNV-1a of a string, mixed with a seed: per-sample RNG streams independent of batching. */
export function sampleSeed(seed: number, id: string): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Sampled soft labels of n rows, as list columns (offsets into ids / counts / weights). */
export interface SampledRows {
  offsets: Int32Array;
  ids: Int32Array;
  counts: Uint16Array;
  /** t_i / q_i per stored id; only filled when tau != 1. */
  weights: Float32Array;
}

/**
 * Random-sampling KD targets: `draws` ids i.i.d. from q proportional to t^tau where
 * t = softmax(z/T), so q = softmax(tau z / T). Stored as distinct global ids ascending with counts;
 * with tau != 1 also t_i / q_i. Each row's generator is seeded from (seed, sample id).
 */
export function sampledRows(
  logits: Float32Array,
  n: number,
  c: number,
  sampleIds: readonly string[],
  draws: number,
  tau: number,
  seed: number,
  temperature: number,
  classMap: Int32Array | undefined,
): SampledRows {
  const offsets = new Int32Array(n + 1);
  const ids = new Int32Array(n * Math.min(draws, c));
  const counts = new Uint16Array(ids.length);
  const weights = new Float32Array(tau === 1 ? 0 : ids.length);
  const cdf = new Float64Array(c);
  const picks = new Int32Array(draws);
  const invT = 1 / temperature;
  let pos = 0;
  for (let r = 0; r < n; r++) {
    const start = r * c;
    const lseQ = logSumExp(logits, start, c, invT * tau);
    let acc = 0;
    for (let j = 0; j < c; j++) {
      acc += Math.exp(logits[start + j]! * invT * tau - lseQ);
      cdf[j] = acc;
    }
    const rand = uniformStream(sampleSeed(seed, sampleIds[r]!));
    for (let d = 0; d < draws; d++) {
      const u = rand() * acc; // scaling by acc absorbs rounding: the cdf's last value is ~1
      let lo = 0;
      let hi = c - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cdf[mid]! > u) hi = mid;
        else lo = mid + 1;
      }
      // First j with cdf[j] > u: never a zero-probability class (its cdf equals its predecessor's).
      picks[d] = lo;
    }
    picks.sort();
    // Local ids ascending -> distinct with counts; map to global ids and keep ascending global order.
    const rowStart = pos;
    const lseT = tau === 1 ? 0 : logSumExp(logits, start, c, invT);
    for (let d = 0; d < draws; ) {
      let e = d;
      while (e < draws && picks[e] === picks[d]) e++;
      const j = picks[d]!;
      ids[pos] = classMap ? classMap[j]! : j;
      counts[pos] = e - d;
      if (tau !== 1) {
        const z = logits[start + j]! * invT;
        weights[pos] = Math.exp(z - lseT - (z * tau - lseQ));
      }
      pos++;
      d = e;
    }
    if (classMap) sortRowByIds(ids, counts, weights, rowStart, pos, tau !== 1);
    offsets[r + 1] = pos;
  }
  return {
    offsets,
    ids: ids.subarray(0, pos),
    counts: counts.subarray(0, pos),
    weights: weights.subarray(0, tau === 1 ? 0 : pos),
  };
}

function sortRowByIds(
  ids: Int32Array,
  counts: Uint16Array,
  weights: Float32Array,
  a: number,
  b: number,
  hasWeights: boolean,
): void {
  // Rows hold at most `draws` entries: insertion sort is fine.
  for (let i = a + 1; i < b; i++) {
    const id = ids[i]!,
      ct = counts[i]!,
      w = hasWeights ? weights[i]! : 0;
    let j = i - 1;
    while (j >= a && ids[j]! > id) {
      ids[j + 1] = ids[j]!;
      counts[j + 1] = counts[j]!;
      if (hasWeights) weights[j + 1] = weights[j]!;
      j--;
    }
    ids[j + 1] = id;
    counts[j + 1] = ct;
    if (hasWeights) weights[j + 1] = w;
  }
}

/** Index of the first row holding a NaN or +-Inf in a flat n x width array, or -1. */
export function firstNonFiniteRow(values: Float32Array, width: number): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v - v !== 0) return Math.floor(i / width); // NaN - NaN and Inf - Inf are NaN
  }
  return -1;
}
