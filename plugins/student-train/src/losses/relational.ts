/**
 * Relational Knowledge Distillation (W. Park, D. Kim, Y. Lu, M. Cho, "Relational Knowledge
 * Distillation", CVPR 2019; docs/methods.md, "Relational KD"): the student's embeddings s [n, ds]
 * should relate to each other as the teacher's t [n, dt] do (ds and dt may differ).
 *
 * - Distance: d_ij = ||e_i - e_j||_2 / mu, mu = the mean of the n(n-1) distances i != j; the term
 *   is the mean of Huber(d^s_ij - d^t_ij) over all n^2 pairs (the diagonal contributes 0), as the
 *   authors' code averages.
 * - Angle: a_ijk = <(e_i - e_j) / ||e_i - e_j||, (e_k - e_j) / ||e_k - e_j||>, the term the mean
 *   of Huber(a^s_ijk - a^t_ijk) over all n^3 triples (a zero difference vector normalises to 0).
 *
 * Huber = smooth L1 with threshold 1: x^2 / 2 where |x| < 1, |x| - 1/2 elsewhere.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Added to squared distances before the square root (finite gradient at 0), as the authors' eps. */
const DIST_EPS = 1e-12;
/** Floor of a difference vector's norm in the angle term. */
const NORM_EPS = 1e-12;

/** Smooth L1 (Huber, threshold 1) of each element, averaged. */
export function smoothL1Mean(x: tf.Tensor): tf.Scalar {
  const a = tf.abs(x);
  const quadratic = tf.minimum(a, 1);
  // 0.5 q^2 + (|x| - q): equal to x^2 / 2 below 1 and |x| - 1/2 above, with one expression.
  return tf.mean(tf.add(tf.mul(tf.square(quadratic), 0.5), tf.sub(a, quadratic))) as tf.Scalar;
}

/** Pairwise Euclidean distances [n, n] of the rows of e [n, d], zero on the diagonal. */
export function pairwiseDistances(e: tf.Tensor2D): tf.Tensor2D {
  const n = e.shape[0];
  const sq = tf.sum(tf.square(e), 1);
  const d2 = tf.sub(tf.add(tf.reshape(sq, [n, 1]), tf.reshape(sq, [1, n])), tf.mul(tf.matMul(e, e, false, true), 2));
  const offDiagonal = tf.sub(1, tf.eye(n));
  return tf.mul(tf.sqrt(tf.maximum(d2, DIST_EPS)), offDiagonal) as tf.Tensor2D;
}

/** Distances divided by their mean over the n(n-1) off-diagonal pairs. */
function normalisedDistances(e: tf.Tensor2D): tf.Tensor2D {
  const n = e.shape[0];
  const d = pairwiseDistances(e);
  const mu = tf.maximum(tf.div(tf.sum(d), n * (n - 1)), DIST_EPS);
  return tf.div(d, mu) as tf.Tensor2D;
}

/** RKD distance term between student and teacher embeddings (rows = the same samples). */
export function rkdDistance(student: tf.Tensor2D, teacher: tf.Tensor2D): tf.Scalar {
  if (student.shape[0] < 2) throw new Error('rkd: the distance term needs batches of at least 2 samples');
  return smoothL1Mean(tf.sub(normalisedDistances(student), normalisedDistances(teacher)));
}

/** cos of the angle at e_j between e_i and e_k for every (i, j, k): [n, n, n] flattened, indexed [j, i, k]. */
export function tripletAngles(e: tf.Tensor2D): tf.Tensor {
  const [n, d] = e.shape;
  // diff[j, i] = e_i - e_j, normalised along the feature axis.
  const diff = tf.sub(tf.reshape(e, [1, n, d]), tf.reshape(e, [n, 1, d]));
  // max before the square root: sqrt's gradient at an i = j zero vector would be infinite.
  const norm = tf.sqrt(tf.maximum(tf.sum(tf.square(diff), 2, true), NORM_EPS * NORM_EPS));
  const unit = tf.div(diff, norm) as tf.Tensor3D;
  return tf.matMul(unit, unit, false, true); // [j, i, k]
}

/** RKD angle term between student and teacher embeddings. */
export function rkdAngle(student: tf.Tensor2D, teacher: tf.Tensor2D): tf.Scalar {
  if (student.shape[0] < 3) throw new Error('rkd: the angle term needs batches of at least 3 samples');
  return smoothL1Mean(tf.sub(tripletAngles(student), tripletAngles(teacher)));
}

/** distanceWeight * distance term + angleWeight * angle term (a weight of 0 skips its term). */
export function rkdLoss(
  student: tf.Tensor2D,
  teacher: tf.Tensor2D,
  weights: { distance: number; angle: number },
): tf.Scalar {
  if (student.shape[0] !== teacher.shape[0])
    throw new Error(`rkd: ${student.shape[0]} student rows, ${teacher.shape[0]} teacher rows`);
  let total: tf.Scalar = tf.scalar(0);
  if (weights.distance > 0) total = tf.add(total, tf.mul(rkdDistance(student, teacher), weights.distance));
  if (weights.angle > 0) total = tf.add(total, tf.mul(rkdAngle(student, teacher), weights.angle));
  return total;
}
