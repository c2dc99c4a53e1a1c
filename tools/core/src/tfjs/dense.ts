/**
 * Dense (fully connected) layer with a hand-written backward pass.
 *
 * tfjs-core's autodiff of matMul computes dW = x^T dy and dx = dy W^T with matMul's transposeA /
 * transposeB flags; on tfjs-backend-wasm those paths bypass XNNPACK (measured ~40x and ~10x slower
 * than plain matMul). Here every product is a plain matMul on an explicitly transposed operand,
 * and the forward pass is one fused matMul + bias (+ relu) kernel.
 */
import * as tf from '@tensorflow/tfjs-core';

export type DenseActivation = 'linear' | 'relu';

/**
 * y = act(x W + b) for x [n, in], W [in, out], b [out]. Differentiable w.r.t. W and b always, and
 * w.r.t. x when `inputGrad` is true (false for a first layer fed with data: saves one matMul).
 */
export function dense(
  x: tf.Tensor2D,
  weight: tf.Tensor2D,
  bias: tf.Tensor1D,
  activation: DenseActivation = 'linear',
  inputGrad = true,
): tf.Tensor2D {
  const body = (w: tf.Tensor2D, b: tf.Tensor1D, input: tf.Tensor2D, save: tf.GradSaveFunc) => {
    const y = tf.fused.matMul({ a: input, b: w, bias: b, activation }) as tf.Tensor2D;
    save([input, w, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]): tf.Tensor[] => {
        const [xs, ws, ys] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const dz = activation === 'relu' ? tf.mul(dy, tf.step(ys)) as tf.Tensor2D : dy;
        const dw = tf.matMul(tf.transpose(xs), dz);
        const db = tf.sum(dz, 0);
        if (!inputGrad) return [dw, db];
        const dx = tf.matMul(dz, tf.transpose(ws));
        return [dw, db, dx];
      },
    };
  };
  if (inputGrad) {
    return tf.customGrad((w, b, input, save) =>
      body(w as tf.Tensor2D, b as tf.Tensor1D, input as tf.Tensor2D, save as tf.GradSaveFunc),
    )(weight, bias, x) as tf.Tensor2D;
  }
  // x is captured, not an input: the tape then asks for no gradient w.r.t. it.
  return tf.customGrad((w, b, save) => body(w as tf.Tensor2D, b as tf.Tensor1D, x, save as tf.GradSaveFunc))(
    weight,
    bias,
  ) as tf.Tensor2D;
}
