/**
 * Distillation losses on tfjs tensors (docs/methods.md, "Temperature and Hinton KD", "f-divergence
 * losses", "Top-k soft labels", "Sampled soft labels", "Sigmoid losses and the class-prior start"). Every loss is a batch mean
 * ("batchmean": summed over classes, averaged over samples), p = teacher, q = student.
 *
 * Teacher targets come dense (teacher logits over the global classes) or sparse (class ids per
 * sample with the teacher's probability at each; built from top-k or sampled shards). Sparse
 * targets never expand to [batch, classes]: the student's log-probs are gathered at the ids, and
 * the mass outside the ids is one aggregate per sample:
 *   - policy 'zero' (top-k "renormalise", sampled soft labels): the teacher puts 0 outside the ids,
 *     so each divergence's outside part is exactly g(0, q_tail) with q_tail = 1 - sum_ids q_i;
 *   - policy 'rest' (top-k "rest bucket"): the outside classes are one bucket on both sides,
 *     p_rest = stored missing mass, q_rest = 1 - sum_ids q_i, contributing g(p_rest, q_rest).
 * A divergence is given by its pointwise term g(p, q) = q f(p/q), D = sum_i g(p_i, q_i).
 */
import * as tf from '@tensorflow/tfjs-core';

/** Dense teacher: raw logits [n, C] over the global classes (temperature applied by the loss). */
export interface DenseTarget {
  kind: 'dense';
  logits: tf.Tensor2D;
}

/**
 * Sparse teacher: per sample up to k (id, p) entries, padded. `probs` are teacher probabilities at
 * the loss temperature (0 at padding), `mask` is 1 for real entries, `tail` the teacher mass
 * outside the ids (read only by policy 'rest').
 */
export interface SparseTarget {
  kind: 'sparse';
  ids: tf.Tensor2D; // int32 [n, k]
  probs: tf.Tensor2D; // float32 [n, k]
  mask: tf.Tensor2D; // float32 [n, k]
  tail: tf.Tensor1D; // float32 [n]
  policy: 'zero' | 'rest';
}

export type TeacherTarget = DenseTarget | SparseTarget;

/** Named divergences; `skew_*` use the skew parameter a (default 0.1). */
export type DivergenceName = 'forward_kl' | 'reverse_kl' | 'js' | 'tv' | 'hellinger' | 'skew_kl' | 'skew_rkl';

/** A generic f-divergence: f applied elementwise to t = p/q (t >= 0). */
export interface FDivergence {
  f: (t: tf.Tensor) => tf.Tensor;
  name?: string;
}

export type Divergence = DivergenceName | FDivergence;

const LOG_FLOOR = 1e-30;

function safeLog(x: tf.Tensor): tf.Tensor {
  return tf.log(tf.maximum(x, LOG_FLOOR));
}

/**
 * Pointwise term g(p, q) = q f(p/q), written in logs where that is stabler. `logq` is log q.
 * Terms with p = 0 are exact (0 * log 0 = 0).
 */
function pointwise(divergence: Divergence, p: tf.Tensor, q: tf.Tensor, logq: tf.Tensor, skew: number): tf.Tensor {
  if (typeof divergence !== 'string') {
    return tf.mul(q, divergence.f(tf.div(p, tf.maximum(q, LOG_FLOOR))));
  }
  const logp = safeLog(p);
  switch (divergence) {
    case 'forward_kl':
      return tf.mul(p, tf.sub(logp, logq));
    case 'reverse_kl':
      return tf.mul(q, tf.sub(logq, logp));
    case 'js': {
      // f(t) = t log t - (t+1) log((t+1)/2)  =>  g = p log(p/m) + q log(q/m), m = (p+q)/2.
      const logm = safeLog(tf.mul(tf.add(p, q), 0.5));
      return tf.add(tf.mul(p, tf.sub(logp, logm)), tf.mul(q, tf.sub(logq, logm)));
    }
    case 'tv':
      return tf.mul(tf.abs(tf.sub(p, q)), 0.5);
    case 'hellinger':
      return tf.square(tf.sub(tf.sqrt(p), tf.sqrt(q)));
    case 'skew_kl': // KL(p || a p + (1-a) q)
      return tf.mul(p, tf.sub(logp, safeLog(tf.add(tf.mul(p, skew), tf.mul(q, 1 - skew)))));
    case 'skew_rkl': // KL(q || (1-a) p + a q)
      return tf.mul(q, tf.sub(logq, safeLog(tf.add(tf.mul(p, 1 - skew), tf.mul(q, skew)))));
  }
}

/** log_softmax(z / T) over the last axis. */
export function logSoftmaxT(logits: tf.Tensor2D, temperature: number): tf.Tensor2D {
  return tf.logSoftmax(temperature === 1 ? logits : tf.div(logits, temperature)) as tf.Tensor2D;
}

/**
 * x[b, ids[b, j]] for x [n, C], ids [n, k] int32. Gradient scattered back with scatterND
 * (tf.gather's gradient needs UnsortedSegmentSum, missing on tfjs-backend-wasm).
 */
export function gatherColumns(x: tf.Tensor2D, ids: tf.Tensor2D): tf.Tensor2D {
  const [n, k] = ids.shape;
  const rows = tf.tidy(() => tf.tile(tf.reshape(tf.range(0, n, 1, 'int32'), [n, 1]), [1, k]));
  const indices = tf.stack([rows, ids], 2) as tf.Tensor3D;
  rows.dispose();
  const shape = x.shape;
  // indices is an input (and saved) so the tape keeps it alive until the backward pass.
  const out = tf.customGrad((input, idx, save) => {
    (save as tf.GradSaveFunc)([idx as tf.Tensor]);
    return {
      value: tf.gatherND(input as tf.Tensor2D, idx as tf.Tensor) as tf.Tensor2D,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => [tf.scatterND(saved[0]!, dy, shape), tf.zerosLike(saved[0]!)],
    };
  })(x, indices) as tf.Tensor2D;
  indices.dispose();
  return out;
}

/** Hard-label softmax cross-entropy, batch mean. `labels` int32 [n]. */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const logq = logSoftmaxT(logits, 1);
  const picked = gatherColumns(logq, tf.reshape(labels, [-1, 1]) as tf.Tensor2D);
  return tf.neg(tf.mean(picked)) as tf.Scalar;
}

/**
 * D(p_T || q_T) averaged over the batch, with p the teacher at temperature T (dense: softmax of
 * logits/T; sparse: probs as given, already at the loss temperature) and q = softmax(z_s / T).
 */
export function divergenceLoss(
  divergence: Divergence,
  studentLogits: tf.Tensor2D,
  target: TeacherTarget,
  temperature = 1,
  skew = 0.1,
): tf.Scalar {
  const logq = logSoftmaxT(studentLogits, temperature);
  const n = studentLogits.shape[0];
  if (target.kind === 'dense') {
    if (target.logits.shape[1] !== studentLogits.shape[1]) {
      throw new Error(`loss: teacher has ${target.logits.shape[1]} classes, student ${studentLogits.shape[1]}`);
    }
    const p = tf.softmax(tf.div(target.logits, temperature));
    return tf.div(tf.sum(pointwise(divergence, p, tf.exp(logq), logq, skew)), n) as tf.Scalar;
  }
  const logqK = gatherColumns(logq, target.ids);
  const qK = tf.mul(tf.exp(logqK), target.mask);
  const terms = tf.mul(pointwise(divergence, target.probs, qK, logqK, skew), target.mask);
  const qTail = tf.clipByValue(tf.sub(1, tf.sum(qK, 1)), 0, 1);
  const pTail = target.policy === 'rest' ? target.tail : tf.zerosLike(qTail);
  if (target.policy === 'zero' && typeof divergence === 'string' && divergence === 'reverse_kl') {
    throw new Error(
      'loss: reverse_kl against a sparse target with policy "zero" (top-k renormalise / sampled) is infinite; use the rest policy or skew_rkl',
    );
  }
  const tailTerm = pointwise(divergence, pTail, qTail, safeLog(qTail), skew);
  return tf.div(tf.add(tf.sum(terms), tf.sum(tailTerm)), n) as tf.Scalar;
}

/** Hinton KD: alpha * CE(y, softmax(z_s)) + (1 - alpha) * T^2 * D(p_T || q_T) (D = forward KL by default). */
export function hintonKd(
  studentLogits: tf.Tensor2D,
  labels: tf.Tensor1D | undefined,
  target: TeacherTarget,
  options: { temperature: number; alpha: number; divergence?: Divergence; skew?: number },
): { total: tf.Scalar; hard?: tf.Scalar; soft: tf.Scalar } {
  const t = options.temperature;
  const soft = tf.mul(
    divergenceLoss(options.divergence ?? 'forward_kl', studentLogits, target, t, options.skew),
    t * t,
  ) as tf.Scalar;
  if (options.alpha === 0 || !labels) return { total: soft, soft };
  const hard = crossEntropy(studentLogits, labels);
  const total = tf.add(tf.mul(hard, options.alpha), tf.mul(soft, 1 - options.alpha)) as tf.Scalar;
  return { total, hard, soft };
}

/**
 * Multi-label (sigmoid) KD: binary cross-entropy of sigmoid(z_s / T) against teacher sigmoid
 * targets, summed over classes, averaged over the batch. Dense target: teacher logits (sigmoid
 * of logits/T); sparse target: probabilities at the ids, 0 elsewhere (tail ignored).
 * BCE(x, p) = softplus(x) - p x, so the sparse part only needs x at the ids.
 */
export function sigmoidKd(studentLogits: tf.Tensor2D, target: TeacherTarget, temperature = 1): tf.Scalar {
  const x = temperature === 1 ? studentLogits : (tf.div(studentLogits, temperature) as tf.Tensor2D);
  const n = x.shape[0];
  const softplusSum = tf.sum(tf.softplus(x));
  let cross: tf.Tensor;
  if (target.kind === 'dense') {
    const p = tf.sigmoid(tf.div(target.logits, temperature));
    cross = tf.sum(tf.mul(p, x));
  } else {
    cross = tf.sum(tf.mul(tf.mul(target.probs, target.mask), gatherColumns(x, target.ids)));
  }
  return tf.div(tf.sub(softplusSum, cross), n) as tf.Scalar;
}

/**
 * Sigmoid Hinton KD: alpha * sigmoidCrossEntropy(y) + (1 - alpha) * T^2 * sigmoidKd(p_T, z_s / T)
 * (T^2 keeps the gradient scale for T != 1). Without `multiHot` or with alpha 0: the soft term only.
 */
export function sigmoidHintonKd(
  studentLogits: tf.Tensor2D,
  multiHot: tf.Tensor2D | undefined,
  target: TeacherTarget,
  options: { temperature: number; alpha: number },
): { total: tf.Scalar; hard?: tf.Scalar; soft: tf.Scalar } {
  const t = options.temperature;
  const soft = tf.mul(sigmoidKd(studentLogits, target, t), t * t) as tf.Scalar;
  if (options.alpha === 0 || !multiHot) return { total: soft, soft };
  const hard = sigmoidCrossEntropy(studentLogits, multiHot);
  const total = tf.add(tf.mul(hard, options.alpha), tf.mul(soft, 1 - options.alpha)) as tf.Scalar;
  return { total, hard, soft };
}

/** Multi-hot hard-label sigmoid cross-entropy, batch mean of the per-sample class sum. */
export function sigmoidCrossEntropy(studentLogits: tf.Tensor2D, multiHot: tf.Tensor2D): tf.Scalar {
  const n = studentLogits.shape[0];
  return tf.div(tf.sum(tf.sub(tf.softplus(studentLogits), tf.mul(multiHot, studentLogits))), n) as tf.Scalar;
}
