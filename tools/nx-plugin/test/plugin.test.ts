import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createNodesV2, PIPELINE_PROJECT } from '../src/index.js';

test('every pipelines/*.yaml becomes a target of the pipeline project; params files do not; Nx cache off', async () => {
  const root = mkdtempSync(join(tmpdir(), 'nx-plugin-'));
  try {
    mkdirSync(join(root, 'pipelines'));
    writeFileSync(join(root, 'pipelines', 'tiny.yaml'), 'stages:\n  a: { plugin: exec }\n');
    writeFileSync(join(root, 'pipelines', 'big.yml'), '# comment\nname: big\nstages:\n  a: { plugin: exec }\n');
    writeFileSync(join(root, 'pipelines', 'big.params.yaml'), 'lr: 0.1\n');
    const [glob, create] = createNodesV2;
    assert.equal(glob, 'pipelines/*.{yaml,yml}');
    const results = await create(
      ['pipelines/tiny.yaml', 'pipelines/big.yml', 'pipelines/big.params.yaml'],
      {},
      { workspaceRoot: root },
    );
    assert.deepEqual(
      results.map(([file]) => file),
      ['pipelines/tiny.yaml', 'pipelines/big.yml'],
    );
    const targets = Object.assign({}, ...results.map(([, r]) => r.projects.pipelines?.targets));
    assert.deepEqual(Object.keys(targets).sort(), ['big', 'tiny']);
    assert.equal(results[0]?.[1].projects.pipelines?.name, PIPELINE_PROJECT);
    assert.equal(targets.tiny.command, 'node tools/core/bin/distill.js run pipelines/tiny.yaml');
    assert.equal(targets.tiny.cache, false, "distill's cache decides; Nx must not copy artifacts into its own");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
