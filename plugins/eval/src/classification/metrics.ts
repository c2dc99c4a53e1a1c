/**
 * Classification metrics over a score matrix (N samples x C classes, row-major; probabilities or
 * logits, higher = more likely). Statistics are accumulated in float64.
 *
 * Conventions (documented once here):
 * - Ranking ties are broken by class index (lower index ranks first), as a stable descending
 *   sort would: class y is in the top k when #{j: s_j > s_y} + #{j < y: s_j = s_y} < k.
 * - Average precision (AP) of one class over a set of samples is the non-interpolated area under
 *   the precision-recall curve, scikit-learn's average_precision_score: sum_n (R_n - R_{n-1}) P_n
 *   over distinct score thresholds (tied scores enter together). A class without a positive in
 *   the set has no AP and is left out of every mean.
 * - Mean per-vertical AP (Knowledge Concentration, Gao et al. 2017): for each vertical v, the
 *   evaluation set is the test samples whose ground-truth label belongs to v; AP is computed for
 *   every class of v over that set (positives: samples labelled with the class); the vertical's
 *   AP is the mean over its classes, and mpvap is the mean over verticals.
 * - Multi-label mAP (OpenImages style): targets are 1 (verified positive), 0 (verified negative)
 *   or -1 (not verified); a class's AP uses only the samples verified for that class.
 * - ECE: equal-width confidence bins (l, u], confidence = max softmax probability (rows are
 *   softmaxed when `logits` is set), ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)| (Guo et al. 2017).
 */

/** A score matrix with its shape. */
export interface ScoreMatrix {
  rows: number;
  cols: number;
  data: Float32Array | Float64Array;
}

function checkShape(scores: ScoreMatrix, labels: ArrayLike<number>): void {
  if (scores.data.length !== scores.rows * scores.cols) {
    throw new Error(`score matrix holds ${scores.data.length} values, expected ${scores.rows} x ${scores.cols}`);
  }
  if (labels.length !== scores.rows) throw new Error(`${labels.length} labels for ${scores.rows} score rows`);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!;
    if (!Number.isInteger(y) || y < 0 || y >= scores.cols)
      throw new Error(`sample ${i}: label ${y} outside [0, ${scores.cols})`);
  }
}

/** Rank (0 = best) of class y in a row, ties broken by class index. */
export function rankOf(data: ArrayLike<number>, offset: number, cols: number, y: number): number {
  const sy = data[offset + y]!;
  let rank = 0;
  for (let j = 0; j < cols; j++) {
    const s = data[offset + j]!;
    if (s > sy || (s === sy && j < y)) rank++;
  }
  return rank;
}

/** Index of the largest score in a row (first on ties). */
export function argmaxRow(data: ArrayLike<number>, offset: number, cols: number): number {
  let best = 0;
  for (let j = 1; j < cols; j++) if (data[offset + j]! > data[offset + best]!) best = j;
  return best;
}

/** Fraction of samples whose label is among the k best-scored classes. */
export function topKAccuracy(scores: ScoreMatrix, labels: ArrayLike<number>, k: number): number {
  checkShape(scores, labels);
  let hit = 0;
  for (let i = 0; i < scores.rows; i++) if (rankOf(scores.data, i * scores.cols, scores.cols, labels[i]!) < k) hit++;
  return scores.rows === 0 ? Number.NaN : hit / scores.rows;
}

/** Top-1 accuracy per class (null for a class without test samples). */
export function perClassAccuracy(scores: ScoreMatrix, labels: ArrayLike<number>): (number | null)[] {
  checkShape(scores, labels);
  const total = new Float64Array(scores.cols);
  const hit = new Float64Array(scores.cols);
  for (let i = 0; i < scores.rows; i++) {
    const y = labels[i]!;
    total[y]!++;
    if (argmaxRow(scores.data, i * scores.cols, scores.cols) === y) hit[y]!++;
  }
  return Array.from(total, (t, c) => (t === 0 ? null : hit[c]! / t));
}

/** Top-1 accuracy over the samples of each vertical (`classVertical[c]` = vertical index of class c). */
export function perVerticalAccuracy(
  scores: ScoreMatrix,
  labels: ArrayLike<number>,
  classVertical: ArrayLike<number>,
  verticals: number,
): (number | null)[] {
  checkShape(scores, labels);
  const total = new Float64Array(verticals);
  const hit = new Float64Array(verticals);
  for (let i = 0; i < scores.rows; i++) {
    const v = classVertical[labels[i]!]!;
    total[v]!++;
    if (argmaxRow(scores.data, i * scores.cols, scores.cols) === labels[i]) hit[v]!++;
  }
  return Array.from(total, (t, v) => (t === 0 ? null : hit[v]! / t));
}

/**
 * Non-interpolated AP (scikit-learn average_precision_score) of `scores` against binary
 * `positive` flags; null when there is no positive.
 */
export function averagePrecision(scores: ArrayLike<number>, positive: ArrayLike<boolean | number>): number | null {
  const n = scores.length;
  let numPos = 0;
  for (let i = 0; i < n; i++) if (positive[i]) numPos++;
  if (numPos === 0) return null;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let tp = 0;
  let fp = 0;
  let prevRecall = 0;
  let ap = 0;
  for (let i = 0; i < n; ) {
    const s = scores[order[i]!]!;
    // All samples tied at this threshold enter together.
    while (i < n && scores[order[i]!]! === s) {
      if (positive[order[i]!]) tp++;
      else fp++;
      i++;
    }
    const recall = tp / numPos;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
  }
  return ap;
}

/** Per-vertical APs and their mean (the Knowledge Concentration metric, see module comment). */
export function meanPerVerticalAP(
  scores: ScoreMatrix,
  labels: ArrayLike<number>,
  classVertical: ArrayLike<number>,
  verticals: number,
): { mpvap: number; perVertical: (number | null)[]; perClass: (number | null)[] } {
  checkShape(scores, labels);
  const { cols } = scores;
  const samplesOf: number[][] = Array.from({ length: verticals }, () => []);
  for (let i = 0; i < scores.rows; i++) samplesOf[classVertical[labels[i]!]!]!.push(i);
  const perClass: (number | null)[] = new Array(cols).fill(null);
  for (let c = 0; c < cols; c++) {
    const set = samplesOf[classVertical[c]!]!;
    perClass[c] = averagePrecision(
      set.map((i) => scores.data[i * cols + c]!),
      set.map((i) => labels[i] === c),
    );
  }
  const perVertical = Array.from({ length: verticals }, (_, v) => {
    let sum = 0;
    let count = 0;
    for (let c = 0; c < cols; c++) {
      if (classVertical[c] === v && perClass[c] !== null) {
        sum += perClass[c]!;
        count++;
      }
    }
    return count === 0 ? null : sum / count;
  });
  const present = perVertical.filter((v): v is number => v !== null);
  return {
    mpvap: present.length ? present.reduce((a, b) => a + b, 0) / present.length : Number.NaN,
    perVertical,
    perClass,
  };
}

/** OpenImages-style multi-label mAP; `targets` is N x C with 1 / 0 / -1 (unverified, ignored). */
export function multiLabelMAP(scores: ScoreMatrix, targets: Int8Array): { mAP: number; perClass: (number | null)[] } {
  const { rows, cols } = scores;
  if (targets.length !== rows * cols)
    throw new Error(`targets hold ${targets.length} values, expected ${rows} x ${cols}`);
  const perClass: (number | null)[] = [];
  for (let c = 0; c < cols; c++) {
    const s: number[] = [];
    const p: boolean[] = [];
    for (let i = 0; i < rows; i++) {
      const t = targets[i * cols + c]!;
      if (t === -1) continue;
      s.push(scores.data[i * cols + c]!);
      p.push(t === 1);
    }
    perClass.push(averagePrecision(s, p));
  }
  const present = perClass.filter((v): v is number => v !== null);
  return { mAP: present.length ? present.reduce((a, b) => a + b, 0) / present.length : Number.NaN, perClass };
}

/** Fraction of samples where student and teacher predict the same class (top-1). */
export function teacherAgreement(student: ScoreMatrix, teacher: ScoreMatrix): number {
  if (student.rows !== teacher.rows || student.cols !== teacher.cols) {
    throw new Error(
      `student scores are ${student.rows} x ${student.cols}, teacher scores ${teacher.rows} x ${teacher.cols}`,
    );
  }
  let same = 0;
  for (let i = 0; i < student.rows; i++) {
    if (
      argmaxRow(student.data, i * student.cols, student.cols) ===
      argmaxRow(teacher.data, i * teacher.cols, teacher.cols)
    )
      same++;
  }
  return same / student.rows;
}

/** One reliability-diagram bin. */
export interface ReliabilityBin {
  lower: number;
  upper: number;
  count: number;
  /** Accuracy and mean confidence of the bin's samples (NaN when empty). */
  accuracy: number;
  confidence: number;
}

/** Bin of a confidence among m equal-width bins: (b/m, (b+1)/m]; confidence 0 goes to the first bin. */
export function confidenceBin(confidence: number, m: number): number {
  return Math.min(m - 1, Math.max(0, Math.ceil(confidence * m) - 1));
}

/** Expected calibration error and the reliability-diagram data. */
export function expectedCalibrationError(
  scores: ScoreMatrix,
  labels: ArrayLike<number>,
  options: { bins?: number; logits?: boolean } = {},
): { ece: number; bins: ReliabilityBin[] } {
  checkShape(scores, labels);
  const m = options.bins ?? 15;
  const { rows, cols, data } = scores;
  const count = new Float64Array(m);
  const correct = new Float64Array(m);
  const confSum = new Float64Array(m);
  for (let i = 0; i < rows; i++) {
    const off = i * cols;
    const pred = argmaxRow(data, off, cols);
    let conf = data[off + pred]!;
    if (options.logits) {
      let z = 0;
      for (let j = 0; j < cols; j++) z += Math.exp(data[off + j]! - conf);
      conf = 1 / z;
    }
    const b = confidenceBin(conf, m);
    count[b]!++;
    confSum[b]! += conf;
    if (pred === labels[i]) correct[b]!++;
  }
  let ece = 0;
  const bins: ReliabilityBin[] = [];
  for (let b = 0; b < m; b++) {
    const accuracy = count[b]! ? correct[b]! / count[b]! : Number.NaN;
    const confidence = count[b]! ? confSum[b]! / count[b]! : Number.NaN;
    if (count[b]!) ece += (count[b]! / rows) * Math.abs(accuracy - confidence);
    bins.push({ lower: b / m, upper: (b + 1) / m, count: count[b]!, accuracy, confidence });
  }
  return { ece, bins };
}
