import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ShardWriter, datasetSchema } from '@distillery/runtime/shards';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';
import plugin from '../src/plugin.js';
import {
  expectedCalibrationError,
  meanPerVerticalAP,
  perClassAccuracy,
  perVerticalAccuracy,
  teacherAgreement,
  topKAccuracy,
  type ScoreMatrix,
} from '../src/classification/metrics.js';
import type { TopLevelSpec } from 'vega-lite';
import type { EvalReport } from '../src/stage/report.js';
import { renderSvg } from '../src/stage/plots.js';
import { barMarks, lineMarkPaths, pathPoints, symbolMarks } from './svg-marks.js';
import { linearLogits, makeCtx, rng, softmaxRows, writeLinearModel } from './stage-helpers.js';

const dim = 4,
  classes = 6;

/** n samples of seeded features, labels, split alternating train/test; rows "s<i>". */
async function writeDataset(dir: string, x: Float32Array, labels: Int32Array, rowsPerShard: number): Promise<void> {
  const n = labels.length;
  const ids = Array.from({ length: n }, (_, i) => `s${i}`);
  const writer = await ShardWriter.create({
    dir,
    schema: datasetSchema({ shape: [dim], input: 'features', labels: 'single', numClasses: classes }),
    rowsPerShard,
  });
  writer.append({ id: ids, split: ids.map((_, i) => (i % 2 ? 'test' : 'train')), label: labels, features: x }, n);
  await writer.close();
}

function fixture(seed: number, n: number) {
  const root = mkdtempSync(join(tmpdir(), 'eval-stage-'));
  const r = rng(seed);
  const x = Float32Array.from({ length: n * dim }, () => r() * 4 - 2);
  const wt = Float32Array.from({ length: dim * classes }, () => r() * 2 - 1);
  const bt = Float32Array.from({ length: classes }, () => r() - 0.5);
  const ws = Float32Array.from({ length: dim * classes }, () => r() * 2 - 1);
  // Labels: the teacher's prediction most of the time, otherwise random, so accuracies are neither 0 nor 1.
  const zt = linearLogits(x, wt, bt, dim, classes);
  const labels = Int32Array.from({ length: n }, (_, i) => {
    if (r() < 0.3) return Math.floor(r() * classes);
    const row = Array.from(zt.subarray(i * classes, (i + 1) * classes));
    return row.indexOf(Math.max(...row));
  });
  return { root, x, wt, bt, ws, labels };
}

/** Rows of the test split (odd indices) of an n x c matrix / of labels. */
function testRows(m: Float64Array, c: number): Float64Array {
  const n = m.length / c;
  const out: number[] = [];
  for (let i = 1; i < n; i += 2) out.push(...m.subarray(i * c, (i + 1) * c));
  return Float64Array.from(out);
}
const close = (a: number | null | undefined, b: number | null, tol: number, what: string) => {
  assert.ok(a !== null && a !== undefined && b !== null && Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);
};

test('eval stage: report.json numbers equal the full-matrix metrics of the test split; efficiency, report.md, plots', async () => {
  const n = 120;
  const { root, x, wt, bt, ws, labels } = fixture(7, n);
  try {
    await writeDataset(join(root, 'data'), x, labels, 32);
    writeLinearModel(join(root, 'teacher'), wt, bt, dim, classes);
    writeLinearModel(join(root, 'student'), ws, undefined, dim, classes);
    writeFileSync(
      join(root, 'student', 'training.json'),
      JSON.stringify({
        finalLoss: 0.5,
        lossHistory: [
          { step: 0, loss: 2 },
          { step: 10, loss: 1 },
          { step: 20, loss: 0.5 },
        ],
      }),
    );
    writeFileSync(
      join(root, 'verticals.json'),
      JSON.stringify({ classToVertical: [0, 0, 1, 1, 1, 2], names: ['animals', 'vehicles', 'food'] }),
    );
    const { ctx, record } = makeCtx(
      plugin,
      { batchSize: 7, topk: [1, 2, 5], eceBins: 10, verticals: 'verticals.json', latencyRuns: 5, latencyWarmup: 1 },
      {
        outDir: join(root, 'out'),
        pipelineDir: root,
        inputs: {
          dataset: [{ stage: 'data', path: join(root, 'data') }],
          model: [{ stage: 'student', path: join(root, 'student') }],
          teacher: [{ stage: 'teacher', path: join(root, 'teacher') }],
        },
      },
    );
    const result = await plugin.run(ctx);
    const report = JSON.parse(readFileSync(join(root, 'out', 'report.json'), 'utf8')) as EvalReport;
    const m = n / 2;
    assert.equal(report.dataset.samples, m);
    assert.equal(result?.metrics?.samples, m);
    assert.deepEqual(record.progress.at(-1), [m, undefined]);
    assert.deepEqual(
      report.models.map((r) => [r.name, r.role]),
      [
        ['teacher', 'teacher'],
        ['student', 'student'],
      ],
    );
    assert.equal(report.referenceTeacher, 'teacher');

    const y = Int32Array.from({ length: m }, (_, i) => labels[2 * i + 1]!);
    const zt = testRows(linearLogits(x, wt, bt, dim, classes), classes);
    const zs = testRows(linearLogits(x, ws, undefined, dim, classes), classes);
    const verticals = [0, 0, 1, 1, 1, 2];
    for (const [name, z] of [
      ['teacher', zt],
      ['student', zs],
    ] as const) {
      const got = report.models.find((r) => r.name === name)!.metrics;
      const scores: ScoreMatrix = { rows: m, cols: classes, data: z };
      const probs: ScoreMatrix = { rows: m, cols: classes, data: softmaxRows(z, classes) };
      // Rankings depend on float32 vs float64 logits only at near-ties, which these seeded values lack.
      for (const k of [1, 2, 5]) assert.equal(got.topk[String(k)], topKAccuracy(scores, y, k), `${name} top-${k}`);
      assert.equal(got.top1, topKAccuracy(scores, y, 1));
      let hits = 0;
      for (let i = 0; i < m; i++) {
        const row = Array.from(z.subarray(i * classes, (i + 1) * classes));
        if (row.indexOf(Math.max(...row)) === y[i]) hits++;
      }
      assert.equal(got.top1, hits / m, `${name} top-1 by counting`);
      if (name === 'teacher') assert.ok(got.top1 > 0.5 && got.top1 < 1, `teacher top-1 ${got.top1}`);
      assert.deepEqual(got.perClassAccuracy, perClassAccuracy(scores, y));
      assert.deepEqual(
        got.classCounts,
        Array.from({ length: classes }, (_, c) => y.filter((v) => v === c).length),
      );
      assert.deepEqual(got.perVerticalAccuracy, perVerticalAccuracy(scores, y, verticals, 3));
      const ece = expectedCalibrationError(scores, y, { bins: 10, logits: true });
      close(got.ece, ece.ece, 1e-6, `${name} ECE`);
      got.reliability.forEach((b, i) => {
        assert.equal(b.count, ece.bins[i]!.count);
        if (b.count) close(b.confidence, ece.bins[i]!.confidence, 1e-6, `${name} bin ${i} confidence`);
        else assert.equal(b.accuracy, null);
      });
      const ap = meanPerVerticalAP(probs, y, verticals, 3);
      close(got.meanPerVerticalAP, ap.mpvap, 1e-9, `${name} mpvap`);
      got.perVerticalAP!.forEach((v, i) => close(v, ap.perVertical[i]!, 1e-9, `${name} vertical ${i} AP`));
      assert.equal(result?.metrics?.[`${name}/top1`], got.top1);
    }
    const student = report.models[1]!;
    assert.equal(
      student.metrics.agreement,
      teacherAgreement({ rows: m, cols: classes, data: zs }, { rows: m, cols: classes, data: zt }),
    );
    assert.equal(report.models[0]!.metrics.agreement, undefined);

    // Efficiency: teacher x W + b (30 parameters, 2*4*6 + 6 FLOPs at batch 1), student x W (24, 48).
    assert.equal(report.models[0]!.efficiency.parameters, 30);
    assert.equal(report.models[0]!.efficiency.flops, 54);
    assert.equal(student.efficiency.parameters, 24);
    assert.equal(student.efficiency.flops, 48);
    assert.equal(student.efficiency.iterations, 5);
    const eff = report.efficiency[0]!;
    assert.deepEqual(
      [eff.teacher, eff.student, eff.parameterReduction, eff.flopReduction],
      ['teacher', 'student', 1.25, 54 / 48],
    );
    close(eff.speedup, report.models[0]!.efficiency.latencyP50Ms / student.efficiency.latencyP50Ms, 1e-12, 'speed-up');
    assert.deepEqual(student.lossHistory, [
      { step: 0, loss: 2 },
      { step: 10, loss: 1 },
      { step: 20, loss: 0.5 },
    ]);

    const files = readdirSync(join(root, 'out')).sort();
    const plots = ['accuracy-vs-size', 'loss-curves', 'reliability-student', 'reliability-teacher', 'vertical-ap'];
    assert.deepEqual(files, [...plots.flatMap((p) => [`${p}.svg`, `${p}.vl.json`]), 'report.json', 'report.md'].sort());
    assert.deepEqual(
      [...report.plots].sort(),
      files.filter((f) => f.endsWith('.svg')),
    );
    for (const f of report.plots) {
      const svg = readFileSync(join(root, 'out', f), 'utf8');
      assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>[\s\S]*<\/svg>\n$/);
      assert.doesNotMatch(svg, /NaN|undefined/);
      // Each SVG is the rendering of the Vega-Lite spec written beside it.
      const spec = JSON.parse(readFileSync(join(root, 'out', f.replace(/\.svg$/, '.vl.json')), 'utf8')) as TopLevelSpec;
      assert.equal(await renderSvg(spec), svg);
    }
    // The loss curve: one line of the student's 3 history points (vega draws "M x,y L x,y L x,y").
    const lossLines = lineMarkPaths(readFileSync(join(root, 'out', 'loss-curves.svg'), 'utf8'));
    assert.deepEqual(lossLines.map(pathPoints), [3]);
    // Per-vertical AP: one bar per model and vertical (2 x 3).
    assert.equal(barMarks(readFileSync(join(root, 'out', 'vertical-ap.svg'), 'utf8')), 6);
    // Accuracy against size: one point per model in each of the two panels.
    assert.equal(symbolMarks(readFileSync(join(root, 'out', 'accuracy-vs-size.svg'), 'utf8')), 4);
    const md = readFileSync(join(root, 'out', 'report.md'), 'utf8');
    assert.match(
      md,
      /\| model \| role \| top-1 \| top-2 \| top-5 \| ECE \| mean per-vertical AP \(softmax scores\) \| agreement with teacher \|/,
    );
    assert.match(md, new RegExp(`\\| student \\| student \\| ${(student.metrics.top1 * 100).toFixed(2)}% \\|`));
    assert.match(md, /\| teacher \| student \| [\d.]+x \| 1\.25x \| 1\.13x \|/);
    assert.match(md, /\| animals \|/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('eval stage: pixels get scale, mean/std and HWC -> CHW as teacher-infer does', async () => {
  const root = mkdtempSync(join(tmpdir(), 'eval-stage-'));
  try {
    // HWC [2, 1, 3] images, 6 classes; the model flattens its CHW input: class j scores pixel value j.
    const [H, Wd, C] = [2, 1, 3];
    const D = H * Wd * C;
    const n = 40;
    const r = rng(3);
    const pixels = Uint8Array.from({ length: n * D }, () => Math.floor(r() * 256));
    const scale = 1 / 255,
      mean = [0.5, 0.4, 0.3],
      std = [0.2, 0.25, 0.5];
    const expected = new Float64Array(n * D);
    for (let i = 0; i < n; i++)
      for (let h = 0; h < H; h++)
        for (let c = 0; c < C; c++) {
          const v = pixels[i * D + h * C + c]!;
          expected[i * D + c * H + h] = (v * scale - mean[c]!) / std[c]!;
        }
    const argmax = (i: number) => {
      const row = Array.from(expected.subarray(i * D, (i + 1) * D));
      return row.indexOf(Math.max(...row));
    };
    // Labels: the expected argmax for the first 30 samples, a different class for the last 10.
    const labels = Int32Array.from({ length: n }, (_, i) => (i < 30 ? argmax(i) : (argmax(i) + 1) % D));
    const ids = Array.from({ length: n }, (_, i) => `img${i}`);
    const writer = await ShardWriter.create({
      dir: join(root, 'data'),
      schema: datasetSchema({ shape: [H, Wd, C], layout: 'HWC', input: 'pixels', labels: 'single', numClasses: D }),
      rowsPerShard: 16,
    });
    writer.append({ id: ids, split: ids.map(() => 'test'), label: labels, pixels }, n);
    await writer.close();
    mkdirSync(join(root, 'flat'));
    writeModelFile(
      join(root, 'flat', 'model.onnx'),
      new GraphBuilder('flat')
        .input('x', 'float32', ['batch', C, H, Wd])
        .node('Flatten', ['x'], ['y'])
        .output('y', 'float32', ['batch', D])
        .build(),
    );
    const { ctx } = makeCtx(
      plugin,
      { scale, mean, std, inputLayout: 'CHW', batchSize: 16, topk: [1], latencyRuns: 2, latencyWarmup: 0 },
      {
        outDir: join(root, 'out'),
        pipelineDir: root,
        inputs: {
          dataset: [{ stage: 'data', path: join(root, 'data') }],
          model: [{ stage: 'flat', path: join(root, 'flat') }],
        },
      },
    );
    await plugin.run(ctx);
    const report = JSON.parse(readFileSync(join(root, 'out', 'report.json'), 'utf8')) as EvalReport;
    const got = report.models[0]!.metrics;
    assert.equal(got.top1, 30 / 40);
    const ece = expectedCalibrationError({ rows: n, cols: D, data: expected }, labels, { bins: 15, logits: true });
    close(got.ece, ece.ece, 1e-6, 'ECE');
    assert.equal(report.efficiency.length, 0, 'no teacher, no efficiency comparison');
    assert.equal(report.models[0]!.efficiency.parameters, 0);
    assert.ok(!readdirSync(join(root, 'out')).includes('loss-curves.svg'), 'no loss history, no loss plot');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('eval stage: bad inputs fail with the file or sample named and leave no report', async () => {
  const { root, x, wt, bt, labels } = fixture(11, 20);
  try {
    await writeDataset(join(root, 'data'), x, labels, 8);
    writeLinearModel(join(root, 'ok'), wt, bt, dim, classes);
    mkdirSync(join(root, 'empty'));
    writeLinearModel(join(root, 'narrow'), new Float32Array(dim * 5), undefined, dim, 5);
    const bad = Int32Array.from(labels);
    bad[7] = classes; // sample s7 is in the test split
    await writeDataset(join(root, 'badlabels'), x, bad, 8);
    writeFileSync(join(root, 'verticals-short.json'), JSON.stringify([0, 1]));
    const run = async (model: string, data: string, extra: Record<string, unknown> = {}) => {
      const out = join(root, `out-${model}-${data}`);
      const { ctx } = makeCtx(
        plugin,
        { latencyRuns: 1, ...extra },
        {
          outDir: out,
          pipelineDir: root,
          inputs: {
            dataset: [{ stage: 'd', path: join(root, data) }],
            model: [{ stage: model, path: join(root, model) }],
          },
        },
      );
      try {
        await plugin.run(ctx);
      } finally {
        assert.ok(!existsSync(join(out, 'report.json')), 'no report after a failure');
      }
    };
    await assert.rejects(run('empty', 'data'), /model empty: no model\.onnx in .*empty/);
    await assert.rejects(run('narrow', 'data'), /narrow[\s\S]*output logits has 5 classes but the dataset has 6/);
    await assert.rejects(
      run('ok', 'badlabels'),
      /badlabels.*part-00000\.arrow: sample s7 has label 6, outside \[0, 6\)/,
    );
    await assert.rejects(
      run('ok', 'data', { split: 'val' }),
      /no labelled samples in split "val" \(splits present: train, test\)/,
    );
    await assert.rejects(
      run('ok', 'data', { verticals: 'verticals-short.json' }),
      /vertical map covers 2 classes but dataset .* has 6/,
    );
    await assert.rejects(run('ok', 'data', { verticals: 'missing.json' }), /vertical map .*missing\.json: cannot read/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
