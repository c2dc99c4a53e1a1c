/**
 * Seeded generator of the EFT stand-in: a hierarchical label space (verticals of long-tailed
 * sizes -> groups -> classes) and 256-d "frozen backbone embeddings" drawn around class prototypes.
 *
 * Geometry (all spreads are standard deviations per coordinate):
 *   vertical centre  mu_v ~ N(0, verticalSpread^2 I_d)
 *   group centre     mu_g = mu_v + N(0, groupSpread^2 I_d)
 *   group subspace   U_g: d x r, orthonormal columns (random)
 *   class prototype  p_c = mu_g + U_g a_c,  a_c ~ N(0, classSpread^2 I_r)
 *   sample           x = p_c + U_g (withinNoise z_r) + V (nuisanceStd z_q) + isotropicNoise z_d
 * with V a global d x q orthonormal nuisance basis (lighting / pose-like variation shared by all
 * classes) and z_* standard normal.
 *
 * Why this shape: in 256-d, isotropic noise is harmless even when its norm exceeds the prototype
 * spacing, because only its projection on the line between two prototypes matters (std
 * isotropicNoise, against a half-distance that grows with sqrt(d)). Sibling classes of a group
 * therefore differ only inside a low-rank subspace (rank r) in which the sample noise lives too:
 * the ratio withinNoise / classSpread (and r, with groupSize) sets how much neighbouring classes
 * overlap. Groups and verticals are far apart in the full space, so confusions stay mostly inside
 * a group, as between fine-grained classes of real data. The generate stage measures the overlap
 * (nearest-prototype oracle accuracy, where its errors land) and writes it to stats.json.
 *
 * Everything is a pure function of (params, seed): every group's parameters come from a stream
 * seeded by (seed, group), every sample from a stream seeded by (seed, split, class, instance), and
 * row order is a seeded bijection, so any chunking gives the same bytes. Memory is O(classes * r +
 * groups * d * r) (about 22 MB at 100K classes), independent of samples per class.
 */
import type { Taxonomy, VerticalInfo } from './taxonomy.js';
import { PairedNormals } from '@distillery/runtime/rng';

/** Parameters of the label space and the embedding geometry (documented in the module comment). */
export interface EftGeometry {
  classes: number;
  verticals: number;
  /** Vertical sizes proportional to (rank + 1)^-tailExponent (0 = equal sizes). */
  tailExponent: number;
  /** Classes per group (the last group of a vertical may be smaller). */
  groupSize: number;
  dim: number;
  /** r: rank of each group's subspace, in which its classes differ. */
  subspaceRank: number;
  verticalSpread: number;
  groupSpread: number;
  classSpread: number;
  withinNoise: number;
  isotropicNoise: number;
  /** q: rank of the global nuisance subspace (0 = none). */
  nuisanceRank: number;
  nuisanceStd: number;
  seed: number;
}

export const DEFAULT_GEOMETRY: EftGeometry = {
  classes: 100_000,
  verticals: 20,
  tailExponent: 1,
  groupSize: 50,
  dim: 256,
  subspaceRank: 8,
  verticalSpread: 1,
  groupSpread: 0.5,
  classSpread: 1,
  withinNoise: 0.6,
  isotropicNoise: 0.3,
  nuisanceRank: 16,
  nuisanceStd: 1,
  seed: 0,
};

/** Names of the first verticals (EFT-like); further ones are v20, v21, ... */
export const VERTICAL_NAMES = [
  'plant',
  'animal',
  'food',
  'landmark',
  'product',
  'vehicle',
  'bird',
  'artwork',
  'building',
  'insect',
  'dish',
  'fashion',
  'logo',
  'sport',
  'instrument',
  'furniture',
  'tool',
  'fish',
  'mineral',
  'toy',
];

/** 32-bit mix of integers (murmur3 finaliser over a running hash). */
export function mix(...values: number[]): number {
  let h = 0x811c9dc5;
  for (const value of values) {
    let k = Math.imul(value | 0, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Vertical sizes proportional to (v+1)^-exponent, rounded by largest remainder so they sum to
 * `classes`, each at least 1.
 */
export function verticalSizes(classes: number, verticals: number, exponent: number): number[] {
  if (!Number.isInteger(verticals) || verticals < 1)
    throw new Error(`verticals must be a positive integer, got ${verticals}`);
  if (!Number.isInteger(classes) || classes < verticals)
    throw new Error(`classes (${classes}) must be an integer >= verticals (${verticals})`);
  const weights = Array.from({ length: verticals }, (_, v) => Math.pow(v + 1, -exponent));
  const total = weights.reduce((a, b) => a + b, 0);
  const spare = classes - verticals; // one class per vertical is reserved
  const exact = weights.map((w) => (w / total) * spare);
  const sizes = exact.map((e) => 1 + Math.floor(e));
  let left = classes - sizes.reduce((a, b) => a + b, 0);
  const order = exact.map((e, v) => ({ v, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.v - b.v);
  for (let i = 0; left > 0; i++, left--) sizes[order[i % verticals]!.v]!++;
  return sizes;
}

/** Builds the taxonomy: contiguous class ranges per vertical, groups of groupSize within each. */
export function buildTaxonomy(
  g: Pick<EftGeometry, 'classes' | 'verticals' | 'tailExponent' | 'groupSize'>,
  source: string,
): Taxonomy {
  if (!Number.isInteger(g.groupSize) || g.groupSize < 1)
    throw new Error(`groupSize must be a positive integer, got ${g.groupSize}`);
  const sizes = verticalSizes(g.classes, g.verticals, g.tailExponent);
  const classVertical: number[] = [];
  const classGroup: number[] = [];
  const groupVertical: number[] = [];
  const verticals: VerticalInfo[] = sizes.map((size, v) => {
    const groups = Math.ceil(size / g.groupSize);
    for (let k = 0; k < groups; k++) {
      const group = groupVertical.length;
      groupVertical.push(v);
      const n = Math.min(g.groupSize, size - k * g.groupSize);
      for (let i = 0; i < n; i++) {
        classVertical.push(v);
        classGroup.push(group);
      }
    }
    return { name: VERTICAL_NAMES[v] ?? `v${v}`, size, groups };
  });
  return {
    format: 'distillery-taxonomy',
    version: 1,
    numClasses: g.classes,
    verticals,
    classVertical,
    classGroup,
    groupVertical,
    source,
  };
}

/** d x k matrix (row-major, d rows) with orthonormal columns, by Gram-Schmidt on Gaussians. */
function orthonormalBasis(stream: PairedNormals, d: number, k: number): Float64Array {
  if (k > d) throw new Error(`subspace rank ${k} exceeds the dimension ${d}`);
  const cols: Float64Array[] = [];
  while (cols.length < k) {
    const v = new Float64Array(d);
    stream.fill(v, 1);
    for (const c of cols) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += v[i]! * c[i]!;
      for (let i = 0; i < d; i++) v[i]! -= dot * c[i]!;
    }
    let norm = 0;
    for (let i = 0; i < d; i++) norm += v[i]! * v[i]!;
    norm = Math.sqrt(norm);
    if (norm < 1e-6) continue;
    for (let i = 0; i < d; i++) v[i]! /= norm;
    cols.push(v);
  }
  const out = new Float64Array(d * k);
  for (let i = 0; i < d; i++) for (let j = 0; j < k; j++) out[i * k + j] = cols[j]![i]!;
  return out;
}

const SPLIT_CODES: Record<string, number> = { train: 1, val: 2, test: 3 };

/**
 * Seeded bijection of [0, n): a 4-round Feistel network on the next power of four with
 * cycle-walking. O(1) memory, so rows of any split come in a mixed class order without a table.
 */
export class Permutation {
  private readonly halfBits: number;
  private readonly mask: number;
  constructor(
    readonly n: number,
    private readonly seed: number,
  ) {
    let bits = 2;
    while (2 ** bits < n) bits += 2;
    this.halfBits = bits / 2;
    this.mask = (1 << this.halfBits) - 1;
  }
  private round(x: number): number {
    let l = x >>> this.halfBits;
    let r = x & this.mask;
    for (let k = 0; k < 4; k++) {
      const f = mix(this.seed, k, r) & this.mask;
      [l, r] = [r, l ^ f];
    }
    return ((l << this.halfBits) | r) >>> 0;
  }
  at(i: number): number {
    let x = this.round(i);
    while (x >= this.n) x = this.round(x);
    return x;
  }
}

/** The generator's state: the taxonomy and every group's geometry, built once per stage. */
export class EftGenerator {
  readonly taxonomy: Taxonomy;
  /** Group centres [groups, d]. */
  private readonly groupCentre: Float32Array;
  /** Group bases [groups, d, r]. */
  private readonly groupBasis: Float32Array;
  /** Class coefficients [classes, r]. */
  private readonly coeff: Float32Array;
  /** Nuisance basis [d, q]. */
  private readonly nuisance: Float64Array;
  private readonly zr: Float64Array;
  private readonly zq: Float64Array;

  constructor(readonly geometry: EftGeometry) {
    const g = geometry;
    for (const key of ['dim', 'subspaceRank'] as const) {
      if (!Number.isInteger(g[key]) || g[key] < 1) throw new Error(`${key} must be a positive integer, got ${g[key]}`);
    }
    if (!Number.isInteger(g.nuisanceRank) || g.nuisanceRank < 0 || g.nuisanceRank > g.dim)
      throw new Error(`nuisanceRank must be an integer in [0, dim], got ${g.nuisanceRank}`);
    for (const key of [
      'verticalSpread',
      'groupSpread',
      'classSpread',
      'withinNoise',
      'isotropicNoise',
      'nuisanceStd',
    ] as const) {
      if (!(g[key] >= 0) || !Number.isFinite(g[key]))
        throw new Error(`${key} must be a finite number >= 0, got ${g[key]}`);
    }
    this.taxonomy = buildTaxonomy(g, `eft-generate ${JSON.stringify(g)}`);
    const d = g.dim;
    const r = g.subspaceRank;
    const groups = this.taxonomy.groupVertical.length;
    const verticalCentre = new Float64Array(g.verticals * d);
    for (let v = 0; v < g.verticals; v++)
      new PairedNormals(mix(g.seed, 1, v)).fill(verticalCentre.subarray(v * d, (v + 1) * d), g.verticalSpread);
    this.groupCentre = new Float32Array(groups * d);
    this.groupBasis = new Float32Array(groups * d * r);
    const offset = new Float64Array(d);
    for (let k = 0; k < groups; k++) {
      const s = new PairedNormals(mix(g.seed, 2, k));
      const v = this.taxonomy.groupVertical[k]!;
      s.fill(offset, g.groupSpread);
      for (let i = 0; i < d; i++) this.groupCentre[k * d + i] = verticalCentre[v * d + i]! + offset[i]!;
      this.groupBasis.set(orthonormalBasis(s, d, r), k * d * r);
    }
    this.coeff = new Float32Array(g.classes * r);
    const a = new Float64Array(r);
    for (let c = 0; c < g.classes; c++) {
      new PairedNormals(mix(g.seed, 3, c)).fill(a, g.classSpread);
      this.coeff.set(a, c * r);
    }
    this.nuisance =
      g.nuisanceRank > 0 ? orthonormalBasis(new PairedNormals(mix(g.seed, 4)), d, g.nuisanceRank) : new Float64Array(0);
    this.zr = new Float64Array(r);
    this.zq = new Float64Array(g.nuisanceRank);
  }

  /** Writes class c's prototype into out[0..d). */
  prototype(c: number, out: Float32Array | Float64Array): void {
    const { dim: d, subspaceRank: r } = this.geometry;
    const k = this.taxonomy.classGroup[c]!;
    const base = k * d * r;
    for (let i = 0; i < d; i++) {
      let s = this.groupCentre[k * d + i]!;
      for (let j = 0; j < r; j++) s += this.groupBasis[base + i * r + j]! * this.coeff[c * r + j]!;
      out[i] = s;
    }
  }

  /** Writes sample `instance` of class c in `split` into out[0..d). */
  sample(split: string, c: number, instance: number, out: Float32Array): void {
    const g = this.geometry;
    const d = g.dim;
    const r = g.subspaceRank;
    const q = g.nuisanceRank;
    const code = SPLIT_CODES[split] ?? mix(...Array.from(split, (ch) => ch.charCodeAt(0)));
    const s = new PairedNormals(mix(g.seed, 5, code, c, instance));
    const k = this.taxonomy.classGroup[c]!;
    const base = k * d * r;
    const zr = this.zr;
    const zq = this.zq;
    for (let j = 0; j < r; j++) zr[j] = this.coeff[c * r + j]! + g.withinNoise * s.normal();
    for (let j = 0; j < q; j++) zq[j] = g.nuisanceStd * s.normal();
    for (let i = 0; i < d; i++) {
      let v = this.groupCentre[k * d + i]! + g.isotropicNoise * s.normal();
      for (let j = 0; j < r; j++) v += this.groupBasis[base + i * r + j]! * zr[j]!;
      for (let j = 0; j < q; j++) v += this.nuisance[i * q + j]! * zq[j]!;
      out[i] = v;
    }
  }

  /**
   * Rows of one split in chunks: row i of the split is class (j mod C), instance floor(j / C)
   * of a seeded permutation j of [0, C * perClass). Yields column batches for the shard writer.
   * `classStride` s > 1 keeps only classes 0, s, 2s, ... (a class-subsampled evaluation split:
   * every class with rows still competes with all C classes at scoring time).
   */
  *rows(
    split: string,
    perClass: number,
    chunkRows: number,
    classStride = 1,
  ): Generator<{ ids: string[]; splits: string[]; labels: Int32Array; features: Float32Array; rows: number }> {
    if (!(Number.isInteger(classStride) && classStride >= 1))
      throw new Error(`eft-generate: class stride must be an integer >= 1, got ${classStride}`);
    const C = Math.ceil(this.geometry.classes / classStride);
    const d = this.geometry.dim;
    const n = C * perClass;
    if (n === 0) return;
    const perm = new Permutation(n, mix(this.geometry.seed, 6, SPLIT_CODES[split] ?? 0));
    const width = String(n - 1).length;
    const x = new Float32Array(d);
    for (let start = 0; start < n; start += chunkRows) {
      const rows = Math.min(chunkRows, n - start);
      const ids: string[] = new Array(rows);
      const labels = new Int32Array(rows);
      const features = new Float32Array(rows * d);
      for (let i = 0; i < rows; i++) {
        const j = perm.at(start + i);
        const c = (j % C) * classStride;
        this.sample(split, c, Math.floor(j / C), x);
        features.set(x, i * d);
        labels[i] = c;
        ids[i] = `${split}/${String(start + i).padStart(width, '0')}`;
      }
      yield { ids, splits: new Array<string>(rows).fill(split), labels, features, rows };
    }
  }
}

/** Overlap statistics of a generated label space, from the true prototypes (an oracle, no training). */
export interface OverlapStats {
  /** Samples examined. */
  samples: number;
  /** Nearest-prototype (Euclidean) top-1 accuracy over all classes. */
  oracleTop1: number;
  /** Same, top-5. */
  oracleTop5: number;
  /** Among the oracle's top-1 errors: share whose predicted class is in the true group / vertical. */
  errorsInGroup: number;
  errorsInVertical: number;
  /** Mean over samples of ||x - p_y|| / min_{c != y} ||x - p_c||: > 1 means a wrong prototype is closer. */
  meanDistanceRatio: number;
  /** Mean distance between sibling prototypes (same group) and between a sample and its prototype. */
  meanSiblingDistance: number;
  meanNoiseNorm: number;
}

/**
 * Measures how much neighbouring classes overlap on `samples` test-like samples (split "stats",
 * independent of the written splits). Cost: samples * classes * d multiply-adds.
 */
export function overlapStatistics(gen: EftGenerator, samples: number): OverlapStats {
  const { classes: C, dim: d, seed } = gen.geometry;
  const t = gen.taxonomy;
  const protos = new Float32Array(C * d);
  const p = new Float32Array(d);
  for (let c = 0; c < C; c++) {
    gen.prototype(c, p);
    protos.set(p, c * d);
  }
  const x = new Float32Array(d);
  const dist = new Float64Array(C);
  let top1 = 0;
  let top5 = 0;
  let errors = 0;
  let inGroup = 0;
  let inVertical = 0;
  let ratio = 0;
  let noise = 0;
  for (let s = 0; s < samples; s++) {
    const y = mix(seed, 7, s) % C;
    gen.sample('stats', y, s, x);
    for (let c = 0; c < C; c++) {
      let acc = 0;
      for (let i = 0; i < d; i++) {
        const diff = x[i]! - protos[c * d + i]!;
        acc += diff * diff;
      }
      dist[c] = acc;
    }
    let rank = 0;
    let best = -1;
    let nearestOther = Infinity;
    for (let c = 0; c < C; c++) {
      if (dist[c]! < dist[y]! || (dist[c] === dist[y] && c < y)) rank++;
      if (best < 0 || dist[c]! < dist[best]!) best = c;
      if (c !== y && dist[c]! < nearestOther) nearestOther = dist[c]!;
    }
    if (rank === 0) top1++;
    if (rank < 5) top5++;
    if (best !== y) {
      errors++;
      if (t.classGroup[best] === t.classGroup[y]) inGroup++;
      if (t.classVertical[best] === t.classVertical[y]) inVertical++;
    }
    ratio += Math.sqrt(dist[y]!) / Math.sqrt(nearestOther);
    noise += Math.sqrt(dist[y]!);
  }
  // Sibling distances: consecutive classes of the same group.
  let sib = 0;
  let pairs = 0;
  for (let c = 1; c < C && pairs < 10_000; c++) {
    if (t.classGroup[c] !== t.classGroup[c - 1]) continue;
    let acc = 0;
    for (let i = 0; i < d; i++) {
      const diff = protos[c * d + i]! - protos[(c - 1) * d + i]!;
      acc += diff * diff;
    }
    sib += Math.sqrt(acc);
    pairs++;
  }
  return {
    samples,
    oracleTop1: top1 / samples,
    oracleTop5: top5 / samples,
    errorsInGroup: errors > 0 ? inGroup / errors : 0,
    errorsInVertical: errors > 0 ? inVertical / errors : 0,
    meanDistanceRatio: ratio / samples,
    meanSiblingDistance: pairs > 0 ? sib / pairs : 0,
    meanNoiseNorm: noise / samples,
  };
}
