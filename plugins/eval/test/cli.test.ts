import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { cocoCommand, compareCommand, fidCommand, fidStatsCommand, registerCommands } from '../src/cli.js';
import { encodeNpy } from '../src/index.js';

test('eval coco prints the 12 numbers as JSON and as text', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
  try {
    const gt = join(dir, 'gt.json');
    const dets = join(dir, 'dets.json');
    writeFileSync(
      gt,
      JSON.stringify({
        images: [{ id: 1 }],
        categories: [{ id: 1 }],
        annotations: [{ id: 1, image_id: 1, category_id: 1, bbox: [0, 0, 10, 10], area: 100, iscrowd: 0 }],
      }),
    );
    writeFileSync(
      dets,
      JSON.stringify([
        { image_id: 1, category_id: 1, bbox: [50, 50, 10, 10], score: 0.9 },
        { image_id: 1, category_id: 1, bbox: [0, 0, 10, 10], score: 0.8 },
      ]),
    );
    const out = JSON.parse(await cocoCommand({ gt, dets, json: true })) as Record<string, number>;
    assert.deepEqual(Object.keys(out), [
      'AP',
      'AP50',
      'AP75',
      'APs',
      'APm',
      'APl',
      'AR1',
      'AR10',
      'AR100',
      'ARs',
      'ARm',
      'ARl',
    ]);
    assert.ok(Math.abs(out.AP! - 0.5) < 1e-12);
    assert.equal(out.APm, -1);
    assert.equal(out.AR1, 0);
    const text = await cocoCommand({ gt, dets });
    assert.match(text, /Average Precision {2}\(AP\) @\[ IoU=0\.50:0\.95 \| area= {3}all \| maxDets=100 \] = 0\.500/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('eval fid on .npy features and saved .npz statistics; commands are registered', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
  try {
    // 1-D features with known sample statistics: a = {0, 2} (mean 1, var 2), b = {3, 5, 7} (mean 5, var 4).
    const a = join(dir, 'a.npy');
    const b = join(dir, 'b.npy');
    writeFileSync(a, encodeNpy(Float64Array.from([0, 2]), [2, 1]));
    writeFileSync(b, encodeNpy(Float64Array.from([3, 5, 7]), [3, 1]));
    const expected = 16 + (Math.sqrt(2) - 2) ** 2;
    const { fid } = JSON.parse(await fidCommand(a, b, { json: true })) as { fid: number };
    assert.ok(Math.abs(fid - expected) < 1e-12, `${fid} vs ${expected}`);
    const npz = join(dir, 'b.npz');
    assert.match(await fidStatsCommand(b, npz), /D = 1, N = 3/);
    const again = JSON.parse(await fidCommand(a, npz, { json: true })) as { fid: number };
    assert.ok(Math.abs(again.fid - expected) < 1e-12);

    const program = new Command();
    registerCommands(program);
    const evalCmd = program.commands.find((c) => c.name() === 'eval');
    assert.deepEqual(
      evalCmd?.commands.map((c) => c.name()),
      ['coco', 'fid', 'fid-stats'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A minimal valid report with one model whose numbers the caller picks. */
function report(models: { name: string; top1: number; ece: number; p50: number; params: number }[], split = 'test') {
  return {
    format: 'distillery-eval-report',
    version: 1,
    dataset: { split, samples: 10, skippedUnlabelled: 0, numClasses: 3 },
    topk: [1, 5],
    eceBins: 15,
    models: models.map((m) => ({
      name: m.name,
      role: 'student',
      modelSha256: 'x',
      metrics: {
        samples: 10,
        topk: { 1: m.top1, 5: 1 },
        top1: m.top1,
        perClassAccuracy: [],
        classCounts: [],
        ece: m.ece,
        reliability: [],
      },
      efficiency: {
        parameters: m.params,
        flops: null,
        latencyP50Ms: m.p50,
        latencyP95Ms: m.p50,
        throughput: 1000 / m.p50,
        batch: 1,
        iterations: 1,
        threads: 1,
      },
    })),
    efficiency: [],
    plots: [],
  };
}

test('compare: two reports side by side from files, stage directories and run records', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
  try {
    const a = join(dir, 'a.json');
    writeFileSync(
      a,
      JSON.stringify(
        report([
          { name: 'kd', top1: 0.5, ece: 0.1, p50: 2, params: 1000 },
          { name: 'ce', top1: 0.4, ece: 0.2, p50: 2, params: 1000 },
        ]),
      ),
    );
    // B as an eval stage's output directory (out/<pipeline>/<stage>/report.json).
    mkdirSync(join(dir, 'out', 'evalB'), { recursive: true });
    writeFileSync(
      join(dir, 'out', 'evalB', 'report.json'),
      JSON.stringify(report([{ name: 'kd', top1: 0.625, ece: 0.05, p50: 1, params: 2500 }])),
    );
    const json = JSON.parse(await compareCommand(a, join(dir, 'out', 'evalB'), { json: true })) as {
      a: string;
      b: string;
      rows: { model: string; metric: string; a: number | null; b: number | null; delta: number | null }[];
    };
    assert.equal(json.b, 'evalB');
    const row = (model: string, metric: string) => json.rows.find((r) => r.model === model && r.metric === metric);
    assert.deepEqual(row('kd', 'top-1'), { model: 'kd', metric: 'top-1', a: 0.5, b: 0.625, delta: 0.125 });
    assert.deepEqual(row('kd', 'ECE'), { model: 'kd', metric: 'ECE', a: 0.1, b: 0.05, delta: 0.05 - 0.1 });
    assert.deepEqual(row('kd', 'parameters'), { model: 'kd', metric: 'parameters', a: 1000, b: 2500, delta: 1500 });
    assert.deepEqual(row('ce', 'top-1'), { model: 'ce', metric: 'top-1', a: 0.4, b: null, delta: null });
    assert.equal(row('kd', 'FLOPs'), undefined, 'a quantity neither side has is left out');
    const text = await compareCommand(a, join(dir, 'out', 'evalB'));
    assert.match(text, /\| model \| metric \| A: \S*a\.json \| B: evalB \| delta \(B - A\) \|/);
    assert.match(text, /\| kd \| top-1 \| 0\.5000 \| 0\.6250 \| \+0\.1250 \|/);
    assert.match(text, /\| kd \| parameters \| 1\.00k \| 2\.50k \| \+1\.50k \|/);
    assert.match(text, /\| ce \| top-1 \| 0\.4000 \| - \| - \|/);

    // A run record whose eval stage output lives in the workspace store (.distill/).
    const { LocalStore } = await import('@distillery/core');
    const store = new LocalStore(join(dir, '.distill'));
    const body = JSON.stringify(report([{ name: 'kd', top1: 0.75, ece: 0.05, p50: 1, params: 2500 }], 'val'));
    const hash = createHash('sha256').update(body).digest('hex');
    mkdirSync(dirname(store.objectPath(hash)), { recursive: true });
    writeFileSync(store.objectPath(hash), body);
    mkdirSync(store.treesDir, { recursive: true });
    writeFileSync(
      join(store.treesDir, 'tree1.json'),
      JSON.stringify({ files: [{ path: 'report.json', hash, size: body.length }] }),
    );
    mkdirSync(join(dir, '.distill', 'runs'), { recursive: true });
    const runFile = join(dir, '.distill', 'runs', 'r1.json');
    const stage = (id: string, plugin: string, tree?: string) => ({
      id,
      plugin,
      status: 'ran',
      durationMs: 1,
      metrics: {},
      ...(tree ? { tree } : {}),
    });
    writeFileSync(
      runFile,
      JSON.stringify({
        runId: 'r1',
        pipeline: 'p',
        file: 'p.yaml',
        startedAt: '',
        status: 'ok',
        stages: [stage('train', 'student-train', 'other'), stage('eval', 'eval', 'tree1')],
      }),
    );
    const viaRun = JSON.parse(await compareCommand(a, runFile, { json: true })) as {
      b: string;
      note?: string;
      rows: { model: string; metric: string; b: number | null }[];
    };
    assert.equal(viaRun.b, 'r1:eval');
    assert.equal(viaRun.rows.find((r) => r.model === 'kd' && r.metric === 'top-1')?.b, 0.75);
    assert.match(viaRun.note ?? '', /A evaluated split "test".*B split "val"/);
    await assert.rejects(
      compareCommand(a, runFile, { stage: 'nope' }),
      /run r1 has no finished eval stage named nope \(eval\)/,
    );
    // Bad inputs are named.
    writeFileSync(join(dir, 'bad.json'), '{"format": "something-else"}');
    await assert.rejects(compareCommand(a, join(dir, 'bad.json')), /bad\.json: not an eval report/);
    writeFileSync(join(dir, 'broken.json'), '{"format": ');
    await assert.rejects(compareCommand(a, join(dir, 'broken.json')), /broken\.json: malformed JSON/);
    await assert.rejects(compareCommand(a, join(dir, 'nothing')), /nothing: no such file or directory/);

    const program = new Command();
    registerCommands(program);
    assert.deepEqual(
      program.commands.map((c) => c.name()),
      ['compare', 'eval'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
