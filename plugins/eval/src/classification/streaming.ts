/**
 * Streaming classification metrics: the definitions of ./metrics.ts (ties, ECE bins, AP, mean
 * per-vertical AP), accumulated batch by batch so that a data set of any size is evaluated in
 * memory bounded by the batch, except for mean per-vertical AP, which must rank every sample:
 * it keeps, for each sample, the probabilities of the classes of its label's vertical
 * (N x average vertical size float32 values).
 *
 * Scores given to `add` are the model's raw outputs; `probabilities: false` means they are logits
 * and are softmaxed (float64) for ECE. Mean per-vertical AP ranks each class's column on the score
 * `apScore` names: the row's probabilities (softmax of the logits, or the given probabilities), or
 * the per-class sigmoid of each logit, the score a model trained with per-class sigmoid losses
 * produces. Top-k and accuracies depend only on the ranking.
 */
import { argmaxRow, averagePrecision, confidenceBin, rankOf } from './metrics.js';

/** How classes group into verticals: `classToVertical[c]` in [0, names.length). */
export interface VerticalMap {
  classToVertical: Int32Array;
  names: string[];
}

export interface StreamingOptions {
  numClasses: number;
  /** k values for top-k accuracy, e.g. [1, 5]. */
  topk: number[];
  eceBins: number;
  /** True when scores are already probabilities (no softmax). */
  probabilities: boolean;
  verticals?: VerticalMap;
  /**
   * Score mean per-vertical AP ranks (default 'softmax'): 'softmax' = the row's probabilities (the
   * given ones when `probabilities`); 'sigmoid' = sigmoid(logit) per class, for per-class sigmoid
   * models (kept as the logit itself: the same ranking, without float32 saturation ties near 1).
   * 'sigmoid' needs logits.
   */
  apScore?: ApScore;
}

/** What mean per-vertical AP ranks: see StreamingOptions.apScore. */
export type ApScore = 'softmax' | 'sigmoid';

/** Final values; null where a quantity has no sample (a class without test samples, an empty bin). */
export interface ClassificationSummary {
  samples: number;
  /** Top-k accuracy by k (as a string key, e.g. "5"). */
  topk: Record<string, number>;
  top1: number;
  perClassAccuracy: (number | null)[];
  /** Test samples per class. */
  classCounts: number[];
  ece: number;
  reliability: { lower: number; upper: number; count: number; accuracy: number | null; confidence: number | null }[];
  /** Fraction of samples whose top-1 equals the reference model's; absent without a reference. */
  agreement?: number;
  perVerticalAccuracy?: (number | null)[];
  perVerticalAP?: (number | null)[];
  meanPerVerticalAP?: number | null;
}

/** A growable float32 buffer. */
class FloatBuffer {
  private data = new Float32Array(1024);
  length = 0;
  push(values: ArrayLike<number>): void {
    if (this.length + values.length > this.data.length) {
      const bigger = new Float32Array(Math.max(this.data.length * 2, this.length + values.length));
      bigger.set(this.data.subarray(0, this.length));
      this.data = bigger;
    }
    this.data.set(values, this.length);
    this.length += values.length;
  }
  view(): Float32Array {
    return this.data.subarray(0, this.length);
  }
}

export class StreamingClassificationMetrics {
  private samples = 0;
  private readonly topkHits: Float64Array;
  private readonly classTotal: Float64Array;
  private readonly classHit: Float64Array;
  private readonly binCount: Float64Array;
  private readonly binCorrect: Float64Array;
  private readonly binConf: Float64Array;
  private agreeing = 0;
  private compared = 0;
  private readonly verticalTotal?: Float64Array;
  private readonly verticalHit?: Float64Array;
  /** Per vertical: class ids, and for each sample labelled in it the probabilities of those classes and the label. */
  private readonly verticalClasses?: number[][];
  private readonly verticalScores?: FloatBuffer[];
  private readonly verticalLabels?: number[][];

  constructor(private readonly o: StreamingOptions) {
    const c = o.numClasses;
    if (o.apScore === 'sigmoid' && o.probabilities)
      throw new Error(
        'apScore "sigmoid" ranks logits: the model outputs are probabilities (outputs: probabilities); use apScore softmax',
      );
    this.topkHits = new Float64Array(o.topk.length);
    this.classTotal = new Float64Array(c);
    this.classHit = new Float64Array(c);
    this.binCount = new Float64Array(o.eceBins);
    this.binCorrect = new Float64Array(o.eceBins);
    this.binConf = new Float64Array(o.eceBins);
    if (o.verticals) {
      const v = o.verticals.names.length;
      if (o.verticals.classToVertical.length !== c)
        throw new Error(`vertical map covers ${o.verticals.classToVertical.length} classes, the model has ${c}`);
      this.verticalTotal = new Float64Array(v);
      this.verticalHit = new Float64Array(v);
      this.verticalClasses = Array.from({ length: v }, () => []);
      o.verticals.classToVertical.forEach((vert, cls) => this.verticalClasses![vert]!.push(cls));
      this.verticalScores = Array.from({ length: v }, () => new FloatBuffer());
      this.verticalLabels = Array.from({ length: v }, () => []);
    }
  }

  /**
   * Adds n samples: `scores` n x C row-major, `labels` in [0, C) (checked by the caller), optional
   * `reference` top-1 classes of the reference model. Returns the top-1 class of each sample.
   */
  add(scores: Float32Array, labels: ArrayLike<number>, n: number, reference?: ArrayLike<number>): Int32Array {
    const c = this.o.numClasses;
    const top1 = new Int32Array(n);
    const probs = new Float64Array(c);
    for (let i = 0; i < n; i++) {
      const off = i * c;
      const y = labels[i]!;
      const pred = argmaxRow(scores, off, c);
      top1[i] = pred;
      const rank = rankOf(scores, off, c, y);
      this.o.topk.forEach((k, j) => {
        if (rank < k) this.topkHits[j]!++;
      });
      this.classTotal[y]!++;
      if (pred === y) this.classHit[y]!++;
      // Probabilities of the row (softmax of logits, max-shifted).
      if (this.o.probabilities) for (let j = 0; j < c; j++) probs[j] = scores[off + j]!;
      else {
        const m = scores[off + pred]!;
        let z = 0;
        for (let j = 0; j < c; j++) z += probs[j] = Math.exp(scores[off + j]! - m);
        for (let j = 0; j < c; j++) probs[j]! /= z;
      }
      const conf = probs[pred]!;
      const b = confidenceBin(conf, this.o.eceBins);
      this.binCount[b]!++;
      this.binConf[b]! += conf;
      if (pred === y) this.binCorrect[b]!++;
      if (reference) {
        this.compared++;
        if (reference[i] === pred) this.agreeing++;
      }
      if (this.o.verticals) {
        const v = this.o.verticals.classToVertical[y]!;
        this.verticalTotal![v]!++;
        if (pred === y) this.verticalHit![v]!++;
        // sigmoid: the logit itself (sigmoid is strictly increasing, so AP is the same).
        const apScores = this.o.apScore === 'sigmoid' ? scores : probs;
        const apOffset = this.o.apScore === 'sigmoid' ? off : 0;
        this.verticalScores![v]!.push(this.verticalClasses![v]!.map((cls) => apScores[apOffset + cls]!));
        this.verticalLabels![v]!.push(y);
      }
    }
    this.samples += n;
    return top1;
  }

  summary(): ClassificationSummary {
    const n = this.samples;
    const ratio = (a: number, b: number): number | null => (b === 0 ? null : a / b);
    const topk: Record<string, number> = {};
    this.o.topk.forEach((k, j) => {
      topk[String(k)] = this.topkHits[j]! / n;
    });
    let ece = 0;
    const reliability: ClassificationSummary['reliability'] = [];
    const m = this.o.eceBins;
    for (let b = 0; b < m; b++) {
      const count = this.binCount[b]!;
      const accuracy = ratio(this.binCorrect[b]!, count);
      const confidence = ratio(this.binConf[b]!, count);
      if (count) ece += (count / n) * Math.abs(accuracy! - confidence!);
      reliability.push({ lower: b / m, upper: (b + 1) / m, count, accuracy, confidence });
    }
    let hits = 0;
    this.classHit.forEach((h) => {
      hits += h;
    });
    const out: ClassificationSummary = {
      samples: n,
      topk,
      top1: hits / n,
      perClassAccuracy: Array.from(this.classTotal, (t, cls) => ratio(this.classHit[cls]!, t)),
      classCounts: Array.from(this.classTotal),
      ece,
      reliability,
    };
    if (this.compared > 0) out.agreement = this.agreeing / this.compared;
    if (this.o.verticals) {
      out.perVerticalAccuracy = Array.from(this.verticalTotal!, (t, v) => ratio(this.verticalHit![v]!, t));
      out.perVerticalAP = this.verticalClasses!.map((classes, v) => {
        const scores = this.verticalScores![v]!.view();
        const labels = this.verticalLabels![v]!;
        const width = classes.length;
        let sum = 0;
        let count = 0;
        classes.forEach((cls, j) => {
          const column = Float64Array.from(labels, (_, i) => scores[i * width + j]!);
          const ap = averagePrecision(
            column,
            labels.map((y) => y === cls),
          );
          if (ap !== null) {
            sum += ap;
            count++;
          }
        });
        return count === 0 ? null : sum / count;
      });
      const present = out.perVerticalAP.filter((v): v is number => v !== null);
      out.meanPerVerticalAP = present.length ? present.reduce((a, b) => a + b, 0) / present.length : null;
    }
    return out;
  }
}
