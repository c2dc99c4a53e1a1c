/**
 * Sigmoid cross-entropy over a large label space on sampled negatives (an approximation of the
 * full per-class sum, unbiased in expectation; docs/methods.md, "Sampled negatives").
 *
 * The full loss of one sample is sum_c softplus(x_c) - t_c x_c over all C classes. A step keeps
 * the batch's positive columns U (every class with a nonzero target in any sample of the batch:
 * labels, teacher top-K ids) exactly, and estimates the sum over the C - |U| other classes, whose
 * target is 0 for every sample, from R classes drawn uniformly without replacement from them and
 * shared by the whole batch, each weighted (C - |U|) / R. Every such class is drawn with
 * probability R / (C - |U|), so the expectation of the estimate (value and gradient) is the full
 * sum; its variance falls as R grows, and R >= C - |U| gives the exact loss.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng.js';

/** A step's column set: global class ids (ascending, distinct) and the weight of each column. */
export interface SampledColumns {
  columns: Int32Array;
  weights: Float32Array;
  /** |U|: columns holding some sample's nonzero target (weight 1). */
  positives: number;
  /** Number of sampled negative columns (weight (C - |U|) / R each). */
  negatives: number;
}

/** Per-sample sparse targets: class ids and target probabilities (0 elsewhere). */
export interface SparseRow {
  ids: ArrayLike<number>;
  probs: ArrayLike<number>;
}

/** U = every id with a nonzero target, plus R shared uniform negatives from the rest. */
export function sampleColumns(rows: SparseRow[], numClasses: number, negatives: number, rng: Rng): SampledColumns {
  const positive = new Set<number>();
  rows.forEach((row, b) => {
    for (let j = 0; j < row.ids.length; j++) {
      const c = row.ids[j]!;
      if (!(Number.isInteger(c) && c >= 0 && c < numClasses))
        throw new Error(`sampled negatives: sample ${b} has target class ${c}, outside [0, ${numClasses})`);
      if (row.probs[j]! !== 0) positive.add(c);
    }
  });
  const rest = numClasses - positive.size;
  if (negatives >= rest) {
    // Every class: the exact loss.
    return {
      columns: Int32Array.from({ length: numClasses }, (_, i) => i),
      weights: new Float32Array(numClasses).fill(1),
      positives: positive.size,
      negatives: rest,
    };
  }
  const drawn = new Set<number>();
  if (positive.size + negatives <= numClasses / 2) {
    // Rejection: at most half the ids are taken, so on average < 2 draws per accepted id.
    while (drawn.size < negatives) {
      const c = rng.int(numClasses);
      if (!positive.has(c)) drawn.add(c);
    }
  } else {
    // Partial Fisher-Yates over the complement.
    const pool = new Int32Array(rest);
    let at = 0;
    for (let c = 0; c < numClasses; c++) if (!positive.has(c)) pool[at++] = c;
    for (let i = 0; i < negatives; i++) {
      const j = i + rng.int(rest - i);
      const t = pool[i]!;
      pool[i] = pool[j]!;
      pool[j] = t;
      drawn.add(pool[i]!);
    }
  }
  const columns = Int32Array.from([...positive, ...drawn]).sort();
  const scale = rest / negatives;
  const weights = Float32Array.from(columns, (c) => (positive.has(c) ? 1 : scale));
  return { columns, weights, positives: positive.size, negatives };
}

/** Dense [n, m] targets on the step's columns (row-major). */
export function targetsAtColumns(rows: SparseRow[], columns: Int32Array): Float32Array {
  const m = columns.length;
  const where = new Map<number, number>();
  columns.forEach((c, j) => where.set(c, j));
  const out = new Float32Array(rows.length * m);
  rows.forEach((row, b) => {
    for (let j = 0; j < row.ids.length; j++) {
      const p = row.probs[j]!;
      if (p === 0) continue;
      const col = where.get(row.ids[j]!);
      if (col === undefined)
        throw new Error(`sampled negatives: target class ${row.ids[j]} of sample ${b} is not among the step's columns`);
      out[b * m + col]! += p;
    }
  });
  return out;
}

/**
 * Batch mean of sum_j w_j (softplus(x_j / T) - t_j x_j / T) over the step's columns: logits
 * [n, m] at `columns`, targets [n, m], weights [m].
 */
export function sampledSigmoidCrossEntropy(
  logits: tf.Tensor2D,
  targets: tf.Tensor2D,
  weights: tf.Tensor1D,
  temperature = 1,
): tf.Scalar {
  const x = temperature === 1 ? logits : (tf.div(logits, temperature) as tf.Tensor2D);
  const perColumn = tf.sub(tf.softplus(x), tf.mul(targets, x));
  return tf.div(tf.sum(tf.mul(perColumn, weights)), logits.shape[0]) as tf.Scalar;
}
