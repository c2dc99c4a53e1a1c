/**
 * f-distill (docs/methods.md, "f-distill: f-divergence distribution matching"): a one-step generator G(z, c) = D_theta(sigmaMax z; sigmaMax, c)
 * trained by f-divergence distribution matching against the ONNX teacher.
 *
 * One generator step:
 *  0. For the first `warmupSteps` generator steps h = 1 (the reverse-KL gradient) while the
 *     discriminator trains, then the ratio weighting h(r) of the chosen divergence.
 *  1. `fakeUpdates` times: the fake-score denoiser learns the generator's distribution (EDM
 *     denoising loss on detached generator samples) and the discriminator learns real vs fake
 *     noised samples (softplus(D(fake)) + softplus(-D(real)), same sigmas for both).
 *  2. x0 = G(z, c), x_t = x0 + sigma eps with sigma on the sampler's rho path at u ~ U[uMin, uMax].
 *     Teacher denoiser (onnxruntime, no gradient) and fake denoiser give D_teacher, D_fake; since
 *     s = (D - x) / sigma^2, s_fake - s_teacher = (D_fake - D_teacher) / sigma^2. The weight
 *     w_t = sigma^2 / mean_d |x0 - D_teacher(x_t)| (DMD's normalisation) makes the per-sample
 *     gradient on x_t: g = h(r) (D_fake - D_teacher) / mean_d |x0 - D_teacher|, with h(r) from
 *     divergence.ts. dx_t/dtheta = dx0/dtheta, so the update is the vector-Jacobian product
 *     d/dtheta mean(x0 * stopgrad(g)) computed by tfjs, plus ganWeight * mean softplus(-D(x_t))
 *     (non-saturating GAN term, gradient through the discriminator into G) and
 *     regressionWeight * mean (G(z_pair, c) - x_pair)^2 on the teacher's (noise, sample) pairs.
 */
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@distillery/runtime/rng';
import { sigmaAtFraction } from './edm.js';
import { generatorWeights, RatioNormaliser, type DivergenceName, type RatioOptions } from './divergence.js';
import {
  adam,
  ConditionedNet,
  exportConditionedOnnx,
  loadWeights,
  readWeightSpec,
  saveWeights,
  trainStep,
  type ConditionedSpec,
} from './nets.js';
import { readSampleSet, rowsOfClasses, type SampleSet } from './io.js';
import { DenoiserSession } from './ort.js';
import { TEACHER_FILES, type Hooks, type TeacherInfo } from './teacher.js';

/** Files of a generator artifact. */
export const GENERATOR_FILES = {
  onnx: 'generator.onnx',
  weights: 'generator.weights.json',
  info: 'generator.json',
} as const;

/** generator.json: the generator and the classes it owns (the class -> generator map is built from these). */
export interface GeneratorInfo {
  spec: ConditionedSpec;
  shape: number[];
  classes: number[];
  numClasses: number;
  divergence: DivergenceName;
  steps: number;
  init: 'teacher' | 'random';
  parameters: number;
}

export interface DistillConfig {
  divergence: DivergenceName;
  steps: number;
  batchSize: number;
  lrGenerator: number;
  lrFake: number;
  lrDiscriminator: number;
  fakeUpdates: number;
  /** Generator steps at the start with h = 1 (discriminator warm-up) before the ratio weighting. */
  warmupSteps: number;
  ganWeight: number;
  regressionWeight: number;
  init: 'teacher' | 'random';
  discriminatorHidden: number[];
  uMin: number;
  uMax: number;
  ratio: RatioOptions;
  /** Classes this generator owns. */
  classes: number[];
  realSplit?: string;
  seed: number;
  threads: number;
}

function softplus(x: tf.Tensor): tf.Tensor {
  return tf.softplus(x);
}

/** Runs f-distill; writes GENERATOR_FILES into outDir. */
export async function runDistill(
  io: { teacherDir: string; realDir: string; pairsDir?: string; outDir: string },
  cfg: DistillConfig,
  hooks: Hooks,
): Promise<{ info: GeneratorInfo; metrics: Record<string, number> }> {
  const teacherInfo = JSON.parse(readFileSync(join(io.teacherDir, TEACHER_FILES.info), 'utf8')) as TeacherInfo;
  const spec = teacherInfo.spec;
  const { dim: D, numClasses: C, edm } = spec;
  for (const c of cfg.classes)
    if (!Number.isInteger(c) || c < 0 || c >= C) throw new Error(`classes: ${c} is outside the teacher's [0, ${C})`);
  const teacherWeights = readWeightSpec<ConditionedSpec>(join(io.teacherDir, TEACHER_FILES.weights));

  const G = new ConditionedNet(spec, cfg.seed, 'denoiser');
  if (cfg.init === 'teacher') loadWeights(io.teacherDir, teacherWeights, G.params);
  const sigmaMax = edm.sigmaMax;
  const generate = (z: tf.Tensor2D, classes: ArrayLike<number>): tf.Tensor2D =>
    G.apply(tf.mul(z, sigmaMax) as tf.Tensor2D, new Float32Array(classes.length).fill(sigmaMax), classes);

  const finish = async (metrics: Record<string, number>) => {
    const info: GeneratorInfo = {
      spec,
      shape: teacherInfo.shape,
      classes: cfg.classes,
      numClasses: C,
      divergence: cfg.divergence,
      steps: cfg.steps,
      init: cfg.init,
      parameters: G.mlp.parameterCount(),
    };
    exportConditionedOnnx(G, join(io.outDir, GENERATOR_FILES.onnx), 'generator', {
      'distillery.classes': JSON.stringify(cfg.classes),
    });
    saveWeights(join(io.outDir, GENERATOR_FILES.weights), spec, G.params);
    writeFileSync(join(io.outDir, GENERATOR_FILES.info), JSON.stringify(info, null, 2));
    return { info, metrics };
  };
  if (cfg.steps === 0) return finish({ steps: 0 });

  const fake = new ConditionedNet(spec, cfg.seed + 1, 'fake');
  loadWeights(io.teacherDir, teacherWeights, fake.params, (n) => n.replace(/^fake\./, 'denoiser.'));
  const disc = new ConditionedNet({ ...spec, kind: 'logit', hidden: cfg.discriminatorHidden }, cfg.seed + 2, 'disc');
  const teacher = await DenoiserSession.open(join(io.teacherDir, TEACHER_FILES.onnx), D, { threads: cfg.threads });

  const realAll = await readSampleSet(io.realDir, cfg.realSplit === undefined ? {} : { split: cfg.realSplit });
  if (realAll.dim !== D)
    throw new Error(`${io.realDir}: data dimension ${realAll.dim} differs from the teacher's ${D}`);
  const realRows = rowsOfClasses(realAll.labels, cfg.classes);
  if (realRows.length === 0)
    throw new Error(`${io.realDir}: no real samples of classes ${JSON.stringify(cfg.classes)}`);
  let pairs: SampleSet | undefined;
  let pairRows: Int32Array = new Int32Array(0);
  if (io.pairsDir !== undefined && cfg.regressionWeight > 0) {
    pairs = await readSampleSet(io.pairsDir);
    if (!pairs.noise) throw new Error(`${io.pairsDir}: regression pairs need a generated-sample set (noise column)`);
    pairRows = rowsOfClasses(pairs.labels, cfg.classes);
    if (pairRows.length === 0)
      throw new Error(`${io.pairsDir}: no teacher pairs of classes ${JSON.stringify(cfg.classes)}`);
  }

  const optG = adam(G.params, cfg.lrGenerator, 0, 0.99);
  const optFake = adam(fake.params, cfg.lrFake, 0, 0.99);
  const optD = adam(disc.params, cfg.lrDiscriminator, 0, 0.99);
  const normaliser = new RatioNormaliser(cfg.ratio);
  const rng = new Rng(cfg.seed);
  const B = cfg.batchSize;
  const normals = (count: number) => {
    const a = new Float32Array(count);
    for (let i = 0; i < count; i++) a[i] = rng.normal();
    return a;
  };
  const drawClasses = () => Int32Array.from({ length: B }, () => cfg.classes[rng.int(cfg.classes.length)]!);
  const drawNoiseLevels = () => {
    const u = new Float32Array(B);
    const sigmas = new Float32Array(B);
    for (let i = 0; i < B; i++) {
      u[i] = cfg.uMin + (cfg.uMax - cfg.uMin) * rng.next();
      sigmas[i] = sigmaAtFraction(u[i]!, edm);
    }
    return { u, sigmas };
  };
  const sample = (classes: Int32Array) => tf.tidy(() => generate(tf.tensor2d(normals(B * D), [B, D]), classes));

  let fakeLoss = NaN;
  let discLoss = NaN;
  let meanRRaw = NaN;
  let hSpread = NaN;
  const started = Date.now();
  for (let step = 0; step < cfg.steps; step++) {
    if (hooks.signal.aborted) throw new Error('f-distill cancelled');
    for (let j = 0; j < cfg.fakeUpdates; j++) {
      const classes = drawClasses();
      const x0 = sample(classes);
      const { sigmas } = drawNoiseLevels();
      const noise = normals(B * D);
      fakeLoss = trainStep(optFake, fake.params, () =>
        tf.tidy(() => fake.denoisingLoss(x0, sigmas, tf.tensor2d(noise, [B, D]), classes)),
      );
      // Discriminator: real batch of the same classes' pool, fake batch, shared sigmas.
      const realX = new Float32Array(B * D);
      const realC = new Int32Array(B);
      for (let i = 0; i < B; i++) {
        const r = realRows[rng.int(realRows.length)]!;
        realX.set(realAll.x.subarray(r * D, (r + 1) * D), i * D);
        realC[i] = realAll.labels[r]!;
      }
      const nReal = normals(B * D);
      const nFake = normals(B * D);
      discLoss = trainStep(optD, disc.params, () =>
        tf.tidy(() => {
          const sig = tf.tensor2d(sigmas, [B, 1]);
          const xr = tf.add(tf.tensor2d(realX, [B, D]), tf.mul(tf.tensor2d(nReal, [B, D]), sig)) as tf.Tensor2D;
          const xf = tf.add(x0, tf.mul(tf.tensor2d(nFake, [B, D]), sig)) as tf.Tensor2D;
          return tf.add(
            tf.mean(softplus(disc.apply(xf, sigmas, classes))),
            tf.mean(softplus(tf.neg(disc.apply(xr, sigmas, realC)))),
          ) as tf.Scalar;
        }),
      );
      x0.dispose();
    }

    // Generator step: per-sample gradient on x_t from the scores, then the VJP through G.
    const classes = drawClasses();
    const z = normals(B * D);
    const eps = normals(B * D);
    const { u, sigmas } = drawNoiseLevels();
    const x0Val = tf.tidy(() => generate(tf.tensor2d(z, [B, D]), classes));
    const x0Data = x0Val.dataSync() as Float32Array;
    x0Val.dispose();
    const xt = new Float32Array(B * D);
    for (let i = 0; i < B; i++)
      for (let d = 0; d < D; d++) xt[i * D + d] = x0Data[i * D + d]! + sigmas[i]! * eps[i * D + d]!;
    const dTeacher = await teacher.denoise(xt, sigmas, classes);
    const { dFake, logits } = tf.tidy(() => {
      const xtT = tf.tensor2d(xt, [B, D]);
      return {
        dFake: fake.apply(xtT, sigmas, classes).dataSync() as Float32Array,
        logits: disc.apply(xtT, sigmas, classes).dataSync() as Float32Array,
      };
    });
    const { rRaw, h } = generatorWeights(normaliser, cfg.divergence, logits, u, step, cfg.warmupSteps);
    const g = new Float32Array(B * D);
    let hMin = Infinity;
    let hMax = -Infinity;
    for (let i = 0; i < B; i++) {
      let meanAbs = 0;
      for (let d = 0; d < D; d++) meanAbs += Math.abs(x0Data[i * D + d]! - dTeacher[i * D + d]!);
      meanAbs = Math.max(meanAbs / D, 1e-5);
      const scale = h[i]! / meanAbs;
      for (let d = 0; d < D; d++) g[i * D + d] = scale * (dFake[i * D + d]! - dTeacher[i * D + d]!);
      hMin = Math.min(hMin, h[i]!);
      hMax = Math.max(hMax, h[i]!);
    }
    meanRRaw = rRaw.reduce((a, b) => a + b, 0) / B;
    hSpread = hMax - hMin;
    let pairZ: Float32Array | undefined;
    let pairX: Float32Array | undefined;
    let pairC: Int32Array | undefined;
    if (pairs && pairRows.length > 0) {
      pairZ = new Float32Array(B * D);
      pairX = new Float32Array(B * D);
      pairC = new Int32Array(B);
      for (let i = 0; i < B; i++) {
        const r = pairRows[rng.int(pairRows.length)]!;
        pairZ.set(pairs.noise!.subarray(r * D, (r + 1) * D), i * D);
        pairX.set(pairs.x.subarray(r * D, (r + 1) * D), i * D);
        pairC[i] = pairs.labels[r]!;
      }
    }
    const sigCol = Float32Array.from(sigmas);
    trainStep(optG, G.params, () =>
      tf.tidy(() => {
        const x0 = generate(tf.tensor2d(z, [B, D]), classes);
        let loss = tf.div(tf.sum(tf.mul(x0, tf.tensor2d(g, [B, D]))), B * D) as tf.Scalar;
        if (cfg.ganWeight > 0) {
          const xtT = tf.add(x0, tf.mul(tf.tensor2d(eps, [B, D]), tf.tensor2d(sigCol, [B, 1]))) as tf.Tensor2D;
          loss = tf.add(
            loss,
            tf.mul(tf.mean(softplus(tf.neg(disc.apply(xtT, sigmas, classes, true)))), cfg.ganWeight),
          ) as tf.Scalar;
        }
        if (pairZ && pairX && pairC) {
          const reg = tf.mean(
            tf.square(tf.sub(generate(tf.tensor2d(pairZ, [B, D]), pairC), tf.tensor2d(pairX, [B, D]))),
          );
          loss = tf.add(loss, tf.mul(reg, cfg.regressionWeight)) as tf.Scalar;
        }
        return loss;
      }),
    );
    if (step % 20 === 0 || step + 1 === cfg.steps) {
      hooks.metric('fake_loss', fakeLoss, step);
      hooks.metric('disc_loss', discLoss, step);
      hooks.metric('mean_r_raw', meanRRaw, step);
      hooks.metric('h_spread', hSpread, step);
      hooks.progress(step + 1, cfg.steps);
    }
    if (!Number.isFinite(fakeLoss) || !Number.isFinite(discLoss))
      throw new Error(`f-distill diverged at step ${step} (fake loss ${fakeLoss}, discriminator loss ${discLoss})`);
  }
  const seconds = (Date.now() - started) / 1000;
  hooks.log(
    `f-distill ${cfg.divergence}: ${cfg.steps} generator steps in ${seconds.toFixed(1)} s (classes ${JSON.stringify(cfg.classes)})`,
  );
  await teacher.release();
  const result = await finish({ fake_loss: fakeLoss, disc_loss: discLoss, mean_r_raw: meanRRaw, seconds });
  for (const o of [optG, optFake, optD]) o.dispose();
  for (const n of [fake, disc, G]) n.dispose();
  return result;
}
