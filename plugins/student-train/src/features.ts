/**
 * Feature distillation setup: checks a `feature` loss configuration against the student and the
 * teacher's stored features before training, owns the hint regressor's parameters (trained with
 * the student, checkpointed, never exported), turns a batch's teacher rows into a tensor and
 * computes the term (losses/feature.ts; rkd: losses/relational.ts on the flattened embeddings).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TeacherOutputOptions } from '@distillery/runtime/shards';
import type { TeacherRow } from './data.js';
import { attentionLoss, hintLoss, matchSpatial } from './losses/feature.js';
import { rkdLoss } from './losses/relational.js';
import type { Student } from './models/student.js';
import type { NamedVariable } from '@distillery/runtime/optim';
import { Rng } from './rng.js';

/** tfjs variable names are process-global: a counter keeps the regressors' unique. */
let nextVariableId = 0;

/** student-train's `feature` parameter block. */
export interface FeatureConfig {
  /**
   * none: no feature term; hint: FitNets regressor + MSE; attention: attention transfer (CNN maps);
   * rkd: relational KD (distance and angle structure of the batch's embeddings, losses/relational.ts).
   */
  kind: 'none' | 'hint' | 'attention' | 'rkd';
  /** Multiplier of the term added to the logit loss. */
  weight: number;
  /** Student activation: `conv<i>` (conv block i after relu and pool) or `fc<i>` (dense layer i). */
  studentLayer: string;
  /** The teacher model output whose values teacher-infer stored (its `featuresOutput`). */
  teacherFeature: string;
  /** Layout of a rank-3 stored feature: nchw (an ONNX conv output, default) or nhwc. */
  teacherLayout?: 'nchw' | 'nhwc';
  /** rkd: weights of the distance and angle terms (default 1 and 2). */
  rkd?: { distance: number; angle: number };
}

/** The configured term, ready for the training step. */
export interface FeatureTerm {
  /** Regressor parameters (hint; empty for attention): optimised with the student, not exported. */
  readonly params: NamedVariable[];
  /** The batch's teacher features as [n, h, w, c] (maps) or [n, d] (flat). */
  teacherBatch(rows: (TeacherRow | undefined)[], ids: string[]): tf.Tensor;
  /** The term's value from the student's activations (applyWithActivations) and teacherBatch. */
  loss(activations: Map<string, tf.Tensor>, teacher: tf.Tensor): tf.Scalar;
}

/**
 * Validates `config` and builds the term: the student layer must exist (names listed otherwise),
 * the teacher outputs must hold the named feature, attention needs two maps, and the spatial sizes
 * must match or be integer multiples (pooled), else the error names both shapes.
 */
export function createFeatureTerm(
  config: FeatureConfig,
  student: Student,
  teacher: { info: TeacherOutputOptions; where: string },
  seed: number,
): FeatureTerm {
  const what = `feature ${config.kind} (student layer "${config.studentLayer}", teacher feature "${config.teacherFeature}")`;
  if (!student.applyWithActivations)
    throw new Error(
      `${what}: student arch "${student.config.arch}" exposes no intermediate activations (use mlp, cnn or onnx)`,
    );
  const stored = teacher.info.storage.features;
  if (!stored)
    throw new Error(`${what}: teacher outputs ${teacher.where} store no features (set teacher-infer's featuresOutput)`);
  if (stored.output !== undefined && stored.output !== config.teacherFeature) {
    throw new Error(
      `${what}: teacher outputs ${teacher.where} store the model output "${stored.output}", not "${config.teacherFeature}"`,
    );
  }
  const teacherShape = stored.shape ?? [stored.dim];
  const layout = config.teacherLayout ?? 'nchw';
  // The teacher's per-sample map as [h, w, c], or undefined for flat features.
  const teacherMap =
    teacherShape.length === 3
      ? layout === 'nchw'
        ? [teacherShape[1]!, teacherShape[2]!, teacherShape[0]!]
        : teacherShape
      : undefined;
  // One inference-mode pass on a zero sample gives every layer's shape (no batch-norm update).
  const probe = new Map<string, number[]>();
  tf.tidy(() => {
    const { activations } = student.applyWithActivations!(tf.zeros([1, ...student.inputShape]), false);
    for (const [name, t] of activations) probe.set(name, t.shape.slice(1));
  });
  const studentShape = probe.get(config.studentLayer);
  if (!studentShape)
    throw new Error(
      `${what}: the student has no layer "${config.studentLayer}" (layers: ${Array.from(probe.keys()).join(', ')})`,
    );
  const studentIsMap = studentShape.length === 3;
  const params: NamedVariable[] = [];
  const maps = studentIsMap && teacherMap !== undefined;
  if (config.kind === 'attention') {
    if (!studentIsMap)
      throw new Error(
        `${what}: attention transfer needs a conv block's map; student layer "${config.studentLayer}" is flat [${studentShape.join(', ')}]`,
      );
    if (!teacherMap)
      throw new Error(
        `${what}: attention transfer needs a teacher feature map [c, h, w]; ${teacher.where} stores [${teacherShape.join(', ')}]`,
      );
  }
  if (maps && config.kind !== 'rkd') {
    // Fails now, naming both shapes, rather than at the first step.
    tf.tidy(() => {
      const zs: tf.Tensor = tf.zeros([1, ...studentShape]);
      const zt: tf.Tensor = tf.zeros([1, ...teacherMap!]);
      matchSpatial(zs as tf.Tensor4D, zt as tf.Tensor4D, what);
    });
  }
  if (config.kind === 'hint') {
    // Maps: a 1x1 conv regressor (c_s -> c_t); otherwise a dense layer on the flattened features.
    const inDim = maps ? studentShape[2]! : studentShape.reduce((a, b) => a * b, 1);
    const outDim = maps ? teacherMap![2]! : stored.dim;
    const rng = new Rng((seed * 2246822519 + 0x5bd1e995) >>> 0);
    const limit = Math.sqrt(6 / inDim);
    params.push(
      {
        name: 'feature.regressor.weight',
        variable: tf.variable(
          tf.tensor2d(rng.uniformArray(inDim * outDim, limit), [inDim, outDim]),
          true,
          `feature.regressor.weight#${nextVariableId++}`,
        ),
      },
      {
        name: 'feature.regressor.bias',
        variable: tf.variable(tf.zeros([outDim]), true, `feature.regressor.bias#${nextVariableId++}`),
      },
    );
  }
  return {
    params,
    teacherBatch(rows, ids) {
      const n = rows.length;
      const flat = new Float32Array(n * stored.dim);
      rows.forEach((row, b) => {
        const f = row?.features;
        if (!f) throw new Error(`${what}: sample "${ids[b]}" has no stored teacher features in ${teacher.where}`);
        if (f.length !== stored.dim)
          throw new Error(
            `${what}: sample "${ids[b]}" has ${f.length} feature values in ${teacher.where}, expected ${stored.dim}`,
          );
        flat.set(f, b * stored.dim);
      });
      if ((!maps && config.kind === 'hint') || config.kind === 'rkd') return tf.tensor2d(flat, [n, stored.dim]);
      const asStored = tf.tensor4d(flat, [n, ...teacherShape] as [number, number, number, number]);
      return layout === 'nchw' ? tf.transpose(asStored, [0, 2, 3, 1]) : asStored;
    },
    loss(activations, target) {
      const s = activations.get(config.studentLayer)!;
      if (config.kind === 'rkd')
        return rkdLoss(
          tf.reshape(s, [s.shape[0]!, -1]),
          target as tf.Tensor2D,
          config.rkd ?? { distance: 1, angle: 2 },
        );
      if (config.kind === 'attention') return attentionLoss(s as tf.Tensor4D, target as tf.Tensor4D, what);
      const regressor = { weight: params[0]!.variable as tf.Tensor2D, bias: params[1]!.variable as tf.Tensor1D };
      if (!maps) return hintLoss(tf.reshape(s, [s.shape[0]!, -1]), target, regressor);
      const [ms, mt] = matchSpatial(s as tf.Tensor4D, target as tf.Tensor4D, what);
      return hintLoss(ms, mt, regressor);
    },
  };
}
