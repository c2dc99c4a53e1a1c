#!/usr/bin/env node
// Fault-injection benchmark (issue 16): runs a fixed list of faults against fresh copies of a small
// pipeline (exec stages writing deterministic bytes) and prints one line per fault, then
// `survived N/M`. A fault is survived when the next plain `distill run` exits 0 and every output
// under out/<pipeline>/<stage>/ is byte-identical to a clean run's (plus, where stated, a condition
// on the faulty run itself, e.g. exit 1 and not 2 on a full disk).
// Usage: node bench/faults/run.mjs [--only <substring>] [--keep] [--distill <path of bin/distill.js>]
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { only: { type: 'string' }, keep: { type: 'boolean', default: false }, distill: { type: 'string' } },
});
const repo = resolve(new URL('../..', import.meta.url).pathname);
// --distill <bin>: another build of distill (a baseline); faults that need DISTILL_FAULT then fail as "not reached".
const distill = values.distill ? resolve(values.distill) : join(repo, 'tools/core/bin/distill.js');
const work = mkdtempSync(join(tmpdir(), 'distill-faults-'));

// gen writes 20 chunks of 16 KiB, 50 ms apart (a window to kill it mid-write); the rest derive from it.
const PIPELINE = `stages:
  gen:
    plugin: exec
    with:
      command: 'echo $$ $PPID > "$FAULT_PIDS/gen"; for i in $(seq 1 20); do yes "chunk $i" | head -c 16384 >> "$DISTILL_OUT/data.bin"; sleep 0.05; done'
      outputs: [data.bin]
      checkWrites: false
  digest:
    plugin: exec
    inputs: { data: gen }
    with:
      command: 'sha256sum < "$DISTILL_INPUT_DATA/data.bin" | cut -c1-64 > "$DISTILL_OUT/digest.txt"; cp "$DISTILL_INPUT_DATA/data.bin" "$DISTILL_OUT/copy.bin"'
      outputs: [digest.txt, copy.bin]
      checkWrites: false
  report:
    plugin: exec
    inputs: { digest: digest }
    with:
      command: 'wc -c < "$DISTILL_INPUT_DIGEST/copy.bin" > "$DISTILL_OUT/report.txt"; cat "$DISTILL_INPUT_DIGEST/digest.txt" >> "$DISTILL_OUT/report.txt"'
      outputs: [report.txt]
      checkWrites: false
  side:
    plugin: exec
    with:
      command: 'seq 1 50000 > "$DISTILL_OUT/numbers.txt"'
      outputs: [numbers.txt]
      checkWrites: false
`;
const STAGES = ['gen', 'digest', 'report', 'side'];

function project(name) {
  const dir = join(work, name);
  mkdirSync(join(dir, '.distill'), { recursive: true });
  mkdirSync(join(dir, 'pids'), { recursive: true });
  writeFileSync(join(dir, 'p.yaml'), PIPELINE);
  return dir;
}

const env = (dir, extra = {}) => ({
  ...process.env,
  CI: 'true',
  FAULT_PIDS: join(dir, 'pids'),
  DISTILL_STALL_AFTER: '0',
  ...extra,
});

/** Runs distill to completion. */
function distillSync(dir, args, extra = {}) {
  const r = spawnSync(process.execPath, [distill, ...args], {
    cwd: dir,
    env: env(dir, extra),
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts distill; resolves with its outcome. */
function distillAsync(dir, args, extra = {}) {
  const child = spawn(process.execPath, [distill, ...args], {
    cwd: dir,
    env: env(dir, extra),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  child.stdout.resume();
  const done = new Promise((r) => child.on('close', (code, signal) => r({ code, signal, stderr })));
  return { child, done };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(predicate, ms, what) {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** sha256 of every file of each stage's output directory. */
function outputs(dir) {
  const result = {};
  for (const stage of STAGES) {
    const root = join(dir, 'out', 'p', stage);
    const walk = (d) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else result[`${stage}/${relative(root, p)}`] = createHash('sha256').update(readFileSync(p)).digest('hex');
      }
    };
    if (existsSync(root)) walk(root);
  }
  return result;
}

const files = (dir) => (existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String) : []);
/** A partial file a running `gen` is writing in its scratch directory. */
const partialData = (dir) => files(join(dir, '.distill', 'tmp')).some((f) => f.endsWith('data.bin'));
function storeObjectOf(dir, stage, file) {
  const hash = createHash('sha256')
    .update(readFileSync(join(dir, 'out', 'p', stage, file)))
    .digest('hex');
  return join(dir, '.distill', 'store', 'objects', hash.slice(0, 2), hash.slice(2));
}
function scribble(path, mutate) {
  chmodSync(path, 0o644);
  mutate(path);
}

// The reference: a clean run.
const clean = project('clean');
const first = distillSync(clean, ['run', 'p.yaml', '--quiet']);
if (first.code !== 0) throw new Error(`clean run failed:\n${first.stderr}`);
const reference = outputs(clean);
if (Object.keys(reference).length !== 5) throw new Error(`clean run produced ${Object.keys(reference).length} files`);

/**
 * A fresh project after a clean run in place (not a copy: copying would turn hardlinks between
 * out/ and the store into separate files, which would hide what an edit of out/ does).
 */
function cleanProject(name) {
  const dir = project(name);
  const r = distillSync(dir, ['run', 'p.yaml', '--quiet']);
  if (r.code !== 0) throw new Error(`clean run failed:\n${r.stderr}`);
  return dir;
}

/** Each fault: prepares and injects; returns a note (or throws). The plain rerun and the check follow. */
const FAULTS = [
  [
    'SIGKILL runner while a stage writes',
    async (dir) => {
      const run = distillAsync(dir, ['run', 'p.yaml', '--quiet']);
      await until(() => partialData(dir), 30_000, 'gen to start writing');
      run.child.kill('SIGKILL');
      await run.done;
    },
  ],
  ...['after-exit', 'after-store', 'after-entry'].map((step) => [
    `SIGKILL runner ${step.replace('-', ' ')} (gen)`,
    async (dir) => {
      const r = distillSync(dir, ['run', 'p.yaml', '--quiet'], { DISTILL_FAULT: `${step}:gen` });
      if (r.signal !== 'SIGKILL') throw new Error(`fault point not reached (exit ${r.code})`);
    },
  ]),
  [
    'SIGKILL runner during out/ swap (gen, --force)',
    async (dir) => {
      const r = distillSync(dir, ['run', 'p.yaml', '--quiet', '--force', 'gen'], { DISTILL_FAULT: 'during-swap:gen' });
      if (r.signal !== 'SIGKILL') throw new Error(`fault point not reached (exit ${r.code})`);
      if (existsSync(join(dir, 'out', 'p', 'gen'))) throw new Error('out/p/gen still in place');
    },
    'clean',
  ],
  [
    'SIGKILL a stage process (gen worker)',
    async (dir) => {
      const run = distillAsync(dir, ['run', 'p.yaml', '--quiet']);
      await until(() => existsSync(join(dir, 'pids', 'gen')) && partialData(dir), 30_000, 'gen to start');
      const [, worker] = readFileSync(join(dir, 'pids', 'gen'), 'utf8')
        .trim()
        .split(' ')
        .map(Number);
      process.kill(worker, 'SIGKILL');
      const r = await run.done;
      if (r.code !== 1) throw new Error(`the run exited ${r.code}, expected 1`);
    },
  ],
  [
    'corrupt store object (byte flipped in place)',
    (dir) =>
      scribble(storeObjectOf(dir, 'gen', 'data.bin'), (p) => {
        const b = readFileSync(p);
        b[1000] ^= 0xff;
        writeFileSync(p, b, { flag: 'r+' });
      }),
    'clean',
  ],
  [
    'truncated store object',
    (dir) => scribble(storeObjectOf(dir, 'digest', 'copy.bin'), (p) => truncateSync(p, 100)),
    'clean',
  ],
  ['deleted store object', (dir) => unlinkSync(storeObjectOf(dir, 'side', 'numbers.txt')), 'clean'],
  [
    'corrupt out/ file (written in place)',
    (dir) => scribble(join(dir, 'out', 'p', 'gen', 'data.bin'), (p) => writeFileSync(p, 'garbage', { flag: 'r+' })),
    'clean',
  ],
  [
    'truncated out/ file',
    (dir) => scribble(join(dir, 'out', 'p', 'report', 'report.txt'), (p) => truncateSync(p, 3)),
    'clean',
  ],
  ['deleted out/ file', (dir) => unlinkSync(join(dir, 'out', 'p', 'digest', 'digest.txt')), 'clean'],
  [
    'two concurrent runs',
    async (dir) => {
      const a = distillAsync(dir, ['run', 'p.yaml', '--quiet']);
      const b = distillAsync(dir, ['run', 'p.yaml', '--quiet']);
      const [ra, rb] = await Promise.all([a.done, b.done]);
      if (ra.code !== 0 || rb.code !== 0) throw new Error(`exits ${ra.code}, ${rb.code}: ${ra.stderr}${rb.stderr}`);
    },
  ],
  [
    'gc --workspace during a run',
    async (dir) => {
      const run = distillAsync(dir, ['run', 'p.yaml', '--quiet']);
      await until(() => partialData(dir), 30_000, 'gen to start writing');
      const gc = distillSync(dir, ['gc', '--workspace']);
      if (gc.code !== 0) throw new Error(`gc exited ${gc.code}: ${gc.stderr}`);
      const r = await run.done;
      if (r.code !== 0) throw new Error(`the run exited ${r.code}: ${r.stderr}`);
    },
  ],
  [
    'ENOSPC (400 KiB tmpfs), then space freed',
    async (dir) => {
      if (process.getuid?.() !== 0) return 'skipped: not root (needs a tmpfs mount)';
      const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=400k', 'tmpfs', dir]);
      if (mount.status !== 0) return `skipped: mount failed (${String(mount.stderr).trim()})`;
      mkdirSync(join(dir, '.distill'), { recursive: true });
      mkdirSync(join(dir, 'pids'), { recursive: true });
      writeFileSync(join(dir, 'p.yaml'), PIPELINE);
      const r = distillSync(dir, ['run', 'p.yaml', '--quiet']);
      const records = files(join(dir, '.distill', 'runs')).length;
      spawnSync('mount', ['-o', 'remount,size=64m', dir]);
      if (r.code !== 1)
        throw new Error(`the full-disk run exited ${r.code}, expected 1: ${r.stderr.trim().split('\n').pop()}`);
      return `full-disk run exited 1 (${records} run record${records === 1 ? '' : 's'} written)`;
    },
    'fresh',
    (dir) => spawnSync('umount', [dir]),
  ],
];

let survived = 0;
let total = 0;
for (const [name, inject, start = 'fresh', cleanup] of FAULTS) {
  if (values.only && !name.includes(values.only)) continue;
  total++;
  const slug = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
  const dir = start === 'clean' ? cleanProject(slug) : project(slug);
  let line;
  try {
    const note = await inject(dir);
    if (typeof note === 'string' && note.startsWith('skipped')) {
      total--;
      console.log(`-    ${name}: ${note}`);
      continue;
    }
    const rerun = distillSync(dir, ['run', 'p.yaml', '--quiet']);
    const got = outputs(dir);
    const differing = Object.keys(reference).filter((k) => got[k] !== reference[k]);
    const extra = Object.keys(got).filter((k) => !(k in reference));
    if (rerun.code !== 0)
      line = `FAIL ${name}: next run exited ${rerun.code}: ${rerun.stderr.trim().split('\n').slice(-2).join(' | ')}`;
    else if (differing.length || extra.length)
      line = `FAIL ${name}: outputs differ from a clean run's: ${[...differing, ...extra].join(', ')}`;
    else {
      survived++;
      line = `ok   ${name}${note ? ` (${note})` : ''}`;
    }
  } catch (error) {
    line = `FAIL ${name}: ${error.message}`;
  } finally {
    cleanup?.(dir);
  }
  console.log(line);
}
if (!values.keep) rmSync(work, { recursive: true, force: true });
else console.log(`kept ${work}`);
console.log(`survived ${survived}/${total}`);
