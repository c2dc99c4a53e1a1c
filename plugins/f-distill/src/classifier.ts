/**
 * The domain feature extractor for FID: a relu MLP classifier trained on the real data (pixels in
 * [-1, 1], as generators emit them), exported as ONNX with its penultimate layer as "features".
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@distillery/runtime/rng';
import { adam, Mlp, exportClassifierOnnx, trainStep } from './nets.js';
import { readSampleSet } from './io.js';
import type { Hooks } from './teacher.js';

export interface ClassifierConfig {
  hidden: number[];
  epochs: number;
  batchSize: number;
  lr: number;
  trainSplit: string;
  testSplit: string;
  seed: number;
}

export async function trainClassifier(
  datasetDir: string,
  outDir: string,
  cfg: ClassifierConfig,
  hooks: Hooks,
): Promise<{ testAccuracy: number; featureDim: number }> {
  if (cfg.hidden.length === 0)
    throw new Error('classifier: hidden must name at least one layer (its last is the feature layer)');
  const train = await readSampleSet(datasetDir, { split: cfg.trainSplit });
  const test = await readSampleSet(datasetDir, { split: cfg.testSplit });
  const D = train.dim;
  const C = train.numClasses;
  const mlp = new Mlp({ input: D, hidden: cfg.hidden, output: C }, cfg.seed, 'classifier');
  const opt = adam(mlp.params, cfg.lr);
  const rng = new Rng(cfg.seed);
  const B = cfg.batchSize;
  const stepsPerEpoch = Math.floor(train.n / B);
  const total = cfg.epochs * stepsPerEpoch;
  let done = 0;
  for (let epoch = 0; epoch < cfg.epochs; epoch++) {
    const order = Int32Array.from({ length: train.n }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    let lossSum = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      if (hooks.signal.aborted) throw new Error('classifier training cancelled');
      const x = new Float32Array(B * D);
      const y = new Int32Array(B);
      for (let i = 0; i < B; i++) {
        const r = order[s * B + i]!;
        x.set(train.x.subarray(r * D, (r + 1) * D), i * D);
        y[i] = train.labels[r]!;
      }
      lossSum += trainStep(opt, mlp.params, () =>
        tf.tidy(
          () =>
            tf.losses.softmaxCrossEntropy(
              tf.oneHot(tf.tensor1d(y, 'int32'), C),
              mlp.apply(tf.tensor2d(x, [B, D]), false).out,
            ) as tf.Scalar,
        ),
      );
      done++;
      if (done % 50 === 0) hooks.progress(done, total);
    }
    hooks.metric('train_loss', lossSum / stepsPerEpoch, epoch);
  }
  let correct = 0;
  for (let a = 0; a < test.n; a += 1000) {
    const b = Math.min(test.n, a + 1000);
    const pred = tf.tidy(() =>
      tf.argMax(mlp.apply(tf.tensor2d(test.x.subarray(a * D, b * D), [b - a, D]), false).out, 1).dataSync(),
    );
    for (let i = a; i < b; i++) if (pred[i - a] === test.labels[i]) correct++;
  }
  const testAccuracy = correct / test.n;
  hooks.log(`classifier: test accuracy ${(100 * testAccuracy).toFixed(2)}% on ${test.n} samples`);
  exportClassifierOnnx(mlp, join(outDir, 'classifier.onnx'), {
    'distillery.input_scale': 'pixels / 127.5 - 1',
    'distillery.test_accuracy': String(testAccuracy),
  });
  const featureDim = cfg.hidden[cfg.hidden.length - 1]!;
  writeFileSync(
    join(outDir, 'classifier.json'),
    JSON.stringify({ hidden: cfg.hidden, testAccuracy, featureDim, numClasses: C }, null, 2),
  );
  mlp.dispose();
  opt.dispose();
  return { testAccuracy, featureDim };
}
