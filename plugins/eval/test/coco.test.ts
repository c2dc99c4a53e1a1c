import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  COCO_STAT_KEYS,
  evaluateCoco,
  loadCocoFiles,
  parseCocoDetections,
  parseCocoGroundTruth,
  type CocoStats,
} from '../src/index.js';
import type { JsonValue } from '../src/errors.js';

type Box = [number, number, number, number];
interface GtSpec {
  img?: number;
  cat?: number;
  box: Box;
  area?: number;
  crowd?: boolean;
  id?: number;
}
interface DtSpec {
  img?: number;
  cat?: number;
  box: Box;
  score: number;
}

/** Builds and evaluates a case; images default to [1], categories to [1]. */
function run(gts: GtSpec[], dts: DtSpec[], images = [1], categories = [1]): CocoStats {
  const gtJson: JsonValue = {
    images: images.map((id) => ({ id })),
    categories: categories.map((id) => ({ id, name: `c${id}` })),
    annotations: gts.map((g, i) => ({
      id: g.id ?? i + 1,
      image_id: g.img ?? 1,
      category_id: g.cat ?? 1,
      bbox: g.box,
      area: g.area ?? g.box[2] * g.box[3],
      iscrowd: g.crowd ? 1 : 0,
    })),
  };
  const gt = parseCocoGroundTruth(gtJson, 'gt.json');
  const dets = parseCocoDetections(
    dts.map((d) => ({ image_id: d.img ?? 1, category_id: d.cat ?? 1, bbox: d.box, score: d.score })),
    'dets.json',
    gt,
  );
  return evaluateCoco(gt, dets).stats;
}

function assertStats(actual: CocoStats, expected: Partial<CocoStats>, tol = 1e-12): void {
  for (const [k, v] of Object.entries(expected)) {
    const got = actual[k as keyof CocoStats];
    assert.ok(Math.abs(got - v) <= tol, `${k}: expected ${v}, got ${got}`);
  }
}

test('a perfect detection scores 1 in its area range and -1 elsewhere', () => {
  const s = run([{ box: [0, 0, 10, 10] }], [{ box: [0, 0, 10, 10], score: 0.9 }]);
  assertStats(s, {
    AP: 1,
    AP50: 1,
    AP75: 1,
    APs: 1,
    APm: -1,
    APl: -1,
    AR1: 1,
    AR10: 1,
    AR100: 1,
    ARs: 1,
    ARm: -1,
    ARl: -1,
  });
});

test('a higher-scored false positive halves precision at every recall threshold', () => {
  const s = run(
    [{ box: [0, 0, 10, 10] }],
    [
      { box: [50, 50, 10, 10], score: 0.9 },
      { box: [0, 0, 10, 10], score: 0.8 },
    ],
  );
  // tp=1, fp=1 at the second detection: precision 1/(2+eps) after the right-to-left envelope.
  assertStats(s, { AP: 0.5, AP50: 0.5, AR100: 1, AR1: 0 }, 1e-15);
});

test('IoU 0.625 matches at thresholds .50, .55, .60 only', () => {
  // det covers 10 x 6.25 of a 10 x 10 GT: IoU = 62.5 / 100.
  const s = run([{ box: [0, 0, 10, 10] }], [{ box: [0, 0, 10, 6.25], score: 0.5 }]);
  assertStats(s, { AP: 0.3, AP50: 1, AP75: 0, AR100: 0.3 });
});

test('detections on a crowd region are ignored, not false positives', () => {
  const gts: GtSpec[] = [{ box: [0, 0, 100, 100], crowd: true }, { box: [200, 200, 10, 10] }];
  const dts: DtSpec[] = [
    { box: [10, 10, 20, 20], score: 0.9 },
    { box: [50, 50, 20, 20], score: 0.8 },
    { box: [0, 0, 30, 30], score: 0.7 },
    { box: [200, 200, 10, 10], score: 0.6 },
  ];
  assertStats(run(gts, dts), { AP: 1, AR100: 1 });
  // The same boxes without the crowd flag: 3 false positives ahead of the only true positive.
  const plain = run([{ box: [0, 0, 100, 100], area: 1e4 }, gts[1]!], dts);
  assert.ok(plain.AP < 0.5, `AP without crowd flag ${plain.AP}`);
});

test('all-crowd ground truth gives -1 for every number', () => {
  const s = run([{ box: [0, 0, 10, 10], crowd: true }], [{ box: [0, 0, 10, 10], score: 0.9 }]);
  for (const k of COCO_STAT_KEYS) assert.equal(s[k], -1, k);
});

test('no detections: 0 where there is GT, -1 where there is none', () => {
  const s = run([{ box: [0, 0, 10, 10] }, { box: [0, 0, 200, 200] }], []);
  assertStats(s, { AP: 0, APs: 0, APm: -1, APl: 0, AR100: 0, ARm: -1 });
});

test('a detection on an image without GT is a false positive', () => {
  const s = run(
    [{ img: 1, box: [0, 0, 10, 10] }],
    [
      { img: 2, box: [0, 0, 10, 10], score: 0.9 },
      { img: 1, box: [0, 0, 10, 10], score: 0.5 },
    ],
    [1, 2],
  );
  assertStats(s, { AP: 0.5, AR100: 1 }, 1e-15);
});

test('a category without GT is -1 and left out of the mean', () => {
  const s = run(
    [{ cat: 1, box: [0, 0, 10, 10] }],
    [
      { cat: 1, box: [0, 0, 10, 10], score: 0.9 },
      { cat: 2, box: [0, 0, 10, 10], score: 0.9 },
    ],
    [1],
    [1, 2],
  );
  assertStats(s, { AP: 1, AR100: 1 });
});

test('score ties keep file order (stable sort)', () => {
  const fpFirst = run(
    [{ box: [0, 0, 10, 10] }],
    [
      { box: [50, 50, 10, 10], score: 0.5 },
      { box: [0, 0, 10, 10], score: 0.5 },
    ],
  );
  assertStats(fpFirst, { AP: 0.5 }, 1e-15);
  const tpFirst = run(
    [{ box: [0, 0, 10, 10] }],
    [
      { box: [0, 0, 10, 10], score: 0.5 },
      { box: [50, 50, 10, 10], score: 0.5 },
    ],
  );
  assertStats(tpFirst, { AP: 1 });
});

test('only the 100 best detections per image and category count', () => {
  const fps = (n: number): DtSpec[] =>
    Array.from({ length: n }, (_, i) => ({ box: [300 + i, 300, 5, 5] as Box, score: 0.99 - i * 1e-4 }));
  const cut = run([{ box: [0, 0, 10, 10] }], [...fps(100), { box: [0, 0, 10, 10], score: 0.1 }]);
  assertStats(cut, { AP: 0, AR100: 0 });
  const kept = run([{ box: [0, 0, 10, 10] }], [...fps(99), { box: [0, 0, 10, 10], score: 0.1 }]);
  // Recall 1 is reached at the 100th detection with precision 1/100 at every recall threshold.
  assertStats(kept, { AP: 1 / (100 + 2.220446049250313e-16), AR100: 1, AR10: 0, AR1: 0 });
});

test('maxDets 1 and 10 cut per image before pooling', () => {
  const s = run(
    [{ box: [0, 0, 10, 10] }, { box: [100, 100, 10, 10] }],
    [
      { box: [0, 0, 10, 10], score: 0.9 },
      { box: [100, 100, 10, 10], score: 0.8 },
    ],
  );
  assertStats(s, { AR1: 0.5, AR10: 1, AR100: 1, AP: 1 });
});

test('area ranges use the GT area field, with inclusive bounds', () => {
  // A 10 x 10 box whose `area` says medium.
  const medium = run([{ box: [0, 0, 10, 10], area: 2000 }], [{ box: [0, 0, 10, 10], score: 0.9 }]);
  assertStats(medium, { APs: -1, APm: 1 });
  // area exactly 32^2 lies in both small and medium.
  const edge = run([{ box: [0, 0, 32, 32] }], [{ box: [0, 0, 32, 32], score: 0.9 }]);
  assertStats(edge, { APs: 1, APm: 1, APl: -1 });
});

test('a GT with annotation id 0 never counts as matched (pycocotools quirk)', () => {
  const s = run([{ box: [0, 0, 10, 10], id: 0 }], [{ box: [0, 0, 10, 10], score: 0.9 }]);
  assertStats(s, { AP: 0, AR100: 0 });
});

test('bad input names the file and the record', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coco-test-'));
  try {
    const gtPath = join(dir, 'gt.json');
    const dtPath = join(dir, 'dets.json');
    const gtOk = {
      images: [{ id: 1 }],
      categories: [{ id: 1 }],
      annotations: [{ id: 7, image_id: 1, category_id: 1, bbox: [0, 0, 5, 5], area: 25, iscrowd: 0 }],
    };
    writeFileSync(gtPath, JSON.stringify(gtOk));
    writeFileSync(dtPath, '[{"image_id": 1,');
    await assert.rejects(
      loadCocoFiles(gtPath, dtPath),
      (e: Error) => e.message.includes(dtPath) && /malformed JSON/.test(e.message),
    );
    writeFileSync(dtPath, JSON.stringify([{ image_id: 1, category_id: 1, bbox: [0, 0, -1, 5], score: 0.5 }]));
    await assert.rejects(loadCocoFiles(gtPath, dtPath), /dets\.json: detection \[0\]: bbox has negative size/);
    writeFileSync(
      dtPath,
      JSON.stringify([
        { image_id: 1, category_id: 1, bbox: [0, 0, 1, 5], score: 0.5 },
        { image_id: 9, category_id: 1, bbox: [0, 0, 1, 5], score: 0.5 },
      ]),
    );
    await assert.rejects(loadCocoFiles(gtPath, dtPath), /detection \[1\]: image_id 9 is not in the ground truth/);
    writeFileSync(dtPath, JSON.stringify([{ image_id: 1, category_id: 4, bbox: [0, 0, 1, 5], score: 0.5 }]));
    await assert.rejects(loadCocoFiles(gtPath, dtPath), /detection \[0\]: category_id 4 is not in the ground truth/);
    writeFileSync(dtPath, JSON.stringify([{ image_id: 1, category_id: 1, bbox: [0, 0, 1, 5] }]));
    await assert.rejects(loadCocoFiles(gtPath, dtPath), /detection \[0\]: "score" must be a finite number/);
    writeFileSync(gtPath, JSON.stringify({ ...gtOk, annotations: [{ ...gtOk.annotations[0], bbox: [0, 0, 5, -2] }] }));
    await assert.rejects(loadCocoFiles(gtPath, dtPath), /gt\.json: annotations\[0\] \(id 7\): bbox has negative size/);
    writeFileSync(gtPath, JSON.stringify({ ...gtOk, annotations: [{ ...gtOk.annotations[0], category_id: 3 }] }));
    await assert.rejects(loadCocoFiles(gtPath, dtPath), /annotations\[0\] \(id 7\): unknown category_id 3/);
    writeFileSync(gtPath, JSON.stringify({ ...gtOk, annotations: [{ ...gtOk.annotations[0], image_id: 2 }] }));
    await assert.rejects(loadCocoFiles(gtPath, dtPath), /annotations\[0\] \(id 7\): unknown image_id 2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
