import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { aggregateSeeds, roleOf, type SeedReport, type SeedsReport } from '../src/stage/seeds.js';
import type { EvalReport } from '../src/stage/report.js';
import { compareSeedsCommand, registerCommands } from '../src/cli.js';
import seedsPlugin from '../src/seeds-plugin.js';
import { makeCtx } from './stage-helpers.js';

const near = (actual: number | undefined, expected: number, tol: number, what: string) =>
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected}`);

interface FakeModel {
  name: string;
  top1: number;
  ece: number;
  agreement?: number;
}

/** A valid eval report whose models have the given top-1 / ECE (model hashes follow the names). */
function evalReport(models: FakeModel[], split = 'test'): EvalReport {
  return {
    format: 'distillery-eval-report',
    version: 1,
    dataset: { split, samples: 1000, skippedUnlabelled: 0, numClasses: 10 },
    topk: [1],
    eceBins: 15,
    efficiency: [],
    plots: [],
    models: models.map((m) => ({
      name: m.name,
      role: m.name.startsWith('teacher') ? 'teacher' : 'student',
      modelSha256: `sha-${m.name}`,
      metrics: {
        samples: 1000,
        topk: { 1: m.top1 },
        top1: m.top1,
        perClassAccuracy: [],
        classCounts: [],
        ece: m.ece,
        reliability: [],
        ...(m.agreement !== undefined ? { agreement: m.agreement } : {}),
      },
      efficiency: {
        parameters: 100,
        flops: null,
        latencyP50Ms: 1,
        latencyP95Ms: 1,
        throughput: 1000,
        batch: 1,
        iterations: 1,
        threads: 1,
        provider: 'cpu',
      },
    })),
  };
}

// Three seeds (top-1 / ECE per seed):
//   teacher    0.93 0.94 0.93      ECE 0.02 0.02 0.02
//   student-kd 0.90 0.92 0.91      ECE 0.05 0.03 0.04
//   student-ce 0.87 0.88 0.86      ECE 0.04 0.05 0.03
// Seed 2 lists its models in another order: pairing must go by role, not position.
const TOP1 = { teacher: [0.93, 0.94, 0.93], 'student-kd': [0.9, 0.92, 0.91], 'student-ce': [0.87, 0.88, 0.86] };
const ECE = { teacher: [0.02, 0.02, 0.02], 'student-kd': [0.05, 0.03, 0.04], 'student-ce': [0.04, 0.05, 0.03] };
const AGREEMENT = { 'student-kd': [0.95, 0.96, 0.97], 'student-ce': [0.91, 0.9, 0.92] };
type Role = keyof typeof TOP1;

function seedModels(seed: number, roles: Role[] = ['teacher', 'student-kd', 'student-ce']): FakeModel[] {
  const models = roles.map((role) => ({
    name: `${role}@${seed}`,
    top1: TOP1[role][seed - 1]!,
    ece: ECE[role][seed - 1]!,
    ...(role !== 'teacher' ? { agreement: AGREEMENT[role][seed - 1]! } : {}),
  }));
  return seed === 2 ? models.reverse() : models;
}

function seedReports(): SeedReport[] {
  return [1, 2, 3].map((seed) => ({
    label: `evaluate@${seed}`,
    file: `out/p/evaluate@${seed}/report.json`,
    report: evalReport(seedModels(seed)),
  }));
}

const metricOf = (r: SeedsReport, id: string) => {
  const m = r.metrics.find((x) => x.metric === id);
  assert.ok(m, `metric ${id} in ${r.metrics.map((x) => x.metric).join(', ')}`);
  return m;
};

test('roles strip the fan-out suffix', () => {
  assert.equal(roleOf('student-kd@2'), 'student-kd');
  assert.equal(roleOf('teacher'), 'teacher');
  assert.equal(roleOf('student@seed=1,T=4'), 'student');
});

test('seed aggregation: mean ± std per role and paired intervals, computed by hand; pairing by role', () => {
  const r = aggregateSeeds(seedReports(), {
    comparisons: [
      { a: 'student-kd', b: 'student-ce' },
      { a: 'student-kd', b: 'teacher' },
    ],
  });
  assert.deepEqual(r.seeds, ['evaluate@1', 'evaluate@2', 'evaluate@3']);
  assert.deepEqual(r.roles, [
    { role: 'teacher', models: ['teacher@1', 'teacher@2', 'teacher@3'] },
    { role: 'student-kd', models: ['student-kd@1', 'student-kd@2', 'student-kd@3'] },
    { role: 'student-ce', models: ['student-ce@1', 'student-ce@2', 'student-ce@3'] },
  ]);
  assert.deepEqual(
    r.metrics.map((m) => m.metric),
    ['top-1', 'ece', 'agreement', 'latency-p50-ms'],
  );
  const top1 = metricOf(r, 'top-1');
  const kd = top1.roles.find((x) => x.role === 'student-kd')!;
  // kd: mean (0.90 + 0.92 + 0.91) / 3 = 0.91; deviations -0.01, 0.01, 0; s = sqrt(0.0002 / 2) = 0.01.
  near(kd.mean, 0.91, 1e-15, 'kd mean');
  near(kd.std, 0.01, 1e-15, 'kd std');
  assert.deepEqual(kd.values, [0.9, 0.92, 0.91]);
  // teacher: mean 0.9333333333; deviations -1/300, 2/300, -1/300; s^2 = (6/90000) / 2; s = 0.0057735026919.
  const teacher = top1.roles.find((x) => x.role === 'teacher')!;
  near(teacher.mean, 0.9333333333333, 1e-12, 'teacher mean');
  near(teacher.std, 0.0057735026919, 1e-12, 'teacher std');

  // kd - ce per seed: 0.03, 0.04, 0.05 -> mean 0.04, s 0.01, se 0.01 / sqrt(3) = 0.0057735026919;
  // half = 4.302652729749 * 0.0057735026919 = 0.0248413771175 -> [0.0151586228825, 0.0648413771175]: kd > ce.
  const [kdCe, kdTeacher] = top1.comparisons;
  assert.equal(kdCe!.a, 'student-kd');
  assert.equal(kdCe!.b, 'student-ce');
  kdCe!.differences.forEach((d, i) => near(d, [0.03, 0.04, 0.05][i]!, 1e-15, `kd - ce seed ${i + 1}`));
  near(kdCe!.meanDifference, 0.04, 1e-15, 'kd - ce mean');
  near(kdCe!.stdDifference, 0.01, 1e-15, 'kd - ce std');
  near(kdCe!.low, 0.0151586228825, 1e-12, 'kd - ce low');
  near(kdCe!.high, 0.0648413771175, 1e-12, 'kd - ce high');
  assert.equal(kdCe!.verdict, 'a > b');
  // kd - teacher: -0.03, -0.02, -0.02 -> mean -0.0233333333333; deviations -1/150, 1/300, 1/300;
  // s^2 = (6/90000) / 2, s = 0.0057735026919, se = s / sqrt(3) = 0.01 / 3;
  // half = 4.302652729749 * 0.0033333333333 = 0.0143421757658 -> [-0.0376755090991, -0.0089911575675]: kd < teacher.
  near(kdTeacher!.low, -0.0376755090991, 1e-12, 'kd - teacher low');
  near(kdTeacher!.high, -0.0089911575675, 1e-12, 'kd - teacher high');
  assert.equal(kdTeacher!.verdict, 'a < b');

  // ECE kd - ce: 0.01, -0.02, 0.01 -> mean 0: within noise.
  const ece = metricOf(r, 'ece').comparisons[0]!;
  near(ece.meanDifference, 0, 1e-15, 'ECE mean difference');
  assert.equal(ece.verdict, 'within noise');
  // The teacher has no agreement value (it is the reference): that comparison is left out, kd - ce stays.
  const agreement = metricOf(r, 'agreement');
  assert.deepEqual(
    agreement.roles.map((x) => x.role),
    ['student-kd', 'student-ce'],
  );
  assert.deepEqual(
    agreement.comparisons.map((c) => `${c.a}-${c.b}`),
    ['student-kd-student-ce'],
  );
  // Identical latencies: std 0, interval [0, 0] contains 0.
  assert.equal(metricOf(r, 'latency-p50-ms').comparisons[0]!.verdict, 'within noise');
  assert.match(r.method, /paired t-interval mean\(d\) ± t\(0\.975, n - 1\)/);
  assert.deepEqual(r.notes, []);
  // A report whose models carry different seed suffixes is still one seed, with a note.
  const mixed = seedReports();
  mixed[1] = {
    ...mixed[1]!,
    report: evalReport(seedModels(2).map((m) => (m.name === 'student-ce@2' ? { ...m, name: 'student-ce@3' } : m))),
  };
  assert.deepEqual(aggregateSeeds(mixed).notes, [
    'evaluate@2 holds models of different fan-out suffixes (student-ce@3, student-kd@2, teacher@2); they are paired as one seed',
  ]);
});

test('seed aggregation defaults: every role against the first, all metrics; metric selection and confidence', () => {
  const r = aggregateSeeds(seedReports());
  assert.deepEqual(
    metricOf(r, 'top-1').comparisons.map((c) => `${c.a} - ${c.b}`),
    ['student-kd - teacher', 'student-ce - teacher'],
  );
  assert.equal(r.confidence, 0.95);
  const only = aggregateSeeds(seedReports(), { metrics: ['ece'], confidence: 0.5 });
  assert.deepEqual(
    only.metrics.map((m) => m.metric),
    ['ece'],
  );
  // t_{0.75, 2} = 0.8164965809 (= 1 / sqrt(1.5) from the dof-2 closed form).
  near(only.metrics[0]!.comparisons[0]!.tQuantile, 0.8164965809277, 1e-12, 't_{0.75,2}');
});

test('seed aggregation errors name the report file and model', () => {
  const reports = seedReports();
  // A missing seed: evaluate@3 lacks student-ce.
  const missing = [
    ...reports.slice(0, 2),
    { ...reports[2]!, report: evalReport(seedModels(3, ['teacher', 'student-kd'])) },
  ];
  assert.throws(
    () => aggregateSeeds(missing),
    /report evaluate@3 \(out\/p\/evaluate@3\/report\.json\) has no model of role "student-ce" \(it holds teacher@3, student-kd@3; evaluate@1, evaluate@2 have one\): a seed is missing for "student-ce"/,
  );
  assert.throws(
    () => aggregateSeeds(reports.slice(0, 1)),
    /seed aggregation needs at least 2 reports \(one per seed\) to estimate a spread; got 1: report evaluate@1 \(out\/p\/evaluate@1\/report\.json\)/,
  );
  assert.throws(() => aggregateSeeds([]), /got 0$/);
  const twice = [
    reports[0]!,
    { ...reports[1]!, report: evalReport([...seedModels(2), { name: 'student-kd@x', top1: 0.5, ece: 0.1 }]) },
  ];
  assert.throws(
    () => aggregateSeeds(twice),
    /report evaluate@2 \(out\/p\/evaluate@2\/report\.json\) holds two models of role "student-kd": student-kd@2 and student-kd@x/,
  );
  const otherSplit = [reports[0]!, { ...reports[1]!, report: evalReport(seedModels(2), 'val') }];
  assert.throws(
    () => aggregateSeeds(otherSplit),
    /report evaluate@2 .* evaluated split "val" .* but report evaluate@1 .* split "test"/,
  );
  assert.throws(
    () => aggregateSeeds([reports[0]!, { ...reports[0]!, label: 'again' }]),
    /report again .* and report evaluate@1 .* evaluate the same models \(identical model hashes\)/,
  );
  assert.throws(
    () => aggregateSeeds(reports, { comparisons: [{ a: 'student-kd', b: 'student-xx' }] }),
    /comparisons\[0\]\.b: no role "student-xx" in the reports \(roles: teacher, student-kd, student-ce\)/,
  );
  assert.throws(
    () => aggregateSeeds(reports, { metrics: ['top-5'] }),
    /metrics\[0\]: unknown metric "top-5" \(known: top-1, ece, mpvap, agreement, latency-p50-ms\)/,
  );
  const noAgreement = [
    ...reports.slice(0, 2),
    { ...reports[2]!, report: evalReport(seedModels(3).map(({ agreement: _, ...m }) => m)) },
  ];
  assert.throws(
    () => aggregateSeeds(noAgreement),
    /report evaluate@3 \(out\/p\/evaluate@3\/report\.json\): model student-kd@3 has no agreement with the reference teacher value, while other seeds of role "student-kd" do/,
  );
});

/** Writes the three seeds' reports as eval stage directories under root/out/p. */
function writeSeedDirs(root: string, reports: SeedReport[]): string[] {
  return reports.map((r) => {
    const dir = join(root, 'out', 'p', r.label);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'report.json'), JSON.stringify(r.report));
    return dir;
  });
}

test('eval-seeds stage writes report.json and report.md; a missing seed fails and writes nothing', async () => {
  const root = mkdtempSync(join(tmpdir(), 'eval-seeds-'));
  try {
    const dirs = writeSeedDirs(root, seedReports());
    const inputs = { reports: dirs.map((path, i) => ({ stage: `evaluate@${i + 1}`, path })) };
    const outDir = join(root, 'agg');
    const { ctx, record } = makeCtx(
      seedsPlugin,
      { comparisons: [{ a: 'student-kd', b: 'student-ce' }] },
      { outDir, pipelineDir: root, inputs },
    );
    const result = await seedsPlugin.run(ctx);
    const written = JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8')) as SeedsReport;
    assert.equal(written.format, 'distillery-eval-seeds-report');
    assert.deepEqual(
      written,
      JSON.parse(
        JSON.stringify(
          aggregateSeeds(
            seedReports().map((r, i) => ({ ...r, file: join(dirs[i]!, 'report.json') })),
            { comparisons: [{ a: 'student-kd', b: 'student-ce' }] },
          ),
        ),
      ),
    );
    const metrics = (result as { metrics: Record<string, number> }).metrics;
    near(metrics['student-kd-vs-student-ce/top-1/low'], 0.0151586228825, 1e-12, 'metric low');
    near(metrics['student-kd/top-1/mean'], 0.91, 1e-15, 'metric mean');
    assert.match(
      record.infos.join('\n'),
      /top-1 student-kd - student-ce: 4\.00 pp, 95% interval \[1\.52, 6\.48\] pp: student-kd > student-ce/,
    );
    const md = readFileSync(join(outDir, 'report.md'), 'utf8');
    assert.match(md, /^# Evaluation over 3 seeds/);
    assert.match(md, /Method \(paired t-interval over seeds\): .*sample standard deviation \(divisor n - 1\)/);
    assert.match(md, /\| student-kd \| 91\.00% ± 1\.00 pp \| 3 \| 90\.00%, 92\.00%, 91\.00% \|/);
    assert.match(
      md,
      /\| student-kd - student-ce \| \+4\.00 pp \| 1\.00 pp \| 3 \| \[\+1\.52 pp, \+6\.48 pp\] \| student-kd > student-ce \|/,
    );
    // ECE kd - ce: 0.01, -0.02, 0.01: mean 0 (printed +0.0000 whatever the rounding sign), s = sqrt(0.0006 / 2) = 0.0173205,
    // half = 4.302653 * 0.0173205 / sqrt(3) = 0.0430265.
    assert.match(
      md,
      /## ECE[\s\S]*\| student-kd - student-ce \| \+0\.0000 \| 0\.0173 \| 3 \| \[-0\.0430, \+0\.0430\] \| within noise \|/,
    );

    // evaluate@3 without student-ce: the stage fails naming the report and the role; no output file.
    const bad = join(root, 'bad');
    writeFileSync(join(dirs[2]!, 'report.json'), JSON.stringify(evalReport(seedModels(3, ['teacher', 'student-kd']))));
    const { ctx: badCtx } = makeCtx(seedsPlugin, {}, { outDir: bad, pipelineDir: root, inputs });
    await assert.rejects(
      seedsPlugin.run(badCtx),
      /stage eval-stage: report evaluate@3 \(\S*evaluate@3\/report\.json\) has no model of role "student-ce"/,
    );
    assert.equal(existsSync(join(bad, 'report.json')), false);
    // One seed: refused.
    const { ctx: oneCtx } = makeCtx(
      seedsPlugin,
      {},
      { outDir: join(root, 'one'), pipelineDir: root, inputs: { reports: inputs.reports.slice(0, 1) } },
    );
    await assert.rejects(
      seedsPlugin.run(oneCtx),
      /needs at least 2 reports \(one per seed\) to estimate a spread; got 1/,
    );
    // A bound stage that is not an eval stage.
    writeFileSync(join(dirs[1]!, 'report.json'), '{"format": "distillery-eval-seeds-report"}');
    const { ctx: wrongCtx } = makeCtx(seedsPlugin, {}, { outDir: join(root, 'wrong'), pipelineDir: root, inputs });
    await assert.rejects(
      seedsPlugin.run(wrongCtx),
      /input reports from stage evaluate@2: \S*evaluate@2\/report\.json: not an eval report/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("compare --seeds: report files, stage directories and a run record's fan-out; JSON equals the stage's aggregation", async () => {
  const root = mkdtempSync(join(tmpdir(), 'eval-seeds-cli-'));
  try {
    const reports = seedReports();
    const dirs = writeSeedDirs(root, reports);
    const json = JSON.parse(
      await compareSeedsCommand(dirs, { json: true, pair: ['student-kd:student-ce'], metric: ['top-1'] }),
    ) as SeedsReport;
    assert.deepEqual(json.seeds, ['evaluate@1', 'evaluate@2', 'evaluate@3']);
    assert.deepEqual(
      json.metrics.map((m) => m.metric),
      ['top-1'],
    );
    near(json.metrics[0]!.comparisons[0]!.high, 0.0648413771175, 1e-12, 'high via CLI');
    const text = await compareSeedsCommand([join(dirs[0]!, 'report.json'), dirs[1]!, dirs[2]!], {
      pair: ['student-kd:student-ce'],
    });
    assert.match(
      text,
      /\| student-kd - student-ce \| \+4\.00 pp \| 1\.00 pp \| 3 \| \[\+1\.52 pp, \+6\.48 pp\] \| student-kd > student-ce \|/,
    );
    await assert.rejects(
      compareSeedsCommand(dirs, { pair: ['student-kd'] }),
      /--pair student-kd: expected <role a>:<role b>/,
    );
    await assert.rejects(compareSeedsCommand(dirs.slice(0, 1), {}), /needs at least 2 reports/);

    // A run record whose evaluate@1..3 outputs live in the store: --stage evaluate takes every instance.
    const { LocalStore } = await import('@distillery/core');
    const store = new LocalStore(join(root, '.distill'));
    mkdirSync(store.treesDir, { recursive: true });
    const stages: object[] = [{ id: 'train', plugin: 'student-train', status: 'ran', tree: 'x' }];
    reports.forEach((r, i) => {
      const body = JSON.stringify(r.report);
      const hash = createHash('sha256').update(body).digest('hex');
      mkdirSync(dirname(store.objectPath(hash)), { recursive: true });
      writeFileSync(store.objectPath(hash), body);
      writeFileSync(
        join(store.treesDir, `t${i}.json`),
        JSON.stringify({ files: [{ path: 'report.json', hash, size: body.length }] }),
      );
      stages.push({ id: r.label, plugin: 'eval', status: 'ran', tree: `t${i}` });
    });
    mkdirSync(join(root, '.distill', 'runs'), { recursive: true });
    const runFile = join(root, '.distill', 'runs', 'r1.json');
    writeFileSync(runFile, JSON.stringify({ runId: 'r1', stages }));
    const viaRun = JSON.parse(
      await compareSeedsCommand([runFile], { json: true, stage: 'evaluate', pair: ['student-kd:student-ce'] }),
    ) as SeedsReport;
    assert.deepEqual(viaRun.seeds, ['r1:evaluate@1', 'r1:evaluate@2', 'r1:evaluate@3']);
    assert.deepEqual(metricOf(viaRun, 'top-1'), json.metrics[0]);
    // Without --stage the record's eval stages are the instances of one fan-out.
    assert.equal((JSON.parse(await compareSeedsCommand([runFile], { json: true })) as SeedsReport).seeds.length, 3);
    await assert.rejects(
      compareSeedsCommand([runFile], { stage: 'nope' }),
      /run r1 has no finished eval stage named nope or nope@<item> \(evaluate@1, evaluate@2, evaluate@3\)/,
    );

    // The registered command: three reports imply --seeds; two compare side by side.
    const printed: string[] = [];
    const log = console.log;
    console.log = (line: string) => void printed.push(line);
    try {
      const program = new Command();
      registerCommands(program);
      await program.parseAsync(['compare', ...dirs, '--pair', 'student-kd:student-ce', '--json'], { from: 'user' });
      await program.parseAsync(
        ['compare', dirs[0]!, dirs[1]!, '--seeds', '--metric', 'ece', '--confidence', '0.9', '--json'],
        { from: 'user' },
      );
      await program.parseAsync(['compare', dirs[0]!, dirs[1]!, '--json'], { from: 'user' });
    } finally {
      console.log = log;
    }
    const [three, two, sideBySide] = printed.map((p) => JSON.parse(p) as Record<string, unknown>);
    assert.equal((three as unknown as SeedsReport).seeds.length, 3);
    assert.equal((two as unknown as SeedsReport).confidence, 0.9);
    assert.deepEqual(
      (two as unknown as SeedsReport).metrics.map((m) => m.metric),
      ['ece'],
    );
    assert.ok(Array.isArray(sideBySide!.rows), 'two reports without --seeds: side-by-side rows');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
