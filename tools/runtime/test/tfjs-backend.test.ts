import { test } from 'node:test';
import assert from 'node:assert/strict';
import { selectBackend } from '../src/tfjs/backend.js';
import { dense } from '../src/tfjs/dense.js';

test('auto selection falls back past the uninstallable tfjs-node packages to threaded wasm, logging each step', async () => {
  const lines: string[] = [];
  const choice = await selectBackend({ cpus: 2, gpus: [], log: (m) => lines.push(m) });
  const tf = choice.tf;
  // tfjs-node is optional; in this repo its native binding is never built (install scripts blocked).
  const nodeLoaded = !lines.some((l) => /backend tensorflow skipped/.test(l));
  assert.equal(choice.name, nodeLoaded ? 'tensorflow' : 'wasm');
  if (!nodeLoaded) assert.equal(choice.threads, 2);
  assert.ok(lines.some((l) => /tensorflow-gpu skipped: no GPU assigned/.test(l)));
  if (!nodeLoaded) assert.ok(lines.some((l) => /tfjs backend: wasm .*2 threads/.test(l)));
  // Gradients are registered (tfjs-core alone has none).
  assert.ok(tf.getGradient('Sum'));

  // dense(): value and gradients equal plain autodiff of relu(x W + b), hand-checked on a tiny case.
  const x = tf.tensor2d([
    [1, 2],
    [3, -4],
  ]);
  const w = tf.tensor2d([
    [1, -1, 0.5],
    [0.5, 1, -2],
  ]);
  const b = tf.tensor1d([0.1, 0.2, -0.3]);
  const f = (xx: typeof x, ww: typeof w, bb: typeof b) =>
    tf.sum(
      tf.mul(
        dense(xx, ww, bb, 'relu'),
        tf.tensor2d([
          [1, 2, 3],
          [4, 5, 6],
        ]),
      ),
    );
  const ref = (xx: typeof x, ww: typeof w, bb: typeof b) =>
    tf.sum(
      tf.mul(
        tf.relu(tf.add(tf.matMul(xx, ww), bb)),
        tf.tensor2d([
          [1, 2, 3],
          [4, 5, 6],
        ]),
      ),
    );
  // x W + b = [[2.1, 1.2, -3.8], [1.1, -6.8, 9.2]] -> relu -> weighted sum = 2.1 + 2.4 + 4.4 + 55.2
  assert.ok(Math.abs(f(x, w, b).dataSync()[0]! - 64.1) < 1e-4);
  const g1 = tf.grads((a, c, d) => f(a as typeof x, c as typeof w, d as typeof b))([x, w, b]);
  const g2 = tf.grads((a, c, d) => ref(a as typeof x, c as typeof w, d as typeof b))([x, w, b]);
  g1.forEach((g, i) =>
    assert.deepEqual(
      Array.from(g.dataSync()).map((v) => +v.toFixed(5)),
      Array.from(g2[i]!.dataSync()).map((v) => +v.toFixed(5)),
    ),
  );
  // A second call with other options keeps the first backend.
  assert.equal((await selectBackend({ cpus: 2, gpus: [] })).name, choice.name);
});
