/**
 * Turns a minibatch of samples into loss inputs: the teacher's soft labels as a DenseTarget or a
 * padded SparseTarget (ids + probabilities, never [batch, classes] for top-k / sampled), and the
 * Knowledge Concentration targets (each sample's teacher = the vertical holding its label).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TeacherOutputOptions } from '@distillery/runtime/shards';
import type { Sample, TeacherRow } from './data.js';
import type { DenseTarget, SparseTarget } from './losses/index.js';

export type SoftLabelSource = 'dense' | 'topk' | 'sampled';
export type TopkPolicy = 'renormalise' | 'rest';

/** Picks the storage mode to learn from: the requested one, or the richest stored. */
export function chooseSource(
  info: TeacherOutputOptions,
  requested: SoftLabelSource | 'auto',
  where: string,
): SoftLabelSource {
  const stored: SoftLabelSource[] = [];
  if (info.storage.dense) stored.push('dense');
  if (info.storage.topk) stored.push('topk');
  if (info.storage.sampled) stored.push('sampled');
  if (requested === 'auto') {
    if (stored.length === 0) throw new Error(`teacher outputs ${where}: no soft labels stored`);
    return stored[0]!;
  }
  if (!stored.includes(requested))
    throw new Error(
      `teacher outputs ${where}: soft labels "${requested}" not stored (have ${stored.join(', ') || 'none'})`,
    );
  return requested;
}

/** Pads per-sample (id, p) lists into a SparseTarget. */
export function sparseFromLists(
  entries: { ids: ArrayLike<number>; probs: ArrayLike<number>; tail: number }[],
  policy: 'zero' | 'rest',
): SparseTarget {
  const n = entries.length;
  const k = Math.max(1, ...entries.map((e) => e.ids.length));
  const ids = new Int32Array(n * k);
  const probs = new Float32Array(n * k);
  const mask = new Float32Array(n * k);
  const tail = new Float32Array(n);
  entries.forEach((e, b) => {
    for (let j = 0; j < e.ids.length; j++) {
      ids[b * k + j] = e.ids[j]!;
      probs[b * k + j] = e.probs[j]!;
      mask[b * k + j] = 1;
    }
    tail[b] = e.tail;
  });
  return {
    kind: 'sparse',
    ids: tf.tensor2d(ids, [n, k], 'int32'),
    probs: tf.tensor2d(probs, [n, k]),
    mask: tf.tensor2d(mask, [n, k]),
    tail: tf.tensor1d(tail),
    policy,
  };
}

/**
 * Soft labels of a softmax teacher at the loss temperature T.
 * - dense: logits placed on the global classes (classes outside the teacher's map get -1e9);
 * - top-k renormalise: p_i proportional to exp(logp_i * T0 / T) over the kept ids (re-tempered);
 *   rest: p_i = exp(logp_i) with the stored missing mass as the rest bucket (needs T = T0);
 * - sampled: t_hat_i = count_i / N * weight_i (unbiased for the capture temperature; needs T = T0).
 */
export function softTarget(
  rows: TeacherRow[],
  info: TeacherOutputOptions,
  source: SoftLabelSource,
  policy: TopkPolicy,
  temperature: number,
  numClasses: number,
  where: string,
): DenseTarget | SparseTarget {
  const t0 = info.temperature;
  if (source === 'dense') {
    const local = info.classMap?.length ?? info.numClasses;
    const out = new Float32Array(rows.length * numClasses).fill(info.classMap ? -1e9 : 0);
    rows.forEach((row, b) => {
      const z = row.logits!;
      if (z.length !== local)
        throw new Error(`teacher outputs ${where}: logits of width ${z.length}, expected ${local}`);
      for (let i = 0; i < local; i++) out[b * numClasses + (info.classMap ? info.classMap[i]! : i)] = z[i]!;
    });
    return { kind: 'dense', logits: tf.tensor2d(out, [rows.length, numClasses]) };
  }
  if (source === 'topk') {
    if (policy === 'rest' && Math.abs(temperature - t0) > 1e-9) {
      throw new Error(
        `teacher outputs ${where}: top-k "rest" policy needs the loss temperature (${temperature}) to equal the capture temperature (${t0}); the tail cannot be re-tempered`,
      );
    }
    return sparseFromLists(
      rows.map((row) => {
        const lp = row.topkLogprobs!;
        const probs = new Float64Array(lp.length);
        if (policy === 'rest') {
          for (let j = 0; j < lp.length; j++) probs[j] = Math.exp(lp[j]!);
          return { ids: row.topkIds!, probs, tail: Math.max(0, row.topkMissing ?? 0) };
        }
        const scale = t0 / temperature;
        let max = -Infinity;
        for (const v of lp) max = Math.max(max, v * scale);
        let sum = 0;
        for (let j = 0; j < lp.length; j++) sum += probs[j] = Math.exp(lp[j]! * scale - max);
        for (let j = 0; j < lp.length; j++) probs[j]! /= sum;
        return { ids: row.topkIds!, probs, tail: 0 };
      }),
      policy === 'rest' ? 'rest' : 'zero',
    );
  }
  if (Math.abs(temperature - t0) > 1e-9) {
    throw new Error(
      `teacher outputs ${where}: sampled soft labels were drawn at temperature ${t0}; the loss temperature must match (got ${temperature})`,
    );
  }
  return sparseFromLists(
    rows.map((row) => {
      const counts = row.sampleCounts!;
      let draws = 0;
      for (const c of counts) draws += c;
      const probs = new Float64Array(counts.length);
      for (let j = 0; j < counts.length; j++)
        probs[j] = (counts[j]! / draws) * (row.sampleWeights ? row.sampleWeights[j]! : 1);
      return { ids: row.sampleIds!, probs, tail: 0 };
    }),
    'zero',
  );
}

/** Global class ids of a teacher's local classes. */
export function teacherClasses(info: TeacherOutputOptions): number[] {
  return info.classMap ?? Array.from({ length: info.numClasses }, (_, i) => i);
}

/**
 * Knowledge Concentration soft targets (sigmoid; docs/methods.md, "Knowledge Concentration
 * targets"): for each sample the teacher whose vertical
 * holds its label; its sigmoid outputs on the vertical's classes, kept only for its top-K
 * (0 elsewhere), mixed with the one-hot label: (1 - gtMix) * z* + gtMix * y.
 */
export function kcTarget(
  samples: Sample[],
  infos: TeacherOutputOptions[],
  verticalOfClass: Int32Array,
  topK: number,
  gtMix: number,
): SparseTarget {
  return sparseFromLists(kcTargetRows(samples, infos, verticalOfClass, topK, gtMix), 'zero');
}

/** kcTarget's per-sample (ids, probs) lists, before padding into tensors. */
export function kcTargetRows(
  samples: Sample[],
  infos: TeacherOutputOptions[],
  verticalOfClass: Int32Array,
  topK: number,
  gtMix: number,
): { ids: number[]; probs: number[]; tail: number }[] {
  return samples.map((s) => {
    const v = s.label >= 0 && s.label < verticalOfClass.length ? verticalOfClass[s.label]! : -1;
    if (v < 0)
      throw new Error(
        `knowledge concentration: sample "${s.id}" has label ${s.label}, which is in no teacher's vertical`,
      );
    const row = s.teachers[v];
    const info = infos[v]!;
    if (!row)
      throw new Error(
        `knowledge concentration: sample "${s.id}" (label ${s.label}) has no row in teacher ${info.teacherId}'s outputs, the teacher of its vertical`,
      );
    let ids: number[];
    let probs: number[];
    if (row.topkIds) {
      ids = Array.from(row.topkIds.subarray(0, topK));
      probs = Array.from(row.topkLogprobs!.subarray(0, topK), (lp) => Math.exp(lp));
    } else if (row.logits) {
      const classes = teacherClasses(info);
      const order = Array.from(row.logits.keys())
        .sort((a, b) => row.logits![b]! - row.logits![a]!)
        .slice(0, topK);
      ids = order.map((i) => classes[i]!);
      probs = order.map((i) => 1 / (1 + Math.exp(-row.logits![i]! / info.temperature)));
    } else {
      throw new Error(`knowledge concentration: teacher ${info.teacherId} stores neither top-k nor dense outputs`);
    }
    probs = probs.map((p) => (1 - gtMix) * p);
    if (gtMix > 0) {
      const at = ids.indexOf(s.label);
      if (at >= 0) probs[at]! += gtMix;
      else {
        ids.push(s.label);
        probs.push(gtMix);
      }
    }
    return { ids, probs, tail: 0 };
  });
}
