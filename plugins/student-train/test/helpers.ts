/** Shared fixtures of the student-train tests. */
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import type { NamedVariable } from '@distillery/runtime/optim';

/** Small students by default; the rest of the params get the schema's defaults (core's makeTestContext). */
export function studentParams(params: Record<string, unknown>): Record<string, unknown> {
  return {
    ...params,
    student: {
      arch: 'mlp',
      hidden: [16],
      channels: [4],
      kernel: 3,
      batchNorm: true,
      sharedWidth: 8,
      verticalWidth: 4,
      selfPaced: true,
      ...(params.student as object),
    },
  };
}

/** Largest elementwise |a - b| (the lengths must agree). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Asserts that onnx.checker (full check) accepts the model at `path`; says so and passes when python3 has no onnx. */
export function assertOnnxChecker(path: string): void {
  const checker = spawnSync(
    '/usr/bin/python3',
    ['-c', 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', path],
    { encoding: 'utf8' },
  );
  if (checker.error || /No module named/.test(checker.stderr))
    console.log('# onnx.checker not run: python3 with onnx is not installed');
  else assert.equal(checker.status, 0, `onnx.checker: ${checker.stderr}`);
}

/**
 * Each parameter's gradient of `loss` (`grads`, by variable name) against central finite differences
 * along `direction(i)`: |analytic - numeric| <= tolerance * max(1, |numeric|) (a wrong gradient of one
 * tensor cannot hide in a sum over all of them).
 */
export function assertGradientsPerParameter(
  params: NamedVariable[],
  grads: Record<string, tf.Tensor>,
  loss: () => tf.Scalar,
  direction: (i: number) => tf.Tensor,
  tolerance: number,
  eps = 3e-3,
): void {
  params.forEach(({ name, variable: v }, i) => {
    const d = direction(i);
    const analytic = tf.sum(tf.mul(grads[v.name]!, d)).dataSync()[0]!;
    const step = (sign: number) => v.assign(tf.add(v, tf.mul(d, sign * eps)));
    step(1);
    const plus = loss().dataSync()[0]!;
    step(-2);
    const minus = loss().dataSync()[0]!;
    step(1);
    const numeric = (plus - minus) / (2 * eps);
    assert.ok(
      Math.abs(analytic - numeric) <= tolerance * Math.max(1, Math.abs(numeric)),
      `${name}: analytic ${analytic}, finite differences ${numeric}`,
    );
  });
}
