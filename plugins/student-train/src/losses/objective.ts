/**
 * One loss object per loss kind, called by the training loop (train.ts) once per step: `batch`
 * builds the step's targets outside the gradient tape, and the returned objective's `loss` runs
 * on the tape with the student's outputs. Each kind calls the tested formula functions of
 * losses/index.ts, losses/sampled.ts and features.ts; nothing here re-implements a formula.
 *
 *   ce / sigmoid_ce      hardLabelLoss       crossEntropy / sigmoidCrossEntropy
 *   kd (f-divergences)   softmaxKdLoss       hintonKd
 *   sigmoid_kd, kc       sigmoidKdLoss       sigmoidHintonKd
 *   sampled negatives    sampledSigmoidLoss  sampledSigmoidCrossEntropy
 *   dkd                  decoupledKdLoss     dkdLoss (losses/dkd.ts) + crossEntropy
 *   + feature term       withFeatureTerm     FeatureTerm.loss (hint / attention / rkd)
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Sample } from '../data.js';
import type { FeatureTerm } from '../features.js';
import type { Rng } from '../rng.js';
import {
  crossEntropy,
  hintonKd,
  sigmoidCrossEntropy,
  sigmoidHintonKd,
  type Divergence,
  type TeacherTarget,
} from './index.js';
import { dkdLoss } from './dkd.js';
import { sampledSigmoidCrossEntropy, sampleColumns, targetsAtColumns, type SparseRow } from './sampled.js';

/** What the student computed for the batch. */
export interface StudentOutputs {
  /** [n, numClasses], or [n, columns.length] when the objective names columns. */
  logits: tf.Tensor2D;
  /** Named intermediate activations (present when the loss asked for them). */
  activations?: Map<string, tf.Tensor>;
}

/** A step's loss: the total that is differentiated and its named parts (metrics `loss/<name>`). */
export interface LossValue {
  total: tf.Scalar;
  terms: Record<string, tf.Scalar>;
}

/** One batch's objective, built by TrainingLoss.batch. */
export interface BatchObjective {
  /** Global class ids the student computes logits for (sampled negatives); absent: every class. */
  columns?: Int32Array;
  /** The loss of the student's outputs on this batch (runs on the gradient tape). */
  loss(outputs: StudentOutputs): LossValue;
}

/** A loss kind as the training loop sees it. */
export interface TrainingLoss {
  /** True when `loss` reads StudentOutputs.activations (the student runs applyWithActivations). */
  readonly needsActivations: boolean;
  /** The batch's targets (inside the step's tidy, outside the tape); `step` seeds per-step draws. */
  batch(samples: Sample[], step: number): BatchObjective;
}

/** Multi-hot [n, C] of the true labels (multi-label datasets, or single labels). */
export function multiHot(samples: Sample[], numClasses: number): tf.Tensor2D {
  const out = new Float32Array(samples.length * numClasses);
  samples.forEach((s, b) => {
    const labels = s.labels ?? (s.label >= 0 ? [s.label] : []);
    for (const l of labels) out[b * numClasses + l] = 1;
  });
  return tf.tensor2d(out, [samples.length, numClasses]);
}

/** The soft term, then the hard one when the loss has it (the order the metrics are written in). */
function logitTerms(soft: tf.Scalar, hard: tf.Scalar | undefined): Record<string, tf.Scalar> {
  return hard ? { soft, hard } : { soft };
}

/** int32 [n] single labels of the batch. */
export function labelTensor(samples: Sample[]): tf.Tensor1D {
  return tf.tensor1d(
    Int32Array.from(samples, (s) => s.label),
    'int32',
  );
}

/** ce / sigmoid_ce: hard labels only (softmax CE, or per-class sigmoid CE against the multi-hot labels). */
export function hardLabelLoss(sigmoid: boolean, numClasses: number): TrainingLoss {
  return {
    needsActivations: false,
    batch(samples) {
      const targets = sigmoid ? multiHot(samples, numClasses) : labelTensor(samples);
      return {
        loss({ logits }) {
          const hard = sigmoid
            ? sigmoidCrossEntropy(logits, targets as tf.Tensor2D)
            : crossEntropy(logits, targets as tf.Tensor1D);
          return { total: hard, terms: { hard } };
        },
      };
    },
  };
}

/** Settings of the softmax KD family (Hinton KD with any divergence). */
export interface SoftmaxKdSettings {
  divergence: Divergence;
  temperature: number;
  alpha: number;
  skew: number;
}

/** kd: alpha * CE + (1 - alpha) * T^2 * D(teacher || student) via hintonKd; `target` reads the batch's teacher rows. */
export function softmaxKdLoss(settings: SoftmaxKdSettings, target: (samples: Sample[]) => TeacherTarget): TrainingLoss {
  return {
    needsActivations: false,
    batch(samples) {
      const teacher = target(samples);
      const labels = settings.alpha > 0 ? labelTensor(samples) : undefined;
      return {
        loss({ logits }) {
          const { total, hard, soft } = hintonKd(logits, labels, teacher, settings);
          return { total, terms: logitTerms(soft, hard) };
        },
      };
    },
  };
}

/**
 * sigmoid_kd and kc: T^2 * BCE against teacher sigmoids, mixed with the hard-label sigmoid CE by
 * alpha (sigmoid_kd only: pass alpha 0 for kc) via sigmoidHintonKd.
 */
export function sigmoidKdLoss(
  settings: { temperature: number; alpha: number },
  numClasses: number,
  target: (samples: Sample[]) => TeacherTarget,
): TrainingLoss {
  return {
    needsActivations: false,
    batch(samples) {
      const teacher = target(samples);
      const hot = settings.alpha > 0 ? multiHot(samples, numClasses) : undefined;
      return {
        loss({ logits }) {
          const { total, hard, soft } = sigmoidHintonKd(logits, hot, teacher, settings);
          return { total, terms: logitTerms(soft, hard) };
        },
      };
    },
  };
}

/**
 * Sigmoid CE on the batch's positive columns plus R shared sampled negatives (losses/sampled.ts),
 * times T^2. `rows` gives each sample's sparse targets; `rng(step)` the step's draw, so a resumed
 * run draws the same columns. The term is named `name` (hard: labels; soft: kc teachers).
 */
export function sampledSigmoidLoss(
  settings: { numClasses: number; negatives: number; temperature: number; name: 'hard' | 'soft' },
  rows: (samples: Sample[]) => SparseRow[],
  rng: (step: number) => Rng,
): TrainingLoss {
  const t = settings.temperature;
  return {
    needsActivations: false,
    batch(samples, step) {
      const sparse = rows(samples);
      const cols = sampleColumns(sparse, settings.numClasses, settings.negatives, rng(step));
      const targets = tf.tensor2d(targetsAtColumns(sparse, cols.columns), [samples.length, cols.columns.length]);
      const weights = tf.tensor1d(cols.weights);
      return {
        columns: cols.columns,
        loss({ logits }) {
          const total = tf.mul(sampledSigmoidCrossEntropy(logits, targets, weights, t), t * t) as tf.Scalar;
          return { total, terms: { [settings.name]: total } };
        },
      };
    },
  };
}

/** Settings of decoupled KD (losses/dkd.ts) and the hard-label term beside it. */
export interface DkdSettings {
  alpha: number;
  beta: number;
  temperature: number;
  /** Weight of the hard-label cross-entropy added to DKD. */
  ceWeight: number;
  /** The DKD term grows linearly from 0 over this many steps (0: full weight from the start). */
  warmupSteps: number;
}

/**
 * dkd: ceWeight * CE + min(1, step / warmupSteps) * DKD against the dense teacher logits that
 * `teacher` reads for the batch. Terms: hard, tckd, nckd (unweighted, without T^2).
 */
export function decoupledKdLoss(settings: DkdSettings, teacher: (samples: Sample[]) => tf.Tensor2D): TrainingLoss {
  return {
    needsActivations: false,
    batch(samples, step) {
      const teacherLogits = teacher(samples);
      const labels = labelTensor(samples);
      const ramp = settings.warmupSteps > 0 ? Math.min(1, step / settings.warmupSteps) : 1;
      return {
        loss({ logits }) {
          const { total, tckd, nckd } = dkdLoss(logits, teacherLogits, labels, settings);
          const hard = crossEntropy(logits, labels);
          const sum = tf.add(tf.mul(hard, settings.ceWeight), tf.mul(total, ramp)) as tf.Scalar;
          return { total: sum, terms: { hard, tckd, nckd } };
        },
      };
    },
  };
}

/** A logit loss plus weight * a feature term (features.ts) on the student's named activation. */
export function withFeatureTerm(logitLoss: TrainingLoss, term: FeatureTerm, weight: number): TrainingLoss {
  return {
    needsActivations: true,
    batch(samples, step) {
      const inner = logitLoss.batch(samples, step);
      const teacherFeatures = term.teacherBatch(
        samples.map((s) => s.teachers[0]),
        samples.map((s) => s.id),
      );
      return {
        ...(inner.columns ? { columns: inner.columns } : {}),
        loss(outputs) {
          const { total, terms } = inner.loss(outputs);
          const feature = term.loss(outputs.activations!, teacherFeatures);
          return { total: tf.add(total, tf.mul(feature, weight)) as tf.Scalar, terms: { ...terms, feature } };
        },
      };
    },
  };
}
