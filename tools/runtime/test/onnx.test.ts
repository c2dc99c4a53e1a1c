import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/rng.js';
import { GraphBuilder, decodeModel, encodeModel, readModelFile, writeModelFile } from '../src/onnx/index.js';

/** Seeded uniform [0, 1) stream (the project's Rng), so fixtures are reproducible. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}
const randn = (r: () => number, n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);

/** Reference in float64: y = relu(alpha * x @ W^T + beta * b) for W [out, in]. */
function gemmRelu(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  n: number,
  inDim: number,
  outDim: number,
  alpha: number,
  beta: number,
): Float64Array {
  const y = new Float64Array(n * outDim);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let k = 0; k < inDim; k++) s += x[i * inDim + k]! * w[o * inDim + k]!;
      y[i * outDim + o] = Math.max(0, alpha * s + beta * b[o]!);
    }
  }
  return y;
}

function softmaxRows(z: Float64Array, n: number, c: number): Float64Array {
  const out = new Float64Array(z.length);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, z[i * c + j]!);
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(z[i * c + j]! - m);
    for (let j = 0; j < c; j++) out[i * c + j] = Math.exp(z[i * c + j]! - m) / s;
  }
  return out;
}

test('onnx: Gemm(transB, alpha, beta) -> Relu -> MatMul -> Softmax runs in onnxruntime-node with the expected values', async () => {
  const ort = await import('onnxruntime-node');
  const r = rng(7);
  const n = 5,
    inDim = 4,
    hidden = 6,
    classes = 3;
  const w1 = randn(r, hidden * inDim),
    b1 = randn(r, hidden),
    w2 = randn(r, hidden * classes),
    x = randn(r, n * inDim);
  const model = new GraphBuilder('mlp', { opset: 17 })
    .input('x', 'float32', ['batch', inDim])
    .initializer('w1', w1, [hidden, inDim])
    .initializer('b1', b1, [hidden])
    .initializer('w2', w2, [hidden, classes])
    .node('Gemm', ['x', 'w1', 'b1'], ['h'], { transB: { i: 1 }, alpha: { f: 0.5 }, beta: { f: 2 } })
    .node('Relu', ['h'], ['hr'])
    .node('MatMul', ['hr', 'w2'], ['logits'])
    .node('Softmax', ['logits'], ['probs'], { axis: { i: -1 } })
    .output('logits', 'float32', ['batch', classes])
    .output('probs', 'float32', ['batch', classes])
    .build();
  const bytes = encodeModel(model);
  const session = await ort.InferenceSession.create(bytes);
  assert.deepEqual(session.inputNames, ['x']);
  const out = await session.run({ x: new ort.Tensor('float32', x, [n, inDim]) });
  const h = gemmRelu(x, w1, b1, n, inDim, hidden, 0.5, 2);
  const logits = new Float64Array(n * classes);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < classes; c++) {
      let s = 0;
      for (let k = 0; k < hidden; k++) s += h[i * hidden + k]! * w2[k * classes + c]!;
      logits[i * classes + c] = s;
    }
  const probs = softmaxRows(logits, n, classes);
  const gotLogits = out.logits!.data as Float32Array;
  const gotProbs = out.probs!.data as Float32Array;
  for (let i = 0; i < n * classes; i++) {
    assert.ok(Math.abs(gotLogits[i]! - logits[i]!) < 1e-5, `logit ${i}: ${gotLogits[i]} vs ${logits[i]}`);
    assert.ok(Math.abs(gotProbs[i]! - probs[i]!) < 1e-6, `prob ${i}: ${gotProbs[i]} vs ${probs[i]}`);
  }
  await session.release();
});

test('onnx: Sigmoid and int64 Reshape constant; decode(encode(m)) keeps graph, attributes and data', async () => {
  const ort = await import('onnxruntime-node');
  const model = new GraphBuilder('sig', { metadata: { teacher: 'demo' } })
    .input('x', 'float32', [2, 3])
    .initializer('shape', BigInt64Array.from([3n, 2n]), [2])
    .node('Reshape', ['x', 'shape'], ['xr'])
    .node('Sigmoid', ['xr'], ['y'])
    .output('y', 'float32', [3, 2])
    .build();
  const decoded = decodeModel(encodeModel(model));
  assert.equal(decoded.irVersion, 8);
  assert.deepEqual(decoded.opsetImports, [{ domain: '', version: 17 }]);
  assert.deepEqual(decoded.metadata, { teacher: 'demo' });
  assert.deepEqual(decoded.graph.inputs, [{ name: 'x', elemType: 'float32', shape: [2, 3] }]);
  assert.deepEqual(
    decoded.graph.nodes.map((nd) => nd.opType),
    ['Reshape', 'Sigmoid'],
  );
  assert.deepEqual(Array.from(decoded.graph.initializers[0]!.data as BigInt64Array), [3n, 2n]);
  // Attributes of every kind survive the round trip.
  const attrs = new GraphBuilder('a')
    .input('x', 'float32', [1])
    .node('Identity', ['x'], ['y'], {
      f: { f: 0.25 },
      i: { i: -3 },
      s: { s: 'héllo' },
      fs: { floats: [1.5, -2] },
      is: { ints: [1, 2, 3] },
      ss: { strings: ['a', 'b'] },
    })
    .output('y', 'float32', [1])
    .build();
  assert.deepEqual(decodeModel(encodeModel(attrs)).graph.nodes[0]!.attributes, attrs.graph.nodes[0]!.attributes);

  const session = await ort.InferenceSession.create(encodeModel(decoded));
  const x = Float32Array.from([-2, -1, 0, 1, 2, 3]);
  const y = (await session.run({ x: new ort.Tensor('float32', x, [2, 3]) })).y!;
  assert.deepEqual(y.dims, [3, 2]);
  for (let i = 0; i < 6; i++) assert.ok(Math.abs((y.data as Float32Array)[i]! - 1 / (1 + Math.exp(-x[i]!))) < 1e-6);
  await session.release();
});

test('onnx: builder catches undefined values and size mismatches; files are written atomically and bad files are named', async () => {
  assert.throws(
    () => new GraphBuilder('g').input('x', 'float32', [1]).node('Relu', ['nope'], ['y']),
    /node Relu_0 \(Relu\) reads undefined value nope/,
  );
  assert.throws(
    () => new GraphBuilder('g').initializer('w', new Float32Array(5), [2, 3]),
    /initializer w has 5 values/,
  );
  assert.throws(
    () => new GraphBuilder('g').input('x', 'float32', [1]).output('z', 'float32', [1]),
    /output z is never produced/,
  );
  const dir = mkdtempSync(join(tmpdir(), 'onnx-'));
  try {
    const model = new GraphBuilder('g')
      .input('x', 'float32', [1])
      .node('Relu', ['x'], ['y'])
      .output('y', 'float32', [1])
      .build();
    const path = join(dir, 'm.onnx');
    writeModelFile(path, model);
    assert.deepEqual(readdirSync(dir), ['m.onnx']);
    assert.equal((await readModelFile(path)).graph.nodes[0]!.opType, 'Relu');
    writeFileSync(join(dir, 'bad.onnx'), Buffer.from('this is not a model at all'));
    await assert.rejects(readModelFile(join(dir, 'bad.onnx')), (e: Error) => e.message.includes(join(dir, 'bad.onnx')));
    await assert.rejects(readModelFile(join(dir, 'missing.onnx')), /missing.onnx: cannot read/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
