import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, encodeModel } from '@distillery/core/onnx/index';
import { compareEfficiency, modelCost } from '../src/index.js';

function tinyCnn() {
  return new GraphBuilder('tiny')
    .input('x', 'float32', ['batch', 1, 4, 4])
    .initializer('w', new Float32Array(18).fill(0.1), [2, 1, 3, 3])
    .initializer('b', new Float32Array(2), [2])
    .initializer('fw', new Float32Array(96).fill(0.01), [32, 3])
    .initializer('fb', new Float32Array(3), [3])
    .node('Conv', ['x', 'w', 'b'], ['c'], { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } })
    .node('Relu', ['c'], ['r'])
    .node('Flatten', ['r'], ['f'])
    .node('Gemm', ['f', 'fw', 'fb'], ['y'])
    .output('y', 'float32', ['batch', 3])
    .build();
}

test('parameters and FLOPs of a small CNN, counted by hand', () => {
  const cost = modelCost(tinyCnn(), { x: [1, 1, 4, 4] });
  assert.equal(cost.parameters, 18 + 2 + 96 + 3);
  // Conv: 32 outputs x 2 x 9 MACs + 32 bias adds; Relu 32; Gemm 2*32*3 + 3.
  assert.deepEqual(cost.flopsByOp, { Conv: 32 * 2 * 9 + 32, Relu: 32, Flatten: 0, Gemm: 2 * 32 * 3 + 3 });
  assert.equal(cost.flops, 608 + 32 + 195);
  assert.equal(modelCost(tinyCnn(), { x: [4, 1, 4, 4] }).flops, 4 * (608 + 32) + 4 * 192 + 4 * 3);
  const bad = new GraphBuilder('bad').input('x', 'float32', [1, 2]).node('TopK', ['x'], ['y']).output('y', 'float32', [1]).build();
  assert.throws(() => modelCost(bad, { x: [1, 2] }), /not implemented for op TopK/);
});

test('teacher vs student table under identical settings', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eff-test-'));
  try {
    const path = join(dir, 'm.onnx');
    writeFileSync(path, encodeModel(tinyCnn()));
    const r = await compareEfficiency({ name: 'teacher', path }, { name: 'student', path }, [2, 1, 4, 4], { iterations: 20, warmup: 2 });
    assert.equal(r.parameterReduction, 1);
    assert.equal(r.flopReduction, 1);
    for (const row of r.rows) {
      assert.ok(row.p50Ms > 0 && row.p50Ms <= row.p95Ms, `p50 ${row.p50Ms} p95 ${row.p95Ms}`);
      assert.ok(row.throughput > 0);
      assert.equal(row.batch, 2);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
