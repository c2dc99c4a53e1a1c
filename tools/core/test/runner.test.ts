/**
 * The runner: atomic publication (failing and crashing stages leave nothing trusted), SIGKILL of
 * the runner mid-stage then rerun, two concurrent runs, and scheduling with faked CPU and GPU
 * counts (device assignment and concurrency judged from the plugins' own journals).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { detectResources } from '../src/runner/devices.js';
import { readRunRecords, writeRunRecord, type RunRecord } from '../src/runner/record.js';
import { Workspace } from '../src/runner/workspace.js';
import {
  BUSY,
  MARKER,
  RecordingProgress,
  cacheEntryCount,
  concatStage,
  executed,
  listTree,
  makeProject,
  output,
  pipelineYaml,
  readJournal,
  runApi,
  runCli,
  startCli,
  statuses,
  waitFor,
  writeText,
  type JournalLine,
} from './helpers.js';

/** A marker-plugin stage. */
function marker(name: string, params: Record<string, unknown>, extra: Parameters<typeof concatStage>[2] = {}): string {
  return concatStage(name, params, { ...extra, plugin: MARKER });
}

/** Execution intervals [start, end] per stage from a marker journal. */
function intervals(lines: JournalLine[]): Array<{ stage: string; start: number; end: number; cuda: string }> {
  const starts = new Map<string, JournalLine>();
  const out: Array<{ stage: string; start: number; end: number; cuda: string }> = [];
  for (const l of lines) {
    if (l.event === 'start') starts.set(`${l.stage} ${l.pid}`, l);
    if (l.event === 'end') {
      const s = starts.get(`${l.stage} ${l.pid}`);
      if (s) out.push({ stage: l.stage, start: s.start, end: l.end, cuda: l.cuda });
    }
  }
  return out;
}

/** Largest number of intervals in progress at one time. */
function maxOverlap(spans: Array<{ start: number; end: number }>): number {
  const events = spans
    .flatMap((s) => [[s.start, 1] as const, [s.end, -1] as const])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, d] of events) max = Math.max(max, (now += d));
  return max;
}

function assertNoOrphanState(root: string): void {
  assert.deepEqual(listTree(join(root, '.distill', 'tmp')), [], 'no scratch left in .distill/tmp');
}

// The stages of these tests mostly sleep or wait (and the SIGKILL test waits for a stale lock), so
// they run two at a time; each uses its own project and passes the machine explicitly.
describe('runner', { concurrency: 2 }, () => {
  test('a failing stage: status failed with stderr tail, no cache entry, no out/ dir, dependents skipped', async () => {
    const root = makeProject('distill-fail-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        marker('a', { text: 'A', journal }),
        marker('b', { text: 'B', journal, fail: true }, { inputs: { x: 'a' } }),
        marker('c', { text: 'C', journal }, { inputs: { x: 'b' } }),
        marker('d', { text: 'D', journal }),
      ]),
    );
    const progress = new RecordingProgress();
    const record = await runApi(root, file, { progress });
    assert.deepEqual(statuses(record), { a: 'ran', b: 'failed', c: 'skipped', d: 'ran' });
    assert.equal(record.status, 'failed');
    const b = record.stages.find((s) => s.id === 'b');
    assert.match(b?.error ?? '', /^exited with code 1; log: \S+b\.log\n/);
    assert.match(b?.error ?? '', /marker b: failing on purpose/);
    assert.match(b?.error ?? '', /Error: stage b failed on purpose/);
    assert.equal(record.stages.find((s) => s.id === 'c')?.reason, 'upstream failed: b');
    assert.ok(!existsSync(join(root, 'out', 'p', 'b')));
    assert.ok(!existsSync(join(root, 'out', 'p', 'c')));
    assert.equal(cacheEntryCount(root), 2, 'entries for a and d only');
    assert.ok(b?.key && !new Workspace(root).store.readEntry(b.key));
    assertNoOrphanState(root);
    // The full log is kept on disk.
    assert.match(readFileSync(b?.log ?? '', 'utf8'), /marker b writing "B"[\s\S]*failing on purpose/);
    assert.ok(progress.lines.some((l) => l.startsWith('✗ b failed after')));
    // Fixed: b and c run, a and d come from the cache.
    writeText(root, 'p.yaml', readFileSync(file, 'utf8').replace('"fail":true', '"fail":false'));
    const fixed = await runApi(root, file);
    assert.deepEqual(statuses(fixed), { a: 'cached', b: 'ran', c: 'ran', d: 'cached' });
    assert.equal(output(root, 'p', 'c'), 'A+B+C');
    assert.deepEqual(executed(journal).sort(), ['a', 'b', 'c', 'd']);
  });

  test('a stage whose process is SIGKILLed (crash) fails cleanly; the runner survives and skips dependents', async () => {
    const root = makeProject('distill-crash-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        concatStage('a', { text: 'A', journal }),
        concatStage('b', { text: 'B', journal, crash: true }, { inputs: { x: 'a' } }),
        concatStage('c', { text: 'C', journal }, { inputs: { x: 'b' } }),
      ]),
    );
    const record = await runApi(root, file);
    assert.deepEqual(statuses(record), { a: 'ran', b: 'failed', c: 'skipped' });
    assert.match(record.stages.find((s) => s.id === 'b')?.error ?? '', /^killed by SIGKILL \(out of memory\?\); log: /);
    // b wrote out.txt and journalled before it was killed: none of it is published.
    assert.deepEqual(executed(journal), ['a', 'b']);
    assert.ok(!existsSync(join(root, 'out', 'p', 'b')));
    assert.equal(cacheEntryCount(root), 1);
    assertNoOrphanState(root);
  });

  test('per-step metrics reach the run record in full and progress reaches the view, though the worker batches them', async () => {
    const root = makeProject('distill-metrics-');
    const file = writeText(root, 'p.yaml', pipelineYaml([concatStage('m', { text: 'x', sleepMs: 600 })]));
    const progress = new RecordingProgress();
    const record = await runApi(root, file, { progress });
    const stage = record.stages[0];
    assert.equal(stage?.status, 'ran');
    // concat reports loss = 1/i at steps 1..5.
    assert.deepEqual(
      stage?.series?.loss,
      [1, 2, 3, 4, 5].map((i) => [i, 1 / i]),
    );
    assert.deepEqual(stage?.metrics, { loss: 0.2, length: 1 });
    assert.deepEqual(progress.progressCalls.at(-1), ['m', 5, 5], 'the final progress is delivered');
  });

  test('SIGINT to the runner alone stops a stage that blocks its event loop: no orphan, exit 130, nothing cached', async () => {
    const root = makeProject('distill-int-');
    const pidFile = join(root, 'busy.pid');
    const file = writeText(
      root,
      'p.yaml',
      `stages:\n  spin:\n    plugin: ${BUSY}\n    with: { pidFile: ${JSON.stringify(pidFile)}, busyMs: 60000 }\n`,
    );
    const cli = startCli(['run', file, '--json', '--quiet'], { cwd: root });
    await waitFor(() => existsSync(pidFile), 20_000, 'the busy stage to start');
    const workerPid = Number(readFileSync(pidFile, 'utf8'));
    process.kill(cli.pid as number, 'SIGINT'); // the runner only, not its process group
    const result = await cli.result;
    assert.equal(result.code, 130, result.stderr);
    assert.ok(
      !processAlive(workerPid),
      'the stage process was killed (SIGTERM cannot reach a blocked loop: SIGKILL after the grace period)',
    );
    const doc = JSON.parse(result.stdout) as { status: string; stages: Array<{ id: string; status: string }> };
    assert.equal(doc.status, 'interrupted');
    assert.equal(doc.stages[0]?.status, 'failed');
    assert.equal(cacheEntryCount(root), 0);
  });

  test('SIGKILL of the runner mid-stage, then rerun: finished stages cached, the killed one reruns, nothing corrupt', async () => {
    const root = makeProject('distill-kill-');
    const journal = join(root, 'journal.txt');
    const release = join(root, 'release');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        marker('a', { text: 'A', journal }),
        marker('b', { text: 'B', journal, waitFile: release }, { inputs: { x: 'a' } }),
        marker('c', { text: 'C', journal }, { inputs: { x: 'b' } }),
      ]),
    );
    const first = startCli(['run', file, '--cpus', '2'], { cwd: root });
    await waitFor(
      () => readJournal(journal).some((l) => l.event === 'start' && l.stage === 'b'),
      20_000,
      'stage b to start',
    );
    process.kill(-(first.pid as number), 'SIGKILL');
    const killed = await first.result;
    assert.equal(killed.signal, 'SIGKILL');
    const workerPid = readJournal(journal).find((l) => l.stage === 'b')?.pid as number;
    await waitFor(() => !processAlive(workerPid), 5_000, 'the stage process to be gone with its group');
    assert.deepEqual(executed(journal), ['a']);
    assert.ok(!existsSync(join(root, 'out', 'p', 'b')), 'no output for the killed stage');
    assert.equal(cacheEntryCount(root), 1, 'only a is in the cache');
    // Rerun: a from the cache, b and c execute.
    writeText(root, 'release', '');
    const rerun = await runCli(['run', file, '--json', '--quiet'], { cwd: root, timeoutMs: 40_000 });
    assert.equal(rerun.code, 0, rerun.stderr);
    const doc = JSON.parse(rerun.stdout) as { stages: Array<{ id: string; status: string }> };
    assert.deepEqual(Object.fromEntries(doc.stages.map((s) => [s.id, s.status])), { a: 'cached', b: 'ran', c: 'ran' });
    assert.deepEqual(executed(journal), ['a', 'b', 'c']);
    assert.equal(output(root, 'p', 'c'), 'A+B+C');
    // Every cache entry is complete; gc then clears what the killed run left in tmp.
    const ws = new Workspace(root);
    for (const f of listTree(ws.store.cacheDir))
      assert.ok(ws.store.readEntry(f.split('/')[1]?.replace('.json', '') ?? ''), f);
    const gc = await runCli(['gc', '--root', root, '--json'], { cwd: root });
    assert.equal(gc.code, 0, gc.stderr);
    assertNoOrphanState(root);
  });

  function processAlive(pid: number): boolean {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  test('a stage reads the upstream output its key names, while another run replaces out/ with other parameters', async () => {
    const root = makeProject('distill-input-race-');
    writeText(root, 'p.params.yaml', 'word: one\n');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml(
        [
          concatStage('a', { text: '${{ params.word }}' }),
          concatStage('b', { text: 'B', sleepMs: 6000 }, { inputs: { x: 'a' } }),
        ],
        'params: p.params.yaml\n',
      ),
    );
    // Run 1 (word one): b reads a's output 6 s after it starts. Meanwhile run 2 runs a alone with
    // word two, which materialises "two" into out/p/a.
    const one = startCli(['run', file, '--json', '--quiet'], { cwd: root });
    await waitFor(() => existsSync(join(root, 'out', 'p', 'a', 'out.txt')), 20_000, "run 1's output of a");
    const two = await runCli(['run', file, 'a', '--set', 'params.word=two', '--quiet'], { cwd: root });
    assert.equal(two.code, 0, two.stderr);
    assert.equal(output(root, 'p', 'a'), 'two');
    const r1 = await one.result;
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(output(root, 'p', 'b'), 'one+B', 'b computed from the output of a its key names');
  });

  test('two concurrent runs of the same pipeline: both succeed, each stage executes once', async () => {
    const root = makeProject('distill-concurrent-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        marker('a', { text: 'A', journal, sleepMs: 400 }),
        marker('b', { text: 'B', journal, sleepMs: 200 }, { inputs: { x: 'a' } }),
        marker('c', { text: 'C', journal, sleepMs: 200 }),
      ]),
    );
    const one = startCli(['run', file, '--json', '--quiet'], { cwd: root });
    const two = startCli(['run', file, '--json', '--quiet'], { cwd: root });
    const [r1, r2] = await Promise.all([one.result, two.result]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(r2.code, 0, r2.stderr);
    const byRun = [r1, r2].map((r) =>
      Object.fromEntries(
        (JSON.parse(r.stdout) as { stages: Array<{ id: string; status: string }> }).stages.map((s) => [s.id, s.status]),
      ),
    );
    for (const id of ['a', 'b', 'c']) {
      assert.deepEqual([byRun[0]?.[id], byRun[1]?.[id]].sort(), ['cached', 'ran'], `${id} ran in exactly one run`);
    }
    assert.deepEqual(executed(journal).sort(), ['a', 'b', 'c']);
    assert.equal(cacheEntryCount(root), 3);
    assert.equal(output(root, 'p', 'b'), 'A+B');
    // Every entry is complete: its tree and every object are in the store.
    const ws = new Workspace(root);
    for (const f of listTree(ws.store.cacheDir))
      assert.ok(ws.store.readEntry(f.split('/')[1]?.replace('.json', '') ?? ''), f);
    const again = await runApi(root, file);
    assert.deepEqual(statuses(again), { a: 'cached', b: 'cached', c: 'cached' });
    assertNoOrphanState(root);
  });

  test('0 GPUs: a stage asking for 1 fails the plan with a clear message; nothing runs', async () => {
    const root = makeProject('distill-gpu0-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([marker('cpu', { journal }), marker('train', { journal }, { resources: { gpus: 1 } })]),
    );
    await assert.rejects(runApi(root, file, { machine: { cpus: 2, gpus: [], memoryMiB: 1024 } }), (error: Error) => {
      assert.match(error.message, /stage train needs 1 GPU\(s\) but this machine has 0/);
      return true;
    });
    assert.deepEqual(readJournal(journal), []);
    // The same through the CLI with faked GPUs: exit code 2, the message on stderr.
    const cli = await runCli(['run', file, '--gpus', '0'], { cwd: root });
    assert.equal(cli.code, 2);
    assert.match(cli.stderr, /stage train needs 1 GPU\(s\) but this machine has 0/);
    assert.deepEqual(readJournal(journal), []);
  });

  test('1 GPU: two 1-GPU stages run one after the other, each with CUDA_VISIBLE_DEVICES=0', async () => {
    const root = makeProject('distill-gpu1-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        // Distinct texts: stages with equal params share one cache key (resources are not part of it).
        marker('g', { text: 'g', journal, sleepMs: 300 }, { resources: { gpus: 1 } }),
        marker('h', { text: 'h', journal, sleepMs: 300 }, { resources: { gpus: 1 } }),
        marker('cpu', { text: 'cpu', journal, sleepMs: 300 }),
      ]),
    );
    const record = await runApi(root, file, { machine: { cpus: 4, gpus: [0], memoryMiB: 1024 } });
    assert.deepEqual(statuses(record), { g: 'ran', h: 'ran', cpu: 'ran' });
    const spans = intervals(readJournal(journal));
    const gpu = spans.filter((s) => s.stage !== 'cpu');
    assert.equal(gpu.length, 2);
    assert.equal(maxOverlap(gpu), 1, 'the GPU stages did not overlap');
    assert.deepEqual(
      gpu.map((s) => s.cuda),
      ['0', '0'],
    );
    assert.equal(spans.find((s) => s.stage === 'cpu')?.cuda, '', 'a CPU stage sees no GPU');
    assert.deepEqual(record.stages.find((s) => s.id === 'g')?.devices, { cpus: 1, gpus: [0] });
  });

  test('--pin-cpus: concurrent 1-CPU stages are bound to distinct cores (taskset), recorded in the run record', {
    skip: process.platform !== 'linux' || availableParallelism() < 2,
  }, async () => {
    const root = makeProject('distill-pin-');
    const journal = join(root, 'journal.txt');
    const affinity = join(root, 'affinity.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        marker('a', { text: 'a', journal, sleepMs: 400, affinityOut: affinity }),
        marker('b', { text: 'b', journal, sleepMs: 400, affinityOut: affinity }),
      ]),
    );
    const record = await runApi(root, file, { machine: { cpus: 2, gpus: [], memoryMiB: 1024 }, pinCpus: true });
    assert.deepEqual(statuses(record), { a: 'ran', b: 'ran' });
    // Both fit at once, so both were given cores in the same scheduling pass (whatever their start-up time).
    const bound = Object.fromEntries(
      readFileSync(affinity, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' ') as [string, string]),
    );
    const cores = ['a', 'b'].map((id) => record.stages.find((s) => s.id === id)?.devices?.cores);
    assert.deepEqual(
      cores.map((c) => c?.length),
      [1, 1],
    );
    assert.notEqual(cores[0]![0], cores[1]![0], 'distinct cores');
    assert.deepEqual(
      [bound.a, bound.b],
      cores.map((c) => String(c![0])),
      'each process is bound to the core the record names',
    );
    // Without the option nothing is bound.
    const free = join(root, 'free.txt');
    const f2 = writeText(root, 'q.yaml', pipelineYaml([marker('c', { text: 'c', journal, affinityOut: free })]));
    const r2 = await runApi(root, f2, { machine: { cpus: 2, gpus: [], memoryMiB: 1024 } });
    assert.equal(r2.stages[0]!.devices?.cores, undefined);
    assert.notEqual(
      readFileSync(free, 'utf8').trim().split(' ')[1],
      String(cores[0]![0]),
      'an unbound stage may use every core',
    );
  });

  test('4 GPUs: four 1-GPU stages get distinct devices; a 2-GPU stage gets two', async () => {
    const root = makeProject('distill-gpu4-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      `stages:\n  fan:\n    plugin: ${MARKER}\n    foreach: [w, x, y, z]\n    resources: { gpus: 1, cpus: 1 }\n    with: { text: "\${{ item }}", journal: ${JSON.stringify(journal)}, sleepMs: 200 }\n` +
        `  pair:\n    plugin: ${MARKER}\n    needs: [fan]\n    resources: { gpus: 2 }\n    with: { journal: ${JSON.stringify(journal)} }\n`,
    );
    const record = await runApi(root, file, { machine: { cpus: 4, gpus: [0, 1, 2, 3], memoryMiB: 1024 } });
    assert.equal(record.status, 'ok');
    const spans = intervals(readJournal(journal));
    const fan = spans.filter((s) => s.stage.startsWith('fan@'));
    assert.deepEqual(fan.map((s) => s.cuda).sort(), ['0', '1', '2', '3']);
    assert.equal(spans.find((s) => s.stage === 'pair')?.cuda, '0,1');
  });

  test('CPU slots bound concurrency: 1 slot runs stages one at a time, 2 slots run two at once', async () => {
    const root = makeProject('distill-cpus-');
    const j1 = join(root, 'j1.txt');
    const j2 = join(root, 'j2.txt');
    // Long sleeps only where an overlap must be observed.
    const stages = (journal: string, sleepMs: number): string[] =>
      ['a', 'b', 'c'].map((n) => marker(n, { text: n, journal, sleepMs }));
    const f1 = writeText(root, 'one.yaml', pipelineYaml(stages(j1, 100)));
    const f2 = writeText(root, 'two.yaml', pipelineYaml(stages(j2, 1000)));
    await runApi(root, f1, { machine: { cpus: 1, gpus: [], memoryMiB: 1024 } });
    assert.equal(maxOverlap(intervals(readJournal(j1))), 1);
    await runApi(root, f2, { machine: { cpus: 2, gpus: [], memoryMiB: 1024 } });
    const spans2 = intervals(readJournal(j2));
    assert.equal(spans2.length, 3);
    assert.equal(maxOverlap(spans2), 2, 'two stages in flight at once, never three');
    // Separate processes: parallel stages really are separate OS processes.
    assert.equal(new Set(spans2.map((s) => s.stage)).size, 3);
    assert.equal(new Set(readJournal(j2).map((l) => l.pid)).size, 3);
  });

  test('a stage needing more CPUs (minCpus) or memory than the machine has fails the plan', async () => {
    const root = makeProject('distill-big-');
    const journal = join(root, 'journal.txt');
    const file = writeText(
      root,
      'p.yaml',
      pipelineYaml([
        marker('wide', { journal }, { resources: { cpus: 8, minCpus: 8 } }),
        marker('fat', { journal }, { resources: { memory: '2GiB' } }),
      ]),
    );
    await assert.rejects(runApi(root, file, { machine: { cpus: 2, gpus: [], memoryMiB: 1024 } }), (error: Error) => {
      assert.match(error.message, /stage wide needs at least 8 CPUs \(resources\.minCpus\) but this machine has 2/);
      assert.match(error.message, /stage fat needs 2048 MiB of memory but this machine has 1024 MiB/);
      return true;
    });
    assert.deepEqual(readJournal(journal), []);
  });

  test('GPU detection is injectable: options, DISTILL_FAKE_GPUS, a detector function', async () => {
    assert.deepEqual((await detectResources({ gpus: 4, cpus: 3 })).gpus, [0, 1, 2, 3]);
    assert.equal((await detectResources({ gpus: 4, cpus: 3 })).cpus, 3);
    assert.deepEqual((await detectResources({ detectGpus: async () => [2, 5] })).gpus, [2, 5]);
    const saved = process.env.DISTILL_FAKE_GPUS;
    process.env.DISTILL_FAKE_GPUS = '1';
    try {
      assert.deepEqual((await detectResources({ detectGpus: async () => [7, 8, 9] })).gpus, [0]);
    } finally {
      if (saved === undefined) delete process.env.DISTILL_FAKE_GPUS;
      else process.env.DISTILL_FAKE_GPUS = saved;
    }
  });

  test('DISTILL_FAKE_GPUS through the CLI assigns CUDA_VISIBLE_DEVICES', async () => {
    const root = makeProject('distill-fakegpu-');
    const journal = join(root, 'journal.txt');
    const file = writeText(root, 'p.yaml', pipelineYaml([marker('g', { journal }, { resources: { gpus: 2 } })]));
    const cli = await runCli(['run', file, '--quiet'], { cwd: root, env: { DISTILL_FAKE_GPUS: '2' } });
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(intervals(readJournal(journal))[0]?.cuda, '0,1');
    assert.equal(readdirSync(join(root, 'out', 'p')).length, 1);
  });

  test('run records are read newest first, also for runs started within the same second', () => {
    const root = makeProject('distill-records-');
    const runs = join(root, '.distill', 'runs');
    const record = (runId: string, startedAt: string): RunRecord => ({
      runId,
      pipeline: 'p',
      file: 'p.yaml',
      startedAt,
      status: 'ok',
      stages: [],
    });
    // Same second; the later run happens to have the smaller pid.
    writeRunRecord(runs, record('20250101T000000-900-aaaa', '2025-01-01T00:00:00.100Z'));
    writeRunRecord(runs, record('20250101T000000-100-bbbb', '2025-01-01T00:00:00.700Z'));
    writeRunRecord(runs, record('20241231T235959-500-cccc', '2024-12-31T23:59:59.900Z'));
    assert.deepEqual(
      readRunRecords(runs, 'p').map((r) => r.runId),
      ['20250101T000000-100-bbbb', '20250101T000000-900-aaaa', '20241231T235959-500-cccc'],
    );
  });

  test('stateDir survives a failed attempt of the same stage and is removed after success', async () => {
    const root = makeProject('distill-state-');
    const journal = join(root, 'journal.txt');
    const gate = join(root, 'gate');
    const file = writeText(root, 'p.yaml', pipelineYaml([marker('s', { text: 'S', journal, failUnless: gate })]));
    const first = await runApi(root, file);
    assert.deepEqual(statuses(first), { s: 'failed' });
    const key = first.stages[0]?.key ?? '';
    const stateDir = new Workspace(root).stateDir(key);
    assert.equal(readFileSync(join(stateDir, 'attempts'), 'utf8'), '1');
    writeText(root, 'gate', '');
    const second = await runApi(root, file);
    assert.deepEqual(statuses(second), { s: 'ran' });
    assert.equal(second.stages[0]?.key, key);
    // The second attempt saw the first one's state.
    assert.equal(output(root, 'p', 's'), 'attempt2+S');
    assert.ok(!existsSync(stateDir), 'state removed after success');
  });
});
