import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, encodeModel } from '@distillery/runtime/onnx';
import { modelCost } from '../src/index.js';
import { measureLatency } from '../src/classification/efficiency.js';

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
  const bad = new GraphBuilder('bad')
    .input('x', 'float32', [1, 2])
    .node('TopK', ['x'], ['y'])
    .output('y', 'float32', [1])
    .build();
  assert.throws(() => modelCost(bad, { x: [1, 2] }), /not implemented for op TopK/);
});

test('Split: its outputs take the given sizes along the axis and cost nothing; the ops after them are counted on those shapes', () => {
  const model = new GraphBuilder('split', { opset: 17 })
    .input('x', 'float32', ['batch', 6, 4, 4])
    .initializer('sizes', BigInt64Array.from([1n, 5n]), [2])
    .node('Split', ['x', 'sizes'], ['a', 'b'], { axis: { i: 1 } })
    .node('Sigmoid', ['a'], ['sa'])
    .node('Relu', ['b'], ['rb'])
    .output('sa', 'float32', ['batch', 1, 4, 4])
    .output('rb', 'float32', ['batch', 5, 4, 4])
    .build();
  const cost = modelCost(model, { x: [2, 6, 4, 4] });
  assert.deepEqual(cost.flopsByOp, { Split: 0, Sigmoid: 2 * 16, Relu: 2 * 5 * 16 });
});

test('an averaged-logits ensemble (Mul by 1/n, Sum of n, as teacher-ensemble writes it): n - 1 adds per element', () => {
  const model = new GraphBuilder('ensemble')
    .input('x', 'float32', ['batch', 4])
    .initializer('third', new Float32Array([1 / 3]), [])
    .node('Mul', ['x', 'third'], ['a'])
    .node('Mul', ['x', 'third'], ['b'])
    .node('Mul', ['x', 'third'], ['c'])
    .node('Sum', ['a', 'b', 'c'], ['y'])
    .output('y', 'float32', ['batch', 4])
    .build();
  const cost = modelCost(model, { x: [2, 4] });
  assert.deepEqual(cost.flopsByOp, { Mul: 3 * 8, Sum: 2 * 8 });
});

test('latency: percentiles, throughput, batch and provider of the measured runs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eff-test-'));
  try {
    const path = join(dir, 'm.onnx');
    writeFileSync(path, encodeModel(tinyCnn()));
    const row = await measureLatency(path, [2, 1, 4, 4], { iterations: 20, warmup: 2 });
    assert.ok(row.p50Ms > 0 && row.p50Ms <= row.p95Ms, `p50 ${row.p50Ms} p95 ${row.p95Ms}`);
    assert.ok(row.throughput > 0);
    assert.equal(row.batch, 2);
    assert.equal(row.iterations, 20);
    assert.equal(row.provider, 'cpu');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('latency with a GPU assigned, on a machine without the CUDA provider: measured on CPU, warned with the missing library', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eff-test-'));
  try {
    const path = join(dir, 'm.onnx');
    writeFileSync(path, encodeModel(tinyCnn()));
    const warnings: string[] = [];
    const stats = await measureLatency(path, [2, 1, 4, 4], {
      iterations: 5,
      warmup: 1,
      gpus: [0],
      warn: (m) => warnings.push(m),
    });
    assert.equal(stats.provider, 'cpu');
    assert.ok(stats.p50Ms > 0 && stats.throughput > 0);
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0]!,
      /CUDA execution provider unavailable on GPU 0 .*libonnxruntime_providers_shared\.so is not installed/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('FLOPs through shape-only ops (Transpose, Concat, Slice, Gather) and ReduceSum, checked against onnxruntime', async () => {
  // x [1,2,3] -> Transpose [1,3,2] -> Concat with itself on axis 2 [1,3,4] -> Slice rows 1..3 of axis 1 [1,2,4]
  // -> Gather columns [3,0,1] of axis 2 [1,2,3] -> Flatten [1,6] -> MatMul W[6,2] (2*6*2 = 24 FLOPs);
  // ReduceSum over axis 2 of the transposed x: one per input element (6).
  const model = new GraphBuilder('shapes', { opset: 13 })
    .input('x', 'float32', [1, 2, 3])
    .initializer('starts', BigInt64Array.from([1n]), [1])
    .initializer('ends', BigInt64Array.from([3n]), [1])
    .initializer('axes', BigInt64Array.from([1n]), [1])
    .initializer('idx', BigInt64Array.from([3n, 0n, 1n]), [3])
    .initializer('raxes', BigInt64Array.from([2n]), [1])
    .initializer(
      'W',
      Float32Array.from({ length: 12 }, (_, i) => i / 10),
      [6, 2],
    )
    .node('Transpose', ['x'], ['t'], { perm: { ints: [0, 2, 1] } })
    .node('ReduceSum', ['t', 'raxes'], ['s'], { keepdims: { i: 1 } })
    .node('Concat', ['t', 't'], ['c'], { axis: { i: 2 } })
    .node('Slice', ['c', 'starts', 'ends', 'axes'], ['sl'])
    .node('Gather', ['sl', 'idx'], ['g'], { axis: { i: 2 } })
    .node('Flatten', ['g'], ['f'])
    .node('MatMul', ['f', 'W'], ['y'])
    .output('y', 'float32', [1, 2])
    .output('s', 'float32', [1, 3, 1])
    .build();
  const cost = modelCost(model, { x: [1, 2, 3] });
  assert.deepEqual(cost.flopsByOp, {
    Transpose: 0,
    ReduceSum: 6,
    Concat: 0,
    Slice: 0,
    Gather: 0,
    Flatten: 0,
    MatMul: 24,
  });
  assert.equal(cost.parameters, 12);
  // The graph is valid and the shapes above are what onnxruntime computes.
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(encodeModel(model));
  const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 2, 3]) });
  assert.deepEqual(out.y!.dims, [1, 2]);
  assert.deepEqual(out.s!.dims, [1, 3, 1]);
  // Row of t = [[1,4],[2,5],[3,6]]; c rows 1..2 = [[2,5,2,5],[3,6,3,6]]; columns 3,0,1 -> [5,2,5, 6,3,6].
  const f = [5, 2, 5, 6, 3, 6];
  const expect = [0, 1].map((j) => f.reduce((s, v, k) => s + v * ((k * 2 + j) / 10), 0));
  Array.from(out.y!.data as Float32Array).forEach((v, j) => assert.ok(Math.abs(v - expect[j]!) < 1e-5));
  await session.release();
});
