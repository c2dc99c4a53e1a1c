/**
 * Feature distillation terms on tfjs tensors: FitNets hints (Romero et al., ICLR 2015) and
 * attention transfer (Zagoruyko & Komodakis, ICLR 2017). Feature maps here are NHWC
 * [n, h, w, c] (the student's layout); flat features are [n, d].
 *
 * - Hint: MSE between a learned linear regressor r(s) of the student activation s and the teacher
 *   feature t, averaged over every element: mean_{b,i} (r(s)_{b,i} - t_{b,i})^2. On maps r is a
 *   1x1 convolution (one dense layer applied at each position, shared weights); on flat
 *   features a dense layer. (FitNets writes 1/2 ||t - r(s)||^2 per sample; the mean only rescales
 *   it, which the loss weight absorbs.)
 * - Attention: Q(A) = sum_c |A_c|^2 (the paper's F_sum^p with p = 2) flattened to [n, h*w] and
 *   divided by its L2 norm; term = 1/2 * mean_b || Q_s,b - Q_t,b ||_2 (the paper's beta/2 sum_j
 *   || . ||_p with p = 2, one pair of maps, beta = the loss weight).
 */
import * as tf from '@tensorflow/tfjs-core';
import { dense } from '@distillery/runtime/tfjs';

/** Floor of an attention map's norm (an all-zero map stays zero instead of dividing by 0). */
const NORM_EPS = 1e-12;
/** Added under the square root of the distance so its gradient is finite where the maps agree. */
const DIST_EPS = 1e-12;

/** The learned linear map of a hint: weight [inDim, outDim] (1x1 conv on maps), bias [outDim]. */
export interface HintRegressor {
  weight: tf.Tensor2D;
  bias: tf.Tensor1D;
}

/** Spatial size [h, w] of an NHWC map, for messages. */
function describe(t: tf.Tensor): string {
  return `[${t.shape.slice(1).join(', ')}]`;
}

/**
 * Average-pools an NHWC map to [h, w] when its size is an integer multiple of it in both axes
 * (reshape-and-mean: differentiable on every tfjs backend). Returns undefined when it is not.
 */
export function poolTo(x: tf.Tensor4D, h: number, w: number): tf.Tensor4D | undefined {
  const [n, hx, wx, c] = x.shape;
  if (hx === h && wx === w) return x;
  if (hx < h || wx < w || hx % h !== 0 || wx % w !== 0) return undefined;
  const fh = hx / h;
  const fw = wx / w;
  const rows = tf.mean(tf.reshape(x, [n * h, fh, wx * c]), 1); // [n*h, wx*c]
  const cols = tf.mean(tf.reshape(rows, [n * h * w, fw, c]), 1); // [n*h*w, c]
  return tf.reshape(cols, [n, h, w, c]);
}

/**
 * Brings a student and a teacher map to one spatial size: equal sizes pass; otherwise the larger
 * one is average-pooled when its size is an integer multiple of the smaller's in both axes.
 * Any other pair is refused with both shapes named (`what` says which term and layers).
 */
export function matchSpatial(
  student: tf.Tensor4D,
  teacher: tf.Tensor4D,
  what: string,
  named: [number[], number[]] = [student.shape.slice(1), teacher.shape.slice(1)],
): [tf.Tensor4D, tf.Tensor4D] {
  const [, hs, ws] = student.shape;
  const [, ht, wt] = teacher.shape;
  if (hs === ht && ws === wt) return [student, teacher];
  const pooledStudent = hs >= ht && ws >= wt ? poolTo(student, ht, wt) : undefined;
  if (pooledStudent) return [pooledStudent, teacher];
  const pooledTeacher = ht >= hs && wt >= ws ? poolTo(teacher, hs, ws) : undefined;
  if (pooledTeacher) return [student, pooledTeacher];
  throw new Error(
    `${what}: student map [${named[0].join(', ')}] (h, w, c) and teacher map [${named[1].join(', ')}] (h, w, c) differ in spatial size, ` +
      'and neither is an integer multiple of the other in both axes (choose a student layer or teacher feature of a matching size)',
  );
}

/**
 * FitNets hint: mean over all elements of (r(s) - t)^2. `student` and `teacher` are both NHWC maps
 * of one spatial size (r a 1x1 conv: [c_s] -> [c_t] at each position) or both [n, d] (r dense).
 */
export function hintLoss(student: tf.Tensor, teacher: tf.Tensor, regressor: HintRegressor): tf.Scalar {
  const inDim = student.shape[student.rank - 1]!;
  const outDim = teacher.shape[teacher.rank - 1]!;
  if (regressor.weight.shape[0] !== inDim || regressor.weight.shape[1] !== outDim) {
    throw new Error(
      `hint: regressor is [${regressor.weight.shape}] but maps ${inDim} student channels onto ${outDim} teacher channels`,
    );
  }
  const rows = student.size / inDim;
  if (teacher.size / outDim !== rows)
    throw new Error(
      `hint: student ${describe(student)} and teacher ${describe(teacher)} have different numbers of positions`,
    );
  // runtime's dense, not tf.matMul: matMul's autodiff runs transposed products that bypass XNNPACK
  // on wasm (measured 2026-12-03: 22 of the hint step's ms, and 2.5x the MLP's step time).
  const mapped = dense(tf.reshape(student, [rows, inDim]) as tf.Tensor2D, regressor.weight, regressor.bias, 'linear');
  return tf.mean(tf.squaredDifference(mapped, tf.reshape(teacher, [rows, outDim]))) as tf.Scalar;
}

/** Attention energy sum_c A_c^2 of an NHWC map, as [n, h, w, 1]. */
export function attentionEnergy(a: tf.Tensor4D): tf.Tensor4D {
  return tf.sum(tf.square(a), 3, true) as tf.Tensor4D;
}

/** An energy map [n, h, w, 1] flattened to [n, h*w] and divided by its L2 norm per sample. */
export function normaliseAttention(energy: tf.Tensor4D): tf.Tensor2D {
  const [n, h, w] = energy.shape;
  const q = tf.reshape(energy, [n, h * w]);
  const norm = tf.maximum(tf.sqrt(tf.sum(tf.square(q), 1, true)), NORM_EPS);
  return tf.div(q, norm) as tf.Tensor2D;
}

/** Q = sum over channels of A^2 of an NHWC map, flattened to [n, h*w] and L2-normalised per sample. */
export function attentionMap(a: tf.Tensor4D): tf.Tensor2D {
  return normaliseAttention(attentionEnergy(a));
}

/**
 * Attention transfer: 1/2 * mean_b || Q_s,b - Q_t,b ||_2 of the normalised attention maps. A map
 * of another spatial size is average-pooled to the other's when the sizes are integer multiples
 * (the pooled attention is the mean energy over each block); any other mismatch is refused.
 */
export function attentionLoss(student: tf.Tensor4D, teacher: tf.Tensor4D, what = 'attention'): tf.Scalar {
  // Resized as energy maps (the channel counts may differ); the message names the input shapes.
  const [es, et] = matchSpatial(attentionEnergy(student), attentionEnergy(teacher), what, [
    student.shape.slice(1),
    teacher.shape.slice(1),
  ]);
  const dist = tf.sqrt(tf.add(tf.sum(tf.square(tf.sub(normaliseAttention(es), normaliseAttention(et))), 1), DIST_EPS));
  return tf.mul(tf.mean(dist), 0.5) as tf.Scalar;
}
