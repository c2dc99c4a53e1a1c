import { test } from 'node:test';
import assert from 'node:assert/strict';
import { augmentImages } from '../src/data.js';
import { Rng } from '../src/rng.js';

/** Reference: out(r, c) = in(r - dy, c - dx), read mirrored when flipped, zero outside. */
function reference(img: number[][][], flip: boolean, dy: number, dx: number): number[][][] {
  const h = img.length;
  const w = img[0]!.length;
  return img.map((row, r) =>
    row.map((pixel, c) => {
      const sr = r - dy;
      const sc = c - dx;
      if (sr < 0 || sr >= h || sc < 0 || sc >= w) return pixel.map(() => 0);
      return [...img[sr]![flip ? w - 1 - sc : sc]!];
    }),
  );
}

test('augmentImages: each image shifted and mirrored as drawn, zero fill, input untouched', () => {
  const [n, h, w, c] = [6, 4, 5, 2];
  const x = Float32Array.from({ length: n * h * w * c }, (_, i) => i + 1);
  const before = Float32Array.from(x);
  const config = { flip: true, shift: 2 };
  const out = augmentImages(x, n, [h, w, c], config, new Rng(11));
  assert.deepEqual(x, before);
  // The same draws, in the documented order: flip, then dy, then dx, per image.
  const rng = new Rng(11);
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const flip = rng.next() < 0.5;
    const dy = rng.int(5) - 2;
    const dx = rng.int(5) - 2;
    seen.add(`${flip}`);
    const img = Array.from({ length: h }, (_, r) =>
      Array.from({ length: w }, (_, col) => Array.from({ length: c }, (_, ch) => x[((i * h + r) * w + col) * c + ch]!)),
    );
    const want = reference(img, flip, dy, dx).flat(2);
    assert.deepEqual(
      Array.from(out.subarray(i * h * w * c, (i + 1) * h * w * c)),
      want,
      `image ${i} (flip ${flip}, dy ${dy}, dx ${dx})`,
    );
  }
  assert.equal(seen.size, 2, 'both flipped and unflipped images occur with this seed');
  // All off: identity.
  assert.deepEqual(augmentImages(x, n, [h, w, c], { flip: false, shift: 0 }, new Rng(1)), x);
  assert.throws(() => augmentImages(x, n, [h * w * c], config, new Rng(1)), /inputs must be images \[H, W, C\]/);
});
