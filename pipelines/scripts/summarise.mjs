#!/usr/bin/env node
// Exec-stage example: summarises the upstream artifacts named in $DISTILL_INPUT_<NAME> (file count
// and bytes per input) into $DISTILL_OUT/summary.json, and reports them as stage metrics.
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function walk(dir) {
  let files = 0;
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const sub = walk(path);
      files += sub.files;
      bytes += sub.bytes;
    } else {
      files += 1;
      bytes += statSync(path).size;
    }
  }
  return { files, bytes };
}

const summary = {};
const metrics = {};
for (const [name, value] of Object.entries(process.env)) {
  if (!name.startsWith('DISTILL_INPUT_') || !value) continue;
  const input = name.slice('DISTILL_INPUT_'.length).toLowerCase();
  const totals = value
    .split(':')
    .map(walk)
    .reduce((a, b) => ({ files: a.files + b.files, bytes: a.bytes + b.bytes }), { files: 0, bytes: 0 });
  summary[input] = totals;
  metrics[`${input}_files`] = totals.files;
  metrics[`${input}_mib`] = totals.bytes / 2 ** 20;
}
summary.label = process.env.DISTILL_PARAM_LABEL ?? '';
writeFileSync(join(process.env.DISTILL_OUT, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
writeFileSync(process.env.DISTILL_METRICS_FILE, JSON.stringify(metrics));
console.log(`::distill-progress 1/1 inputs`);
