/**
 * Bounded and visible stages (timeout, retries, stall warnings), CPU requests larger than the
 * machine, target stages, and gc beside a run in flight.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runYaml, silent } from './exec-helpers.js';
import {
  BUSY,
  MARKER,
  RecordingProgress,
  cacheEntryCount,
  concatStage,
  executed,
  makeProject,
  pipelineYaml,
  runApi,
  runCli,
  startCli,
  statuses,
  waitFor,
  writeText,
} from './helpers.js';

function marker(name: string, params: Record<string, unknown>, extra: Parameters<typeof concatStage>[2] = {}): string {
  return concatStage(name, params, { ...extra, plugin: MARKER });
}

/** A stage snippet with extra stage-level keys (timeout, retries). */
function withKeys(snippet: string, keys: Record<string, unknown>): string {
  return `${snippet}\n${Object.entries(keys)
    .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`)
    .join('\n')}`;
}

describe('time limits, retries and stalls', { concurrency: 2 }, () => {
  test('a stage that blocks forever (event loop spinning, SIGTERM ignored) is stopped at its timeout; the run fails naming it', async () => {
    const root = makeProject('distill-timeout-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        withKeys(concatStage('hang', { pidFile: join(root, 'pid'), busyMs: 1e9 }, { plugin: BUSY }), { timeout: '1s' }),
        concatStage('after', { text: 'x', journal }, { inputs: { x: 'hang' } }),
      ]),
    );
    const progress = new RecordingProgress();
    const started = Date.now();
    const record = await runApi(root, file, { progress, killGraceMs: 300, stallAfterMs: 0 });
    const elapsed = Date.now() - started;
    assert.equal(record.status, 'failed');
    const hang = record.stages.find((s) => s.id === 'hang');
    assert.equal(hang?.status, 'failed');
    assert.equal(hang?.timedOut, true);
    assert.match(hang?.error ?? '', /^timed out after 1\.0s \(its timeout\); log: /);
    assert.equal(statuses(record).after, 'skipped');
    assert.ok(elapsed < 8000, `bounded: ${elapsed} ms`);
    assert.equal(cacheEntryCount(root), 0);
    assert.deepEqual(readdirSync(join(root, '.distill', 'tmp')), [], 'scratch removed');
  });

  test('the CLI summary names the timed-out stage; exit 1', async () => {
    const root = makeProject('distill-timeout-cli-');
    writeText(
      root,
      'p.yaml',
      pipelineYaml([
        withKeys(marker('slow', { journal: join(root, 'j'), waitFile: join(root, 'never') }), { timeout: 1 }),
      ]),
    );
    const r = await runCli(['run', 'p.yaml'], { cwd: root });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /\n {2}✗ slow TIMED OUT: timed out after 1\.0s/);
  });

  test('a silent stage gets a stall warning naming it, its pid and its log', async () => {
    const root = makeProject('distill-stall-');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        withKeys(marker('quiet', { journal: join(root, 'j'), waitFile: join(root, 'go') }), { timeout: '20s' }),
      ]),
    );
    const progress = new RecordingProgress();
    const run = runApi(root, file, { progress, stallAfterMs: 300 });
    await waitFor(() => progress.lines.some((l) => l.includes('no progress or log output')), 5000, 'a stall warning');
    writeFileSync(join(root, 'go'), '');
    const record = await run;
    assert.equal(record.status, 'ok', JSON.stringify(record.stages));
    const warning = progress.lines.find((l) => l.includes('no progress or log output')) ?? '';
    assert.match(
      warning,
      /^⚠ quiet: no progress or log output for \d+ms \(pid \d+; it is stopped at its timeout of 20\.0s; log: .*quiet\.log\)$/,
    );
    assert.ok((record.stages[0]?.stalls ?? 0) >= 1);
  });

  test('retries: a failed attempt runs again (checkpoints in DISTILL_STATE survive); attempts are recorded', async () => {
    const dir = makeProject('distill-retries-');
    const flaky = [
      'stages:',
      '  flaky:',
      '    plugin: exec',
      '    retries: 2',
      '    with:',
      `      command: 'if [ -f "$DISTILL_STATE/tried" ]; then echo ok > "$DISTILL_OUT/out.txt"; else touch "$DISTILL_STATE/tried"; echo first attempt fails >&2; exit 3; fi'`,
      '      outputs: [out.txt]',
      '  broken:',
      '    plugin: exec',
      '    retries: 1',
      '    with: { command: "exit 4", checkWrites: false }',
    ].join('\n');
    const progress = new RecordingProgress();
    const { stage } = await runYaml(dir, `${flaky}\n`, { progress });
    assert.equal(stage('flaky').status, 'ran');
    assert.equal(stage('flaky').attempts, 2);
    assert.equal(stage('broken').status, 'failed');
    assert.equal(stage('broken').attempts, 2);
    assert.ok(
      progress.lines.some((l) => /^↻ flaky attempt 1 of 3 failed \(exited with code 1/.test(l)),
      progress.lines.join('\n'),
    );
  });
});

describe('machine fit and target stages', { concurrency: 1 }, () => {
  test('cpus larger than the machine: runs with what there is, with a warning', async () => {
    const root = makeProject('distill-clamp-');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        marker('wide', { text: '1', journal: join(root, 'j') }, { resources: { cpus: 8 } }),
        marker('wide2', { text: '2', journal: join(root, 'j') }, { resources: { cpus: 8 } }),
      ]),
    );
    const progress = new RecordingProgress();
    const record = await runApi(root, file, { machine: { cpus: 1, gpus: [], memoryMiB: 1024 }, progress });
    assert.equal(record.status, 'ok');
    assert.deepEqual(
      record.stages.map((s) => s.devices?.cpus),
      [1, 1],
    );
    assert.ok(
      progress.lines.includes(
        '⚠ stages wide, wide2 ask for 8 CPUs; this machine has 1: running with 1 (resources.minCpus makes it a requirement)',
      ),
      progress.lines.join('\n'),
    );
  });

  test('run <pipeline> <stage>: only that stage and its stale ancestors run; later targets reuse them', async () => {
    const root = makeProject('distill-targets-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        concatStage('a', { text: 'A', journal }),
        concatStage('b', { text: 'B', journal }, { inputs: { x: 'a' } }),
        concatStage('c', { text: 'C', journal }, { inputs: { x: 'b' } }),
        concatStage('d', { text: 'D', journal }),
      ]),
    );
    const first = await runApi(root, file, { targets: new Set(['b']) });
    assert.deepEqual(statuses(first), { a: 'ran', b: 'ran', c: 'skipped', d: 'skipped' });
    assert.equal(first.stages.find((s) => s.id === 'c')?.reason, 'not a target');
    assert.deepEqual(executed(journal).sort(), ['a', 'b']);
    const cli = await runCli(['run', 'p.yaml', 'c', '--json', '--quiet'], { cwd: root });
    assert.equal(cli.code, 0, cli.stderr);
    const doc = JSON.parse(cli.stdout) as { stages: Array<{ id: string; status: string }> };
    assert.deepEqual(Object.fromEntries(doc.stages.map((s) => [s.id, s.status])), {
      a: 'cached',
      b: 'cached',
      c: 'ran',
      d: 'skipped',
    });
    const unknown = await runCli(['run', 'p.yaml', 'zz'], { cwd: root });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown stage "zz"/);
  });
});

test('run <pipeline> <stage> --store: pulls only what that run needs', async () => {
  const { openRemoteStore } = await import('../src/remote/index.js');
  const store = makeProject('distill-targets-store-');
  const yaml = pipelineYaml([
    concatStage('a', { text: 'A' }),
    concatStage('b', { text: 'B' }, { inputs: { x: 'a' } }),
    concatStage('c', { text: 'C' }, { inputs: { x: 'b' } }),
    concatStage('d', { text: 'D', bytes: 1000 }),
  ]);
  const publisher = makeProject('distill-publisher-');
  const full = await runApi(publisher, writeText(publisher, 'p.yaml', yaml), { remote: openRemoteStore(store) });
  assert.equal(full.status, 'ok');
  const consumer = makeProject('distill-consumer-');
  const record = await runApi(consumer, writeText(consumer, 'p.yaml', yaml), {
    remote: openRemoteStore(store),
    targets: new Set(['b']),
  });
  assert.deepEqual(statuses(record), { a: 'cached', b: 'cached', c: 'skipped', d: 'skipped' });
  assert.equal(cacheEntryCount(consumer), 2, 'only the entries of a and b were pulled');
  assert.ok(!existsSync(join(consumer, 'out', 'p', 'd')));
});

describe('gc beside a run in flight', () => {
  test('gc --workspace during a --set run keeps the plain configuration, the live run and its scratch dir; both runs then succeed from cache', async () => {
    const root = makeProject('distill-gc-live-');
    const journal = join(root, 'journal.txt');
    const gate = join(root, 'gate');
    writeText(
      root,
      'p.yaml',
      pipelineYaml([
        marker('a', { text: 'A', journal }),
        marker('b', { text: 'B', journal, waitFile: gate }, { inputs: { x: 'a' } }),
        marker('c', { text: 'C', journal }, { inputs: { x: 'b' } }),
      ]),
    );
    writeFileSync(gate, '');
    const plain = await runCli(['run', 'p.yaml', '--quiet'], { cwd: root });
    assert.equal(plain.code, 0, plain.stderr);
    const entries = cacheEntryCount(root);
    // A variant whose stage b waits (in flight, scratch dir in .distill/tmp) until the gate exists.
    const { rmSync } = await import('node:fs');
    rmSync(gate);
    const variant = startCli(['run', 'p.yaml', '--quiet', '--set', 'b.text=V'], { cwd: root });
    const tmp = join(root, '.distill', 'tmp');
    // Stage b in flight holds two entries there: its scratch dir and the run's materialised inputs
    // (created just after the scratch dir, so waiting for the first alone races with the second).
    await waitFor(
      () => existsSync(tmp) && readdirSync(tmp).some((n) => n.includes('-inputs-')) && readdirSync(tmp).length >= 2,
      15_000,
      'the variant run to start stage b',
    );
    const scratch = readdirSync(tmp);
    const gc = await runCli(['gc', '--workspace'], { cwd: root });
    assert.equal(gc.code, 0, gc.stderr);
    assert.match(gc.stdout, /^removed 0 objects, 0 trees, 0 cache entries, 0 temporary dirs/);
    assert.match(gc.stdout, /kept: live run \S+ of p \(pid \d+\): \d+ cache entries/);
    assert.match(gc.stdout, /kept: latest run of p \(\S+\): 3 cache entries/);
    assert.deepEqual(readdirSync(tmp), scratch, 'the live stage scratch directory is kept');
    assert.equal(cacheEntryCount(root), entries);
    writeFileSync(gate, '');
    const done = await variant.result;
    assert.equal(done.code, 0, done.stderr);
    // Now the variant is the latest run; gc --workspace still keeps the plain configuration.
    const gc2 = await runCli(['gc', '--workspace'], { cwd: root });
    assert.match(gc2.stdout, /kept: latest run of p without --set/);
    const before = executed(journal).length;
    const again = await runCli(['run', 'p.yaml', '--json', '--quiet'], { cwd: root });
    assert.deepEqual(
      (JSON.parse(again.stdout) as { stages: Array<{ status: string }> }).stages.map((s) => s.status),
      ['cached', 'cached', 'cached'],
    );
    assert.equal(executed(journal).length, before);
    assert.ok(silent);
  });
});

describe('command line hygiene', () => {
  test('a closed stdout (status | true) ends quietly: no EPIPE stack trace, exit 0', async () => {
    const root = makeProject('distill-epipe-');
    writeText(
      root,
      'p.yaml',
      pipelineYaml(Array.from({ length: 40 }, (_, i) => concatStage(`s${i}`, { text: String(i) }))),
    );
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { DISTILL_BIN } = await import('./helpers.js');
    // `true` exits without reading: every write distill makes hits a closed pipe.
    const script = `"${process.execPath}" "${DISTILL_BIN}" status p.yaml | true; echo "exit=\${PIPESTATUS[0]}"`;
    const { stdout, stderr } = await promisify(execFile)('bash', ['-c', script], { cwd: root });
    assert.equal(stderr, '');
    assert.equal(stdout.trim(), 'exit=0');
  });
});
