/**
 * Detection losses on NHWC tensors [n, h, w, channels] (docs/methods.md, "Detector training and
 * distillation losses"):
 *
 * - centerNetFocal: CenterNet's penalty-reduced pixel-wise focal loss on the class heatmaps
 *   (alpha 2, beta 4; Zhou et al. 2019 eq. 1, from CornerNet), summed and divided by the number of
 *   object centres (at least 1);
 * - maskedL1: the size / offset regression, L1 at object centre cells, divided by the number of
 *   supervised values (2 per centre) as the reference's RegL1Loss;
 * - heatmapKd: binary KL between the teacher's and the student's per-class centre probabilities at
 *   temperature T, times T^2, summed over cells and classes and divided by the same centre count as
 *   the focal term (so their weights compare);
 * - boxKd: L1 to the teacher's size and offset maps, each cell weighted by the teacher's highest
 *   class probability there (where the teacher sees a centre), divided by the weights' sum;
 * - featureMse: mean squared difference of two feature maps (FitNets-style imitation after the
 *   student's adapter);
 * - discriminatorLoss / generatorLoss: the adversarial pair, softplus(-D(real)) + softplus(D(fake))
 *   for the discriminator and the non-saturating softplus(-D(fake)) for the student, means over cells.
 *
 * Every function returns a scalar; the centre count and weights are numbers computed on the host.
 */
import * as tf from '@tensorflow/tfjs-core';

const FOCAL_ALPHA = 2;
const FOCAL_BETA = 4;

/** log sigmoid(z) = -softplus(-z), stable for large |z|. */
function logSigmoid(z: tf.Tensor): tf.Tensor {
  return tf.neg(tf.softplus(tf.neg(z)));
}

/**
 * Penalty-reduced focal loss. `target` holds the Gaussian heatmaps (1 exactly at centres), `positive`
 * is 1 where target == 1 and 0 elsewhere, `centres` the number of ones in `positive`.
 */
export function centerNetFocal(
  logits: tf.Tensor4D,
  target: tf.Tensor4D,
  positive: tf.Tensor4D,
  centres: number,
): tf.Scalar {
  return tf.tidy(() => {
    const p = tf.sigmoid(logits);
    const posTerm = tf.mul(tf.pow(tf.sub(1, p), FOCAL_ALPHA), logSigmoid(logits));
    const negWeight = tf.mul(tf.pow(tf.sub(1, target), FOCAL_BETA), tf.pow(p, FOCAL_ALPHA));
    const negTerm = tf.mul(negWeight, logSigmoid(tf.neg(logits)));
    const perCell = tf.add(tf.mul(positive, posTerm), tf.mul(tf.sub(1, positive), negTerm));
    return tf.div(tf.neg(tf.sum(perCell)), Math.max(1, centres)) as tf.Scalar;
  });
}

/** L1 over the cells where mask [n, h, w, 1] is 1, divided by the number of supervised values. */
export function maskedL1(pred: tf.Tensor4D, target: tf.Tensor4D, mask: tf.Tensor4D, centres: number): tf.Scalar {
  return tf.tidy(() => {
    const channels = pred.shape[3];
    const l1 = tf.sum(tf.mul(tf.abs(tf.sub(pred, target)), mask));
    return tf.div(l1, Math.max(1, centres * channels) + 1e-4) as tf.Scalar;
  });
}

/** T^2 * sum over cells and classes of KL(Bernoulli(sigmoid(t / T)) || Bernoulli(sigmoid(s / T))) / max(1, centres). */
export function heatmapKd(student: tf.Tensor4D, teacher: tf.Tensor4D, temperature: number, centres: number): tf.Scalar {
  return tf.tidy(() => {
    const s = tf.div(student, temperature);
    const t = tf.div(teacher, temperature);
    const q = tf.sigmoid(t);
    // KL = q (log q - log p) + (1 - q) (log(1 - q) - log(1 - p)), with log(1 - sigmoid(z)) = log sigmoid(-z).
    const kl = tf.add(
      tf.mul(q, tf.sub(logSigmoid(t), logSigmoid(s))),
      tf.mul(tf.sub(1, q), tf.sub(logSigmoid(tf.neg(t)), logSigmoid(tf.neg(s)))),
    );
    return tf.mul(tf.sum(kl), (temperature * temperature) / Math.max(1, centres)) as tf.Scalar;
  });
}

/**
 * L1 between student and teacher box maps (size and offset, [n, h, w, 2] each), each cell weighted
 * by `weight` [n, h, w, 1] (the teacher's max class probability), divided by 2 * sum(weight) per map.
 */
export function boxKd(
  student: { size: tf.Tensor4D; offset: tf.Tensor4D },
  teacher: { size: tf.Tensor4D; offset: tf.Tensor4D },
  weight: tf.Tensor4D,
): tf.Scalar {
  return tf.tidy(() => {
    const total = tf.add(tf.mul(tf.sum(weight), 2), 1e-4);
    const l1 = tf.add(
      tf.sum(tf.mul(tf.abs(tf.sub(student.size, teacher.size)), weight)),
      tf.sum(tf.mul(tf.abs(tf.sub(student.offset, teacher.offset)), weight)),
    );
    return tf.div(l1, total) as tf.Scalar;
  });
}

/** mean((a - b)^2) over every element. */
export function featureMse(a: tf.Tensor4D, b: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.square(tf.sub(a, b))) as tf.Scalar);
}

/** Discriminator: mean softplus(-D(real)) + mean softplus(D(fake)) over cells (D = logits of "teacher"). */
export function discriminatorLoss(real: tf.Tensor, fake: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.add(tf.mean(tf.softplus(tf.neg(real))), tf.mean(tf.softplus(fake))) as tf.Scalar);
}

/** Student against the discriminator (non-saturating): mean softplus(-D(fake)). */
export function generatorLoss(fake: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.softplus(tf.neg(fake))) as tf.Scalar);
}
