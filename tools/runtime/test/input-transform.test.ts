import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { GraphBuilder, encodeModel } from '../src/onnx/model.js';
import { prependPixelTransform, type PixelInputTransform } from '../src/onnx/input-transform.js';

/** A model that flattens its float input: its output is exactly what it was fed. */
const flatModel = (shape: number[]) =>
  encodeModel(
    new GraphBuilder('flat')
      .input('x', 'float32', ['N', ...shape])
      .node('Flatten', ['x'], ['y'])
      .output('y', 'float32', ['N', shape.reduce((a, b) => a * b, 1)])
      .build(),
  );

async function runPixels(bytes: Uint8Array, input: string, pixels: Uint8Array, dims: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run({ [input]: new ort.Tensor('uint8', pixels, dims) });
    return out.y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

const n = 3;
const close = (got: Float32Array, want: number[], what: string) =>
  want.forEach((v, i) => assert.ok(Math.abs(got[i]! - v) < 1e-6, `${what} [${i}]: ${got[i]} vs ${v}`));

test('pixel transform in the model: uniform, per channel (first and last axis) and HWC -> CHW give x * mul[c] + add[c]', async () => {
  const [H, W, C] = [2, 3, 3];
  const D = H * W * C;
  const pixels = Uint8Array.from({ length: n * D }, (_, i) => (i * 53 + 7) % 256);
  const mul = [1 / 255, 2 / 255, 0.5 / 255],
    add = [-0.5, 0.25, -1];
  const apply = (bytes: Uint8Array, spec: PixelInputTransform) => {
    const r = prependPixelTransform(bytes, spec);
    assert.ok(r.applied, r.applied ? '' : r.reason);
    return r;
  };

  // Uniform, flat model input: every value the same affine map.
  const uniform = apply(flatModel([D]), {
    pixelShape: [H, W, C],
    hwcToChw: false,
    mul: [mul[0]!],
    add: [add[0]!],
    channelAxis: 'last',
  });
  assert.equal(uniform.input, 'x__uint8');
  close(
    await runPixels(uniform.bytes, uniform.input, pixels, [n, D]),
    Array.from(pixels, (p) => p * mul[0]! + add[0]!),
    'uniform',
  );

  // Channel-last model input [N, H, W, C]: channel = index % C.
  const last = apply(flatModel([H, W, C]), { pixelShape: [H, W, C], hwcToChw: false, mul, add, channelAxis: 'last' });
  close(
    await runPixels(last.bytes, last.input, pixels, [n, H, W, C]),
    Array.from(pixels, (p, i) => p * mul[i % C]! + add[i % C]!),
    'channel last',
  );

  // Channel-first model input [N, C, H, W] on CHW pixels: channel = (index / (H W)) % C.
  const first = apply(flatModel([C, H, W]), { pixelShape: [C, H, W], hwcToChw: false, mul, add, channelAxis: 'first' });
  close(
    await runPixels(first.bytes, first.input, pixels, [n, C, H, W]),
    Array.from(pixels, (p, i) => p * mul[Math.floor(i / (H * W)) % C]! + add[Math.floor(i / (H * W)) % C]!),
    'channel first',
  );

  // HWC pixels into a CHW model: transposed, then per channel. The new input takes [N, H, W, C].
  const chw = apply(flatModel([C, H, W]), { pixelShape: [H, W, C], hwcToChw: true, mul, add, channelAxis: 'first' });
  const want: number[] = [];
  for (let s = 0; s < n; s++)
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          want.push(pixels[s * D + (h * W + w) * C + c]! * mul[c]! + add[c]!);
        }
  close(await runPixels(chw.bytes, chw.input, pixels, [n, H, W, C]), want, 'HWC -> CHW');
});

test('pixel transform in the model: left alone (with the reason) where it cannot apply', () => {
  const spec: PixelInputTransform = {
    pixelShape: [2, 3, 3],
    hwcToChw: false,
    mul: [1, 2, 3],
    add: [0, 0, 0],
    channelAxis: 'last',
  };
  const reason = (bytes: Uint8Array, s: PixelInputTransform = spec) => {
    const r = prependPixelTransform(bytes, s);
    assert.equal(r.applied, false);
    return r.applied ? '' : r.reason;
  };
  // Per-channel values but the model input has no channel axis to broadcast over.
  assert.match(reason(flatModel([18])), /no last axis of 3 channels/);
  // Already uint8.
  const u8 = encodeModel(
    new GraphBuilder('u8')
      .input('x', 'uint8', ['N', 18])
      .node('Cast', ['x'], ['y'], { to: { i: 1 } })
      .output('y', 'float32', ['N', 18])
      .build(),
  );
  assert.match(reason(u8), /not float32/);
  // Element count differs from the pixels'.
  assert.match(reason(flatModel([2, 3, 4]), { ...spec, mul: [1], add: [0] }), /shape does not match/);
  // Two inputs and no name given.
  const two = encodeModel(
    new GraphBuilder('two')
      .input('a', 'float32', ['N', 18])
      .input('b', 'float32', ['N', 18])
      .node('Add', ['a', 'b'], ['y'])
      .output('y', 'float32', ['N', 18])
      .build(),
  );
  assert.match(reason(two, { ...spec, mul: [1], add: [0] }), /several inputs/);
  // Weights in external data files (onnxruntime would load the rewritten model from memory).
  const withWeights = new GraphBuilder('w')
    .input('x', 'float32', ['N', 2, 3, 3])
    .initializer('k', new Float32Array(18).fill(2), [2, 3, 3])
    .node('Mul', ['x', 'k'], ['y'])
    .output('y', 'float32', ['N', 2, 3, 3])
    .build();
  const msg = onnxProto.onnx.ModelProto.decode(encodeModel(withWeights));
  msg.graph!.initializer![0]!.dataLocation = 1;
  assert.match(reason(onnxProto.onnx.ModelProto.encode(msg).finish()), /external data/);
});
