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
        const dz = activation === 'relu' ? (tf.mul(dy, tf.step(ys)) as tf.Tensor2D) : dy;
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

/**
 * Logits of a dense layer at a subset of its output columns: y = x W[:, cols] + b[cols] for
 * x [n, in], W [in, out], b [out], cols int32 [m] (distinct). Equal to dense(x, W, b)[:, cols]
 * without computing the other out - m columns. Gradients: dW and db are scattered back into
 * full-size (zero elsewhere) tensors, dx = dy W[:, cols]^T. tf.gather's own gradient needs
 * UnsortedSegmentSum, which tfjs-backend-wasm lacks; scatterND on rows is supported.
 */
export function denseColumns(
  x: tf.Tensor2D,
  weight: tf.Tensor2D,
  bias: tf.Tensor1D,
  cols: tf.Tensor1D,
  inputGrad = true,
): tf.Tensor2D {
  const [inDim, outDim] = weight.shape;
  const m = cols.shape[0];
  const body = (w: tf.Tensor2D, b: tf.Tensor1D, input: tf.Tensor2D, save: tf.GradSaveFunc) => {
    const wCols = tf.gather(w, cols, 1) as tf.Tensor2D; // [in, m]
    const y = tf.add(tf.matMul(input, wCols), tf.gather(b, cols)) as tf.Tensor2D;
    save([input, wCols, cols]); // saved tensors outlive the forward pass's tidy
    return {
      value: y,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]): tf.Tensor[] => {
        const [xs, ws, ids] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const index = tf.reshape(ids, [m, 1]);
        // dW[:, cols] = x^T dy, built transposed ([m, in] rows scattered into [out, in]).
        const dwT = tf.matMul(tf.transpose(dy), xs); // [m, in]
        const dw = tf.transpose(tf.scatterND(index, dwT, [outDim, inDim]));
        const db = tf.scatterND(index, tf.sum(dy, 0), [outDim]);
        if (!inputGrad) return [dw, db];
        return [dw, db, tf.matMul(dy, tf.transpose(ws))];
      },
    };
  };
  if (inputGrad) {
    return tf.customGrad((w, b, input, save) =>
      body(w as tf.Tensor2D, b as tf.Tensor1D, input as tf.Tensor2D, save as tf.GradSaveFunc),
    )(weight, bias, x) as tf.Tensor2D;
  }
  return tf.customGrad((w, b, save) => body(w as tf.Tensor2D, b as tf.Tensor1D, x, save as tf.GradSaveFunc))(
    weight,
    bias,
  ) as tf.Tensor2D;
}

/**
 * Squared L2 norm of every row of x W + b, ||W^T h + b||^2 = h^T G h + 2 h^T (W b) + b^T b with
 * the Gram matrix G = W W^T [in, in], for h = rows of x [n, in], W [in, out], b [out]: O(in^2 out)
 * once plus O(n in^2), never the [n, out] logits. Gradients (dy [n] per-row weights, H = x):
 * dH = 2 dy (H G + W b); dW = 2 (H^T diag(dy) H) W + 2 (H^T dy) b^T; db = 2 W^T (H^T dy) + 2 (sum dy) b.
 */
export function rowNormsSquared(x: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor1D {
  return tf.customGrad((w, b, input, save) => {
    const W = w as tf.Tensor2D;
    const bv = b as tf.Tensor1D;
    const h = input as tf.Tensor2D;
    const gram = tf.matMul(W, tf.transpose(W)); // [in, in]
    const wb = tf.reshape(tf.matMul(W, tf.reshape(bv, [-1, 1])), [1, -1]); // [1, in]
    const hg = tf.matMul(h, gram);
    const value = tf.add(
      tf.add(tf.sum(tf.mul(hg, h), 1), tf.mul(tf.sum(tf.mul(h, wb), 1), 2)),
      tf.sum(tf.square(bv)),
    ) as tf.Tensor1D;
    (save as tf.GradSaveFunc)([W, bv, h, hg, wb]);
    return {
      value,
      gradFunc: (dy: tf.Tensor1D, saved: tf.Tensor[]): tf.Tensor[] => {
        const [Ws, bs, hs, hgs, wbs] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const d = tf.reshape(dy, [-1, 1]);
        const dh = tf.mul(tf.add(hgs, wbs), tf.mul(d, 2));
        const hT = tf.transpose(hs); // [in, n]
        const weightedH = tf.mul(hs, d); // diag(dy) H
        const hd = tf.matMul(hT, d); // [in, 1] = H^T dy
        const dw = tf.mul(tf.add(tf.matMul(tf.matMul(hT, weightedH), Ws), tf.matMul(hd, tf.reshape(bs, [1, -1]))), 2);
        const db = tf.mul(tf.add(tf.reshape(tf.matMul(tf.transpose(Ws), hd), [-1]), tf.mul(bs, tf.sum(dy))), 2);
        return [dw, db, dh];
      },
    };
  })(weight, bias, x) as tf.Tensor1D;
}
