/**
 * `why` explains each stale stage once, however many paths lead to it, and a stage without an
 * earlier cache entry says whether it never ran, is retried after a failure, or is rebuilt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  concatStage,
  MARKER,
  makeProject,
  pipelineYaml,
  readJournal,
  runCli,
  startCli,
  waitFor,
  writeText,
} from './helpers.js';

interface PlanDoc {
  stages: Array<{ id: string; status: string; reason: string; key: string | null }>;
}

/** a -> b, a -> c, (b, c) -> d: a diamond, so d reaches a by two paths. */
function diamond(): { root: string; file: string } {
  const root = makeProject('distill-why-diamond-');
  const file = writeText(
    root,
    'd.yaml',
    pipelineYaml([
      concatStage('a', { text: 'A' }),
      concatStage('b', { text: 'B' }, { inputs: { x: 'a' } }),
      concatStage('c', { text: 'C' }, { inputs: { x: 'a' } }),
      concatStage('d', { text: 'D' }, { inputs: { x: ['b', 'c'] } }),
    ]),
  );
  return { root, file };
}

test('why explains a stage reached by several paths once', async () => {
  const { root, file } = diamond();
  const first = await runCli(['run', file, '--quiet'], { cwd: root });
  assert.equal(first.code, 0, first.stderr);
  const why = await runCli(['why', file, 'd', '--set', 'a.text=Z'], { cwd: root });
  assert.equal(why.code, 0, why.stderr);
  const lines = why.stdout.trimEnd().split('\n');
  assert.equal(lines.filter((l) => l.trim().startsWith('a: ')).length, 1, why.stdout);
  assert.deepEqual(
    lines.map((l) => l.trim().split(':')[0]),
    ['d', 'b', 'a', 'c'],
  );
  assert.match(why.stdout, /a: will run: param text: "A" -> "Z"/);
});

test('a stage retried after a failure, or rebuilt after its cache entry went, is not "never ran"', async () => {
  const { root, file } = diamond();
  const failed = await runCli(['run', file, '--json', '--quiet', '--set', 'b.fail=true'], { cwd: root });
  assert.equal(failed.code, 1);
  const failedRun = (JSON.parse(failed.stdout) as { runId: string }).runId;
  // b's parameters differ from the failed attempt's, but there is no earlier entry to compare with.
  const plan = JSON.parse((await runCli(['plan', file, '--json'], { cwd: root })).stdout) as PlanDoc;
  const reasons = Object.fromEntries(plan.stages.map((s) => [s.id, s.reason]));
  assert.equal(reasons.b, `retrying: failed in run ${failedRun}`);
  assert.equal(reasons.c, 'up to date');
  assert.equal(reasons.d, 'upstream will run: b');

  const ok = await runCli(['run', file, '--json', '--quiet'], { cwd: root });
  assert.equal(ok.code, 0, ok.stderr);
  const okDoc = JSON.parse(ok.stdout) as { runId: string; stages: Array<{ id: string; key: string }> };
  const bKey = okDoc.stages.find((s) => s.id === 'b')?.key as string;
  rmSync(join(root, '.distill', 'cache', bKey.slice(0, 2), `${bKey}.json`), { force: true });
  const after = JSON.parse((await runCli(['plan', file, '--json'], { cwd: root })).stdout) as PlanDoc;
  assert.equal(
    after.stages.find((s) => s.id === 'b')?.reason,
    `rebuilding: its output of run ${okDoc.runId} is no longer in the cache`,
  );
});

test('a stage whose run was killed while it ran is resumed, not "never ran"', async () => {
  const root = makeProject('distill-why-kill-');
  const journal = join(root, 'journal.txt');
  const release = join(root, 'release');
  const file = writeText(
    root,
    'k.yaml',
    pipelineYaml([concatStage('a', { text: 'A', journal, waitFile: release }, { plugin: MARKER })]),
  );
  const first = startCli(['run', file, '--json'], { cwd: root });
  await waitFor(
    () => readJournal(journal).some((l) => l.event === 'start' && l.stage === 'a'),
    20_000,
    'stage a to start',
  );
  process.kill(-(first.pid as number), 'SIGKILL');
  await first.result;
  const plan = JSON.parse((await runCli(['plan', file, '--json'], { cwd: root })).stdout) as PlanDoc;
  assert.match(plan.stages[0]?.reason ?? '', /^resuming: run \S+ stopped while it ran$/);
});
