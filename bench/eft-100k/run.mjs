#!/usr/bin/env node
// End-to-end figures of pipelines/eft-100k.yaml: wall time and peak RSS of the whole process tree
// (runner + every stage child, sampled from /proc every 100 ms), per-stage durations from the run
// record (--json), rerun-with-nothing-changed time, a one-parameter change that must rerun one
// stage only, and time / peak memory at several scales of samples per class.
// Usage: npx tsc -b && node bench/eft-100k/run.mjs [--classes 100000] [--scales 4,8,16] [--set k=v ...]
// Each scale is a full pipeline run in a fresh project root (/tmp), so nothing is shared between them.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    classes: { type: 'string', default: '100000' },
    scales: { type: 'string', default: '4' },
    set: { type: 'string', multiple: true, default: [] },
    keep: { type: 'boolean', default: false },
  },
});
const repo = new URL('../..', import.meta.url).pathname;
const pipeline = join(repo, 'pipelines', 'eft-100k.yaml');
const distill = join(repo, 'tools', 'core', 'bin', 'distill.js');

function treeRss(pid) {
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      const m = /VmRSS:\s+(\d+) kB/.exec(status);
      if (m) total += Number(m[1]) * 1024;
      for (const t of readdirSync(`/proc/${p}/task`)) {
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').split(' ').filter(Boolean))
          stack.push(Number(c));
      }
    } catch {
      // process ended between listing and reading
    }
  }
  return total;
}

/** Runs `distill run --json` in `root`; returns wall seconds, peak tree RSS and the JSON record. */
function runPipeline(root, sets) {
  return new Promise((resolve, reject) => {
    const argv = [distill, 'run', pipeline, '--json', '--quiet', '--root', root, ...sets.flatMap((s) => ['--set', s])];
    const started = performance.now();
    const child = spawn(process.execPath, argv, { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, treeRss(child.pid))), 100);
    child.on('exit', (code) => {
      clearInterval(timer);
      const seconds = (performance.now() - started) / 1000;
      let record;
      try {
        record = JSON.parse(out);
      } catch {
        return reject(
          new Error(`distill run exited ${code}; stderr:\n${err.slice(-3000)}\nstdout:\n${out.slice(-2000)}`),
        );
      }
      if (code !== 0)
        return reject(
          new Error(`distill run exited ${code}: ${JSON.stringify(record).slice(0, 3000)}\n${err.slice(-3000)}`),
        );
      resolve({ seconds, peakRss: peak, record });
    });
  });
}

const gib = (b) => (b / 2 ** 30).toFixed(2);
const stagesOf = (rec) => rec.stages ?? rec;
function summarise(rec) {
  const byBase = new Map();
  for (const s of stagesOf(rec)) {
    const base = s.id.split('@')[0];
    const e = byBase.get(base) ?? { n: 0, ms: 0, ran: 0 };
    e.n++;
    e.ms += s.durationMs ?? s.duration_ms ?? s.duration ?? 0;
    if (s.status === 'ran') e.ran++;
    byBase.set(base, e);
  }
  return [...byBase]
    .map(([b, e]) => `${b}${e.n > 1 ? ` x${e.n}` : ''} ${(e.ms / 1000).toFixed(1)} s (ran ${e.ran})`)
    .join('; ');
}

const results = [];
const scales = args.scales.split(',').map(Number);
for (const [i, spc] of scales.entries()) {
  const root = mkdtempSync(join(tmpdir(), 'eft-bench-'));
  writeFileSync(join(root, 'nx.json'), '{}');
  const sets = [`params.data.classes=${args.classes}`, `params.data.samplesPerClass=${spc}`, ...args.set];
  try {
    const full = await runPipeline(root, sets);
    console.log(
      `classes ${args.classes}, ${spc} samples/class: end to end ${full.seconds.toFixed(1)} s, peak RSS (process tree) ${gib(full.peakRss)} GiB`,
    );
    console.log(`  stages: ${summarise(full.record)}`);
    // The students' scores at this scale: the model rows of the eval report.
    const report = readFileSync(join(root, 'out', 'eft-100k', 'eval', 'report.md'), 'utf8').split('\n');
    console.log(
      report
        .filter((l) => /^Split|^\| (model|kc|generalist) /.test(l))
        .map((l) => `  ${l}`)
        .join('\n'),
    );
    const row = {
      classes: Number(args.classes),
      samplesPerClass: spc,
      seconds: full.seconds,
      peakRssGiB: Number(gib(full.peakRss)),
    };
    if (i === 0) {
      const rerun = await runPipeline(root, sets);
      const ran = stagesOf(rerun.record)
        .filter((s) => s.status === 'ran')
        .map((s) => s.id);
      console.log(
        `  rerun, nothing changed: ${rerun.seconds.toFixed(2)} s, stages run: ${ran.length ? ran.join(', ') : 'none'}`,
      );
      const change = await runPipeline(root, [...sets, 'eval.latencyRuns=7']);
      const ran2 = stagesOf(change.record)
        .filter((s) => s.status === 'ran')
        .map((s) => s.id);
      console.log(
        `  one eval parameter changed (eval.latencyRuns): ${change.seconds.toFixed(1)} s, stages run: ${ran2.join(', ')}`,
      );
      Object.assign(row, { rerunSeconds: rerun.seconds, rerunStages: ran.length, changedStages: ran2 });
    }
    results.push(row);
  } finally {
    if (!args.keep) rmSync(root, { recursive: true, force: true });
    else console.log(`  kept: ${root}`);
  }
}
console.log(JSON.stringify(results));
