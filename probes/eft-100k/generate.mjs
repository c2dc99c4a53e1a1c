#!/usr/bin/env node
// Time and peak RSS of the data stage alone at one scale (run under /usr/bin/time -v for RSS):
//   /usr/bin/time -v node probes/eft-100k/generate.mjs [classes] [samplesPerClass]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_GEOMETRY, generateEft } from '@distillery/plugin-eft-data';

const classes = Number(process.argv[2] ?? 100000);
const spc = Number(process.argv[3] ?? 4);
const dir = mkdtempSync(join(tmpdir(), 'eft-gen-'));
try {
  const r = await generateEft({
    geometry: { ...DEFAULT_GEOMETRY, classes },
    perClass: { train: spc, val: 0, test: 1 },
    outDir: dir,
    rowsPerShard: 16384,
    chunkRows: 4096,
    statsSamples: 100,
  });
  const bytes = r.manifest.shards.reduce((a, s) => a + s.bytes, 0);
  console.log(
    `classes ${classes}, ${spc}/class: ${r.manifest.totalRows} rows, ${(bytes / 2 ** 20).toFixed(0)} MiB in ${r.seconds.toFixed(1)} s; overlap ${JSON.stringify(r.stats)}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
