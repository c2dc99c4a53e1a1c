#!/usr/bin/env node
// COCO bbox evaluation: agreement with the numpy port of pycocotools (cocoeval_reference.py) on
// seeded random cases, and the time for 5,000 images x 80 categories x ~40,000 detections.
// Usage: node bench/eval/coco.mjs [--cases N] [--skip-reference]   (after `npx tsc -b`)
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { makeCocoCase } from './coco-cases.mjs';
import { loadCocoFiles, evaluateCoco, COCO_STAT_KEYS } from '@distillery/plugin-eval';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const nCases = Number(args[args.indexOf('--cases') + 1] || 0) || 8;
const skipReference = args.includes('--skip-reference');
const dir = mkdtempSync(join(tmpdir(), 'coco-bench-'));

try {
  if (!skipReference) {
    let maxDiff = 0;
    for (let c = 0; c < nCases; c++) {
      const opts = {
        images: 20 + c * 15,
        categories: 3 + (c % 5) * 2,
        gtPerImage: 3,
        detsPerGt: 3,
        falseDets: 2,
        crowdRate: c % 3 === 0 ? 0.15 : 0.03,
        tieRate: c % 2 === 0 ? 0.5 : 0.05,
        burst: c % 4 === 1 ? 2 : 0,
      };
      const { gt, dets } = makeCocoCase(1000 + c, opts);
      const gtPath = join(dir, `gt${c}.json`);
      const dtPath = join(dir, `dt${c}.json`);
      writeFileSync(gtPath, JSON.stringify(gt));
      writeFileSync(dtPath, JSON.stringify(dets));
      const ours = evaluateCoco(...Object.values(await loadCocoFiles(gtPath, dtPath))).stats;
      const ref = spawnSync('python3', [join(here, 'cocoeval_reference.py'), gtPath, dtPath], { encoding: 'utf8' });
      if (ref.status !== 0) throw new Error(`reference failed: ${ref.stderr}`);
      const theirs = JSON.parse(ref.stdout);
      let caseDiff = 0;
      for (const k of COCO_STAT_KEYS) caseDiff = Math.max(caseDiff, Math.abs(ours[k] - theirs[k]));
      maxDiff = Math.max(maxDiff, caseDiff);
      console.log(
        `case ${c}: ${gt.images.length} images, ${gt.annotations.length} GT, ${dets.length} dets; AP ${ours.AP.toFixed(4)} (ref ${theirs.AP.toFixed(4)}); max |diff| over 12 numbers ${caseDiff.toExponential(2)}`,
      );
    }
    console.log(
      `COCO agreement with reference port: max abs difference over ${nCases} cases x 12 numbers = ${maxDiff.toExponential(3)} (goal <= 1e-6)`,
    );
  }

  const { gt, dets } = makeCocoCase(7, {
    images: 5000,
    categories: 80,
    gtPerImage: 5,
    detsPerGt: 2,
    falseDets: 2.5,
    crowdRate: 0.01,
    tieRate: 0.05,
    burst: 5,
  });
  const gtPath = join(dir, 'gt-big.json');
  const dtPath = join(dir, 'dt-big.json');
  writeFileSync(gtPath, JSON.stringify(gt));
  writeFileSync(dtPath, JSON.stringify(dets));
  const runs = [];
  for (let rep = 0; rep < 3; rep++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const loaded = await loadCocoFiles(gtPath, dtPath);
    const t1 = performance.now();
    evaluateCoco(loaded.gt, loaded.detections);
    const t2 = performance.now();
    const cpu = process.cpuUsage(c0);
    runs.push([t1 - t0, t2 - t1, (cpu.user + cpu.system) / 1000]);
  }
  const best = runs.reduce((a, b) => (a[0] + a[1] <= b[0] + b[1] ? a : b));
  console.log(
    `COCO timing: ${gt.images.length} images, ${gt.categories.length} categories, ${gt.annotations.length} GT, ${dets.length} detections`,
  );
  console.log(
    `  load+validate ${(best[0] / 1000).toFixed(3)} s, evaluate ${(best[1] / 1000).toFixed(3)} s, total ${((best[0] + best[1]) / 1000).toFixed(3)} s wall, ${(best[2] / 1000).toFixed(3)} s CPU (best of 3; goal < 1.5 s)`,
  );
  if (args.includes('--time-reference')) {
    const t0 = performance.now();
    const ref = spawnSync('python3', [join(here, 'cocoeval_reference.py'), gtPath, dtPath], { encoding: 'utf8' });
    if (ref.status !== 0) throw new Error(`reference failed: ${ref.stderr}`);
    console.log(
      `  numpy reference port (pure-python matching like pycocotools): ${((performance.now() - t0) / 1000).toFixed(2)} s`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
