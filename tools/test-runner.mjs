#!/usr/bin/env node
// Runs every compiled test file (tools/*/dist/test, plugins/*/dist/test) with node's test runner.
// Usage: node tools/test-runner.mjs [substring filter...]
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);
const files = [];
function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) walk(p);
    else if (entry.name.endsWith('.test.js')) files.push(p);
  }
}
for (const group of ['tools', 'plugins']) {
  for (const pkg of readdirSync(join(root, group))) {
    const testDir = join(root, group, pkg, 'dist', 'test');
    if (existsSync(testDir)) walk(testDir);
  }
}
const selected = files.filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
if (selected.length === 0) {
  console.error('no test files found (did `tsc -b` run?)');
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-force-exit', '--test-reporter=spec', ...selected], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
