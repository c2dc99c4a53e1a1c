import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { cocoCommand, fidCommand, fidStatsCommand, registerCommands } from '../src/cli.js';
import { encodeNpy } from '../src/index.js';

test('eval coco prints the 12 numbers as JSON and as text', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
  try {
    const gt = join(dir, 'gt.json');
    const dets = join(dir, 'dets.json');
    writeFileSync(gt, JSON.stringify({
      images: [{ id: 1 }],
      categories: [{ id: 1 }],
      annotations: [{ id: 1, image_id: 1, category_id: 1, bbox: [0, 0, 10, 10], area: 100, iscrowd: 0 }],
    }));
    writeFileSync(dets, JSON.stringify([
      { image_id: 1, category_id: 1, bbox: [50, 50, 10, 10], score: 0.9 },
      { image_id: 1, category_id: 1, bbox: [0, 0, 10, 10], score: 0.8 },
    ]));
    const out = JSON.parse(await cocoCommand({ gt, dets, json: true })) as Record<string, number>;
    assert.deepEqual(Object.keys(out), ['AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl']);
    assert.ok(Math.abs(out.AP! - 0.5) < 1e-12);
    assert.equal(out.APm, -1);
    assert.equal(out.AR1, 0);
    const text = await cocoCommand({ gt, dets });
    assert.match(text, /Average Precision {2}\(AP\) @\[ IoU=0\.50:0\.95 \| area= {3}all \| maxDets=100 \] = 0\.500/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('eval fid on .npy features and saved .npz statistics; commands are registered', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
  try {
    // 1-D features with known sample statistics: a = {0, 2} (mean 1, var 2), b = {3, 5, 7} (mean 5, var 4).
    const a = join(dir, 'a.npy');
    const b = join(dir, 'b.npy');
    writeFileSync(a, encodeNpy(Float64Array.from([0, 2]), [2, 1]));
    writeFileSync(b, encodeNpy(Float64Array.from([3, 5, 7]), [3, 1]));
    const expected = 16 + (Math.sqrt(2) - 2) ** 2;
    const { fid } = JSON.parse(await fidCommand(a, b, { json: true })) as { fid: number };
    assert.ok(Math.abs(fid - expected) < 1e-12, `${fid} vs ${expected}`);
    const npz = join(dir, 'b.npz');
    assert.match(await fidStatsCommand(b, npz), /D = 1, N = 3/);
    const again = JSON.parse(await fidCommand(a, npz, { json: true })) as { fid: number };
    assert.ok(Math.abs(again.fid - expected) < 1e-12);

    const program = new Command();
    registerCommands(program);
    const evalCmd = program.commands.find((c) => c.name() === 'eval');
    assert.deepEqual(evalCmd?.commands.map((c) => c.name()), ['coco', 'fid', 'fid-stats']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
