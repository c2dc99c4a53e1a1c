import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
import { attentionLoss, attentionMap, hintLoss } from '../src/losses/feature.js';
import { createFeatureTerm, type FeatureConfig } from '../src/features.js';
import { createStudent, type StudentConfig } from '../src/models/student.js';
import { exportOnnx } from '../src/train.js';
import { Rng } from '../src/rng.js';

const root = mkdtempSync(join(tmpdir(), 'student-train-feature-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await selectBackend({ cpus: 1, gpus: [], prefer: 'wasm' });
});

function normals(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

function close(got: number, want: number, tol: number, what: string): void {
  assert.ok(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${what}: got ${got}, want ${want}`);
}

test('hint on maps: a 1x1 regressor at each position, mean of squared errors (loops)', () => {
  const [n, h, w, cs, ct] = [2, 3, 4, 2, 3];
  const s = normals(n * h * w * cs, 1);
  const t = normals(n * h * w * ct, 2);
  const W = normals(cs * ct, 3);
  const b = normals(ct, 4);
  let sum = 0;
  for (let i = 0; i < n * h * w; i++) {
    for (let o = 0; o < ct; o++) {
      let r = b[o]!;
      for (let c = 0; c < cs; c++) r += s[i * cs + c]! * W[c * ct + o]!;
      sum += (r - t[i * ct + o]!) ** 2;
    }
  }
  const want = sum / (n * h * w * ct);
  const got = hintLoss(tf.tensor4d(s, [n, h, w, cs]), tf.tensor4d(t, [n, h, w, ct]), {
    weight: tf.tensor2d(W, [cs, ct]),
    bias: tf.tensor1d(b),
  });
  close(got.dataSync()[0]!, want, 1e-5, 'hint (maps)');
});

test('hint on flat features: a dense regressor; its bias gradient equals loops', () => {
  const [n, d, D] = [3, 5, 2];
  const s = normals(n * d, 5);
  const t = normals(n * D, 6);
  const W = normals(d * D, 7);
  const b = normals(D, 8);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < D; o++) {
      let r = b[o]!;
      for (let c = 0; c < d; c++) r += s[i * d + c]! * W[c * D + o]!;
      sum += (r - t[i * D + o]!) ** 2;
    }
  }
  const target = tf.tensor2d(t, [n, D]);
  const weight = tf.tensor2d(W, [d, D]);
  const bias = tf.tensor1d(b);
  const got = hintLoss(tf.tensor2d(s, [n, d]), target, { weight, bias });
  close(got.dataSync()[0]!, sum / (n * D), 1e-5, 'hint (flat)');
  // d/db_o = 2/(n D) sum_i (r_io - t_io)
  const gb = tf
    .grad((bb: tf.Tensor) => hintLoss(tf.tensor2d(s, [n, d]), target, { weight, bias: bb as tf.Tensor1D }))(bias)
    .dataSync();
  for (let o = 0; o < D; o++) {
    let g = 0;
    for (let i = 0; i < n; i++) {
      let r = b[o]!;
      for (let c = 0; c < d; c++) r += s[i * d + c]! * W[c * D + o]!;
      g += (2 * (r - t[i * D + o]!)) / (n * D);
    }
    close(gb[o]!, g, 1e-5, `d hint / d bias[${o}]`);
  }
});

/** Reference attention map by loops: Q[b, p] = sum_c A[b, p, c]^2, then / ||Q[b]||_2. */
function attentionRef(a: Float32Array, n: number, positions: number, c: number): Float64Array {
  const q = new Float64Array(n * positions);
  for (let b = 0; b < n; b++) {
    let norm = 0;
    for (let p = 0; p < positions; p++) {
      let e = 0;
      for (let k = 0; k < c; k++) e += a[(b * positions + p) * c + k]! ** 2;
      q[b * positions + p] = e;
      norm += e * e;
    }
    for (let p = 0; p < positions; p++) q[b * positions + p]! /= Math.sqrt(norm);
  }
  return q;
}

test('attention maps and the loss 1/2 * mean_b ||Q_s - Q_t||_2 equal loops (different channel counts)', () => {
  const [n, h, w, cs, ct] = [3, 4, 3, 2, 5];
  const s = normals(n * h * w * cs, 11);
  const t = normals(n * h * w * ct, 12);
  const qs = attentionRef(s, n, h * w, cs);
  const qt = attentionRef(t, n, h * w, ct);
  const got = attentionMap(tf.tensor4d(s, [n, h, w, cs])).dataSync();
  qs.forEach((v, i) => close(got[i]!, v, 1e-5, `Q_s[${i}]`));
  let sum = 0;
  for (let b = 0; b < n; b++) {
    let d2 = 0;
    for (let p = 0; p < h * w; p++) d2 += (qs[b * h * w + p]! - qt[b * h * w + p]!) ** 2;
    sum += Math.sqrt(d2);
  }
  close(
    attentionLoss(tf.tensor4d(s, [n, h, w, cs]), tf.tensor4d(t, [n, h, w, ct])).dataSync()[0]!,
    (0.5 * sum) / n,
    1e-5,
    'attention loss',
  );
});

test('attention: a student map twice the teacher size is pooled (mean energy per 2x2 block); other sizes are refused naming both shapes', () => {
  const [n, c] = [2, 3];
  const s = normals(n * 4 * 6 * c, 21);
  const t = normals(n * 2 * 3 * c, 22);
  // Pooled student energy by loops, then normalised.
  const pooled = new Float32Array(n * 2 * 3);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < 2; y++) {
      for (let x = 0; x < 3; x++) {
        let e = 0;
        for (let dy = 0; dy < 2; dy++)
          for (let dx = 0; dx < 2; dx++)
            for (let k = 0; k < c; k++) e += s[((b * 4 + 2 * y + dy) * 6 + 2 * x + dx) * c + k]! ** 2;
        pooled[(b * 2 + y) * 3 + x] = e / 4;
      }
    }
  }
  // The pooled energies are already Q: only the L2 normalisation remains.
  const qs = new Float64Array(n * 6);
  for (let b = 0; b < n; b++) {
    let norm = 0;
    for (let p = 0; p < 6; p++) norm += pooled[b * 6 + p]! ** 2;
    for (let p = 0; p < 6; p++) qs[b * 6 + p] = pooled[b * 6 + p]! / Math.sqrt(norm);
  }
  const qt = attentionRef(t, n, 6, c);
  let sum = 0;
  for (let b = 0; b < n; b++) {
    let d2 = 0;
    for (let p = 0; p < 6; p++) d2 += (qs[b * 6 + p]! - qt[b * 6 + p]!) ** 2;
    sum += Math.sqrt(d2);
  }
  close(
    attentionLoss(tf.tensor4d(s, [n, 4, 6, c]), tf.tensor4d(t, [n, 2, 3, c])).dataSync()[0]!,
    (0.5 * sum) / n,
    1e-5,
    'pooled attention loss',
  );
  assert.throws(
    () => attentionLoss(tf.zeros([1, 3, 3, 2]) as tf.Tensor4D, tf.zeros([1, 2, 2, 4]) as tf.Tensor4D),
    /student map \[3, 3, 2\] \(h, w, c\) and teacher map \[2, 2, 4\] \(h, w, c\) differ in spatial size/,
  );
});

const cnn: StudentConfig = { arch: 'cnn', channels: [3, 4], kernel: 3, batchNorm: true, hidden: [5], padding: 'same' };

test('applyWithActivations returns the same logits as apply and the conv/fc activations ONNX exports as extra outputs', async () => {
  for (const [name, config, shape] of [
    ['cnn', cnn, [8, 6, 2]],
    ['mlp', { arch: 'mlp', hidden: [7, 3] }, [4]],
  ] as [string, StudentConfig, number[]][]) {
    const student = createStudent(config, shape, 4, 5);
    const n = 3;
    const x = tf.tensor(normals(n * shape.reduce((a, b) => a * b, 1), 31), [n, ...shape]);
    // Training mode first: batch-norm running stats move off their init.
    student.apply(x, true);
    const plain = student.apply(x, false).dataSync();
    const { logits, activations } = student.applyWithActivations!(x, false);
    assert.deepEqual(Array.from(logits.dataSync()), Array.from(plain), `${name}: logits differ`);
    const layers = student.onnxActivations!();
    assert.deepEqual(Array.from(activations.keys()), Array.from(layers.keys()));
    const path = join(root, `${name}.onnx`);
    exportOnnx(student, path, {}, Array.from(layers.keys()));
    const session = await ort.InferenceSession.create(path);
    const out = await session.run({ input: new ort.Tensor('float32', x.dataSync() as Float32Array, [n, ...shape]) });
    for (const [layer, { value, shape: dims }] of layers) {
      const a = activations.get(layer)!;
      const got = out[value]!;
      assert.deepEqual(got.dims, [n, ...dims], `${name} ${layer}`);
      // ONNX holds conv maps as NCHW; tfjs activations are NHWC.
      const want = (a.rank === 4 ? tf.transpose(a, [0, 3, 1, 2]) : a).dataSync();
      let maxDiff = 0;
      (got.data as Float32Array).forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - want[i]!))));
      assert.ok(maxDiff < 1e-4, `${name} ${layer}: max |onnx - tfjs| = ${maxDiff}`);
    }
  }
  assert.throws(
    () => exportOnnx(createStudent(cnn, [8, 6, 2], 4, 5), join(root, 'bad.onnx'), {}, ['conv7']),
    /no layer "conv7" \(layers: conv0, conv1, fc0, fc1\)/,
  );
});

test('createFeatureTerm refuses bad configurations with the layer, feature and shapes named', () => {
  const student = createStudent(cnn, [8, 8, 1], 4, 1);
  const teacher = (shape: number[] | undefined, output = 'feat') => ({
    where: '/t',
    info: {
      teacherId: 't',
      modelSha256: '',
      temperature: 1,
      activation: 'softmax' as const,
      numClasses: 4,
      storage: {
        dense: true,
        features: { dim: (shape ?? [6]).reduce((a, b) => a * b, 1), output, ...(shape ? { shape } : {}) },
      },
    },
  });
  const config = (c: Partial<FeatureConfig>): FeatureConfig => ({
    kind: 'hint',
    weight: 1,
    studentLayer: 'conv0',
    teacherFeature: 'feat',
    ...c,
  });
  assert.throws(
    () => createFeatureTerm(config({ studentLayer: 'conv9' }), student, teacher([2, 4, 4]), 0),
    /no layer "conv9" \(layers: conv0, conv1, fc0, fc1\)/,
  );
  assert.throws(
    () => createFeatureTerm(config({ teacherFeature: 'other' }), student, teacher([2, 4, 4]), 0),
    /store the model output "feat", not "other"/,
  );
  assert.throws(
    () => createFeatureTerm(config({ kind: 'attention', studentLayer: 'fc0' }), student, teacher([2, 4, 4]), 0),
    /needs a conv block's map; student layer "fc0" is flat \[5\]/,
  );
  assert.throws(
    () => createFeatureTerm(config({ kind: 'attention' }), student, teacher(undefined), 0),
    /needs a teacher feature map/,
  );
  // conv0 is [4, 4, 3]; a [c=2, 3, 3] teacher map matches neither way.
  assert.throws(
    () => createFeatureTerm(config({}), student, teacher([2, 3, 3]), 0),
    /student map \[4, 4, 3\] \(h, w, c\) and teacher map \[3, 3, 2\] \(h, w, c\) differ in spatial size/,
  );
  // Valid: a 1x1 regressor 3 -> 2 on conv0, a dense one 4*4*3 -> 6 for a flat teacher.
  assert.deepEqual(
    createFeatureTerm(config({}), student, teacher([2, 4, 4]), 0).params.map((p) => p.variable.shape),
    [[3, 2], [2]],
  );
  assert.deepEqual(
    createFeatureTerm(config({}), student, teacher([6]), 0).params.map((p) => p.variable.shape),
    [[48, 6], [6]],
  );
  assert.deepEqual(
    createFeatureTerm(config({ kind: 'attention', studentLayer: 'conv1' }), student, teacher([5, 4, 4]), 0).params,
    [],
  );
});
