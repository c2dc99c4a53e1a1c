/**
 * Validation while training: top-1 of the student on a held-out split (student-train's
 * `validationSplit`, e.g. the `val` split a dataset stage carves with `holdout`), measured after
 * every epoch in inference mode (batch-norm running statistics, no dropout). One streamed pass in
 * file order; rows without a label (-1) are skipped.
 */
import * as tf from '@tensorflow/tfjs-core';
import { epochBatches, inputTensor, type TrainingData } from './data.js';
import type { Student } from './models/student.js';

export interface ValidationScore {
  top1: number;
  rows: number;
}

export async function validationTop1(student: Student, data: TrainingData, batchSize = 1024): Promise<ValidationScore> {
  let correct = 0;
  let rows = 0;
  for await (const samples of epochBatches({ ...data, teachers: [] }, batchSize, 1, 0, 0)) {
    const predicted = tf.tidy(() => tf.argMax(student.apply(inputTensor(samples, student.inputShape), false), 1));
    const classes = (await predicted.data()) as Int32Array;
    predicted.dispose();
    samples.forEach((s, i) => {
      if (s.label < 0) return;
      rows++;
      if (classes[i] === s.label) correct++;
    });
  }
  return { top1: rows > 0 ? correct / rows : Number.NaN, rows };
}
