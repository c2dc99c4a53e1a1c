/**
 * Bootstrap of the class-conditional diffusion teacher (EDM denoiser MLP trained on real data)
 * and its multi-step sampling through onnxruntime-node.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@distillery/runtime/rng';
import { heunEvaluations, heunSample, samplerSigmas, type EdmConfig } from './edm.js';
import { adam, ConditionedNet, exportConditionedOnnx, saveWeights, trainStep, type ConditionedSpec } from './nets.js';
import { readSampleSet, writeSampleSet } from './io.js';
import { DenoiserSession } from './ort.js';
import { writeSamplePicture } from './png.js';

/** Files of a teacher artifact. */
export const TEACHER_FILES = { onnx: 'teacher.onnx', weights: 'teacher.weights.json', info: 'teacher.json' } as const;

/** teacher.json: what the teacher is and how it was trained. */
export interface TeacherInfo {
  spec: ConditionedSpec;
  shape: number[];
  parameters: number;
  steps: number;
  finalLoss: number;
}

export interface TeacherTrainConfig {
  hidden: number[];
  steps: number;
  batchSize: number;
  lr: number;
  edm: EdmConfig;
  /** Log-normal training sigmas: ln sigma ~ N(pMean, pStd^2) (EDM). */
  pMean: number;
  pStd: number;
  /** EMA decay of the exported weights (warm-up min(decay, (1+t)/(10+t))). */
  emaDecay: number;
  split?: string;
  seed: number;
}

export interface Hooks {
  log(message: string): void;
  progress(done: number, total: number): void;
  metric(name: string, value: number, step?: number): void;
  signal: AbortSignal;
}

/** Trains the teacher on `datasetDir` and writes TEACHER_FILES into `outDir`. */
export async function trainTeacher(
  datasetDir: string,
  outDir: string,
  cfg: TeacherTrainConfig,
  hooks: Hooks,
): Promise<TeacherInfo> {
  const data = await readSampleSet(datasetDir, cfg.split === undefined ? {} : { split: cfg.split });
  const spec: ConditionedSpec = {
    kind: 'denoiser',
    dim: data.dim,
    numClasses: data.numClasses,
    hidden: cfg.hidden,
    edm: cfg.edm,
  };
  const net = new ConditionedNet(spec, cfg.seed, 'denoiser');
  const ema = new ConditionedNet(spec, cfg.seed, 'denoiser');
  ema.copyFrom(net);
  const opt = adam(net.params, cfg.lr);
  const rng = new Rng(cfg.seed + 1);
  const B = cfg.batchSize;
  const D = data.dim;
  let loss = NaN;
  let smoothed = NaN;
  const started = Date.now();
  for (let step = 0; step < cfg.steps; step++) {
    if (hooks.signal.aborted) throw new Error('teacher training cancelled');
    const x0 = new Float32Array(B * D);
    const classes = new Int32Array(B);
    const sigmas = new Float32Array(B);
    const noise = new Float32Array(B * D);
    for (let i = 0; i < B; i++) {
      const r = rng.int(data.n);
      x0.set(data.x.subarray(r * D, (r + 1) * D), i * D);
      classes[i] = data.labels[r]!;
      sigmas[i] = Math.exp(cfg.pMean + cfg.pStd * rng.normal());
    }
    for (let i = 0; i < noise.length; i++) noise[i] = rng.normal();
    loss = trainStep(opt, net.params, () =>
      tf.tidy(() => net.denoisingLoss(tf.tensor2d(x0, [B, D]), sigmas, tf.tensor2d(noise, [B, D]), classes)),
    );
    if (!Number.isFinite(loss)) throw new Error(`teacher training diverged at step ${step} (loss ${loss})`);
    smoothed = Number.isNaN(smoothed) ? loss : 0.98 * smoothed + 0.02 * loss;
    const decay = Math.min(cfg.emaDecay, (1 + step) / (10 + step));
    tf.tidy(() => {
      ema.params.forEach((p, i) =>
        p.variable.assign(tf.add(tf.mul(p.variable, decay), tf.mul(net.params[i]!.variable, 1 - decay))),
      );
    });
    if (step % 100 === 0 || step + 1 === cfg.steps) {
      hooks.metric('loss', smoothed, step);
      hooks.progress(step + 1, cfg.steps);
    }
  }
  hooks.log(
    `teacher: ${cfg.steps} steps in ${((Date.now() - started) / 1000).toFixed(1)} s, smoothed loss ${smoothed.toFixed(4)}`,
  );
  exportConditionedOnnx(ema, join(outDir, TEACHER_FILES.onnx), 'denoiser', {
    'distillery.shape': JSON.stringify(data.shape),
  });
  saveWeights(join(outDir, TEACHER_FILES.weights), spec, ema.params);
  const info: TeacherInfo = {
    spec,
    shape: data.shape,
    parameters: ema.mlp.parameterCount(),
    steps: cfg.steps,
    finalLoss: smoothed,
  };
  writeFileSync(join(outDir, TEACHER_FILES.info), JSON.stringify(info, null, 2));
  net.dispose();
  ema.dispose();
  opt.dispose();
  return info;
}

export interface SampleConfig {
  perClass: number;
  steps: number;
  batchSize: number;
  seed: number;
  threads: number;
}

/** Balanced classes (sample i has class i mod C within each class block) and unit-normal noise. */
export function noiseAndClasses(
  n: number,
  dim: number,
  classes: readonly number[],
  seed: number,
): { noise: Float32Array; labels: Int32Array } {
  const rng = new Rng(seed);
  const noise = new Float32Array(n * dim);
  for (let i = 0; i < noise.length; i++) noise[i] = rng.normal();
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = classes[i % classes.length]!;
  return { noise, labels };
}

/** Samples the teacher with Heun through onnxruntime; writes a generated-sample set + grid.png. */
export async function sampleTeacher(
  teacherDir: string,
  outDir: string,
  info: TeacherInfo,
  cfg: SampleConfig,
  hooks: Hooks,
): Promise<{ samples: number; nfe: number; msPerSample: number }> {
  const { dim, numClasses, edm } = info.spec;
  const n = cfg.perClass * numClasses;
  const { noise, labels } = noiseAndClasses(
    n,
    dim,
    Array.from({ length: numClasses }, (_, c) => c),
    cfg.seed,
  );
  const session = await DenoiserSession.open(join(teacherDir, TEACHER_FILES.onnx), dim, { threads: cfg.threads });
  const sigmas = samplerSigmas(cfg.steps, edm);
  const x = new Float32Array(n * dim);
  const started = Date.now();
  try {
    for (let a = 0; a < n; a += cfg.batchSize) {
      if (hooks.signal.aborted) throw new Error('sampling cancelled');
      const b = Math.min(n, a + cfg.batchSize);
      const cls = labels.subarray(a, b);
      const out = await heunSample(noise.subarray(a * dim, b * dim), sigmas, (xs, s) => session.denoise(xs, s, cls));
      x.set(out, a * dim);
      hooks.progress(b, n);
    }
  } finally {
    await session.release();
  }
  const msPerSample = (Date.now() - started) / n;
  const nfe = heunEvaluations(cfg.steps);
  await writeSampleSet(
    join(outDir, 'samples'),
    { x, noise, labels, shape: info.shape, numClasses },
    { 'distillery.generator': `teacher heun ${cfg.steps} sigmas`, 'distillery.nfe': String(nfe) },
  );
  writeSamplePicture(join(outDir, 'grid.png'), x, labels, info.shape, numClasses);
  return { samples: n, nfe, msPerSample };
}
