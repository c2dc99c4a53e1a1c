/**
 * Decoupled Knowledge Distillation (B. Zhao, Q. Cui, R. Song, Y. Qiu, J. Liang, "Decoupled
 * Knowledge Distillation", CVPR 2022; docs/methods.md, "Decoupled KD"). With p = softmax(z_t / T)
 * (teacher), q = softmax(z_s / T) (student) and y the label:
 *
 *   TCKD = KL([p_y, 1 - p_y] || [q_y, 1 - q_y])                    (target vs the rest)
 *   NCKD = KL(p^ || q^), p^ = softmax over the classes != y         (among the non-targets)
 *   DKD  = T^2 * (alpha * TCKD + beta * NCKD), batch means
 *
 * as the authors' code computes it (the non-target softmax masks the target logit with -1000).
 */
import * as tf from '@tensorflow/tfjs-core';

/** The masked logit offset of the authors' implementation: exp(-1000 / T) is 0 in float32. */
const MASK = 1000;
const LOG_FLOOR = 1e-30;

/** DKD weights. */
export interface DkdWeights {
  /** Weight of TCKD. */
  alpha: number;
  /** Weight of NCKD. */
  beta: number;
  temperature: number;
}

/** sum_i p_i (log p_i - logq_i) per row, averaged over rows (p = 0 terms are 0). */
function klRows(p: tf.Tensor2D, logq: tf.Tensor2D): tf.Scalar {
  return tf.div(tf.sum(tf.mul(p, tf.sub(tf.log(tf.maximum(p, LOG_FLOOR)), logq))), p.shape[0]) as tf.Scalar;
}

/**
 * The two DKD terms and their weighted sum (times T^2). studentLogits and teacherLogits [n, C]
 * over the same classes, labels int32 [n].
 */
export function dkdLoss(
  studentLogits: tf.Tensor2D,
  teacherLogits: tf.Tensor2D,
  labels: tf.Tensor1D,
  w: DkdWeights,
): { total: tf.Scalar; tckd: tf.Scalar; nckd: tf.Scalar } {
  const c = studentLogits.shape[1];
  if (teacherLogits.shape[1] !== c) throw new Error(`dkd: teacher has ${teacherLogits.shape[1]} classes, student ${c}`);
  const t = w.temperature;
  const target = tf.cast(tf.oneHot(labels, c), 'float32') as tf.Tensor2D;
  const rest = tf.sub(1, target) as tf.Tensor2D;
  const zs = tf.div(studentLogits, t) as tf.Tensor2D;
  const zt = tf.div(teacherLogits, t) as tf.Tensor2D;
  const q = tf.softmax(zs);
  const p = tf.softmax(zt);
  const binary = (probs: tf.Tensor2D) =>
    tf.concat([tf.sum(tf.mul(probs, target), 1, true), tf.sum(tf.mul(probs, rest), 1, true)], 1) as tf.Tensor2D;
  const tckd = klRows(binary(p), tf.log(tf.maximum(binary(q), LOG_FLOOR)) as tf.Tensor2D);
  const masked = (z: tf.Tensor2D) => tf.sub(z, tf.mul(target, MASK)) as tf.Tensor2D;
  const nckd = klRows(tf.softmax(masked(zt)) as tf.Tensor2D, tf.logSoftmax(masked(zs)) as tf.Tensor2D);
  const total = tf.mul(tf.add(tf.mul(tckd, w.alpha), tf.mul(nckd, w.beta)), t * t) as tf.Scalar;
  return { total, tckd, nckd };
}
