import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openShardSet, parseDatasetSchema } from '@distillery/runtime/shards';
import { evaluateCoco, parseCocoGroundTruth, type CocoDetection, type JsonValue } from '@distillery/plugin-eval';
import plugin from '../src/plugin.js';
import { idx, makeCtx } from './helpers.js';

type Box = [number, number, number, number];

interface CanvasRow {
  id: string;
  split: string;
  labels: number[];
  pixels: Uint8Array;
  boxes: Box[];
  boxLabels: number[];
}

/**
 * IDX item files: 28x28 items, each a filled rectangle (random size and place, margins kept) of one
 * grey level. The grey level marks where an item comes from: train file rows 0..29 are 200, rows
 * 30..39 150 (the val range), test file items 100.
 */
function writeItems(root: string): void {
  let state = 7;
  const next = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return Math.floor((state / 4294967296) * n);
  };
  const items = (count: number, level: (i: number) => number) => {
    const px = new Uint8Array(count * 784);
    const labels = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      const [w, h] = [6 + next(18), 6 + next(18)];
      const [x0, y0] = [2 + next(24 - w), 2 + next(24 - h)];
      for (let y = y0; y < y0 + h; y++) px.fill(level(i), i * 784 + y * 28 + x0, i * 784 + y * 28 + x0 + w);
      labels[i] = i % 4;
    }
    return { px, labels };
  };
  const train = items(40, (i) => (i < 30 ? 200 : 150));
  const testItems = items(12, () => 100);
  writeFileSync(join(root, 'train-x'), idx(8, [40, 28, 28], train.px));
  writeFileSync(join(root, 'train-y'), idx(8, [40], train.labels));
  writeFileSync(join(root, 'test-x'), idx(8, [12, 28, 28], testItems.px));
  writeFileSync(join(root, 'test-y'), idx(8, [12], testItems.labels));
}

const SOURCES = [
  { split: 'train', path: 'train-x', labels: 'train-y', samples: 40, itemRange: [0, 30] },
  { split: 'val', path: 'train-x', labels: 'train-y', samples: 15, itemRange: [30, 40] },
  { split: 'test', path: 'test-x', labels: 'test-y', samples: 15 },
];

const CLEAN = { size: 64, objects: [2, 5], scale: [12, 28], maxIoU: 0.2, clutter: 0, backgroundNoise: 0 };

async function run(root: string, out: string, params: Record<string, unknown>) {
  const { ctx } = makeCtx(
    plugin,
    { format: 'detection-canvas', rowsPerShard: 32, ...params },
    { outDir: join(root, out), pipelineDir: root },
  );
  return plugin.run(ctx);
}

async function readRows(dir: string): Promise<CanvasRow[]> {
  const set = await openShardSet(dir);
  const rows: CanvasRow[] = [];
  for await (const r of set.rows()) {
    const flat = Array.from(r.boxes as Float32Array);
    rows.push({
      id: r.id as string,
      split: r.split as string,
      labels: Array.from(r.labels as Int32Array),
      pixels: r.pixels as Uint8Array,
      boxes: Array.from({ length: flat.length / 4 }, (_, k) => flat.slice(4 * k, 4 * k + 4) as Box),
      boxLabels: Array.from(r.box_labels as Int32Array),
    });
  }
  return rows;
}

/** IoU by counting pixels, independent of the generator's box arithmetic. */
function pixelIoU(a: Box, b: Box): number {
  let inter = 0;
  let union = 0;
  const inBox = (x: number, y: number, [bx, by, bw, bh]: Box) => x >= bx && x < bx + bw && y >= by && y < by + bh;
  for (let y = 0; y < 64; y++)
    for (let x = 0; x < 64; x++) {
      const [ia, ib] = [inBox(x, y, a), inBox(x, y, b)];
      if (ia && ib) inter++;
      if (ia || ib) union++;
    }
  return inter / union;
}

/** Runs `body` in a fresh temporary folder, removed afterwards. */
async function inTempDir(body: (root: string) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'canvas-'));
  try {
    await body(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function readJson(path: string): JsonValue {
  return JSON.parse(readFileSync(path, 'utf8')) as JsonValue;
}

test('detection-canvas: same params give byte-identical shards and COCO files; the seed changes them', () =>
  inTempDir(async (root) => {
    writeItems(root);
    const params = {
      sources: SOURCES,
      seed: 3,
      canvas: { size: 64, scale: [10, 30], clutter: 3, backgroundNoise: 10, noise: { kind: 'gaussian', level: 0.05 } },
    };
    await run(root, 'a', params);
    await run(root, 'b', params);
    await run(root, 'c', { ...params, seed: 4 });
    const files = (d: string) => readdirSync(join(root, d)).filter((f) => f.endsWith('.arrow'));
    assert.ok(files('a').length > 1, 'several shards');
    for (const f of [...files('a'), 'manifest.json', 'coco/train.json', 'coco/val.json', 'coco/test.json'])
      assert.ok(readFileSync(join(root, 'a', f)).equals(readFileSync(join(root, 'b', f))), f);
    assert.ok(
      !readFileSync(join(root, 'a', 'part-00000.arrow')).equals(readFileSync(join(root, 'c', 'part-00000.arrow'))),
    );
  }));

test('detection-canvas: counts, IoU limit, tight boxes, split items, shards agree with COCO', () =>
  inTempDir(async (root) => {
    writeItems(root);
    await run(root, 'out', { sources: SOURCES, canvas: CLEAN, numClasses: 4 });
    const rows = await readRows(join(root, 'out'));
    const set = await openShardSet(join(root, 'out'));
    const info = parseDatasetSchema(set.schema);
    assert.deepEqual([info.shape, info.labels, info.numClasses], [[64, 64, 1], 'multi', 4]);
    for (const [split, n] of [
      ['train', 40],
      ['val', 15],
      ['test', 15],
    ] as const)
      assert.equal(rows.filter((r) => r.split === split).length, n, split);
    let trainMax = 0;
    for (const r of rows) {
      assert.ok(r.boxes.length >= 2 && r.boxes.length <= 5, `${r.id}: ${r.boxes.length} objects`);
      assert.deepEqual(
        r.labels,
        [...new Set(r.boxLabels)].sort((a, b) => a - b),
      );
      for (let i = 0; i < r.boxes.length; i++)
        for (let j = i + 1; j < r.boxes.length; j++)
          assert.ok(pixelIoU(r.boxes[i]!, r.boxes[j]!) <= 0.2 + 1e-12, `${r.id}: boxes ${i}, ${j}`);
      const at = (x: number, y: number) => r.pixels[y * 64 + x]!;
      // Without noise and clutter every non-zero pixel is in a box ...
      for (let y = 0; y < 64; y++)
        for (let x = 0; x < 64; x++)
          if (at(x, y) > 0)
            assert.ok(
              r.boxes.some(([bx, by, bw, bh]) => x >= bx && x < bx + bw && y >= by && y < by + bh),
              `${r.id}: pixel (${x}, ${y}) outside every box`,
            );
      // ... and each box's four edges hold a non-zero pixel (items are composed with max).
      for (const [bx, by, bw, bh] of r.boxes) {
        const row = (y: number) => Array.from({ length: bw }, (_, k) => at(bx + k, y)).some((v) => v > 0);
        const col = (x: number) => Array.from({ length: bh }, (_, k) => at(x, by + k)).some((v) => v > 0);
        assert.ok(
          row(by) && row(by + bh - 1) && col(bx) && col(bx + bw - 1),
          `${r.id}: box ${[bx, by, bw, bh]} not tight`,
        );
      }
      // Items come from the split's own source rows (their grey level says which).
      const max = r.pixels.reduce((m, v) => Math.max(m, v), 0);
      const level = { train: 200, val: 150, test: 100 }[r.split as 'train' | 'val' | 'test'];
      assert.ok(max <= level, `${r.id}: max grey ${max}`);
      if (r.split === 'train') trainMax = Math.max(trainMax, max);
    }
    assert.equal(trainMax, 200);
    // COCO ground truth: ids and boxes match the shards; loads with the project's loader.
    for (const split of ['train', 'val', 'test']) {
      const path = join(root, 'out', 'coco', `${split}.json`);
      const json = readJson(path) as {
        images: { id: number; file_name: string }[];
        annotations: { image_id: number; bbox: Box; category_id: number }[];
      };
      const splitRows = rows.filter((r) => r.split === split);
      assert.deepEqual(
        json.images.map((im) => im.file_name),
        splitRows.map((r) => r.id),
      );
      for (const im of json.images) {
        const row = splitRows.find((r) => r.id === `${split}/${im.id}`)!;
        const anns = json.annotations.filter((a) => a.image_id === im.id);
        assert.deepEqual(
          anns.map((a) => a.bbox),
          row.boxes,
        );
        assert.deepEqual(
          anns.map((a) => a.category_id),
          row.boxLabels,
        );
      }
      const gt = parseCocoGroundTruth(readJson(path), path);
      assert.equal(gt.imageIds.length, splitRows.length);
      const perfect: CocoDetection[] = gt.annotations.map((a) => ({
        imageId: a.imageId,
        categoryId: a.categoryId,
        bbox: a.bbox,
        score: 1,
      }));
      const { stats } = evaluateCoco(gt, perfect);
      assert.deepEqual([stats.AP, stats.AP50, stats.AP75, stats.AR100], [1, 1, 1, 1], split);
    }
  }));

test('detection-canvas: one object per canvas: its box is exactly the non-zero pixels; shapes need no files', () =>
  inTempDir(async (root) => {
    await run(root, 'out', {
      sources: [{ split: 'train', samples: 30 }],
      canvas: { ...CLEAN, items: 'shapes', objects: [1, 1], scale: [4, 40] },
    });
    const rows = await readRows(join(root, 'out'));
    const set = await openShardSet(join(root, 'out'));
    assert.deepEqual(parseDatasetSchema(set.schema).classNames, ['disc', 'square', 'triangle', 'ring', 'cross']);
    const classes = new Set<number>();
    for (const r of rows) {
      let [x0, y0, x1, y1] = [64, 64, -1, -1];
      r.pixels.forEach((v, i) => {
        if (v === 0) return;
        const [x, y] = [i % 64, Math.floor(i / 64)];
        [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
      });
      assert.deepEqual(r.boxes, [[x0, y0, x1 - x0 + 1, y1 - y0 + 1]], r.id);
      classes.add(r.boxLabels[0]!);
    }
    assert.equal(classes.size, 5);
  }));

test('detection-canvas: noise variants change pixels only; speckle keeps zeros, rician lifts the background', () =>
  inTempDir(async (root) => {
    const sources = [{ split: 'train', samples: 10 }];
    const canvas = { ...CLEAN, items: 'shapes' };
    const variants = { none: 0, speckle: 0.3, rician: 0.1 } as const;
    const got: Record<string, CanvasRow[]> = {};
    for (const [kind, level] of Object.entries(variants)) {
      await run(root, kind, { sources, canvas: { ...canvas, noise: { kind, level } } });
      got[kind] = await readRows(join(root, kind));
    }
    const clean = got.none!;
    let background = 0;
    let count = 0;
    clean.forEach((r, i) => {
      assert.deepEqual(got.speckle![i]!.boxes, r.boxes);
      assert.deepEqual(got.rician![i]!.boxes, r.boxes);
      r.pixels.forEach((v, p) => {
        if (v > 0) return;
        assert.equal(got.speckle![i]!.pixels[p], 0);
        background += got.rician![i]!.pixels[p]!;
        count++;
      });
    });
    assert.ok(!got.speckle![0]!.pixels.every((v, p) => v === clean[0]!.pixels[p]), 'speckle changed the objects');
    // Rician noise on a zero signal is Rayleigh: mean sigma * sqrt(pi / 2), sigma = 0.1 * 255.
    const rayleigh = 0.1 * 255 * Math.sqrt(Math.PI / 2);
    assert.ok(Math.abs(background / count - rayleigh) < 0.05 * rayleigh, `background mean ${background / count}`);
  }));

test('detection-canvas: errors name the parameter and leave nothing behind', () =>
  inTempDir(async (root) => {
    writeItems(root);
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        {
          sources: [{ split: 'train', samples: 5 }],
          canvas: { items: 'shapes', size: 32, objects: [6, 6], scale: [30, 30], maxIoU: 0 },
        },
        /canvas.objects\[0\] = 6 objects with canvas.maxIoU = 0/,
      ],
      [
        { sources: [{ split: 'train', samples: 5 }], canvas: { items: 'shapes', size: 32, scale: [12, 40] } },
        /canvas.scale\[1\] \(40\) is larger than canvas.size \(32\)/,
      ],
      [
        { sources: [{ split: 'train', samples: 5 }], canvas: {} },
        /sources\[0\] \(split train\): canvas.items is idx, so path/,
      ],
      [
        { sources: [SOURCES[0], { ...SOURCES[1], itemRange: [25, 40] }], canvas: CLEAN },
        /sources\[0\] \(split train\) and sources\[1\] \(split val\) share item rows of/,
      ],
      [
        { sources: [{ ...SOURCES[1], itemRange: [30, 41] }], canvas: CLEAN },
        /itemRange \[30,41\] goes past the 40 images/,
      ],
      [{ sources: [SOURCES[2]], canvas: CLEAN, numClasses: 3 }, /numClasses is 3 but an item has label 3/],
    ];
    for (const [i, [params, message]] of cases.entries()) {
      const out = `bad${i}`;
      await assert.rejects(run(root, out, params), message);
      assert.ok(!existsSync(join(root, out, 'manifest.json')) && !existsSync(join(root, out, 'coco')), out);
      assert.deepEqual(existsSync(join(root, out)) ? readdirSync(join(root, out)) : [], [], out);
    }
  }));
