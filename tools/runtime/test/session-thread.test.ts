import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/rng.js';
import { GraphBuilder, writeModelFile } from '../src/onnx/index.js';
import { ThreadedSession } from '../src/onnx/session-thread.js';

/** y = x @ W + b, relu(y) as a second output; W [4, 3]. */
function linearModel(path: string, w: Float32Array, b: Float32Array): void {
  writeModelFile(
    path,
    new GraphBuilder('lin', { opset: 13 })
      .input('x', 'float32', ['N', 4])
      .initializer('W', w, [4, 3])
      .initializer('b', b, [3])
      .node('Gemm', ['x', 'W', 'b'], ['y'])
      .node('Relu', ['y'], ['r'])
      .output('y', 'float32', ['N', 3])
      .output('r', 'float32', ['N', 3])
      .build(),
  );
}

test('ThreadedSession: outputs as computed here, inputs handed back, queued runs in order, errors named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'session-thread-'));
  try {
    const rng = new Rng(3);
    const w = Float32Array.from({ length: 12 }, () => rng.next() * 2 - 1);
    const b = Float32Array.from({ length: 3 }, () => rng.next() - 0.5);
    const model = join(dir, 'lin.onnx');
    linearModel(model, w, b);
    const session = await ThreadedSession.open(model, { threads: 1 });
    try {
      assert.deepEqual(session.inputNames, ['x']);
      assert.deepEqual(session.outputNames, ['y', 'r']);
      assert.deepEqual(session.inputMetadata[0], { name: 'x', isTensor: true, type: 'float32', shape: ['N', 4] });
      // Several runs in flight at once: each answer belongs to its own input.
      const inputs = [2, 5, 1].map((n) => Float32Array.from({ length: n * 4 }, () => rng.next() * 4 - 2));
      const copies = inputs.map((x) => x.slice());
      const results = await Promise.all(
        inputs.map((x) => session.run({ x: { type: 'float32', data: x, dims: [x.length / 4, 4] } }, ['y', 'r'])),
      );
      assert.equal(inputs[0]!.length, 0, 'the input buffer was transferred to the worker');
      results.forEach((res, k) => {
        const x = copies[k]!;
        const n = x.length / 4;
        assert.deepEqual(Array.from(res.inputs.x!.data as Float32Array), Array.from(x), 'the same input comes back');
        assert.deepEqual(res.outputs.y!.dims, [n, 3]);
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < 3; j++) {
            let s = b[j]!;
            for (let q = 0; q < 4; q++) s += x[i * 4 + q]! * w[q * 3 + j]!;
            assert.ok(Math.abs(Number(res.outputs.y!.data[i * 3 + j]) - s) < 1e-5, `y[${i},${j}]`);
            assert.ok(Math.abs(Number(res.outputs.r!.data[i * 3 + j]) - Math.max(0, s)) < 1e-5, `r[${i},${j}]`);
          }
        }
      });
      // A wrong input width is rejected with onnxruntime's message; the session stays usable.
      await assert.rejects(
        session.run({ x: { type: 'float32', data: new Float32Array(6), dims: [2, 3] } }, ['y']),
        /dim|shape|Got/i,
      );
      const again = await session.run({ x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } }, ['y']);
      assert.deepEqual(
        Array.from(again.outputs.y!.data as Float32Array, (v) => Math.round(v * 1e5) / 1e5),
        Array.from(b, (v) => Math.round(v * 1e5) / 1e5),
      );
    } finally {
      await session.release();
    }
    await assert.rejects(ThreadedSession.open(join(dir, 'missing.onnx'), { threads: 1 }), /missing\.onnx: cannot load/);
    writeFileSync(join(dir, 'junk.onnx'), 'not a model');
    await assert.rejects(ThreadedSession.open(join(dir, 'junk.onnx'), { threads: 1 }), /junk\.onnx: cannot load/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
