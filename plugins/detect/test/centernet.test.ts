import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeCenterNet,
  encodeCenterNet,
  gaussianRadius,
  type Box,
  type CenterNetGeometry,
  type LabelledBox,
} from '../src/index.js';

const geometry: CenterNetGeometry = { inputWidth: 96, inputHeight: 64, stride: 4, numClasses: 3 };

/** Boxes with distinct centre cells at least 3 cells apart, fractional positions, seeded. */
function sceneBoxes(count: number): LabelledBox[] {
  let state = 12345;
  const next = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 4294967296;
  };
  const out: LabelledBox[] = [];
  while (out.length < count) {
    const w = 6 + next() * 30;
    const h = 6 + next() * 30;
    const x = next() * (96 - w);
    const y = next() * (64 - h);
    const [cx, cy] = [Math.floor((x + w / 2) / 4), Math.floor((y + h / 2) / 4)];
    const far = out.every((o) => {
      const [ox, oy] = [Math.floor((o.bbox[0] + o.bbox[2] / 2) / 4), Math.floor((o.bbox[1] + o.bbox[3] / 2) / 4)];
      return Math.max(Math.abs(ox - cx), Math.abs(oy - cy)) >= 3;
    });
    if (far) out.push({ classId: out.length % 3, bbox: [x, y, w, h] });
  }
  return out;
}

test('centernet: radius is the smallest of the three reference expressions', () => {
  for (const [h, w, m] of [
    [3, 3, 0.7],
    [5, 10, 0.7],
    [20, 8, 0.5],
    [40, 40, 0.9],
  ] as const) {
    // The reference code's three roots, written out from its source (CornerNet / CenterNet).
    const q = (a: number, b: number, c: number) => (b + Math.sqrt(b * b - 4 * a * c)) / 2;
    const expected = Math.min(
      q(1, h + w, (w * h * (1 - m)) / (1 + m)),
      q(4, 2 * (h + w), (1 - m) * w * h),
      q(4 * m, -2 * m * (h + w), (m - 1) * w * h),
    );
    assert.ok(Math.abs(gaussianRadius(h, w, m) - expected) < 1e-12, `${h}x${w} at ${m}`);
  }
  // Larger boxes get larger radii; symmetric in height and width.
  assert.ok(gaussianRadius(20, 20) > gaussianRadius(10, 10));
  assert.equal(gaussianRadius(5, 10), gaussianRadius(10, 5));
});

test('centernet: heatmap peaks are 1 at centre cells with the Gaussian of the radius around them', () => {
  const box: Box = [21, 9, 30, 22]; // centre (36, 20) px = (9, 5) cells; 7.5 x 5.5 cells
  const t = encodeCenterNet([{ classId: 2, bbox: box }], geometry);
  const [W, H, HW] = [t.width, t.height, t.width * t.height];
  assert.deepEqual([W, H], [24, 16]);
  const radius = Math.trunc(gaussianRadius(Math.ceil(5.5), Math.ceil(7.5)));
  assert.ok(radius >= 1, 'the test needs a radius of at least one cell');
  const sigma = (2 * radius + 1) / 6;
  const channel = t.heatmap.subarray(2 * HW, 3 * HW);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const [dx, dy] = [x - 9, y - 5];
      const inside = Math.abs(dx) <= radius && Math.abs(dy) <= radius;
      const want = inside ? Math.fround(Math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))) : 0;
      assert.equal(channel[y * W + x], want, `cell (${x}, ${y})`);
    }
  for (let c = 0; c < 2; c++) assert.ok(t.heatmap.subarray(c * HW, (c + 1) * HW).every((v) => v === 0));
  // Size and offset only at the centre cell.
  const cell = 5 * W + 9;
  assert.deepEqual(
    [...t.mask].flatMap((m, i) => (m ? [i] : [])),
    [cell],
  );
  assert.deepEqual([t.size[cell], t.size[HW + cell]], [7.5, 5.5]);
  assert.deepEqual([t.offset[cell], t.offset[HW + cell]], [0, 0]);
});

test('centernet: decoding the encoded targets gives the boxes back', () => {
  const objects = sceneBoxes(8);
  const targets = encodeCenterNet(objects, geometry);
  assert.equal(targets.collisions, 0);
  const detections = decodeCenterNet(targets, { topK: 100, scoreThreshold: 0 });
  assert.equal(detections.length, objects.length);
  for (const d of detections) assert.ok(Math.abs(d.score - 1) < 1e-7);
  for (const o of objects) {
    const match = detections.filter(
      (d) => d.classId === o.classId && d.bbox.every((v, i) => Math.abs(v - o.bbox[i]!) < 1e-3),
    );
    assert.equal(match.length, 1, `object ${JSON.stringify(o)} came back once`);
  }
});

test('centernet: clipping, collisions, empty boxes and bad input', () => {
  // A box past the right edge is clipped to the image before encoding.
  const clipped = encodeCenterNet([{ classId: 0, bbox: [80, 0, 40, 16] }], geometry);
  const [d] = decodeCenterNet(clipped);
  assert.ok(d && [80, 0, 16, 16].every((v, i) => Math.abs(d.bbox[i]! - v) < 1e-4), JSON.stringify(d));
  // Two centres in one cell: the smaller box keeps the cell's size target; both peaks drawn.
  const big: Box = [0, 0, 40, 40];
  const small: Box = [16, 16, 8, 8];
  const t = encodeCenterNet(
    [
      { classId: 0, bbox: big },
      { classId: 1, bbox: small },
    ],
    geometry,
  );
  const [W, HW] = [t.width, t.width * t.height];
  const cell = 5 * W + 5;
  assert.equal(t.collisions, 1);
  assert.deepEqual([t.size[cell], t.size[HW + cell]], [2, 2]);
  assert.equal(t.heatmap[cell], 1);
  assert.equal(t.heatmap[HW + cell], 1);
  assert.equal(encodeCenterNet([{ classId: 0, bbox: [200, 10, 5, 5] }], geometry).empty, 1);
  assert.throws(() => encodeCenterNet([{ classId: 3, bbox: small }], geometry), /object 0 has classId 3/);
  assert.throws(() => encodeCenterNet([], { ...geometry, inputWidth: 98 }), /inputWidth \(98\).*stride \(4\)/);
});

test('centernet decode: 3x3 peaks, top-k and threshold on a hand-made heatmap', () => {
  const [W, H, C] = [6, 5, 2];
  const HW = W * H;
  const heads = {
    width: W,
    height: H,
    numClasses: C,
    stride: 2,
    heatmap: new Float32Array(C * HW),
    size: new Float32Array(2 * HW).fill(1),
    offset: new Float32Array(2 * HW).fill(0.5),
  };
  const set = (c: number, x: number, y: number, v: number) => {
    heads.heatmap[c * HW + y * W + x] = v;
  };
  set(0, 1, 1, 0.9); // peak
  set(0, 2, 1, 0.8); // beside a higher value: not a peak
  set(0, 4, 3, 0.6); // peak
  set(1, 2, 1, 0.7); // peak in another class at the same cell
  set(1, 5, 4, 0.2); // peak in a corner, below the threshold used below
  const all = decodeCenterNet(heads);
  assert.deepEqual(
    all.map((d) => [d.classId, Math.fround(d.score)]),
    [
      [0, Math.fround(0.9)],
      [1, Math.fround(0.7)],
      [0, Math.fround(0.6)],
      [1, Math.fround(0.2)],
    ],
  );
  // Cell (1, 1) + offset 0.5 = centre (1.5, 1.5) cells = (3, 3) px; size 1 cell = 2 px.
  assert.deepEqual(all[0]!.bbox, [2, 2, 2, 2]);
  assert.equal(decodeCenterNet(heads, { topK: 2 }).length, 2);
  assert.equal(decodeCenterNet(heads, { scoreThreshold: 0.3 }).length, 3);
  assert.throws(() => decodeCenterNet({ ...heads, size: new Float32Array(3) }), /size has 3 values, expected 60/);
});
