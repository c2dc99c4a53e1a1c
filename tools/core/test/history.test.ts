/**
 * Run history: the lock file `run` writes, `distill runs`, `metrics diff` and `params diff`
 * between runs and against a git commit's lock file, aligned tables and colour rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { colorEnabled, formatTable } from '../src/cli/table.js';
import { concatStage, makeProject, pipelineYaml, runCli, writeText } from './helpers.js';

interface RunsDoc {
  runs: Array<{
    runId: string;
    pipeline: string;
    status: string;
    ran: number;
    cached: number;
    failed: number;
    changedParams: string[];
    metrics: Record<string, number | null>;
  }>;
}
interface DiffDoc {
  a: string;
  b: string;
  metrics?: Array<{ name: string; a: number | null; b: number | null }>;
  params?: Array<{ name: string; a: string | null; b: string | null }>;
}

/** A project in a git repository: a -> b; b's metric "length" is the length of "A+<b.text>". */
function project(): { root: string; file: string } {
  const root = makeProject('distill-history-');
  const file = writeText(
    root,
    'p.yaml',
    pipelineYaml([concatStage('a', { text: 'A' }), concatStage('b', { text: 'B' }, { inputs: { x: 'a' } })]),
  );
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: root, stdio: 'pipe' });
  git('init', '-q');
  git('add', 'p.yaml');
  git('commit', '-qm', 'pipeline');
  return { root, file };
}

const json = <T>(text: string): T => JSON.parse(text) as T;

test('run writes a lock file; runs lists the history with changed params; diffs default to last vs previous', async () => {
  const { root, file } = project();
  const cli = (args: string[]) => runCli(args, { cwd: root });
  assert.equal((await cli(['run', file, '--quiet'])).code, 0);
  const lockPath = join(root, 'locks', 'p.lock.json');
  const lock = json<{
    pipeline: string;
    stages: Record<string, { key: string; params: { text: string }; metrics: Record<string, number> }>;
  }>(readFileSync(lockPath, 'utf8'));
  assert.equal(lock.pipeline, 'p');
  assert.deepEqual(Object.keys(lock.stages), ['a', 'b']);
  assert.equal(lock.stages.b?.params.text, 'B');
  assert.equal(lock.stages.b?.metrics.length, 'A+B'.length);
  // A run that changes nothing leaves the lock file untouched.
  const mtime = statSync(lockPath).mtimeMs;
  assert.equal((await cli(['run', file, '--quiet'])).code, 0);
  assert.equal(statSync(lockPath).mtimeMs, mtime);
  execFileSync('git', ['add', 'locks'], { cwd: root });
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'lock'], { cwd: root });

  assert.equal((await cli(['run', file, '--quiet', '--set', 'b.text=BBBB'])).code, 0);
  const runs = json<RunsDoc>((await cli(['runs', '--json', '--metric', 'b.length'])).stdout);
  assert.equal(runs.runs.length, 3);
  const [last, middle, first] = runs.runs;
  assert.deepEqual([last?.ran, last?.cached, last?.failed], [1, 1, 0]);
  assert.deepEqual(last?.changedParams, ['b.text="BBBB"']);
  assert.deepEqual(middle?.changedParams, []);
  assert.deepEqual(first?.changedParams, []);
  assert.deepEqual(
    runs.runs.map((r) => r.metrics['b.length']),
    ['A+BBBB'.length, 3, 3],
  );
  // The text table: every row's columns start where the header's do.
  const table = (await cli(['runs', 'p.yaml', '--metric', 'b.length'])).stdout.trimEnd().split('\n');
  assert.equal(table.length, 4);
  const runColumn = table[0]?.indexOf('date') ?? -1;
  for (const line of table.slice(1)) assert.match(line.slice(runColumn), /^\d{4}-\d\d-\d\d /);
  assert.doesNotMatch(table.join('\n'), /\u001b\[/, 'no colour when stdout is not a TTY');

  const metrics = json<DiffDoc>((await cli(['metrics', 'diff', '--json'])).stdout);
  assert.equal(metrics.b, last?.runId);
  assert.equal(metrics.a, middle?.runId);
  assert.deepEqual(
    metrics.metrics?.find((m) => m.name === 'b.length'),
    { name: 'b.length', a: 3, b: 6 },
  );
  assert.ok(!metrics.metrics?.some((m) => m.name === 'a.length'), 'unchanged metrics are left out');
  const params = json<DiffDoc>((await cli(['params', 'diff', '--json'])).stdout);
  assert.deepEqual(params.params, [{ name: 'b.text', a: '"B"', b: '"BBBB"' }]);
  // Explicit runs by unique prefix, reversed.
  const reversed = json<DiffDoc>(
    (await cli(['params', 'diff', last?.runId.slice(0, 22) ?? '', first?.runId ?? '', '--json'])).stdout,
  );
  assert.deepEqual(reversed.params, [{ name: 'b.text', a: '"BBBB"', b: '"B"' }]);

  // Across commits: HEAD's committed lock file against the last run; then against the working lock.
  const sinceCommit = json<DiffDoc>((await cli(['metrics', 'diff', 'HEAD', '--json'])).stdout);
  assert.equal(sinceCommit.a, 'HEAD:locks/p.lock.json');
  assert.deepEqual(
    sinceCommit.metrics?.find((m) => m.name === 'b.length'),
    { name: 'b.length', a: 3, b: 6 },
  );
  const lockVsHead = json<DiffDoc>((await cli(['params', 'diff', 'HEAD', 'lock', '--pipeline', 'p', '--json'])).stdout);
  assert.deepEqual(lockVsHead.params, [{ name: 'b.text', a: '"B"', b: '"BBBB"' }]);
  const bad = await cli(['metrics', 'diff', 'no-such-rev']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /"no-such-rev" is neither a run of p .* nor a git revision holding locks\/p\.lock\.json/);
});

test('tables align whatever the cell widths; colour only on a TTY without NO_COLOR', () => {
  const rows = [
    ['a-very-long-run-id-0123456789', '1'],
    ['x', { text: '12.5', style: 'green' as const }],
  ];
  const plain = formatTable(['run', 'value'], rows).trimEnd().split('\n');
  assert.deepEqual(plain, [
    'run                            value',
    'a-very-long-run-id-0123456789      1',
    'x                               12.5',
  ]);
  const coloured = formatTable(['run', 'value'], rows, { color: true });
  assert.match(coloured, /\u001b\[32m12\.5\u001b\[39m/);
  // Stripped of colour codes, the layout is the same.
  assert.deepEqual(
    coloured
      .replace(/\u001b\[\d+m/g, '')
      .trimEnd()
      .split('\n'),
    plain,
  );
  assert.equal(colorEnabled({ isTTY: true }, {}), true);
  assert.equal(colorEnabled({ isTTY: true }, { NO_COLOR: '1' }), false);
  assert.equal(colorEnabled({ isTTY: false }, {}), false);
  assert.equal(colorEnabled({}, {}), false);
});
