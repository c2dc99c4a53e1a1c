/**
 * Boxes and detections as the detector code passes them: COCO order [x, y, w, h] in input-image
 * pixels (pixel i covers [i, i + 1)), so that detections go to the COCO evaluator unchanged.
 */

/** A box [x, y, w, h] in input pixels. */
export type Box = readonly [number, number, number, number];

/** A ground-truth object: class id in [0, C) and its box. */
export interface LabelledBox {
  classId: number;
  bbox: Box;
}

/** A scored detection. */
export interface Detection extends LabelledBox {
  score: number;
}

/** Intersection over union of two boxes; 0 when they do not overlap or both are empty. */
export function iou(a: Box, b: Box): number {
  const iw = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  return inter / (a[2] * a[3] + b[2] * b[3] - inter);
}
