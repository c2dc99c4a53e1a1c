import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { loadPipeline, ModuleRegistry } from '@distillery/core';
import { Rng } from '@distillery/runtime/rng';
import type { GenEvalReport } from '../src/gen-eval.js';
import type { GeneratorInfo } from '../src/distill.js';

const repo = resolve(fileURLToPath(import.meta.url), '../../../../..');
const pipeline = join(repo, 'pipelines/f-distill-msd.yaml');

/** Every f-distill instance of the pipeline: K, steps and seed, as the loader resolves them. */
async function distillStages(
  overrides: string[],
): Promise<{ id: string; students: number; steps: number; seed: number }[]> {
  const loaded = await loadPipeline(pipeline, { registry: await new ModuleRegistry().init(), overrides });
  return loaded.stages
    .filter((s) => s.plugin.name === 'f-distill')
    .map((s) => ({
      id: s.id,
      students: s.params.students as number,
      steps: s.params.steps as number,
      seed: s.params.seed as number,
    }));
}

test('f-distill-msd.yaml (shipped params): every K gets the same total generator steps, 3 seeds, K = 1, 2, 4', async () => {
  const stages = await distillStages([]);
  const totals = new Set(stages.map((s) => s.steps * s.students));
  assert.equal(totals.size, 1, `steps x K differs across stages: ${JSON.stringify(stages)}`);
  for (const K of [1, 2, 4]) {
    const ofK = stages.filter((s) => s.students === K);
    assert.equal(ofK.length, 3 * K, `K = ${K}: 3 seeds x ${K} students`);
    assert.deepEqual([...new Set(ofK.map((s) => s.seed))].sort(), [1, 2, 3]);
  }
});

/** IDX (ubyte) files of n 28x28 images, class c = a bright 6x6 block at (2 + 2c, 2 + 2c) on noise. */
function writeIdx(dir: string, prefix: string, perClass: number, seed: number): void {
  const rng = new Rng(seed);
  const n = perClass * 10;
  const images = Buffer.alloc(16 + n * 784);
  images.writeUInt32BE(0x803, 0);
  images.writeUInt32BE(n, 4);
  images.writeUInt32BE(28, 8);
  images.writeUInt32BE(28, 12);
  const labels = Buffer.alloc(8 + n);
  labels.writeUInt32BE(0x801, 0);
  labels.writeUInt32BE(n, 4);
  for (let i = 0; i < n; i++) {
    const c = i % 10;
    labels[8 + i] = c;
    for (let p = 0; p < 784; p++) images[16 + i * 784 + p] = Math.floor(40 * rng.next());
    for (let y = 0; y < 6; y++)
      for (let x = 0; x < 6; x++)
        images[16 + i * 784 + (2 + 2 * c + y) * 28 + 2 + 2 * c + x] = 200 + Math.floor(55 * rng.next());
  }
  writeFileSync(join(dir, `${prefix}-images-idx3-ubyte.gz`), gzipSync(images));
  writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte.gz`), gzipSync(labels));
}

function findFiles(dir: string, name: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    return statSync(path).isDirectory() ? findFiles(path, name) : entry === name ? [path] : [];
  });
}

test('f-distill-msd.yaml smoke run at CI scale: K students per seed evaluated as one generator, equal total steps, FID intervals', {
  timeout: 600_000,
}, async () => {
  const root = mkdtempSync(join(tmpdir(), 'f-distill-msd-'));
  try {
    const data = join(root, 'idx');
    mkdirSync(data);
    writeIdx(data, 'train', 20, 1);
    writeIdx(data, 't10k', 8, 2);
    const overrides = [
      `params.data=${data}`,
      'params.teacher.hidden=[16]',
      'params.teacher.steps=10',
      'params.teacher.batchSize=32',
      'params.teacher.sampleSteps=2',
      'params.teacher.samplesPerClass=6',
      'params.classifier.hidden=[8]',
      'params.classifier.epochs=1',
      // JS with a one-step warm-up runs the ratio weighting after h = 1; total 4 steps for every K.
      'params.distill.divergence=js',
      'params.distill.warmupSteps=1',
      'params.distill.steps.k1=4',
      'params.distill.steps.k2=2',
      'params.distill.steps.k4=1',
      'params.distill.batchSize=8',
      'params.distill.fakeUpdates=1',
      'params.eval.samples=60',
      'params.eval.prSamples=40',
      'params.eval.bootstrap=4',
    ];
    const stdout = execFileSync(
      process.execPath,
      [
        join(repo, 'tools/core/bin/distill.js'),
        'run',
        pipeline,
        '--root',
        root,
        '--json',
        '--quiet',
        ...overrides.flatMap((o) => ['--set', o]),
      ],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const run = JSON.parse(stdout) as { status: string; stages: { id: string; status: string }[] };
    assert.ok(
      run.stages.every((s) => s.status === 'ran'),
      JSON.stringify(run.stages),
    );
    // Generators: steps x K = 4 for every student, student k of K owns consecutive class block k.
    const infos = findFiles(join(root, 'out'), 'generator.json').map(
      (f) => JSON.parse(readFileSync(f, 'utf8')) as GeneratorInfo,
    );
    assert.equal(infos.length, 3 * (1 + 2 + 4));
    for (const info of infos) {
      // Consecutive blocks of 10 classes: K = 1 -> 10, K = 2 -> 5 and 5, K = 4 -> 3, 2, 3, 2.
      const K = info.classes.length === 10 ? 1 : info.classes.length === 5 ? 2 : 4;
      assert.equal(info.steps * K, 4, `classes ${JSON.stringify(info.classes)}: ${info.steps} steps`);
      assert.equal(info.divergence, 'js');
    }
    const report = JSON.parse(
      readFileSync(findFiles(join(root, 'out'), 'report.json').find((f) => f.includes('evaluate'))!, 'utf8'),
    ) as GenEvalReport;
    const names = report.rows.map((r) => r.name).sort();
    assert.deepEqual(names, [
      'k1-seed1',
      'k1-seed2',
      'k1-seed3',
      'k2-seed1',
      'k2-seed2',
      'k2-seed3',
      'k4-seed1',
      'k4-seed2',
      'k4-seed3',
      'teacher',
    ]);
    for (const r of report.rows) {
      assert.equal(r.students, r.name === 'teacher' ? 1 : Number(r.name[1]), r.name);
      assert.ok(Number.isFinite(r.frechet) && r.frechet > 0, `${r.name}: FID ${r.frechet}`);
      assert.ok(
        r.frechetLow! <= r.frechetHigh! && Number.isFinite(r.frechetLow!),
        `${r.name}: interval [${r.frechetLow}, ${r.frechetHigh}]`,
      );
      assert.ok(r.precision >= 0 && r.precision <= 1 && r.recall >= 0 && r.recall <= 1);
    }
    assert.deepEqual(report.bootstrap, { resamples: 4, seed: 12345 + 1000, level: 0.95 });
    // The same overrides keep steps x K equal in the loader's view too.
    const stages = await distillStages(overrides);
    assert.ok(stages.every((s) => s.steps * s.students === 4));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
