/**
 * Imported ONNX students: graphs built with the project's GraphBuilder covering every supported op
 * run in tfjs as in onnxruntime (1e-4), their gradients match central finite differences, the
 * export keeps the graph and passes onnx.checker, and unsupported ops fail before training.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { GraphBuilder, writeModelFile, type OnnxModel } from '@distillery/runtime/onnx';
import { createStudent, type Student } from '../src/models/student.js';
import { OnnxStudent } from '../src/models/onnx/student.js';
import { exportOnnx } from '../src/train.js';
import { Rng } from '../src/rng.js';
import { assertGradientsPerParameter, assertOnnxChecker, maxAbsDiff } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'student-train-onnx-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

const H = 8;
const W = 8;
const C = 2;
const CLASSES = 5;
const rng = new Rng(11);
const normal = (n: number, scale = 1) => Float32Array.from({ length: n }, () => scale * rng.normal());

/** A CNN over NCHW [batch, 2, 8, 8]: every conv/pool/shape op of the supported set. */
function cnnModel(opset = 17): OnnxModel {
  const b = new GraphBuilder('cnn', { opset });
  b.input('x', 'float32', ['batch', C, H, W]);
  // conv a: 3x3, pads 1, groups 2 (2 -> 4 channels)
  b.initializer('a.w', normal(4 * 1 * 9, 0.5), [4, 1, 3, 3]).initializer('a.b', normal(4, 0.1), [4]);
  b.node(
    'Conv',
    ['x', 'a.w', 'a.b'],
    ['a'],
    { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, group: { i: 2 } },
    { name: 'conv_a' },
  );
  b.initializer(
    'bn.s',
    Float32Array.from({ length: 4 }, () => 1 + 0.2 * rng.normal()),
    [4],
  ).initializer('bn.b', normal(4, 0.1), [4]);
  b.initializer('bn.m', normal(4, 0.1), [4]).initializer(
    'bn.v',
    Float32Array.from({ length: 4 }, () => 0.5 + rng.next()),
    [4],
  );
  b.node(
    'BatchNormalization',
    ['a', 'bn.s', 'bn.b', 'bn.m', 'bn.v'],
    ['a.bn'],
    { epsilon: { f: 1e-5 }, momentum: { f: 0.9 } },
    { name: 'bn' },
  );
  b.node('LeakyRelu', ['a.bn'], ['a.act'], { alpha: { f: 0.1 } });
  // branch 1: strided conv with asymmetric pads; branch 2: dilated conv; both [batch, 3, 4, 4]
  b.initializer('s.w', normal(3 * 4 * 9, 0.3), [3, 4, 3, 3]);
  b.node(
    'Conv',
    ['a.act', 's.w'],
    ['s'],
    { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 0, 0] }, strides: { ints: [2, 2] } },
    { name: 'conv_strided' },
  );
  b.initializer('d.w', normal(3 * 4 * 4, 0.3), [3, 4, 2, 2]).initializer('d.b', normal(3, 0.1), [3]);
  b.node(
    'Conv',
    ['a.act', 'd.w', 'd.b'],
    ['d.full'],
    { kernel_shape: { ints: [2, 2] }, dilations: { ints: [2, 2] }, pads: { ints: [1, 1, 1, 1] } },
    { name: 'conv_dilated' },
  );
  b.node('MaxPool', ['d.full'], ['d'], {
    kernel_shape: { ints: [3, 3] },
    strides: { ints: [2, 2] },
    pads: { ints: [1, 1, 1, 1] },
  });
  b.node('Concat', ['s', 'd'], ['cat'], { axis: { i: 1 } });
  b.node('Tanh', ['cat'], ['cat.t']);
  b.node('AveragePool', ['cat.t'], ['avg'], {
    kernel_shape: { ints: [3, 3] },
    strides: { ints: [1, 1] },
    pads: { ints: [1, 1, 1, 1] },
  });
  b.node(
    'MaxPool',
    ['avg'],
    ['pool'],
    { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } },
    { name: 'pool2' },
  );
  b.node('GlobalAveragePool', ['cat.t'], ['gap']);
  // flatten as PyTorch's x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape
  b.node('Shape', ['pool'], ['pool.shape']);
  b.initializer('zero', new BigInt64Array([0n]), []);
  b.node('Gather', ['pool.shape', 'zero'], ['batch'], { axis: { i: 0 } });
  b.initializer('axes0', new BigInt64Array([0n]), [1]);
  b.node('Unsqueeze', ['batch', 'axes0'], ['batch1']);
  b.node('Constant', [], ['minus1'], {
    value: { t: { name: 'minus1', dataType: 'int64', dims: [1], data: new BigInt64Array([-1n]) } },
  });
  b.node('Concat', ['batch1', 'minus1'], ['flat.shape'], { axis: { i: 0 } });
  b.node('Reshape', ['pool', 'flat.shape'], ['flat1']); // [batch, 24]
  b.node('Flatten', ['gap'], ['flat2'], { axis: { i: 1 } }); // [batch, 6]
  b.node('Concat', ['flat1', 'flat2'], ['flat'], { axis: { i: 1 } });
  b.node('Dropout', ['flat'], ['flat.d']);
  b.initializer('fc.w', normal(CLASSES * 30, 0.3), [CLASSES, 30]).initializer('fc.b', normal(CLASSES, 0.1), [CLASSES]);
  b.node('Gemm', ['flat.d', 'fc.w', 'fc.b'], ['logits'], { transB: { i: 1 } }, { name: 'fc' });
  b.output('logits', 'float32', ['batch', CLASSES]);
  return b.build();
}

/** An MLP over [batch, 128] (the flattened HWC sample): the dense and elementwise ops. */
function mlpModel(): OnnxModel {
  const d = H * W * C;
  const b = new GraphBuilder('mlp', { opset: 17 });
  b.input('x', 'float32', ['batch', d]);
  b.initializer('w0', normal(d * 16, 0.1), [d, 16]).initializer('b0', normal(16, 0.1), [16]);
  b.node('MatMul', ['x', 'w0'], ['h0.mm'])
    .node('Add', ['h0.mm', 'b0'], ['h0.pre'])
    .node('Relu', ['h0.pre'], ['h0'], {}, { name: 'relu0' });
  b.initializer('scale', normal(16, 0.5), [16]).initializer('shift', normal(16, 0.1), [16]);
  b.node('Mul', ['h0', 'scale'], ['h1.m']).node('Sub', ['h1.m', 'shift'], ['h1.s']);
  b.initializer('two', new Float32Array([2]), []);
  b.node('Div', ['h1.s', 'two'], ['h1.d']);
  // GELU as PyTorch exports it below opset 20: x * 0.5 * (1 + erf(x / sqrt 2))
  b.initializer('sqrt2', new Float32Array([Math.SQRT2]), [])
    .initializer('one', new Float32Array([1]), [])
    .initializer('half', new Float32Array([0.5]), []);
  b.node('Div', ['h1.d', 'sqrt2'], ['g.a'])
    .node('Erf', ['g.a'], ['g.e'])
    .node('Add', ['g.e', 'one'], ['g.p'])
    .node('Mul', ['h1.d', 'g.p'], ['g.m'])
    .node('Mul', ['g.m', 'half'], ['h1']);
  b.node('Sigmoid', ['h1'], ['h1.sig']).node('Identity', ['h1.sig'], ['h1.id']);
  b.initializer('w2', normal(16 * 12, 0.3), [16, 12]).initializer('b2', normal(12, 0.1), [12]);
  b.node('Gemm', ['h1.id', 'w2', 'b2'], ['h2'], { alpha: { f: 0.8 }, beta: { f: 1.2 } });
  b.node('Softmax', ['h2'], ['h2.sm'], { axis: { i: 1 } });
  b.initializer('w3', normal(12 * CLASSES, 1), [12, CLASSES]).initializer('b3', normal(CLASSES, 0.1), [CLASSES]);
  b.node('Gemm', ['h2.sm', 'w3', 'b3'], ['h3']);
  b.node('Transpose', ['h3'], ['h3.t'], { perm: { ints: [1, 0] } }).node('Transpose', ['h3.t'], ['h3.tt'], {
    perm: { ints: [1, 0] },
  });
  b.node('LogSoftmax', ['h3.tt'], ['logits'], { axis: { i: -1 } });
  b.output('logits', 'float32', ['batch', CLASSES]);
  return b.build();
}

/** GELU (opset 20) and a 1-d batch norm on [batch, features]. */
function geluModel(): OnnxModel {
  const d = H * W * C;
  const b = new GraphBuilder('gelu', { opset: 20 });
  b.input('x', 'float32', ['batch', H, W, C]);
  b.node('Flatten', ['x'], ['flat']);
  b.initializer('w', normal(CLASSES * d, 0.1), [CLASSES, d]).initializer('b', normal(CLASSES, 0.1), [CLASSES]);
  b.node('Gemm', ['flat', 'w', 'b'], ['h'], { transB: { i: 1 } });
  b.initializer(
    's',
    Float32Array.from({ length: CLASSES }, () => 1 + 0.1 * rng.normal()),
    [CLASSES],
  ).initializer('o', normal(CLASSES, 0.1), [CLASSES]);
  b.initializer('m', normal(CLASSES, 0.1), [CLASSES]).initializer(
    'v',
    Float32Array.from({ length: CLASSES }, () => 0.5 + rng.next()),
    [CLASSES],
  );
  b.node('BatchNormalization', ['h', 's', 'o', 'm', 'v'], ['h.bn']);
  b.node('Gelu', ['h.bn'], ['g'])
    .node('Gelu', ['h.bn'], ['g.tanh'], { approximate: { s: 'tanh' } })
    .node('Add', ['g', 'g.tanh'], ['logits']);
  b.output('logits', 'float32', ['batch', CLASSES]);
  return b.build();
}

const MODELS: [string, () => OnnxModel][] = [
  ['cnn', () => cnnModel()],
  ['mlp', mlpModel],
  ['gelu', geluModel],
];

function importModel(name: string, model: OnnxModel, options: { reinit?: boolean } = {}): Student {
  const path = join(root, `${name}.onnx`);
  writeModelFile(path, model);
  return createStudent({ arch: 'onnx', model: path, reinit: options.reinit ?? false }, [H, W, C], CLASSES, 5);
}

/** HWC samples [n, 8, 8, 2]; the NCHW copy for onnxruntime when the model takes NCHW. */
function batch(n: number): { hwc: Float32Array; nchw: Float32Array } {
  const hwc = normal(n * H * W * C);
  const nchw = new Float32Array(hwc.length);
  for (let s = 0; s < n; s++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < C; c++) {
          nchw[((s * C + c) * H + y) * W + x] = hwc[((s * H + y) * W + x) * C + c]!;
        }
  return { hwc, nchw };
}

async function ortLogits(
  path: string,
  model: OnnxModel,
  data: { hwc: Float32Array; nchw: Float32Array },
  n: number,
): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(path);
  const dims = (model.graph.inputs[0]!.shape ?? []).slice(1) as number[];
  const x = dims.length === 3 && dims[0] === C ? data.nchw : data.hwc;
  const out = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', x, [n, ...dims]) });
  return out[session.outputNames[0]!]!.data as Float32Array;
}

for (const [name, make] of MODELS) {
  test(`${name}: the imported graph's tfjs forward equals onnxruntime within 1e-4`, async () => {
    const model = make();
    const student = importModel(name, model);
    const n = 6;
    const data = batch(n);
    const want = await ortLogits(join(root, `${name}.onnx`), model, data, n);
    const got = tf.tidy(() => student.apply(tf.tensor(data.hwc, [n, H, W, C]), false).dataSync());
    const diff = maxAbsDiff(got, want);
    assert.ok(diff < 1e-4, `max |tfjs - onnxruntime| = ${diff}`);
  });

  test(`${name}: gradients of every trained initializer match central finite differences`, () => {
    const student = importModel(`${name}-grad`, make());
    const n = 4;
    const x = tf.tensor(batch(n).hwc, [n, H, W, C]);
    const weights = tf.tensor2d(normal(n * CLASSES), [n, CLASSES]);
    // Training mode: batch statistics in batch norm, and dropout masks seeded by the step (the same mask at every call).
    const loss = () => tf.sum(tf.mul(student.apply(x, true, 0), weights)) as tf.Scalar;
    const vars = student.params.map((p) => p.variable);
    const { grads } = tf.variableGrads(loss, vars);
    // Directional derivative along a random direction of all parameters.
    const direction = vars.map((v) => tf.tensor(normal(v.size), v.shape));
    const analytic = vars.reduce((sum, v, i) => sum + tf.sum(tf.mul(grads[v.name]!, direction[i]!)).dataSync()[0]!, 0);
    const eps = 3e-3;
    // The CNN's LeakyRelu kinks and max-pool switches fall within eps of some of its 1,000 units;
    // its convolution and pooling gradients are compared exactly with tfjs in onnx-conv.test.ts.
    const tolerance = name === 'cnn' ? 5e-2 : 2e-2;
    const shift = (sign: number) => vars.forEach((v, i) => v.assign(tf.add(v, tf.mul(direction[i]!, sign * eps))));
    shift(1);
    const plus = loss().dataSync()[0]!;
    shift(-2);
    const minus = loss().dataSync()[0]!;
    shift(1);
    const numeric = (plus - minus) / (2 * eps);
    assert.ok(
      Math.abs(analytic - numeric) <= tolerance * Math.max(1, Math.abs(numeric)),
      `analytic ${analytic}, finite differences ${numeric}`,
    );
    // Each parameter on its own too (a wrong gradient of one tensor could hide in the sum).
    assertGradientsPerParameter(student.params, grads, loss, (i) => direction[i]!, tolerance, eps);
  });
}

test('export after training: same nodes, inputs, outputs and opset; trained initializers; onnxruntime equals tfjs; onnx.checker passes', async () => {
  const model = cnnModel();
  const student = importModel('trained', model);
  const n = 6;
  const data = batch(n);
  const x = tf.tensor(data.hwc, [n, H, W, C]);
  const opt = tf.train.sgd(0.05);
  for (let i = 0; i < 3; i++)
    opt.minimize(
      () => tf.mean(tf.square(student.apply(x, true, i))) as tf.Scalar,
      false,
      student.params.map((p) => p.variable),
    );
  const path = join(root, 'trained-out.onnx');
  exportOnnx(student, path, { 'distillery.seed': '5' });
  const { readModelFile } = await import('@distillery/runtime/onnx');
  const out = await readModelFile(path);
  assert.deepEqual(
    out.graph.nodes.map((nd) => [nd.opType, nd.inputs, nd.outputs]),
    model.graph.nodes.map((nd) => [nd.opType, nd.inputs, nd.outputs]),
  );
  assert.deepEqual(out.graph.inputs, model.graph.inputs);
  assert.deepEqual(out.graph.outputs, model.graph.outputs);
  assert.deepEqual(out.opsetImports, model.opsetImports);
  assert.equal(out.metadata['distillery.arch'], 'onnx');
  const before = new Map(model.graph.initializers.map((t) => [t.name, t.data as Float32Array]));
  const changed = out.graph.initializers
    .filter((t) => t.dataType === 'float32' && maxAbsDiff(t.data as Float32Array, before.get(t.name)!) > 0)
    .map((t) => t.name);
  for (const name of ['a.w', 's.w', 'd.w', 'fc.w', 'bn.s', 'bn.m', 'bn.v'])
    assert.ok(changed.includes(name), `${name} trained (changed: ${changed.join(', ')})`);
  const want = tf.tidy(() => student.apply(x, false).dataSync());
  const got = await ortLogits(path, out, data, n);
  assert.ok(maxAbsDiff(got, want) < 1e-4, `max |onnxruntime - tfjs| = ${maxAbsDiff(got, want)}`);
  assertOnnxChecker(path);
});

test('a graph exported by student-train imports and computes the same logits (built-in CNN with batch norm)', () => {
  const builtin = createStudent(
    { arch: 'cnn', channels: [3, 4], kernel: 3, batchNorm: true, hidden: [6], padding: 'same' },
    [H, W, C],
    CLASSES,
    2,
  );
  const path = join(root, 'builtin.onnx');
  exportOnnx(builtin, path);
  const imported = createStudent({ arch: 'onnx', model: path, reinit: false }, [H, W, C], CLASSES, 2);
  const x = tf.tensor(batch(5).hwc, [5, H, W, C]);
  assert.ok(maxAbsDiff(imported.apply(x, false).dataSync(), builtin.apply(x, false).dataSync()) < 1e-5);
  // Training mode too: batch statistics, and the running statistics move the same way.
  assert.ok(maxAbsDiff(imported.apply(x, true).dataSync(), builtin.apply(x, true).dataSync()) < 1e-5);
  const stats = (s: Student) => s.buffers.map((b) => Array.from(b.variable.dataSync())).flat();
  assert.ok(maxAbsDiff(stats(imported), stats(builtin)) < 1e-6);
});

test('activations by ONNX node or value name, maps as NHWC', () => {
  const student = importModel('acts', cnnModel()) as OnnxStudent;
  const x = tf.tensor(batch(3).hwc, [3, H, W, C]);
  const { activations } = student.applyWithActivations(x, false);
  assert.deepEqual(activations.get('pool2')!.shape, [3, 2, 2, 6]); // node name; NCHW [3, 6, 2, 2] as NHWC
  assert.deepEqual(activations.get('pool')!.shape, [3, 2, 2, 6]); // its value name
  assert.deepEqual(activations.get('fc')!.shape, [3, CLASSES]);
});

test('reinit: fresh seeded weights (He-uniform within the fan-in limit, zero biases, unit batch-norm scales); same seed, same weights', () => {
  const a = importModel('reinit-a', cnnModel(), { reinit: true });
  const b = importModel('reinit-b', cnnModel(), { reinit: true });
  const value = (s: Student, name: string) =>
    Array.from([...s.params, ...s.buffers].find((p) => p.name === name)!.variable.dataSync());
  assert.deepEqual(value(a, 'a.w'), value(b, 'a.w'));
  assert.ok(value(a, 'a.w').every((v) => Math.abs(v) <= Math.sqrt(6 / 9)));
  assert.ok(value(a, 'a.b').every((v) => v === 0));
  assert.ok(value(a, 'bn.s').every((v) => v === 1));
  assert.ok(value(a, 'bn.v').every((v) => v === 1));
});

test('an unsupported op fails before training, naming the node and its op type', () => {
  const b = new GraphBuilder('bad', { opset: 17 });
  b.input('x', 'float32', ['batch', H * W * C]);
  b.node('Sin', ['x'], ['s'], {}, { name: 'my_sin' });
  b.initializer('w', normal(H * W * C * CLASSES), [H * W * C, CLASSES]);
  b.node('MatMul', ['s', 'w'], ['logits']);
  b.output('logits', 'float32', ['batch', CLASSES]);
  assert.throws(() => importModel('bad', b.build()), /node "my_sin" \(Sin\)/);
});

test('a model whose classes or input size differ from the dataset is refused with both named', () => {
  writeModelFile(join(root, 'cnn.onnx'), cnnModel());
  assert.throws(
    () => createStudent({ arch: 'onnx', model: join(root, 'cnn.onnx'), reinit: false }, [H, W, C], CLASSES + 1, 0),
    /5 classes, the dataset 6/,
  );
  assert.throws(
    () => createStudent({ arch: 'onnx', model: join(root, 'cnn.onnx'), reinit: false }, [H, W, 3], CLASSES, 0),
    /per-sample shape \[2,8,8\], the dataset \[8,8,3\]/,
  );
});
