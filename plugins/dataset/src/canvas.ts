/**
 * Detection canvases: items (Fashion-MNIST images or procedurally drawn shapes) scaled and placed on
 * a square greyscale canvas, with clutter, background noise and an image-level noise variant. Pure
 * functions of a seeded Rng: the same stream gives the same canvas, byte for byte.
 *
 * Boxes are COCO [x, y, w, h] in canvas pixels: the tight box of the item's non-zero pixels after
 * scaling (x = left edge of the leftmost non-zero column, w = columns spanned; pixel i covers
 * [i, i + 1)). Items are composed with max, so an item's pixels stay non-zero where others overlap
 * it and its box stays tight on the clean image.
 */
import { iou } from '@distillery/plugin-detect/boxes';
import { Rng } from '@distillery/runtime/rng';

/** A greyscale image, row-major, one byte per pixel. */
export interface GreyImage {
  width: number;
  height: number;
  pixels: Uint8Array;
}

/** Where canvas items come from: draws one item of a random class, its longer side `size` pixels. */
export interface ItemSource {
  draw(rng: Rng, size: number): { classId: number; image: GreyImage };
}

/** Image-level noise: what an acquisition adds on top of the scene (MedDet's concern is MRI noise). */
export interface NoiseSpec {
  /**
   * gaussian: v + N(0, (255 level)^2); speckle: v + v N(0, level^2) (multiplicative, as ultrasound /
   * SAR); rician: |(v + n1) + i n2| with n1, n2 ~ N(0, (255 level)^2), the magnitude-MRI model.
   */
  kind: 'none' | 'gaussian' | 'speckle' | 'rician';
  level: number;
}

/** Everything that shapes one canvas. */
export interface CanvasSpec {
  /** Side of the square canvas in pixels. */
  size: number;
  /** Objects per canvas, inclusive range [min, max]. */
  objects: [number, number];
  /** Longer side of an item's frame before its tight box is taken, inclusive range in pixels. */
  scale: [number, number];
  /** Largest IoU allowed between two object boxes. */
  maxIoU: number;
  /** Clutter fragments per canvas: 0..clutter, uniform. Fragments never touch an object's box. */
  clutter: number;
  /** Std (grey levels) of the half-normal per-pixel background texture; 0 = black background. */
  backgroundNoise: number;
  noise: NoiseSpec;
}

/** COCO box [x, y, w, h] in pixels. */
export type Box = [number, number, number, number];

export interface CanvasObject {
  classId: number;
  bbox: Box;
}

export interface Canvas {
  /** size * size grey levels, row-major. */
  pixels: Uint8Array;
  /** The objects in drawing order. */
  objects: CanvasObject[];
}

/** Tries per object position, and whole-canvas restarts when fewer than objects[0] fit. */
const POSITION_TRIES = 50;
const CANVAS_RESTARTS = 20;
const CLUTTER_TRIES = 20;

/** Throws an error naming the parameter when a spec cannot produce canvases. */
export function checkCanvasSpec(spec: CanvasSpec, where = 'canvas'): void {
  const int = (v: number, min: number, name: string) => {
    if (!Number.isInteger(v) || v < min) throw new Error(`${where}.${name} must be an integer >= ${min}, got ${v}`);
  };
  int(spec.size, 4, 'size');
  const [omin, omax] = spec.objects;
  int(omin, 1, 'objects[0]');
  int(omax, omin, 'objects[1]');
  const [smin, smax] = spec.scale;
  int(smin, 4, 'scale[0]');
  int(smax, smin, 'scale[1]');
  if (smax > spec.size) throw new Error(`${where}.scale[1] (${smax}) is larger than ${where}.size (${spec.size})`);
  if (!(spec.maxIoU >= 0 && spec.maxIoU <= 1)) throw new Error(`${where}.maxIoU must be in [0, 1], got ${spec.maxIoU}`);
  int(spec.clutter, 0, 'clutter');
  if (!(spec.backgroundNoise >= 0 && spec.backgroundNoise <= 255))
    throw new Error(`${where}.backgroundNoise must be in [0, 255], got ${spec.backgroundNoise}`);
  if (!(spec.noise.level >= 0 && Number.isFinite(spec.noise.level)))
    throw new Error(`${where}.noise.level must be a finite number >= 0, got ${spec.noise.level}`);
}

/** The tight box of an image's non-zero pixels, as [x, y, w, h]; undefined when all are zero. */
export function tightBox(image: GreyImage): Box | undefined {
  let [x0, y0, x1, y1] = [image.width, image.height, -1, -1];
  for (let y = 0; y < image.height; y++)
    for (let x = 0; x < image.width; x++)
      if (image.pixels[y * image.width + x]! > 0) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
  return x1 < 0 ? undefined : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

/** Bilinear resampling (pixel centres aligned, edges clamped), rounded to grey levels. */
export function resizeBilinear(image: GreyImage, width: number, height: number): GreyImage {
  const out = new Uint8Array(width * height);
  const sx = image.width / width;
  const sy = image.height / height;
  const px = image.pixels;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), image.height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, image.height - 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), image.width - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, image.width - 1);
      const wx = fx - x0;
      const top = px[y0 * image.width + x0]! * (1 - wx) + px[y0 * image.width + x1]! * wx;
      const bottom = px[y1 * image.width + x0]! * (1 - wx) + px[y1 * image.width + x1]! * wx;
      out[y * width + x] = Math.round(top * (1 - wy) + bottom * wy);
    }
  }
  return { width, height, pixels: out };
}

/** Frame size of an item whose longer side becomes `size`. */
function frameSize(width: number, height: number, size: number): [number, number] {
  const f = size / Math.max(width, height);
  return [Math.max(1, Math.round(width * f)), Math.max(1, Math.round(height * f))];
}

/** Items from a pool of same-sized greyscale images (e.g. one split's Fashion-MNIST images). */
export function poolItemSource(pool: {
  width: number;
  height: number;
  pixels: Uint8Array;
  labels: Int32Array;
}): ItemSource {
  const count = pool.labels.length;
  const frame = pool.width * pool.height;
  if (count === 0) throw new Error('item pool is empty');
  return {
    draw(rng, size) {
      const i = rng.int(count);
      const source = {
        width: pool.width,
        height: pool.height,
        pixels: pool.pixels.subarray(i * frame, (i + 1) * frame),
      };
      const [w, h] = frameSize(pool.width, pool.height, size);
      return { classId: pool.labels[i]!, image: resizeBilinear(source, w, h) };
    },
  };
}

/** Class names of the procedural shapes, in class-id order. */
export const SHAPE_NAMES = ['disc', 'square', 'triangle', 'ring', 'cross'] as const;

/**
 * Procedural shapes: one of SHAPE_NAMES filling a w x h rectangle (w, h in [0.6, 1] of `size`, the
 * longer side stretched to `size`), constant grey level in [128, 255]; a pixel is inside when its
 * centre is.
 */
export function shapeItemSource(): ItemSource {
  return {
    draw(rng, size) {
      const classId = rng.int(SHAPE_NAMES.length);
      let w = Math.max(2, Math.round(size * (0.6 + 0.4 * rng.next())));
      let h = Math.max(2, Math.round(size * (0.6 + 0.4 * rng.next())));
      if (w >= h) w = size;
      else h = size;
      const level = 128 + rng.int(128);
      const pixels = new Uint8Array(w * h);
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const u = (x + 0.5) / w; // in (0, 1)
          const v = (y + 0.5) / h;
          const r2 = (2 * u - 1) ** 2 + (2 * v - 1) ** 2;
          let inside: boolean;
          switch (SHAPE_NAMES[classId]) {
            case 'disc':
              inside = r2 <= 1;
              break;
            case 'square':
              inside = true;
              break;
            case 'triangle': // apex at the top centre, base along the bottom
              inside = Math.abs(2 * u - 1) <= v;
              break;
            case 'ring':
              inside = r2 <= 1 && r2 >= 0.55 ** 2;
              break;
            default: // cross: arms a third of the width / height
              inside = Math.abs(u - 0.5) <= 1 / 6 || Math.abs(v - 0.5) <= 1 / 6;
          }
          if (inside) pixels[y * w + x] = level;
        }
      return { classId, image: { width: w, height: h, pixels } };
    },
  };
}

/** An item drawn at a random scale, cut to its tight box (redrawn if it came out empty). */
function drawTight(rng: Rng, items: ItemSource, spec: CanvasSpec): { classId: number; image: GreyImage } {
  const [smin, smax] = spec.scale;
  for (let attempt = 0; attempt < 100; attempt++) {
    const size = smin + rng.int(smax - smin + 1);
    const { classId, image } = items.draw(rng, size);
    const box = tightBox(image);
    if (box) return { classId, image: crop(image, box) };
  }
  throw new Error('items: 100 draws in a row came out blank after scaling (raise canvas.scale)');
}

function crop(image: GreyImage, [x, y, w, h]: Box): GreyImage {
  const pixels = new Uint8Array(w * h);
  for (let r = 0; r < h; r++)
    pixels.set(image.pixels.subarray((y + r) * image.width + x, (y + r) * image.width + x + w), r * w);
  return { width: w, height: h, pixels };
}

/** Max-composes `image` onto the canvas with its top-left corner at (x, y); clipped to the canvas. */
function paint(canvas: Float32Array, size: number, image: GreyImage, x: number, y: number): void {
  for (let r = 0; r < image.height; r++) {
    const cy = y + r;
    if (cy < 0 || cy >= size) continue;
    for (let c = 0; c < image.width; c++) {
      const cx = x + c;
      if (cx < 0 || cx >= size) continue;
      const v = image.pixels[r * image.width + c]!;
      if (v > canvas[cy * size + cx]!) canvas[cy * size + cx] = v;
    }
  }
}

/** Objects placed with the IoU limit; restarts the canvas when fewer than objects[0] fit. */
function placeObjects(rng: Rng, items: ItemSource, spec: CanvasSpec): { object: CanvasObject; image: GreyImage }[] {
  const [omin, omax] = spec.objects;
  for (let restart = 0; restart < CANVAS_RESTARTS; restart++) {
    const wanted = omin + rng.int(omax - omin + 1);
    const placed: { object: CanvasObject; image: GreyImage }[] = [];
    for (let k = 0; k < wanted; k++) {
      const { classId, image } = drawTight(rng, items, spec);
      for (let t = 0; t < POSITION_TRIES; t++) {
        const bbox: Box = [
          rng.int(spec.size - image.width + 1),
          rng.int(spec.size - image.height + 1),
          image.width,
          image.height,
        ];
        if (placed.every((p) => iou(p.object.bbox, bbox) <= spec.maxIoU)) {
          placed.push({ object: { classId, bbox }, image });
          break;
        }
      }
    }
    if (placed.length >= omin) return placed;
  }
  throw new Error(
    `canvas: could not place canvas.objects[0] = ${omin} objects with canvas.maxIoU = ${spec.maxIoU} on a ` +
      `${spec.size}x${spec.size} canvas (canvas.scale up to ${spec.scale[1]}): raise maxIoU or size, or lower objects or scale`,
  );
}

/** A clutter fragment: a random 30-60% x 30-60% cut of an item's frame. */
function fragment(rng: Rng, items: ItemSource, spec: CanvasSpec): GreyImage {
  const { image } = drawTight(rng, items, spec);
  const w = Math.max(1, Math.round(image.width * (0.3 + 0.3 * rng.next())));
  const h = Math.max(1, Math.round(image.height * (0.3 + 0.3 * rng.next())));
  return crop(image, [rng.int(image.width - w + 1), rng.int(image.height - h + 1), w, h]);
}

/** Adds the image-level noise variant in place. */
function addNoise(rng: Rng, canvas: Float32Array, noise: NoiseSpec): void {
  if (noise.kind === 'none' || noise.level === 0) return;
  const sigma = 255 * noise.level;
  for (let i = 0; i < canvas.length; i++) {
    const v = canvas[i]!;
    if (noise.kind === 'gaussian') canvas[i] = v + sigma * rng.normal();
    else if (noise.kind === 'speckle') canvas[i] = v + v * noise.level * rng.normal();
    else canvas[i] = Math.hypot(v + sigma * rng.normal(), sigma * rng.normal());
  }
}

/**
 * Draws one canvas: background, objects, clutter away from the objects, then the noise variant.
 * The noise draws from a stream of its own (seeded by one draw of `rng`), so canvases that differ
 * only in `noise` show the same scene with the same boxes.
 */
export function drawCanvas(rng: Rng, items: ItemSource, spec: CanvasSpec): Canvas {
  const { size } = spec;
  const noiseRng = Rng.fromState(Math.floor(rng.next() * 4294967296));
  const canvas = new Float32Array(size * size);
  if (spec.backgroundNoise > 0)
    for (let i = 0; i < canvas.length; i++) canvas[i] = Math.abs(spec.backgroundNoise * rng.normal());
  const placed = placeObjects(rng, items, spec);
  for (const { object, image } of placed) paint(canvas, size, image, object.bbox[0], object.bbox[1]);
  const fragments = rng.int(spec.clutter + 1);
  for (let f = 0; f < fragments; f++) {
    const piece = fragment(rng, items, spec);
    for (let t = 0; t < CLUTTER_TRIES; t++) {
      const box: Box = [rng.int(size - piece.width + 1), rng.int(size - piece.height + 1), piece.width, piece.height];
      if (placed.every((p) => !touches(p.object.bbox, box))) {
        paint(canvas, size, piece, box[0], box[1]);
        break;
      }
    }
  }
  addNoise(noiseRng, canvas, spec.noise);
  const pixels = new Uint8Array(size * size);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.min(255, Math.max(0, Math.round(canvas[i]!)));
  return { pixels, objects: placed.map((p) => p.object) };
}

/** Whether two boxes share any pixel. */
function touches(a: Box, b: Box): boolean {
  return a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
}
