#!/usr/bin/env node
// Multi-student benchmark (issue 7): K students on K cores take at most 1.2x the wall time of one
// student of the same size, i.e. the runner really trains fan-out students in parallel.
//
// For K = 1 and K = 2 it writes a pipeline (synthetic data of K x N training rows, a K-way
// partition, K partition subsets of N rows each, K student-train stages with 1 CPU each), runs it
// once to fill the cache, then reruns only the students (`--force student`, `--cpus K`) and
// reads the run's wall time and per-stage durations from `distill run --json`. Each student has
// the same size and sees the same number of rows in both cases.
// Both with the runner's default scheduling (a stage's CPU count is a slot count, its process may
// use any core) and with --pin-cpus (each student bound to a core of its own, so the lone student
// of K = 1 computes on one core, as each of the K = 2 students does).
// Usage: npx tsc -b && node bench/multi-student/run.mjs [--rows 4000] [--hidden 128] [--epochs 3] [--repeats 2]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '4000' },
    hidden: { type: 'string', default: '128' },
    epochs: { type: 'string', default: '3' },
    repeats: { type: 'string', default: '2' },
  },
});
const N = Number(values.rows),
  hidden = Number(values.hidden),
  epochs = Number(values.epochs),
  repeats = Number(values.repeats);
const repo = resolve(new URL('../..', import.meta.url).pathname);
const distill = join(repo, 'tools/core/bin/distill.js');

function pipeline(K) {
  const ks = Array.from({ length: K }, (_, k) => k).join(', ');
  return `description: multi-student parallelism benchmark, K = ${K}
stages:
  data:
    plugin: dataset
    with: { format: synthetic, sources: [{ split: train, samples: ${K * N} }], dim: 64, classes: ${10 * K}, separation: 1.5, seed: 1 }
  partition:
    plugin: partition
    inputs: { dataset: data }
    with: { students: ${K}, strategy: consecutive }
  subset:
    plugin: partition-subset
    foreach: [${ks}]
    inputs: { dataset: data, routing: partition }
    with: { student: '\${{ item }}' }
  student:
    plugin: student-train
    foreach: [${ks}]
    inputs: { dataset: 'subset@\${{ item }}' }
    resources: { cpus: 1 }
    with: { student: { arch: mlp, hidden: [${hidden}] }, loss: ce, epochs: ${epochs}, batchSize: 64, lr: 0.002, seed: 1, checkpointEvery: 0 }
`;
}

/** Runs the pipeline; returns the run record (`--json`) and the process wall time in ms. */
function run(dir, K, extra) {
  const t0 = performance.now();
  const out = execFileSync(
    process.execPath,
    [
      distill,
      'run',
      join(dir, 'msd-bench.yaml'),
      '--root',
      dir,
      '--cpus',
      String(K),
      '--json',
      '--quiet',
      ...pinArgs,
      ...extra,
    ],
    { cwd: repo, encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  return { record: JSON.parse(out), wallMs: performance.now() - t0 };
}

let pinArgs = [];
for (const pin of [false, true]) {
  pinArgs = pin ? ['--pin-cpus'] : [];
  console.log(pin ? '\n--pin-cpus (each student bound to its own core):' : 'default scheduling (no core binding):');
  const results = {};
  for (const K of [1, 2]) {
    const dir = mkdtempSync(join(tmpdir(), `msd-bench-${K}-`));
    try {
      writeFileSync(join(dir, 'msd-bench.yaml'), pipeline(K));
      run(dir, K, []);
      // A no-change rerun: process start, planning and cache checks, subtracted below.
      const overheadMs = Math.min(run(dir, K, []).wallMs, run(dir, K, []).wallMs);
      const walls = [],
        students = [];
      for (let r = 0; r < repeats; r++) {
        const { record, wallMs } = run(dir, K, ['--force', 'student']);
        const ran = record.stages.filter((s) => s.id.startsWith('student@'));
        if (ran.length !== K || ran.some((s) => s.status !== 'ran'))
          throw new Error(
            `K=${K}: expected ${K} student stages to run, got ${JSON.stringify(ran.map((s) => [s.id, s.status]))}`,
          );
        walls.push(wallMs);
        students.push(ran.map((s) => s.durationMs));
      }
      const best = Math.min(...walls);
      results[K] = { wallMs: best, netMs: best - overheadMs, overheadMs };
      console.log(
        `K=${K}: students rerun wall ${walls.map((w) => (w / 1000).toFixed(1)).join(' / ')} s (no-change rerun ${(overheadMs / 1000).toFixed(1)} s); student stage durations ${students.map((s) => s.map((d) => (d / 1000).toFixed(1)).join(' + ')).join(' / ')} s`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const ratio = results[2].wallMs / results[1].wallMs;
  const netRatio = results[2].netMs / results[1].netMs;
  console.log(
    `\n${N} rows x ${epochs} epochs per student, MLP hidden ${hidden}, 1 CPU per student, best of ${repeats}`,
  );
  console.log(
    `K=1 wall ${(results[1].wallMs / 1000).toFixed(1)} s, K=2 wall ${(results[2].wallMs / 1000).toFixed(1)} s: ratio ${ratio.toFixed(2)}x (goal <= 1.2x)`,
  );
  console.log(
    `without the no-change rerun time: K=1 ${(results[1].netMs / 1000).toFixed(1)} s, K=2 ${(results[2].netMs / 1000).toFixed(1)} s: ratio ${netRatio.toFixed(2)}x`,
  );
}
console.log(
  `load average at the end: ${(await import('node:os'))
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
