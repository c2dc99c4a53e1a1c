/**
 * CenterNet training targets and decoding (X. Zhou, D. Wang, P. Krähenbühl, 2019, "Objects as
 * Points", arXiv:1904.07850), as in the reference code's ctdet task. Formulas and where this code
 * departs from the reference: docs/methods.md, "CenterNet targets and decoding".
 *
 * Maps are plain Float32Arrays in CHW order for one image (an ONNX NCHW output without the batch
 * dim), at output resolution H x W = input / stride:
 *   heatmap [C, H, W]  per-class Gaussian peaks (targets) or class probabilities (predictions)
 *   size    [2, H, W]  box width, height in output cells (input pixels / stride)
 *   offset  [2, H, W]  centre minus its cell's corner, in cells, [0, 1)
 */
import type { Box, Detection, LabelledBox } from './boxes.js';

/** Input size, output stride and class count: the output maps are (input / stride) cells. */
export interface CenterNetGeometry {
  inputWidth: number;
  inputHeight: number;
  stride: number;
  numClasses: number;
}

/** The three output heads of one image (predictions, or targets). */
export interface CenterNetHeads {
  /** Output cells across and down. */
  width: number;
  height: number;
  numClasses: number;
  stride: number;
  heatmap: Float32Array;
  size: Float32Array;
  offset: Float32Array;
}

/** Training targets: the heads plus where size and offset are supervised. */
export interface CenterNetTargets extends CenterNetHeads {
  /** [H, W]: 1 at the centre cell of an object (size/offset losses apply there only). */
  mask: Uint8Array;
  /** Objects whose centre cell was taken by a smaller object (their heatmap peak is still drawn). */
  collisions: number;
  /** Objects left out because their box, clipped to the image, is empty. */
  empty: number;
}

export interface EncodeOptions {
  /** IoU a box shifted within the radius must keep with the truth (the reference's default 0.7). */
  minOverlap?: number;
}

export interface DecodeOptions {
  /** Detections kept after peak extraction, highest scores first (the reference's default 100). */
  topK?: number;
  /** Peaks with a score <= this are dropped (default 0: zero plateaus are never detections). */
  scoreThreshold?: number;
}

/** Output map size; throws naming the parameter when the input is not a multiple of the stride. */
export function outputSize(g: CenterNetGeometry): { width: number; height: number } {
  if (!Number.isInteger(g.stride) || g.stride < 1)
    throw new Error(`centernet: stride must be an integer >= 1, got ${g.stride}`);
  if (!Number.isInteger(g.numClasses) || g.numClasses < 1)
    throw new Error(`centernet: numClasses must be an integer >= 1, got ${g.numClasses}`);
  for (const [name, v] of [
    ['inputWidth', g.inputWidth],
    ['inputHeight', g.inputHeight],
  ] as const)
    if (!Number.isInteger(v) || v < 1 || v % g.stride !== 0)
      throw new Error(`centernet: ${name} (${v}) must be a positive multiple of stride (${g.stride})`);
  return { width: g.inputWidth / g.stride, height: g.inputHeight / g.stride };
}

/**
 * The Gaussian radius of a box of `height` x `width` cells, as the reference code computes it
 * (CornerNet's gaussian_radius, reused by CenterNet): the smallest of three quadratic-root
 * expressions, one per way a box's corners can move (shifted together, both inward, both outward).
 * Reproduced as written, including its root expressions; see docs/methods.md.
 */
export function gaussianRadius(height: number, width: number, minOverlap = 0.7): number {
  const m = minOverlap;
  const b1 = height + width;
  const c1 = (width * height * (1 - m)) / (1 + m);
  const r1 = (b1 + Math.sqrt(b1 * b1 - 4 * c1)) / 2;
  const b2 = 2 * (height + width);
  const c2 = (1 - m) * width * height;
  const r2 = (b2 + Math.sqrt(b2 * b2 - 16 * c2)) / 2;
  const a3 = 4 * m;
  const b3 = -2 * m * (height + width);
  const c3 = (m - 1) * width * height;
  const r3 = (b3 + Math.sqrt(b3 * b3 - 4 * a3 * c3)) / 2;
  return Math.min(r1, r2, r3);
}

/** float64 machine epsilon: the reference zeroes Gaussian values below eps * max (max = 1). */
const EPS = 2.220446049250313e-16;

/**
 * Max-composes a (2r+1)^2 Gaussian with sigma = (2r+1)/6, value 1 at (cx, cy), into one H x W
 * channel, clipped at the borders (the reference's draw_umich_gaussian).
 */
export function drawGaussian(
  channel: Float32Array,
  width: number,
  height: number,
  cx: number,
  cy: number,
  radius: number,
): void {
  const sigma = (2 * radius + 1) / 6;
  for (let dy = -radius; dy <= radius; dy++) {
    const y = cy + dy;
    if (y < 0 || y >= height) continue;
    for (let dx = -radius; dx <= radius; dx++) {
      const x = cx + dx;
      if (x < 0 || x >= width) continue;
      let g = Math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
      if (g < EPS) g = 0;
      if (g > channel[y * width + x]!) channel[y * width + x] = g;
    }
  }
}

/**
 * Training targets for one image's objects. Boxes are clipped to the image first. When two objects
 * share a centre cell, the cell's size/offset targets are the smaller box's (counted in
 * `collisions`); both heatmap peaks are drawn.
 */
export function encodeCenterNet(
  objects: readonly LabelledBox[],
  geometry: CenterNetGeometry,
  options: EncodeOptions = {},
): CenterNetTargets {
  const { width: W, height: H } = outputSize(geometry);
  const { stride: s, numClasses: C } = geometry;
  const minOverlap = options.minOverlap ?? 0.7;
  if (!(minOverlap > 0 && minOverlap < 1))
    throw new Error(`centernet: minOverlap must be in (0, 1), got ${minOverlap}`);
  const HW = H * W;
  const heatmap = new Float32Array(C * HW);
  const size = new Float32Array(2 * HW);
  const offset = new Float32Array(2 * HW);
  const mask = new Uint8Array(HW);
  const cellArea = new Float64Array(HW);
  let collisions = 0;
  let empty = 0;
  objects.forEach((o, k) => {
    if (!Number.isInteger(o.classId) || o.classId < 0 || o.classId >= C)
      throw new Error(`centernet: object ${k} has classId ${o.classId}, outside [0, ${C})`);
    const [x, y, w, h] = o.bbox;
    if (![x, y, w, h].every(Number.isFinite) || w < 0 || h < 0)
      throw new Error(`centernet: object ${k} has bbox ${JSON.stringify(o.bbox)} (need finite [x, y, w >= 0, h >= 0])`);
    const x1 = Math.min(Math.max(x, 0), geometry.inputWidth) / s;
    const x2 = Math.min(Math.max(x + w, 0), geometry.inputWidth) / s;
    const y1 = Math.min(Math.max(y, 0), geometry.inputHeight) / s;
    const y2 = Math.min(Math.max(y + h, 0), geometry.inputHeight) / s;
    const [bw, bh] = [x2 - x1, y2 - y1];
    if (bw <= 0 || bh <= 0) {
      empty++;
      return;
    }
    const [cx, cy] = [(x1 + x2) / 2, (y1 + y2) / 2];
    const ix = Math.min(Math.floor(cx), W - 1);
    const iy = Math.min(Math.floor(cy), H - 1);
    const radius = Math.max(0, Math.trunc(gaussianRadius(Math.ceil(bh), Math.ceil(bw), minOverlap)));
    drawGaussian(heatmap.subarray(o.classId * HW, (o.classId + 1) * HW), W, H, ix, iy, radius);
    const cell = iy * W + ix;
    if (mask[cell]) {
      collisions++;
      if (cellArea[cell]! <= bw * bh) return;
    }
    mask[cell] = 1;
    cellArea[cell] = bw * bh;
    size[cell] = bw;
    size[HW + cell] = bh;
    offset[cell] = cx - ix;
    offset[HW + cell] = cy - iy;
  });
  return { width: W, height: H, numClasses: C, stride: s, heatmap, size, offset, mask, collisions, empty };
}

function checkHeads(h: CenterNetHeads): void {
  const HW = h.width * h.height;
  for (const [name, array, want] of [
    ['heatmap', h.heatmap, h.numClasses * HW],
    ['size', h.size, 2 * HW],
    ['offset', h.offset, 2 * HW],
  ] as const)
    if (array.length !== want)
      throw new Error(
        `centernet decode: ${name} has ${array.length} values, expected ${want} for ${h.numClasses} classes x ${h.height} x ${h.width}`,
      );
}

/**
 * Detections from the heads: heatmap peaks (a cell equal to the maximum of its 3x3 neighbourhood,
 * per class, as the reference's max-pool "NMS"), the topK highest, each a box of the predicted
 * size centred at cell + offset, scaled by the stride to input pixels. The heatmap must hold
 * probabilities (apply the sigmoid first). Highest score first; ties in cell order.
 */
export function decodeCenterNet(heads: CenterNetHeads, options: DecodeOptions = {}): Detection[] {
  checkHeads(heads);
  const topK = options.topK ?? 100;
  const threshold = options.scoreThreshold ?? 0;
  if (!Number.isInteger(topK) || topK < 1)
    throw new Error(`centernet decode: topK must be an integer >= 1, got ${topK}`);
  const { width: W, height: H, stride: s, heatmap } = heads;
  const HW = W * H;
  const peaks: number[] = [];
  for (let c = 0; c < heads.numClasses; c++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const index = c * HW + y * W + x;
        const v = heatmap[index]!;
        if (!(v > threshold)) continue;
        let isPeak = true;
        for (let dy = -1; dy <= 1 && isPeak; dy++)
          for (let dx = -1; dx <= 1; dx++) {
            const [nx, ny] = [x + dx, y + dy];
            if (nx >= 0 && nx < W && ny >= 0 && ny < H && heatmap[c * HW + ny * W + nx]! > v) {
              isPeak = false;
              break;
            }
          }
        if (isPeak) peaks.push(index);
      }
  peaks.sort((a, b) => heatmap[b]! - heatmap[a]! || a - b);
  return peaks.slice(0, topK).map((index) => {
    const classId = Math.floor(index / HW);
    const cell = index % HW;
    const cx = (cell % W) + heads.offset[cell]!;
    const cy = Math.floor(cell / W) + heads.offset[HW + cell]!;
    const [w, h] = [heads.size[cell]!, heads.size[HW + cell]!];
    const bbox: Box = [(cx - w / 2) * s, (cy - h / 2) * s, w * s, h * s];
    return { classId, score: heatmap[index]!, bbox };
  });
}
