import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GenEvalReport } from '../src/gen-eval.js';

const repo = resolve(fileURLToPath(import.meta.url), '../../../../..');

test('pipelines/f-distill-2d.yaml: distilled one-step generators land far closer to the teacher than an untrained one', {
  timeout: 300_000,
}, () => {
  const root = mkdtempSync(join(tmpdir(), 'f-distill-2d-'));
  try {
    const stdout = execFileSync(
      process.execPath,
      [
        join(repo, 'tools/core/bin/distill.js'),
        'run',
        join(repo, 'pipelines/f-distill-2d.yaml'),
        '--root',
        root,
        '--json',
        '--quiet',
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
    const report = JSON.parse(
      readFileSync(join(root, 'out/f-distill-2d/evaluate/report.json'), 'utf8'),
    ) as GenEvalReport;
    const row = (name: string) => report.rows.find((r) => r.name === name)!;
    const untrained = row('untrained');
    const init = row('teacher-init');
    // The teacher's samples are 8 tight modes on a radius-2 ring: a random-init generator is
    // nowhere near them (Frechet ~3.6), the teacher-initialised one is blurred (~0.36, partial coverage).
    assert.ok(untrained.frechet > 1, `untrained Frechet ${untrained.frechet}`);
    for (const name of ['rkl', 'js', 'students2']) {
      const r = row(name);
      assert.ok(
        r.frechet < 0.05 * untrained.frechet,
        `${name}: Frechet ${r.frechet} vs untrained ${untrained.frechet}`,
      );
      assert.ok(r.frechet < 0.5 * init.frechet, `${name}: Frechet ${r.frechet} vs teacher-initialised ${init.frechet}`);
      assert.equal(r.coverage, 1, `${name} covers every mode`);
      assert.ok(r.precision > 0.4 && r.recall > 0.4, `${name}: precision ${r.precision}, recall ${r.recall}`);
      assert.equal(r.nfe, 1);
    }
    assert.equal(row('students2').students, 2);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
