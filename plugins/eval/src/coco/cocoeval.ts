/**
 * COCO bbox evaluation with pycocotools COCOeval semantics (evaluate + accumulate + summarize).
 *
 * Mirrors cocoeval.py operation for operation so that the 12 numbers agree to rounding:
 * - per image and category: detections sorted by score with a stable sort (mergesort), cut to
 *   maxDets[-1]; GT sorted ignore-last (stable); greedy matching per IoU threshold where a
 *   crowd GT can absorb many detections and a match to an ignored GT is only taken when no
 *   regular GT qualifies;
 * - IoU as maskApi's bbIou: intersection over union, or over the detection's area for crowd GT;
 * - GT ignored when crowd or its `area` lies outside the range (bounds inclusive); unmatched
 *   detections whose w*h lies outside the range are ignored;
 * - accumulate: detections of all images concatenated in ascending image-id order, each image
 *   cut to maxDet, stable sort by score, precision made monotone from the right and read at the
 *   101 recall thresholds with searchsorted(side='left'); -1 where a category has no
 *   non-ignored GT;
 * - summarize: mean of the entries > -1.
 * Quirk kept on purpose: pycocotools records a match as the GT annotation's id, so a GT with
 * id 0 never counts as matched.
 */
import type { CocoDetection, CocoGroundTruth, CocoId } from './load.js';

/** The 12 standard COCO numbers (summarize()'s stats, in order). */
export interface CocoStats {
  AP: number;
  AP50: number;
  AP75: number;
  APs: number;
  APm: number;
  APl: number;
  AR1: number;
  AR10: number;
  AR100: number;
  ARs: number;
  ARm: number;
  ARl: number;
}

export const COCO_STAT_KEYS: readonly (keyof CocoStats)[] = [
  'AP',
  'AP50',
  'AP75',
  'APs',
  'APm',
  'APl',
  'AR1',
  'AR10',
  'AR100',
  'ARs',
  'ARm',
  'ARl',
];

/** Result of an evaluation: the 12 numbers plus per-category AP for reports. */
export interface CocoEvaluation {
  stats: CocoStats;
  /** AP@[.5:.95] per category (area all, 100 dets), -1 where the category has no GT; keyed by category id. */
  perCategoryAP: Map<CocoId, number>;
}

/** numpy.linspace(start, stop, num) with endpoint: i*step + start, last element set to stop. */
function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  out[num - 1] = stop;
  return out;
}

const IOU_THRS = linspace(0.5, 0.95, Math.round((0.95 - 0.5) / 0.05) + 1);
const REC_THRS = linspace(0.0, 1.0, Math.round((1.0 - 0.0) / 0.01) + 1);
const MAX_DETS = [1, 10, 100] as const;
const AREA_RANGES: readonly (readonly [number, number])[] = [
  [0, 1e5 ** 2],
  [0, 32 ** 2],
  [32 ** 2, 96 ** 2],
  [96 ** 2, 1e5 ** 2],
];
const AREA_LABELS = ['all', 'small', 'medium', 'large'] as const;
/** np.spacing(1): keeps precision finite when no detection has been counted. */
const EPS = 2.220446049250313e-16;

/** Detection outcome codes per (IoU threshold, detection). */
const FP = 0;
const TP = 1;
const IGNORED = 2;

/** Per image and area range: outcome codes [T x D] and the count of non-ignored GT. */
interface ImageAreaResult {
  codes: Uint8Array;
  numPositives: number;
}

/** Per image of one category: its sorted, cut detection scores and one result per area range. */
interface ImageResult {
  scores: Float64Array;
  byArea: ImageAreaResult[];
}

/** IoU of every detection (rows) with every GT (columns), as maskApi bbIou. */
function boxIoU(
  dts: readonly CocoDetection[],
  gtBoxes: readonly (readonly [number, number, number, number])[],
  crowd: readonly boolean[],
): Float64Array {
  const D = dts.length;
  const G = gtBoxes.length;
  const out = new Float64Array(D * G);
  for (let g = 0; g < G; g++) {
    const gb = gtBoxes[g]!;
    const ga = gb[2] * gb[3];
    const isCrowd = crowd[g]!;
    for (let d = 0; d < D; d++) {
      const db = dts[d]!.bbox;
      const da = db[2] * db[3];
      const w = Math.min(db[2] + db[0], gb[2] + gb[0]) - Math.max(db[0], gb[0]);
      if (w <= 0) continue;
      const h = Math.min(db[3] + db[1], gb[3] + gb[1]) - Math.max(db[1], gb[1]);
      if (h <= 0) continue;
      const inter = w * h;
      const union = isCrowd ? da : da + ga - inter;
      out[d * G + g] = inter / union;
    }
  }
  return out;
}

/** Stable sort of indices by descending score (np.argsort(-scores, kind='mergesort')). */
function argsortDescStable(scores: ArrayLike<number>): number[] {
  const idx = Array.from({ length: scores.length }, (_, i) => i);
  // Array.prototype.sort is stable (ES2019); ties keep input order as mergesort does.
  idx.sort((a, b) => scores[b]! - scores[a]!);
  return idx;
}

/** evaluateImg for every area range of one (image, category) pair. */
function evaluateImage(
  gts: readonly CocoGroundTruth['annotations'][number][],
  dtsAll: readonly CocoDetection[],
  maxDet: number,
): ImageResult {
  const order = argsortDescStable(dtsAll.map((d) => d.score)).slice(0, maxDet);
  const dts = order.map((i) => dtsAll[i]!);
  const D = dts.length;
  const G = gts.length;
  const T = IOU_THRS.length;
  const scores = Float64Array.from(dts, (d) => d.score);
  const ious = boxIoU(
    dts,
    gts.map((g) => g.bbox),
    gts.map((g) => g.iscrowd),
  );
  const dtAreas = dts.map((d) => d.bbox[2] * d.bbox[3]);
  const byArea: ImageAreaResult[] = [];
  for (const [lo, hi] of AREA_RANGES) {
    const ignoreOf = gts.map((g) => g.iscrowd || g.area < lo || g.area > hi);
    // GT sorted ignore-last, stable.
    const gOrder = [...gts.keys()].sort((a, b) => Number(ignoreOf[a]) - Number(ignoreOf[b]));
    const gtIg = gOrder.map((g) => ignoreOf[g]!);
    const gtCrowd = gOrder.map((g) => gts[g]!.iscrowd);
    const gtId = gOrder.map((g) => gts[g]!.id);
    let numPositives = 0;
    for (const ig of gtIg) if (!ig) numPositives++;
    const codes = new Uint8Array(T * D);
    const matchedGtId = new Float64Array(T * D);
    const dtIg = new Uint8Array(T * D);
    if (G > 0 && D > 0) {
      const gtMatched = new Uint8Array(G);
      for (let t = 0; t < T; t++) {
        gtMatched.fill(0);
        for (let d = 0; d < D; d++) {
          let iou = Math.min(IOU_THRS[t]!, 1 - 1e-10);
          let m = -1;
          for (let gi = 0; gi < G; gi++) {
            if (gtMatched[gi] && !gtCrowd[gi]) continue;
            if (m > -1 && !gtIg[m] && gtIg[gi]) break;
            const v = ious[d * G + gOrder[gi]!]!;
            if (v < iou) continue;
            iou = v;
            m = gi;
          }
          if (m === -1) continue;
          dtIg[t * D + d] = gtIg[m] ? 1 : 0;
          matchedGtId[t * D + d] = gtId[m]!;
          gtMatched[m] = 1;
        }
      }
    }
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) {
        const k = t * D + d;
        const matched = matchedGtId[k] !== 0;
        const outside = dtAreas[d]! < lo || dtAreas[d]! > hi;
        const ignored = dtIg[k] === 1 || (!matched && outside);
        codes[k] = ignored ? IGNORED : matched ? TP : FP;
      }
    }
    byArea.push({ codes, numPositives });
  }
  return { scores, byArea };
}

/** Index of the first element of sorted `values` that is >= x (np.searchsorted side='left'). */
function searchsortedLeft(values: Float64Array, n: number, x: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Runs the full COCO bbox evaluation. */
export function evaluateCoco(gt: CocoGroundTruth, detections: readonly CocoDetection[]): CocoEvaluation {
  const T = IOU_THRS.length;
  const R = REC_THRS.length;
  const K = gt.categoryIds.length;
  const A = AREA_RANGES.length;
  const M = MAX_DETS.length;
  const nImg = gt.imageIds.length;
  const maxDetLast = MAX_DETS[M - 1]!;
  const imgIndex = new Map<CocoId, number>(gt.imageIds.map((id, i) => [id, i]));
  const catIndex = new Map<CocoId, number>(gt.categoryIds.map((id, i) => [id, i]));

  // Group GT and detections by category, then image (input order kept inside a group).
  type Ann = CocoGroundTruth['annotations'][number];
  const gtGroups: Map<number, Ann[]>[] = Array.from({ length: K }, () => new Map());
  const dtGroups: Map<number, CocoDetection[]>[] = Array.from({ length: K }, () => new Map());
  for (const ann of gt.annotations) {
    const groups = gtGroups[catIndex.get(ann.categoryId)!]!;
    const i = imgIndex.get(ann.imageId)!;
    const list = groups.get(i);
    if (list) list.push(ann);
    else groups.set(i, [ann]);
  }
  for (const det of detections) {
    const k = catIndex.get(det.categoryId);
    const i = imgIndex.get(det.imageId);
    if (k === undefined || i === undefined) {
      throw new Error(`detection for unknown image ${String(det.imageId)} or category ${String(det.categoryId)}`);
    }
    const groups = dtGroups[k]!;
    const list = groups.get(i);
    if (list) list.push(det);
    else groups.set(i, [det]);
  }

  const precision = new Float64Array(T * R * K * A * M).fill(-1);
  const recall = new Float64Array(T * K * A * M).fill(-1);
  const pIndex = (t: number, r: number, k: number, a: number, m: number): number =>
    (((t * R + r) * K + k) * A + a) * M + m;
  const rIndex = (t: number, k: number, a: number, m: number): number => ((t * K + k) * A + a) * M + m;

  for (let k = 0; k < K; k++) {
    const gtG = gtGroups[k]!;
    const dtG = dtGroups[k]!;
    const images = [...new Set([...gtG.keys(), ...dtG.keys()])].sort((a, b) => a - b);
    if (images.length === 0) continue;
    const results = images.map((i) => evaluateImage(gtG.get(i) ?? [], dtG.get(i) ?? [], maxDetLast));

    // Concatenate every image's (already cut) detections in image order, then one stable sort by
    // score; cutting each image to a smaller maxDet keeps the relative order of what remains.
    let total = 0;
    for (const r of results) total += r.scores.length;
    const catScores = new Float64Array(total);
    const catImage = new Int32Array(total);
    const catRank = new Int32Array(total);
    let p = 0;
    results.forEach((r, slot) => {
      for (let j = 0; j < r.scores.length; j++) {
        catScores[p] = r.scores[j]!;
        catImage[p] = slot;
        catRank[p] = j;
        p++;
      }
    });
    const sorted = argsortDescStable(catScores);
    const keptByMaxDet = MAX_DETS.map((maxDet) => sorted.filter((q) => catRank[q]! < maxDet));

    for (let a = 0; a < A; a++) {
      let npig = 0;
      for (const r of results) npig += r.byArea[a]!.numPositives;
      if (npig === 0) continue;
      for (let m = 0; m < M; m++) {
        const kept = keptByMaxDet[m]!;
        const nd = kept.length;
        const rc = new Float64Array(nd);
        const pr = new Float64Array(nd);
        for (let t = 0; t < T; t++) {
          let tp = 0;
          let fp = 0;
          for (let j = 0; j < nd; j++) {
            const q = kept[j]!;
            const res = results[catImage[q]!]!;
            const D = res.scores.length;
            const code = res.byArea[a]!.codes[t * D + catRank[q]!];
            if (code === TP) tp++;
            else if (code === FP) fp++;
            rc[j] = tp / npig;
            pr[j] = tp / (fp + tp + EPS);
          }
          recall[rIndex(t, k, a, m)] = nd ? rc[nd - 1]! : 0;
          for (let i = nd - 1; i > 0; i--) if (pr[i]! > pr[i - 1]!) pr[i - 1] = pr[i]!;
          for (let ri = 0; ri < R; ri++) {
            const pi = searchsortedLeft(rc, nd, REC_THRS[ri]!);
            // pycocotools leaves this and all later thresholds at 0 once one falls past the end.
            precision[pIndex(t, ri, k, a, m)] = pi < nd ? pr[pi]! : 0;
          }
        }
      }
    }
  }

  const summarize = (
    ap: boolean,
    iouThr: number | null,
    area: (typeof AREA_LABELS)[number],
    maxDets: number,
  ): number => {
    const a = AREA_LABELS.indexOf(area);
    const m = MAX_DETS.indexOf(maxDets as (typeof MAX_DETS)[number]);
    const ts: number[] = [];
    for (let t = 0; t < T; t++) if (iouThr === null || IOU_THRS[t] === iouThr) ts.push(t);
    let sum = 0;
    let count = 0;
    for (const t of ts) {
      for (let k = 0; k < K; k++) {
        if (ap) {
          for (let r = 0; r < R; r++) {
            const v = precision[pIndex(t, r, k, a, m)]!;
            if (v > -1) {
              sum += v;
              count++;
            }
          }
        } else {
          const v = recall[rIndex(t, k, a, m)]!;
          if (v > -1) {
            sum += v;
            count++;
          }
        }
      }
    }
    return count === 0 ? -1 : sum / count;
  };

  const stats: CocoStats = {
    AP: summarize(true, null, 'all', 100),
    AP50: summarize(true, 0.5, 'all', 100),
    AP75: summarize(true, 0.75, 'all', 100),
    APs: summarize(true, null, 'small', 100),
    APm: summarize(true, null, 'medium', 100),
    APl: summarize(true, null, 'large', 100),
    AR1: summarize(false, null, 'all', 1),
    AR10: summarize(false, null, 'all', 10),
    AR100: summarize(false, null, 'all', 100),
    ARs: summarize(false, null, 'small', 100),
    ARm: summarize(false, null, 'medium', 100),
    ARl: summarize(false, null, 'large', 100),
  };

  const perCategoryAP = new Map<CocoId, number>();
  gt.categoryIds.forEach((id, k) => {
    let sum = 0;
    let count = 0;
    for (let t = 0; t < T; t++) {
      for (let r = 0; r < R; r++) {
        const v = precision[pIndex(t, r, k, 0, M - 1)]!;
        if (v > -1) {
          sum += v;
          count++;
        }
      }
    }
    perCategoryAP.set(id, count === 0 ? -1 : sum / count);
  });
  return { stats, perCategoryAP };
}
