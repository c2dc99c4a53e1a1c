/**
 * Smoke run of pipelines/fashion-mnist.yaml on the real data (Debian's dataset-fashion-mnist), with
 * every training stage cut to 20 steps: the whole DAG (validation split, CNN teacher, soft labels,
 * the tuning grid, students over the seed fan-out, baselines, evaluation, seed statistics) runs and its reports hold
 * what the README quotes. The nearest-class-mean row is checked against class means computed here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openShardSet } from '@distillery/runtime/shards';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const DATA = '/usr/share/datasets/fashion-mnist';

interface EvalModel {
  name: string;
  metrics: { top1: number; samples: number };
}

test('pipelines/fashion-mnist.yaml runs end to end at 20 steps per model; nearest class mean matches an independent computation', {
  timeout: 900_000,
}, async (t) => {
  if (!existsSync(join(DATA, 'train-images-idx3-ubyte.gz'))) {
    t.skip(`${DATA} missing (apt-get install dataset-fashion-mnist)`);
    return;
  }
  const root = mkdtempSync(join(tmpdir(), 'fashion-mnist-smoke-'));
  try {
    const run = spawnSync(
      process.execPath,
      [
        join(repo, 'tools/core/bin/distill.js'),
        'run',
        join(repo, 'pipelines/fashion-mnist.yaml'),
        '--root',
        root,
        '--quiet',
        '--set',
        'params.maxSteps=20',
        '--set',
        'params.teacher.epochs=1',
      ],
      { encoding: 'utf8', maxBuffer: 64 << 20 },
    );
    assert.equal(run.status, 0, `distill run failed:\n${run.stdout.slice(-3000)}\n${run.stderr.slice(-3000)}`);
    const out = join(root, 'out', 'fashion-mnist');

    // Seed statistics: both students' KD-minus-hard-label comparisons over every seed of the fan-out
    // (one evaluate@<seed> stage per seed; the standards ask for at least 3).
    const evaluated = readdirSync(out).filter((d) => d.startsWith('evaluate@')).length;
    assert.ok(evaluated >= 3, `at least 3 seeds evaluated (got ${evaluated})`);
    const seeds = JSON.parse(readFileSync(join(out, 'seeds', 'report.json'), 'utf8')) as {
      seeds: string[];
      metrics: {
        metric: string;
        comparisons: { a: string; b: string; n: number; low: number; high: number; meanDifference: number }[];
      }[];
    };
    assert.equal(seeds.seeds.length, evaluated);
    const top1 = seeds.metrics.find((m) => m.metric === 'top-1');
    assert.ok(top1, 'top-1 aggregated');
    for (const [a, b] of [
      ['mlp-kd', 'mlp-ce'],
      ['cnn-kd', 'cnn-ce'],
      ['mlp-hint', 'mlp-kd'],
    ] as const) {
      const c: { n: number; low: number; high: number; meanDifference: number } | undefined = top1.comparisons.find(
        (x) => x.a === a && x.b === b,
      );
      assert.ok(c, `${a} - ${b} compared`);
      assert.equal(c.n, evaluated);
      assert.ok(c.low <= c.meanDifference && c.meanDifference <= c.high);
    }

    // The ensemble teacher and its two members, scored on the test split.
    const teachers = JSON.parse(readFileSync(join(out, 'teachers', 'report.json'), 'utf8')) as {
      dataset: { split: string };
      models: EvalModel[];
    };
    assert.equal(teachers.dataset.split, 'test');
    assert.deepEqual(teachers.models.map((m) => m.name).sort(), ['teacher-ensemble', 'teacher@1', 'teacher@2']);

    // The tuning report scores the grid on the validation split, not the test split.
    const tune = JSON.parse(readFileSync(join(out, 'tune-eval', 'report.json'), 'utf8')) as {
      dataset: { split: string };
      models: EvalModel[];
    };
    assert.equal(tune.dataset.split, 'val');
    // Every grid point the matrix fan-out trained (one out/ directory each) is scored there.
    for (const student of ['tune-mlp@', 'tune-cnn@']) {
      const trained = readdirSync(out).filter((d) => d.startsWith(student));
      assert.ok(trained.length >= 2, `${student} grid has ${trained.length} points`);
      assert.deepEqual(
        tune.models
          .map((m) => m.name)
          .filter((n) => n.startsWith(student))
          .sort(),
        trained.sort(),
      );
    }

    // Nearest class mean, recomputed from the dataset shards: means of the train rows (the val rows
    // excluded), each test image to the nearest mean in Euclidean distance (pixels / 255).
    const set = await openShardSet(join(out, 'data'));
    const sums = Array.from({ length: 10 }, () => new Float64Array(784));
    const counts = new Float64Array(10);
    const tests: { x: Float64Array; label: number }[] = [];
    const splits = new Map<string, number>();
    for await (const row of set.rows()) {
      const split = row.split as string;
      splits.set(split, (splits.get(split) ?? 0) + 1);
      const pixels = row.pixels as Uint8Array;
      const label = row.label as number;
      if (split === 'train') {
        const s = sums[label]!;
        for (let i = 0; i < 784; i++) s[i] = s[i]! + pixels[i]! / 255;
        counts[label] = counts[label]! + 1;
      } else if (split === 'test') {
        tests.push({ x: Float64Array.from(pixels, (v) => v / 255), label });
      }
    }
    assert.equal(splits.get('test'), 10_000);
    // Binomial(60,000, 0.1) validation rows: 6,000 +- 73 (sd); 5 sd either side.
    assert.ok(Math.abs((splits.get('val') ?? 0) - 6000) < 370, `val rows ${splits.get('val')}`);
    const means = sums.map((s, c) => s.map((v) => v / counts[c]!));
    let correct = 0;
    for (const { x, label } of tests) {
      let best = 0;
      let bestDist = Infinity;
      means.forEach((m, c) => {
        let d = 0;
        for (let i = 0; i < 784; i++) d += (x[i]! - m[i]!) ** 2;
        if (d < bestDist) {
          bestDist = d;
          best = c;
        }
      });
      if (best === label) correct++;
    }
    const evaluate = JSON.parse(readFileSync(join(out, 'evaluate@1', 'report.json'), 'utf8')) as {
      models: EvalModel[];
    };
    const ncm = evaluate.models.find((m) => m.name === 'nearest-class-mean');
    assert.ok(ncm);
    // float32 logits vs float64 distances may flip a handful of near-ties.
    assert.ok(
      Math.abs(ncm.metrics.top1 - correct / tests.length) <= 5 / tests.length,
      `eval ${ncm.metrics.top1} vs recomputed ${correct / tests.length}`,
    );
    assert.ok(correct / tests.length > 0.6, 'nearest class mean on Fashion-MNIST pixels is far above chance');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
