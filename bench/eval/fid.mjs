#!/usr/bin/env node
// FID on two N x D float32 feature matrices (default 50,000 x 2048): this package (streamed
// statistics via onnxruntime DGEMM, Cholesky + symmetric eigenvalues) against numpy + scipy's
// sqrtm (fid_scipy.py) on the same files in the same run.
// Usage: node bench/eval/fid.mjs [N] [D]   (after `npx tsc -b`)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadFidInput, frechetDistance } from '@distillery/plugin-eval';

const here = dirname(fileURLToPath(import.meta.url));
const n = Number(process.argv[2] ?? 50000);
const d = Number(process.argv[3] ?? 2048);
const dir = mkdtempSync(join(tmpdir(), 'fid-bench-'));
const py = (args) => {
  const r = spawnSync('python3', [join(here, 'fid_scipy.py'), ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`fid_scipy.py ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
};
try {
  const a = join(dir, 'a.npy');
  const b = join(dir, 'b.npy');
  py(['generate', a, b, String(n), String(d), '0']);
  const t0 = performance.now();
  const sa = await loadFidInput(a);
  const sb = await loadFidInput(b);
  const t1 = performance.now();
  const ours = await frechetDistance(sa, sb);
  const t2 = performance.now();
  const ref = JSON.parse(py(['fid', a, b]));
  const oursS = (t2 - t0) / 1000;
  console.log(`FID ${n} x ${d} float32 features, two sets`);
  console.log(
    `  distillery: ${oursS.toFixed(2)} s (statistics ${((t1 - t0) / 1000).toFixed(2)} s, distance ${((t2 - t1) / 1000).toFixed(2)} s), FID ${ours}`,
  );
  console.log(
    `  numpy+scipy: ${ref.seconds.toFixed(2)} s (statistics ${ref.stats_seconds.toFixed(2)} s, sqrtm distance ${ref.distance_seconds.toFixed(2)} s), FID ${ref.fid}`,
  );
  console.log(
    `  speed-up vs scipy: ${(ref.seconds / oursS).toFixed(2)}x; relative difference ${(Math.abs(ours - ref.fid) / Math.abs(ref.fid)).toExponential(2)} (goal <= 1e-6)`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
