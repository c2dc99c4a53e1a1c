import { PNG } from 'pngjs';
import { writeFileAtomicSync } from '@distillery/core/plugin';

const PALETTE = [
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
  [140, 86, 75],
  [227, 119, 194],
  [127, 127, 127],
  [188, 189, 34],
  [23, 190, 207],
];

function writePng(path: string, png: InstanceType<typeof PNG>): void {
  writeFileAtomicSync(path, PNG.sync.write(png));
}

/**
 * Writes a picture of the samples to `path`: a grid of up to `perClass` images per class for
 * [H, W, C] shapes, a scatter plot for 2-D points. Returns false (nothing written) for other shapes.
 */
export function writeSamplePicture(
  path: string,
  x: Float32Array,
  labels: Int32Array,
  shape: number[],
  numClasses: number,
  perClass = 10,
): boolean {
  const dim = shape.reduce((a, b) => a * b, 1);
  if (shape.length === 3 && (shape[2] === 1 || shape[2] === 3)) {
    const [h, w, ch] = shape as [number, number, number];
    const rows = numClasses;
    const png = new PNG({ width: perClass * (w + 2), height: rows * (h + 2) });
    png.data.fill(255);
    const used = new Int32Array(numClasses);
    for (let i = 0; i < labels.length; i++) {
      const c = labels[i]!;
      const col = used[c]!;
      if (col >= perClass) continue;
      used[c] = col + 1;
      for (let yy = 0; yy < h; yy++) {
        for (let xx = 0; xx < w; xx++) {
          const px = ((c * (h + 2) + 1 + yy) * png.width + col * (w + 2) + 1 + xx) * 4;
          for (let k = 0; k < 3; k++) {
            const v = x[i * dim + (yy * w + xx) * ch + (ch === 1 ? 0 : k)]!;
            png.data[px + k] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
          }
          png.data[px + 3] = 255;
        }
      }
    }
    writePng(path, png);
    return true;
  }
  if (dim === 2) {
    const size = 320;
    let extent = 0;
    for (const v of x) extent = Math.max(extent, Math.abs(v));
    extent = Math.min(extent, 10) * 1.05 || 1;
    const png = new PNG({ width: size, height: size });
    png.data.fill(255);
    for (let i = 0; i < labels.length; i++) {
      const px = Math.round(((x[2 * i]! / extent + 1) / 2) * (size - 1));
      const py = Math.round(((1 - x[2 * i + 1]! / extent) / 2) * (size - 1));
      if (px < 0 || py < 0 || px >= size || py >= size) continue;
      const color = PALETTE[labels[i]! % PALETTE.length]!;
      const o = (py * size + px) * 4;
      png.data[o] = color[0]!;
      png.data[o + 1] = color[1]!;
      png.data[o + 2] = color[2]!;
      png.data[o + 3] = 255;
    }
    writePng(path, png);
    return true;
  }
  return false;
}
