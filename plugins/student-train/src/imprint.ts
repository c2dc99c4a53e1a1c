/**
 * Weight imprinting (Qi et al. 2018, "Low-shot learning with imprinted weights"; docs/methods.md,
 * "Weight imprinting and nearest class mean"): each output row
 * starts as the normalised mean of its class's penultimate features at initialisation, computed in
 * one streamed pass over the training rows before the first step.
 *
 * Why: with C output rows and B samples per step, a class's row gets a gradient from its own
 * positives about steps * B / rows_per_class times per epoch. At 100,000 classes and 4 samples per
 * class a budgeted run sees each class once or twice, so rows that start at zero (startAtPrior)
 * barely move and the student does not learn the task (measured: test top-1 about 0; see
 * plugins/eft-data/README.md). Imprinted rows rank test samples by their nearest class mean from
 * the first step on, and training refines features and rows from there.
 *
 * The rows are centred and calibrated for sigmoid and softmax heads alike: with mu the mean of the
 * head's features over all training rows and u_c = (m_c - mu) / ||m_c - mu||,
 *   logit_c(h) = alpha * u_c . (h - mu) + b0,   b0 = -log C,   alpha = margin / median_c ||m_c - mu||,
 * so a sample at its class mean scores b0 + margin on that class (sigmoid 0.5 at margin = log C,
 * the default) while unrelated classes stay near the prior b0. mu is over ALL rows, not the head's
 * own classes: a Knowledge Concentration head per vertical must also score other verticals' samples
 * low (centred on its own classes, measured at 2,000 classes: test top-1 0% at step 0, against 10%
 * for the one-head generalist). Classes without a training row keep weight 0 and bias b0.
 */
import * as tf from '@tensorflow/tfjs-core';
import { epochBatches, inputTensor, type TrainingData } from './data.js';
import type { Student } from './models/student.js';

/** One linear output block: its classes' columns read `width` features starting at `offset`. */
export interface ImprintHead {
  /** Global class id of each output column, in column order. */
  classes: Int32Array;
  offset: number;
  width: number;
  /** [width, classes.length] */
  weight: tf.Variable;
  /** [classes.length] */
  bias: tf.Variable;
}

/** What a student exposes to be imprinted (mlp and kc; models/mlp.ts and models/kc.ts). */
export interface Imprintable {
  /** Features the output blocks read, [n, D], without gradient bookkeeping. */
  penultimate(x: tf.Tensor): tf.Tensor2D;
  heads(): ImprintHead[];
}

export interface ImprintOptions {
  /**
   * 'imprint' (default): the calibrated rows above. 'ncm': the nearest-class-mean classifier,
   * logit_c(h) = 2 m_c . h - ||m_c||^2 = ||h||^2 - ||h - m_c||^2, so the arg max is the class whose
   * mean is nearest in Euclidean distance (a baseline; classes without rows score -inf in effect: -1e30).
   */
  rule?: 'imprint' | 'ncm';
  /** Logit gap between a class mean and the head's centre, in units of logit (default log C). */
  margin?: number;
  batchSize?: number;
  log?(message: string): void;
  progress?(done: number, total?: number, unit?: string): void;
}

export interface ImprintSummary {
  rows: number;
  /** Classes with at least one training row (the others keep the prior). */
  imprinted: number;
  margin: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Sets every head's weights and biases from class means of the training split (see the file comment). */
export async function imprintHeads(
  student: Student & Partial<Imprintable>,
  data: TrainingData,
  options: ImprintOptions = {},
): Promise<ImprintSummary> {
  if (!student.penultimate || !student.heads)
    throw new Error(`headInit imprint: student arch "${student.config.arch}" has no imprintable head (use mlp or kc)`);
  const numClasses = student.numClasses;
  const heads = student.heads();
  const headOf = new Int32Array(numClasses).fill(-1);
  const columnOf = new Int32Array(numClasses);
  heads.forEach((h, i) => h.classes.forEach((c, col) => ((headOf[c] = i), (columnOf[c] = col))));
  // Float64 sums: a class mean over many rows should not depend on their order.
  const sums = heads.map((h) => new Float64Array(h.classes.length * h.width));
  const counts = new Int32Array(numClasses);
  // Per head, the sum of its feature slice over ALL rows: the centre mu (see below).
  const totals = heads.map((h) => new Float64Array(h.width));
  let rows = 0;
  // Inputs only, in file order: no teachers to join, no shuffle buffer.
  for await (const samples of epochBatches({ ...data, teachers: [] }, options.batchSize ?? 1024, 1, 0, 0)) {
    const features = tf.tidy(() => student.penultimate!(inputTensor(samples, student.inputShape)));
    const f = (await features.data()) as Float32Array;
    features.dispose();
    const d = features.shape[1];
    heads.forEach((h, k) => {
      const total = totals[k]!;
      for (let i = 0; i < samples.length; i++)
        for (let j = 0; j < h.width; j++) total[j] = total[j]! + f[i * d + h.offset + j]!;
    });
    samples.forEach((s, i) => {
      const labels = s.labels ?? (s.label >= 0 ? [s.label] : []);
      for (const c of labels) {
        if (!(c >= 0 && c < numClasses))
          throw new Error(`headInit imprint: sample "${s.id}" has label ${c}, outside [0, ${numClasses})`);
        const h = heads[headOf[c]!]!;
        const sum = sums[headOf[c]!]!;
        const base = columnOf[c]! * h.width;
        const row = i * d + h.offset;
        for (let j = 0; j < h.width; j++) sum[base + j] = sum[base + j]! + f[row + j]!;
        counts[c] = counts[c]! + 1;
      }
    });
    rows += samples.length;
    options.progress?.(rows, data.rows, 'imprint rows');
  }
  const margin = options.margin ?? Math.log(numClasses);
  const prior = -Math.log(numClasses);
  let imprinted = 0;
  heads.forEach((h, i) => {
    const sum = sums[i]!;
    const n = h.classes.length;
    const mu = totals[i]!.map((t) => t / Math.max(rows, 1));
    h.classes.forEach((c, col) => {
      if (counts[c] === 0) return;
      for (let j = 0; j < h.width; j++) sum[col * h.width + j] = sum[col * h.width + j]! / counts[c]!; // sums become class means
    });
    if (options.rule === 'ncm') {
      const w = new Float32Array(h.width * n);
      const b = new Float32Array(n).fill(-1e30);
      h.classes.forEach((c, col) => {
        if (counts[c] === 0) return;
        imprinted++;
        let sq = 0;
        for (let j = 0; j < h.width; j++) {
          const m = sum[col * h.width + j]!;
          w[j * n + col] = 2 * m;
          sq += m * m;
        }
        b[col] = -sq;
      });
      h.weight.assign(tf.tensor2d(w, [h.width, n]));
      h.bias.assign(tf.tensor1d(b));
      return;
    }
    const norms: number[] = [];
    const normOf = new Float64Array(n);
    h.classes.forEach((c, col) => {
      if (counts[c] === 0) return;
      let s = 0;
      for (let j = 0; j < h.width; j++) s += (sum[col * h.width + j]! - mu[j]!) ** 2;
      normOf[col] = Math.sqrt(s);
      norms.push(normOf[col]!);
    });
    const scale = median(norms);
    const alpha = scale > 0 ? margin / scale : 0;
    const w = new Float32Array(h.width * n); // [width, n]: column per class
    const b = new Float32Array(n).fill(prior);
    h.classes.forEach((c, col) => {
      if (counts[c] === 0 || normOf[col] === 0) return;
      imprinted++;
      let dot = 0;
      for (let j = 0; j < h.width; j++) {
        const u = (alpha * (sum[col * h.width + j]! - mu[j]!)) / normOf[col]!;
        w[j * n + col] = u;
        dot += u * mu[j]!;
      }
      b[col] = prior - dot;
    });
    h.weight.assign(tf.tensor2d(w, [h.width, n]));
    h.bias.assign(tf.tensor1d(b));
  });
  options.log?.(
    options.rule === 'ncm'
      ? `nearest class mean: ${imprinted} of ${numClasses} output rows from the class means of ${rows} rows`
      : `imprinted ${imprinted} of ${numClasses} output rows from the class means of ${rows} rows (margin ${margin.toFixed(2)})`,
  );
  return { rows, imprinted, margin };
}
