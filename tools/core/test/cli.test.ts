/**
 * The `distill` CLI as a user runs it (a subprocess): run --json shape and exit codes 0/1/2,
 * plan --json, status --json, why, dag (Mermaid, DOT), gc, and a plugin code change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Workspace } from '../src/runner/workspace.js';
import {
  CONCAT,
  cacheEntryCount,
  concatStage,
  executed,
  listTree,
  makeProject,
  output,
  pipelineYaml,
  runCli,
  writeText,
} from './helpers.js';

interface RunDoc {
  runId: string;
  pipeline: string;
  status: string;
  stages: Array<{
    id: string;
    status: string;
    durationMs: number;
    key: string | null;
    reason?: string;
    error?: string;
    metrics: Record<string, number>;
  }>;
}
interface PlanDoc {
  pipeline: string;
  stages: Array<{ id: string; plugin: string; status: string; reason: string; key: string | null }>;
}
interface StatusDoc {
  pipeline: string;
  lastRun: string | null;
  stages: Array<{
    id: string;
    status: string;
    durationMs: number;
    key: string | null;
    upToDate: boolean;
    reason?: string;
  }>;
}

/** a -> b -> c. */
function project(): { root: string; file: string; journal: string } {
  const root = makeProject('distill-cli-');
  const journal = join(root, 'journal.txt');
  const file = writeText(
    root,
    'p.yaml',
    pipelineYaml([
      concatStage('a', { text: 'A', journal }),
      concatStage('b', { text: 'B', journal }, { inputs: { x: 'a' } }),
      concatStage('c', { text: 'C', journal }, { inputs: { x: 'b' } }),
    ]),
  );
  return { root, file, journal };
}

const P = project();
const cli = (args: string[]): ReturnType<typeof runCli> => runCli(args, { cwd: P.root });

test('plan before any run: everything would run, nothing runs', async () => {
  const r = await cli(['plan', 'p.yaml', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as PlanDoc;
  assert.equal(doc.pipeline, 'p');
  assert.deepEqual(
    doc.stages.map((s) => [s.id, s.plugin, s.status, s.reason]),
    [
      ['a', 'test-concat', 'run', 'never ran'],
      ['b', 'test-concat', 'run', 'upstream will run: a'],
      ['c', 'test-concat', 'run', 'upstream will run: b'],
    ],
  );
  // a's key is known (no upstream); b's and c's depend on outputs not produced yet.
  assert.match(doc.stages[0]?.key ?? '', /^[0-9a-f]{64}$/);
  assert.equal(doc.stages[1]?.key, null);
  assert.deepEqual(executed(P.journal), []);
  assert.ok(!existsSync(join(P.root, 'out')));
  const text = await cli(['plan', 'p.yaml']);
  assert.match(text.stdout, /3 of 3 stages would run\n$/);
});

test('status before any run', async () => {
  const r = await cli(['status', 'p.yaml', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as StatusDoc;
  assert.equal(doc.lastRun, null);
  assert.deepEqual(
    doc.stages.map((s) => [s.id, s.status, s.upToDate]),
    [
      ['a', 'never-run', false],
      ['b', 'never-run', false],
      ['c', 'never-run', false],
    ],
  );
});

let firstKeys: Array<string | null> = [];

test('run --json: one document with id, status, durationMs and key per stage; exit 0', async () => {
  const r = await cli(['run', 'p.yaml', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as RunDoc;
  assert.equal(doc.pipeline, 'p');
  assert.equal(doc.status, 'ok');
  assert.match(doc.runId, /^\d{8}T\d{9}-\d+-\w+$/);
  assert.deepEqual(
    doc.stages.map((s) => [s.id, s.status]),
    [
      ['a', 'ran'],
      ['b', 'ran'],
      ['c', 'ran'],
    ],
  );
  for (const s of doc.stages) {
    assert.equal(typeof s.durationMs, 'number');
    assert.ok(s.durationMs > 0);
    assert.match(s.key ?? '', /^[0-9a-f]{64}$/);
    assert.equal(s.reason, 'never ran');
  }
  // The plugin's metric: length of "A+B" is 3.
  assert.equal(doc.stages[1]?.metrics.length, 3);
  assert.equal(
    doc.stages[0]?.key,
    (JSON.parse((await cli(['plan', 'p.yaml', '--json'])).stdout) as PlanDoc).stages[0]?.key,
  );
  firstKeys = doc.stages.map((s) => s.key);
  // Progress goes to stderr (plain lines when not a TTY), with a summary line.
  assert.match(r.stderr, /▶ a \(test-concat; never ran\)/);
  assert.match(r.stderr, /✓ c ran in /);
  // The summary, then where the results are (no stage writes a report here: the output folder).
  assert.match(r.stderr, /p: 3 ran, 0 cached, 0 failed, 0 skipped in \S+ \(run \S+\)\nresults: out\/p\/\n$/);
  // Each stage's full log is kept on disk.
  assert.ok(existsSync(join(P.root, '.distill', 'logs', doc.runId, 'a.log')));
});

test('a second run --json: everything cached with the same keys', async () => {
  const r = await cli(['run', 'p.yaml', '--json', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', '--quiet prints nothing on stderr');
  const doc = JSON.parse(r.stdout) as RunDoc;
  assert.deepEqual(
    doc.stages.map((s) => [s.id, s.status, s.durationMs]),
    [
      ['a', 'cached', 0],
      ['b', 'cached', 0],
      ['c', 'cached', 0],
    ],
  );
  assert.deepEqual(
    doc.stages.map((s) => s.key),
    firstKeys,
  );
  assert.deepEqual(executed(P.journal).sort(), ['a', 'b', 'c']);
});

test('status --json after a run, and with a changed parameter', async () => {
  const r = await cli(['status', 'p.yaml', '--json']);
  const doc = JSON.parse(r.stdout) as StatusDoc;
  assert.ok(doc.lastRun);
  // The last run served everything from the cache.
  assert.deepEqual(
    doc.stages.map((s) => [s.id, s.status, s.upToDate, s.key]),
    [
      ['a', 'cached', true, firstKeys[0]],
      ['b', 'cached', true, firstKeys[1]],
      ['c', 'cached', true, firstKeys[2]],
    ],
  );
  const changed = JSON.parse((await cli(['status', 'p.yaml', '--json', '--set', 'b.repeat=2'])).stdout) as StatusDoc;
  assert.deepEqual(
    changed.stages.map((s) => [s.id, s.upToDate, s.reason ?? null]),
    [
      ['a', true, null],
      ['b', false, 'param repeat: 1 -> 2'],
      ['c', false, 'upstream will run: b'],
    ],
  );
});

test('plan --json and why after a parameter change', async () => {
  const plan = JSON.parse((await cli(['plan', 'p.yaml', '--json', '--set', 'b.text=X'])).stdout) as PlanDoc;
  assert.deepEqual(
    plan.stages.map((s) => [s.id, s.status, s.reason]),
    [
      ['a', 'cached', 'up to date'],
      ['b', 'run', 'param text: "B" -> "X"'],
      ['c', 'run', 'upstream will run: b'],
    ],
  );
  const why = await cli(['why', 'p.yaml', 'c', '--set', 'b.text=X']);
  assert.equal(why.code, 0, why.stderr);
  assert.equal(why.stdout, 'c: will run: upstream will run: b\n  b: will run: param text: "B" -> "X"\n');
  const upToDate = await cli(['why', 'p.yaml', 'a']);
  assert.equal(upToDate.stdout, `a: up to date (key ${firstKeys[0]?.slice(0, 12)})\n`);
  const plain = await cli(['plan', 'p.yaml', '--from', 'b']);
  assert.match(plain.stdout, /2 of 3 stages would run\n$/);
  assert.deepEqual(executed(P.journal).length, 3, 'plan and why ran nothing');
});

test('why names a plugin code change and a path param change', async () => {
  const root = makeProject('distill-why-');
  // A private copy of the concat plugin, resolvable from the project (its imports need node_modules).
  symlinkSync(join(CONCAT, '..', '..', '..', '..', '..', '..', 'node_modules'), join(root, 'node_modules'));
  mkdirSync(join(root, 'plugins'));
  const plugin = join(root, 'plugins', 'mine.js');
  copyFileSync(CONCAT, plugin);
  writeText(root, 'data.txt', 'v1');
  const file = writeText(
    root,
    'p.yaml',
    pipelineYaml([concatStage('a', { text: 'A', file: 'data.txt' }, { plugin: './plugins/mine.js' })]),
  );
  const first = await runCli(['run', file, '--quiet'], { cwd: root });
  assert.equal(first.code, 0, first.stderr);
  writeFileSync(plugin, `${readFileSync(plugin, 'utf8')}\n// a change\n`);
  writeText(root, 'data.txt', 'v2');
  const why = await runCli(['why', file, 'a'], { cwd: root });
  assert.equal(why.code, 0, why.stderr);
  assert.match(
    why.stdout,
    /^a: will run: plugin code changed \([0-9a-f]{12}\S* -> [0-9a-f]{12}\S*\); content of path param file changed\n$/,
  );
});

test('exit code 1 when a stage fails, with the stderr tail in the error', async () => {
  const r = await cli(['run', 'p.yaml', '--json', '--set', 'b.crash=true']);
  assert.equal(r.code, 1);
  const doc = JSON.parse(r.stdout) as RunDoc;
  assert.equal(doc.status, 'failed');
  assert.deepEqual(
    doc.stages.map((s) => [s.id, s.status]),
    [
      ['a', 'cached'],
      ['b', 'failed'],
      ['c', 'skipped'],
    ],
  );
  assert.match(doc.stages[1]?.error ?? '', /killed by SIGKILL/);
  assert.equal(doc.stages[2]?.reason, 'upstream failed: b');
  assert.match(r.stderr, /✗ b failed after/);
  const fail = await cli(['run', 'p.yaml', '--quiet', '--set', 'b.fail=true']);
  assert.equal(fail.code, 1);
  // The previous good outputs of b stay in place: a failed attempt replaces nothing.
  assert.equal(output(P.root, 'p', 'b'), 'A+B');
});

test('exit code 2 for an invalid pipeline: located errors on stderr, nothing run', async () => {
  writeText(
    P.root,
    'bad.yaml',
    `stages:\n  a:\n    plugn: ${CONCAT}\n  b:\n    plugin: ${CONCAT}\n    needs: [nope]\n`,
  );
  const before = executed(P.journal).length;
  const r = await cli(['run', 'bad.yaml']);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(
    r.stderr,
    /^bad\.yaml:3:5: error: unknown key "plugn" in stage "a" \(did you mean "plugin"\?\)\n {2}3 \| {5}plugn: /m,
  );
  // Every problem in one report: the dangling need of another stage too.
  assert.match(r.stderr, /^bad\.yaml:6:13: error: stage "b" refers to unknown stage "nope"$/m);
  assert.match(r.stderr, /\n2 error\(s\); nothing was run\n$/);
  assert.equal(executed(P.journal).length, before);
  // Fixed plugin key, the dangling need is still reported.
  writeText(
    P.root,
    'bad.yaml',
    `stages:\n  a:\n    plugin: ${CONCAT}\n  b:\n    plugin: ${CONCAT}\n    needs: [nope]\n`,
  );
  const r2 = await cli(['plan', 'bad.yaml']);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /^bad\.yaml:6:13: error: stage "b" refers to unknown stage "nope"$/m);
  const missing = await cli(['run', 'missing.yaml']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing\.yaml: error: cannot read pipeline file/);
  const unknownStage = await cli(['run', 'p.yaml', '--force', 'zz']);
  assert.equal(unknownStage.code, 2);
  assert.match(unknownStage.stderr, /unknown stage "zz"/);
  const badSet = await cli(['run', 'p.yaml', '--set', 'b.repeat=many']);
  assert.equal(badSet.code, 2);
  assert.match(
    badSet.stderr,
    /"repeat" in parameters of stage "b" \(plugin test-concat\) must be integer, got string "many" \(set by --set b\.repeat=many\)/,
  );
});

test('dag: Mermaid and DOT', async () => {
  const mermaid = await cli(['dag', 'p.yaml']);
  assert.equal(mermaid.code, 0, mermaid.stderr);
  assert.equal(
    mermaid.stdout,
    [
      'graph TD',
      '  s0["a<br/><small>test-concat</small>"]',
      '  s1["b<br/><small>test-concat</small>"]',
      '  s2["c<br/><small>test-concat</small>"]',
      '  s0 --> s1',
      '  s1 --> s2',
      '',
    ].join('\n'),
  );
  const dot = await cli(['dag', 'p.yaml', '--format', 'dot']);
  assert.equal(
    dot.stdout,
    [
      'digraph "p" {',
      '  rankdir=TB;',
      '  node [shape=box];',
      '  s0 [label="a\\n(test-concat)"];',
      '  s1 [label="b\\n(test-concat)"];',
      '  s2 [label="c\\n(test-concat)"];',
      '  s0 -> s1;',
      '  s1 -> s2;',
      '}',
      '',
    ].join('\n'),
  );
  const bad = await cli(['dag', 'p.yaml', '--format', 'png']);
  assert.equal(bad.code, 2);
});

test('gc removes unreferenced objects, trees and tmp; keeps what entries reference', async () => {
  const ws = new Workspace(P.root);
  const entries = cacheEntryCount(P.root);
  const objectsBefore = listTree(ws.store.objectsDir);
  // Garbage: an object and a tree no entry references, and a dead run's scratch directory.
  writeText(ws.store.objectsDir, `ff/${'e'.repeat(62)}`, 'orphan bytes');
  writeText(
    ws.store.treesDir,
    `${'d'.repeat(64)}.json`,
    JSON.stringify({ files: [{ path: 'x', hash: `ff${'e'.repeat(62)}`, size: 12 }] }),
  );
  writeText(ws.store.tmpDir, 'deadbeef-1234/out/partial.bin', 'partial');
  const dry = await cli(['gc', '--root', P.root, '--dry-run', '--json']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.deepEqual(JSON.parse(dry.stdout), { objects: 1, trees: 1, entries: 0, tmp: 1, bytes: 12, kept: [] });
  assert.equal(listTree(ws.store.tmpDir).length, 1, 'dry run removes nothing');
  const gc = await cli(['gc', '--root', P.root, '--json']);
  assert.deepEqual(JSON.parse(gc.stdout), { objects: 1, trees: 1, entries: 0, tmp: 1, bytes: 12, kept: [] });
  assert.deepEqual(listTree(ws.store.objectsDir), objectsBefore);
  assert.deepEqual(listTree(ws.store.tmpDir), []);
  assert.equal(cacheEntryCount(P.root), entries);
  // Everything still served from the cache.
  const before = executed(P.journal).length;
  const r = JSON.parse((await cli(['run', 'p.yaml', '--json', '--quiet'])).stdout) as RunDoc;
  assert.deepEqual(
    r.stages.map((s) => s.status),
    ['cached', 'cached', 'cached'],
  );
  assert.equal(executed(P.journal).length, before);
});

test('gc --workspace drops entries the latest runs do not use (the run-cache is lost for them)', async () => {
  // Run a variant, then the original again: the variant's entries are not used by the latest run.
  const variant = await cli(['run', 'p.yaml', '--quiet', '--set', 'c.text=V']);
  assert.equal(variant.code, 0, variant.stderr);
  await cli(['run', 'p.yaml', '--quiet']);
  const gc = await cli(['gc', '--root', P.root, '--workspace', '--json']);
  const result = JSON.parse(gc.stdout) as { entries: number; objects: number };
  assert.ok(result.entries >= 1, `dropped ${result.entries} entries`);
  assert.ok(result.objects >= 1);
  const before = executed(P.journal).length;
  const again = JSON.parse((await cli(['run', 'p.yaml', '--json', '--quiet', '--set', 'c.text=V'])).stdout) as RunDoc;
  assert.deepEqual(
    again.stages.map((s) => s.status),
    ['cached', 'cached', 'ran'],
  );
  assert.deepEqual(executed(P.journal).slice(before), ['c']);
});
