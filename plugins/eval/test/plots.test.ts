/** The report's Vega-Lite plots rendered to SVG: low-count reliability bins marked, curves per series. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { learningRateSpec, lossCurvesSpec, lowCountThreshold, reliabilitySpec, renderSvg } from '../src/stage/plots.js';
import type { ModelReport } from '../src/stage/report.js';
import { lineMarkPaths, markItems, pathPoints } from './svg-marks.js';
import { rng } from './stage-helpers.js';

/** A model whose confidences cluster near 0.9: the low-confidence bins get few samples. */
function model(name: string, samples: number, seed: number): ModelReport {
  const random = rng(seed);
  const bins = Array.from({ length: 10 }, (_, b) => ({
    lower: b / 10,
    upper: (b + 1) / 10,
    count: 0,
    correct: 0,
    confidence: 0,
  }));
  for (let i = 0; i < samples; i++) {
    const confidence = Math.min(0.999, Math.max(0.001, 0.9 + (random() - 0.5) * (random() < 0.05 ? 1.6 : 0.2)));
    const bin = bins[Math.min(9, Math.floor(confidence * 10))]!;
    bin.count++;
    bin.confidence += confidence;
    if (random() < confidence) bin.correct++;
  }
  const reliability = bins.map((b) => ({
    lower: b.lower,
    upper: b.upper,
    count: b.count,
    accuracy: b.count ? b.correct / b.count : null,
    confidence: b.count ? b.confidence / b.count : null,
  }));
  return {
    name,
    role: 'student',
    modelSha256: 'x',
    metrics: { samples, topk: {}, top1: 0.9, perClassAccuracy: [], classCounts: [], ece: 0.01, reliability },
    efficiency: {
      parameters: 10,
      flops: 20,
      latencyP50Ms: 1,
      latencyP95Ms: 1,
      throughput: 1,
      batch: 1,
      iterations: 1,
      threads: 1,
      provider: 'cpu',
    },
  };
}

test('reliability diagram: one bar per non-empty bin; bins with few samples faded and labelled with their count', async () => {
  const samples = 2000;
  const m = model('s', samples, 3);
  const few = lowCountThreshold(samples);
  const nonEmpty = m.metrics.reliability.filter((b) => b.count > 0);
  const sparse = nonEmpty.filter((b) => b.count < few);
  assert.ok(
    sparse.length > 0 && sparse.length < nonEmpty.length,
    `fixture has both kinds of bins (${nonEmpty.map((b) => b.count)})`,
  );
  const svg = await renderSvg(reliabilitySpec(m, samples));
  const bars = markItems(svg, 'rect');
  assert.equal(bars.length, nonEmpty.length);
  assert.equal(bars.filter((b) => /opacity="0.45"/.test(b)).length, sparse.length);
  const labels = markItems(svg, 'text').map((t) => />([^<]*)<\/text>/.exec(t)?.[1]);
  assert.deepEqual(labels.sort(), sparse.map((b) => `n=${b.count}`).sort());
});

test('training curves: a line per model and loss term with one vertex per step; learning rate per model', async () => {
  const a = {
    ...model('a', 10, 1),
    lossHistory: Array.from({ length: 7 }, (_, i) => ({
      step: i * 2,
      loss: 1 / (i + 1),
      lr: 0.1 / (i + 1),
      terms: { hard: 0.5 / (i + 1), soft: 2 / (i + 1), grad_norm: 9 },
    })),
  };
  const b = { ...model('b', 10, 2), lossHistory: Array.from({ length: 4 }, (_, i) => ({ step: i, loss: 3 - i })) };
  const lines = lineMarkPaths(await renderSvg(lossCurvesSpec([a, b])!));
  // a: loss, hard, soft (the gradient norm is not a loss); b: loss only.
  assert.deepEqual(lines.map(pathPoints).sort(), [4, 7, 7, 7]);
  const lr = lineMarkPaths(await renderSvg(learningRateSpec([a, b])!));
  assert.deepEqual(lr.map(pathPoints), [7]);
  assert.equal(lossCurvesSpec([model('c', 10, 3)]), undefined);
});
