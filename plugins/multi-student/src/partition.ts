/**
 * Partitioning a label space into K disjoint, about equal groups of classes (MSD; docs/methods.md,
 * "Multi-student distillation: partitioning and routing"). Each partition is owned by one student; `RoutingTable` maps a class to its student.
 */
import { Rng } from '@distillery/runtime/rng';

export type PartitionStrategy = 'consecutive' | 'random' | 'kmeans' | 'vertical';

/** The routing table written by the `partition` stage (routing.json). */
export interface RoutingTable {
  numClasses: number;
  students: number;
  strategy: PartitionStrategy;
  seed: number;
  /** Class ids of each student's partition, ascending. */
  partitions: number[][];
  /** Student index of each class. */
  classToStudent: number[];
}

export function routingTable(
  numClasses: number,
  partitions: number[][],
  strategy: PartitionStrategy,
  seed: number,
): RoutingTable {
  const classToStudent = new Array<number>(numClasses).fill(-1);
  partitions.forEach((classes, k) => {
    for (const c of classes) {
      if (c < 0 || c >= numClasses) throw new Error(`partition ${k} holds class ${c}, outside 0..${numClasses - 1}`);
      if (classToStudent[c] !== -1) throw new Error(`class ${c} is in partitions ${classToStudent[c]} and ${k}`);
      classToStudent[c] = k;
    }
  });
  const missing = classToStudent.indexOf(-1);
  if (missing >= 0) throw new Error(`class ${missing} is in no partition`);
  return {
    numClasses,
    students: partitions.length,
    strategy,
    seed,
    partitions: partitions.map((p) => [...p].sort((a, b) => a - b)),
    classToStudent,
  };
}

/**
 * K must leave every student at least two classes: with K > C/2 disjoint partitions, at least
 * 2K - C students own one class, answer it whatever the input, and their "known partition"
 * accuracy is 100% by construction (it measures the partition, not the student). K = 1 (one
 * student, all classes) is allowed. `minClasses` (default 2) is the parameter that relaxes this.
 */
export function checkK(numClasses: number, k: number, minClasses = 2): void {
  if (!Number.isInteger(k) || k < 1) throw new Error(`parameter students must be a positive integer, got ${k}`);
  if (k > numClasses) throw new Error(`parameter students: cannot split ${numClasses} classes among ${k} students`);
  if (k > 1 && Math.floor(numClasses / k) < minClasses) {
    throw new Error(
      `parameter students: K = ${k} over ${numClasses} classes leaves a student fewer than ${minClasses} classes (sizes floor(C/K) = ${Math.floor(numClasses / k)} or ceil(C/K)); ` +
        `use K <= ${Math.floor(numClasses / minClasses)}, or set minClasses to ${Math.floor(numClasses / k)} to allow it`,
    );
  }
}

/** Partition sizes: floor(C/K) each, the first C mod K one more (the only sizes differing by at most one). */
export function balancedSizes(numClasses: number, k: number): number[] {
  const base = Math.floor(numClasses / k);
  return Array.from({ length: k }, (_, i) => base + (i < numClasses % k ? 1 : 0));
}

/** Sizes differ by at most one: the first numClasses % k partitions get one more class. */
function chunk(order: number[], k: number): number[][] {
  const base = Math.floor(order.length / k);
  const extra = order.length % k;
  const parts: number[][] = [];
  let at = 0;
  for (let i = 0; i < k; i++) {
    const size = base + (i < extra ? 1 : 0);
    parts.push(order.slice(at, at + size));
    at += size;
  }
  return parts;
}

export function consecutivePartition(numClasses: number, k: number, minClasses = 2): number[][] {
  checkK(numClasses, k, minClasses);
  return chunk(
    Array.from({ length: numClasses }, (_, i) => i),
    k,
  );
}

export function randomPartition(numClasses: number, k: number, seed: number, minClasses = 2): number[][] {
  checkK(numClasses, k, minClasses);
  return chunk(new Rng(seed).shuffle(Array.from({ length: numClasses }, (_, i) => i)), k);
}

/**
 * Whole verticals per partition, balanced by class count with the longest-processing-time rule
 * (largest vertical first, into the currently smallest partition). Sizes are only as equal as the
 * verticals allow.
 */
export function verticalPartition(classToVertical: ArrayLike<number>, k: number, minClasses = 2): number[][] {
  const byVertical = new Map<number, number[]>();
  for (let c = 0; c < classToVertical.length; c++) {
    const v = classToVertical[c] as number;
    let list = byVertical.get(v);
    if (!list) byVertical.set(v, (list = []));
    list.push(c);
  }
  if (k > byVertical.size) throw new Error(`cannot split ${byVertical.size} verticals among ${k} students`);
  checkK(classToVertical.length, k, minClasses);
  const verticals = [...byVertical.entries()].sort((a, b) => b[1].length - a[1].length || a[0] - b[0]);
  const parts: number[][] = Array.from({ length: k }, () => []);
  for (const [, classes] of verticals) {
    let smallest = 0;
    for (let i = 1; i < k; i++) if ((parts[i] as number[]).length < (parts[smallest] as number[]).length) smallest = i;
    (parts[smallest] as number[]).push(...classes);
  }
  const small = parts.findIndex((p) => k > 1 && p.length < minClasses);
  if (small >= 0)
    throw new Error(
      `parameter students: with whole verticals, K = ${k} leaves partition ${small} ${(parts[small] as number[]).length} class(es), fewer than minClasses = ${minClasses}; use a smaller K or set minClasses`,
    );
  return parts;
}

/**
 * Balanced k-means over class embeddings (row-major numClasses x dim): k-means++ seeding, then
 * Lloyd iterations whose assignment step is capacity-constrained: every cluster ends with
 * floor(C/k) or ceil(C/k) classes, and exactly C mod k clusters with ceil(C/k) (a cap of
 * ceil(C/k) alone lets the last cluster end with fewer, e.g. 3, 3, 3, 1 for C = 10, k = 4).
 * (class, centroid) pairs are taken in order of increasing distance and a class joins the nearest
 * centroid that still has room: below floor(C/k), or at floor(C/k) while fewer than C mod k
 * clusters have grown to ceil(C/k). Total room is exactly C, so every class is placed. Returns the
 * partitions and the final within-cluster sum of squares.
 */
export function balancedKMeans(
  embeddings: Float32Array,
  numClasses: number,
  dim: number,
  k: number,
  seed: number,
  iterations = 25,
  minClasses = 2,
): { partitions: number[][]; inertia: number } {
  checkK(numClasses, k, minClasses);
  if (embeddings.length !== numClasses * dim)
    throw new Error(`embeddings hold ${embeddings.length} values, expected ${numClasses} x ${dim}`);
  const rng = new Rng(seed);
  const centroids = new Float64Array(k * dim);
  const dist2 = (c: number, j: number): number => {
    let s = 0;
    for (let d = 0; d < dim; d++) {
      const diff = (embeddings[c * dim + d] as number) - (centroids[j * dim + d] as number);
      s += diff * diff;
    }
    return s;
  };
  // k-means++ seeding.
  const first = rng.int(numClasses);
  for (let d = 0; d < dim; d++) centroids[d] = embeddings[first * dim + d] as number;
  const nearest = new Float64Array(numClasses).fill(Infinity);
  for (let j = 1; j < k; j++) {
    let total = 0;
    for (let c = 0; c < numClasses; c++) {
      nearest[c] = Math.min(nearest[c] as number, dist2(c, j - 1));
      total += nearest[c] as number;
    }
    let pick = rng.next() * total;
    let chosen = numClasses - 1;
    for (let c = 0; c < numClasses; c++) {
      pick -= nearest[c] as number;
      if (pick <= 0) {
        chosen = c;
        break;
      }
    }
    for (let d = 0; d < dim; d++) centroids[j * dim + d] = embeddings[chosen * dim + d] as number;
  }
  const floorSize = Math.floor(numClasses / k);
  const largeClusters = numClasses % k;
  let assignment = new Int32Array(numClasses).fill(-1);
  let inertia = 0;
  for (let iter = 0; iter < iterations; iter++) {
    const pairs = new Float64Array(numClasses * k);
    for (let c = 0; c < numClasses; c++) for (let j = 0; j < k; j++) pairs[c * k + j] = dist2(c, j);
    const order = Array.from({ length: numClasses * k }, (_, i) => i).sort(
      (a, b) => (pairs[a] as number) - (pairs[b] as number) || a - b,
    );
    const next = new Int32Array(numClasses).fill(-1);
    const fill = new Int32Array(k);
    let large = 0;
    inertia = 0;
    for (const p of order) {
      const c = Math.floor(p / k);
      const j = p % k;
      if (next[c] !== -1) continue;
      const f = fill[j] as number;
      if (f > floorSize || (f === floorSize && large >= largeClusters)) continue;
      if (f === floorSize) large++;
      next[c] = j;
      fill[j] = (fill[j] as number) + 1;
      inertia += pairs[p] as number;
    }
    const changed = next.some((v, c) => v !== assignment[c]);
    assignment = next;
    // Update step.
    centroids.fill(0);
    for (let c = 0; c < numClasses; c++) {
      const j = assignment[c] as number;
      for (let d = 0; d < dim; d++)
        centroids[j * dim + d] = (centroids[j * dim + d] as number) + (embeddings[c * dim + d] as number);
    }
    for (let j = 0; j < k; j++)
      for (let d = 0; d < dim; d++)
        centroids[j * dim + d] = (centroids[j * dim + d] as number) / Math.max(1, fill[j] as number);
    if (!changed) break;
  }
  const partitions: number[][] = Array.from({ length: k }, () => []);
  for (let c = 0; c < numClasses; c++) (partitions[assignment[c] as number] as number[]).push(c);
  return { partitions, inertia };
}
