/**
 * Smoke run of pipelines/detection.yaml on the real data (Debian's dataset-fashion-mnist) at CI
 * size: 96 / 16 / 32 canvases and 5 steps per detector. The whole DAG (canvases, two teachers,
 * their stored outputs, students over the seed fan-out, the evaluation) runs, the report holds what
 * the README quotes, a no-change rerun executes nothing, and pipelines/detection-tune.yaml then
 * reuses the teachers from the cache and runs only its validation grid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DetectReport } from '../src/evaluate.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const DATA = '/usr/share/datasets/fashion-mnist';

function run(root: string, file = 'detection'): { status: string; stages: { id: string; status: string }[] } {
  const r = spawnSync(
    process.execPath,
    [
      join(repo, 'tools/core/bin/distill.js'),
      'run',
      join(repo, `pipelines/${file}.yaml`),
      '--root',
      root,
      '--json',
      ...['maxSteps=5', 'canvases.train=96', 'canvases.val=16', 'canvases.test=32'].flatMap((s) => [
        '--set',
        `params.${s}`,
      ]),
    ],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  assert.equal(r.status, 0, `distill run failed:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout) as { status: string; stages: { id: string; status: string }[] };
}

test('pipelines/detection.yaml runs end to end at 5 steps per detector; the report compares seeds; a rerun is cached', {
  timeout: 600_000,
}, async (t) => {
  if (!existsSync(join(DATA, 'train-images-idx3-ubyte.gz'))) {
    t.skip(`${DATA} missing (apt-get install dataset-fashion-mnist)`);
    return;
  }
  const root = mkdtempSync(join(tmpdir(), 'detection-smoke-'));
  try {
    const first = run(root);
    assert.equal(first.status, 'ok');
    const report = JSON.parse(
      readFileSync(join(root, 'out', 'detection', 'evaluate', 'report.json'), 'utf8'),
    ) as DetectReport;
    assert.equal(report.dataset.split, 'test');
    assert.equal(report.dataset.images, 32);
    assert.deepEqual(
      report.models.map((m) => m.name).sort(),
      [
        'teacher-a',
        'teacher-b',
        ...['hard', 'kd', 'adv', 'untrained'].flatMap((r) => [1, 2, 3].map((s) => `student-${r}@${s}`)),
      ].sort(),
    );
    for (const m of report.models) {
      assert.ok(m.coco.AP >= 0 && m.coco.AP <= 1, `${m.name} AP ${m.coco.AP}`);
      assert.ok(m.parameters > 0 && m.flops > 0 && m.latency.p50Ms > 0);
    }
    // The student is at least 3x cheaper than teacher-a (issue 22), as the report computes it.
    for (const e of report.efficiency.filter((r) => r.teacher === 'teacher-a'))
      assert.ok(e.flopReduction >= 3, `${e.student}: FLOP reduction ${e.flopReduction}`);
    assert.deepEqual(
      report.seeds.comparisons.filter((c) => c.metric === 'AP').map((c) => `${c.a} - ${c.b}`),
      [
        'student-kd - student-hard',
        'student-adv - student-hard',
        'student-adv - student-kd',
        'student-untrained - student-hard',
      ],
    );
    for (const c of report.seeds.comparisons) assert.equal(c.seeds.length, 3);
    // The validation grid: same canvases, teachers and teacher outputs, all from the cache.
    const tuneRun = run(root, 'detection-tune');
    const ran = tuneRun.stages.filter((s) => s.status !== 'cached').map((s) => s.id);
    assert.ok(
      ran.length >= 10 && ran.every((id) => id.startsWith('tune-')),
      `detection-tune ran only its tune-* stages: ${ran.join(', ')}`,
    );
    const tune = JSON.parse(
      readFileSync(join(root, 'out', 'detection-tune', 'tune-eval', 'report.json'), 'utf8'),
    ) as DetectReport;
    assert.equal(tune.dataset.split, 'val');
    assert.equal(tune.models.filter((m) => m.name.startsWith('tune-kd@')).length, 6);
    assert.equal(tune.models.filter((m) => m.name.startsWith('tune-terms@')).length, 4);

    const second = run(root);
    assert.deepEqual(
      second.stages.filter((s) => s.status !== 'cached').map((s) => s.id),
      [],
      'a no-change rerun executes nothing',
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
