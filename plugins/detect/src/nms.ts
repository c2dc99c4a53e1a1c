/**
 * Class-wise greedy non-maximum suppression: in descending score order (ties keep their input
 * order), a detection is kept unless a kept detection of the same class overlaps it with IoU above
 * the threshold. Detections of different classes never suppress each other.
 */
import { iou, type Detection } from './boxes.js';

/** Kept detections, highest score first. `iouThreshold` in [0, 1]: suppress when IoU > it. */
export function nmsByClass<D extends Detection>(detections: readonly D[], iouThreshold: number): D[] {
  if (!(iouThreshold >= 0 && iouThreshold <= 1))
    throw new Error(`nms: iouThreshold must be in [0, 1], got ${iouThreshold}`);
  const order = detections.map((_, i) => i).sort((a, b) => detections[b]!.score - detections[a]!.score || a - b);
  const keptByClass = new Map<number, D[]>();
  const kept: D[] = [];
  for (const i of order) {
    const d = detections[i]!;
    const same = keptByClass.get(d.classId) ?? [];
    if (same.some((k) => iou(k.bbox, d.bbox) > iouThreshold)) continue;
    same.push(d);
    keptByClass.set(d.classId, same);
    kept.push(d);
  }
  return kept;
}
