/**
 * Training a CenterNet detector (./detector.ts) on a detection split, from hard labels and/or one
 * or several teacher detectors' stored outputs (docs/methods.md, "Detector training and
 * distillation losses"):
 *
 *   loss = hard * (focal + sizeWeight * L1(size) + offsetWeight * L1(offset))
 *        + sum_k w_k * (kd.heatmap * heatmapKd_k + kd.box * boxKd_k + kd.feature * featureMse_k)
 *        + adversarial.weight * softplus(-D(adapter(student feature)))       (after adversarial.startStep)
 *
 * w_k are the teacher weights (normalised to sum 1). The adapter (1x1 conv, student feature ->
 * teacher feature channels) and the discriminator D (1x1 conv -> relu -> 1x1 conv, a logit per cell)
 * train with the student but are not exported. D takes one Adam step per student step on
 * softplus(-D(teacher features)) + softplus(D(adapted student features)), the student's features
 * held fixed.
 */
import { join } from 'node:path';
import { writeFileAtomicSync } from '@distillery/core/plugin';
import { conv2d } from '@distillery/runtime/tfjs';
import { adamConfig, Optimizer, scheduleFactor, type NamedVariable } from '@distillery/runtime/optim';
import { Rng } from '@distillery/runtime/rng';
import * as tf from '@tensorflow/tfjs-core';
import { batchTensors, disposeBatch, epochBatches, openDetectionData, type BatchTensors } from './data.js';
import { Detector, type DetectorConfig } from './detector.js';
import { boxKd, centerNetFocal, discriminatorLoss, featureMse, generatorLoss, heatmapKd, maskedL1 } from './losses.js';

export interface DetectTrainConfig {
  detector: DetectorConfig;
  split: string;
  epochs: number;
  /** Stop after this many steps (0 = every epoch): smoke runs. */
  maxSteps: number;
  batchSize: number;
  lr: number;
  schedule: 'cosine' | 'constant';
  /** Samples held by the shuffle buffer. */
  bufferSize: number;
  seed: number;
  /** Weights of the hard-label terms. */
  hard: number;
  sizeWeight: number;
  offsetWeight: number;
  kd: { heatmap: number; temperature: number; box: number; feature: number; teacherWeights: number[] };
  adversarial: { weight: number; startStep: number; lr: number; width: number };
}

export interface TrainHooks {
  log(message: string): void;
  progress(done: number, total: number): void;
  metric(name: string, value: number, step?: number): void;
  signal: AbortSignal;
}

/** training.json: what was trained and how it went. */
export interface DetectTrainInfo {
  detector: DetectorConfig;
  geometry: Detector['geometry'];
  parameters: number;
  steps: number;
  epochs: number;
  rows: number;
  teachers: number;
  seconds: number;
  /** Smoothed (EMA 0.98) final values of each loss term. */
  finalLosses: Record<string, number>;
}

/** The 1x1 conv layers of the adapter and the discriminator. */
interface Conv1x1 {
  w: tf.Variable;
  b: tf.Variable;
}

function conv1x1(rng: Rng, name: string, cin: number, cout: number, into: NamedVariable[]): Conv1x1 {
  const std = Math.sqrt(2 / cin);
  const w = new Float32Array(cin * cout);
  for (let i = 0; i < w.length; i++) w[i] = rng.normal() * std;
  const layer = {
    w: tf.variable(tf.tensor4d(w, [1, 1, cin, cout]), true),
    b: tf.variable(tf.zeros([cout]), true),
  };
  into.push({ name: `${name}.weight`, variable: layer.w }, { name: `${name}.bias`, variable: layer.b });
  return layer;
}

function applyConv1x1(x: tf.Tensor4D, layer: Conv1x1, activation: 'linear' | 'relu'): tf.Tensor4D {
  return conv2d(x, layer.w as tf.Tensor4D, layer.b as tf.Tensor1D, { padding: 'same', activation, inputGrad: true });
}

/** Checks the configuration against the teachers given; throws naming the parameter. */
function checkConfig(cfg: DetectTrainConfig, teachers: number): void {
  const kdOn = cfg.kd.heatmap > 0 || cfg.kd.box > 0 || cfg.kd.feature > 0 || cfg.adversarial.weight > 0;
  if (kdOn && teachers === 0)
    throw new Error(
      'detect-train: kd / adversarial weights are set but no teacher outputs are given (input "teachers")',
    );
  if (!kdOn && cfg.hard <= 0) throw new Error('detect-train: every loss weight is 0 (hard, kd.*, adversarial.weight)');
  if (cfg.kd.teacherWeights.length > 0 && cfg.kd.teacherWeights.length !== teachers)
    throw new Error(
      `detect-train: kd.teacherWeights has ${cfg.kd.teacherWeights.length} entries for ${teachers} teachers`,
    );
}

/** Trains, writes model.onnx and training.json into outDir, returns the info. */
export async function trainDetector(
  datasetDir: string,
  teacherDirs: readonly string[],
  outDir: string,
  cfg: DetectTrainConfig,
  hooks: TrainHooks,
): Promise<DetectTrainInfo> {
  checkConfig(cfg, teacherDirs.length);
  const needFeatures = cfg.kd.feature > 0 || cfg.adversarial.weight > 0;
  const data = await openDetectionData(datasetDir, teacherDirs, cfg.split, needFeatures);
  const detector = new Detector(cfg.detector, { width: data.width, height: data.height }, data.numClasses, cfg.seed);
  const geometry = detector.geometry;
  for (const t of data.teachers)
    if (t.geometry.stride !== geometry.stride)
      throw new Error(
        `teacher ${t.where}: output stride ${t.geometry.stride}, the student's is ${geometry.stride} (set pools to match)`,
      );
  const teacherFeatures = data.teachers.map((t) => t.geometry.featureChannels);
  if (needFeatures && new Set(teacherFeatures).size > 1)
    throw new Error(
      `detect-train: feature / adversarial distillation needs teachers with equal feature channels, got ${teacherFeatures.join(', ')}`,
    );
  const rawWeights = cfg.kd.teacherWeights.length > 0 ? cfg.kd.teacherWeights : data.teachers.map(() => 1);
  const weightSum = rawWeights.reduce((a, b) => a + b, 0);
  if (data.teachers.length > 0 && !(weightSum > 0)) throw new Error('detect-train: kd.teacherWeights must sum to > 0');
  const teacherWeights = rawWeights.map((w) => w / weightSum);

  const rng = new Rng(cfg.seed + 7);
  const extra: NamedVariable[] = [];
  const adapter = needFeatures
    ? conv1x1(rng, 'adapter', geometry.featureChannels, teacherFeatures[0]!, extra)
    : undefined;
  const discParams: NamedVariable[] = [];
  const disc =
    cfg.adversarial.weight > 0
      ? [
          conv1x1(rng, 'disc.0', teacherFeatures[0]!, cfg.adversarial.width, discParams),
          conv1x1(rng, 'disc.1', cfg.adversarial.width, 1, discParams),
        ]
      : undefined;
  const discriminate = (f: tf.Tensor4D) => applyConv1x1(applyConv1x1(f, disc![0]!, 'relu'), disc![1]!, 'linear');
  const params = [...detector.params, ...extra];
  const optimizer = new Optimizer(adamConfig(cfg.lr), params);
  const discOptimizer = disc ? new Optimizer(adamConfig(cfg.adversarial.lr, 0.5, 0.999), discParams) : undefined;
  const stepsPerEpoch = Math.floor(data.rows / cfg.batchSize);
  if (stepsPerEpoch === 0)
    throw new Error(`detect-train: batchSize ${cfg.batchSize} is larger than split "${cfg.split}" (${data.rows} rows)`);
  const totalSteps = cfg.maxSteps > 0 ? Math.min(cfg.maxSteps, cfg.epochs * stepsPerEpoch) : cfg.epochs * stepsPerEpoch;
  const schedule = { name: cfg.schedule, warmupSteps: 0, stepSize: 1, gamma: 1, minFactor: 0 } as const;
  hooks.log(
    `detector: ${detector.parameterCount()} parameters, stride ${geometry.stride}, ${data.rows} rows of "${cfg.split}", ${data.teachers.length} teacher(s), ${totalSteps} steps`,
  );
  const smoothed: Record<string, number> = {};
  const record = (name: string, value: number) => {
    smoothed[name] = smoothed[name] === undefined ? value : 0.98 * smoothed[name]! + 0.02 * value;
  };
  const started = Date.now();
  let step = 0;
  let epoch = 0;
  for (; epoch < cfg.epochs && step < totalSteps; epoch++) {
    for await (const samples of epochBatches(data, cfg.batchSize, cfg.bufferSize, cfg.seed, epoch)) {
      if (step >= totalSteps) break;
      if (hooks.signal.aborted) throw new Error('detect-train cancelled');
      const batch = batchTensors(samples, geometry, data.readFeatures ? teacherFeatures : teacherFeatures.map(() => 0));
      const adversarialOn = disc !== undefined && step >= cfg.adversarial.startStep;
      let fakeFeature: tf.Tensor4D | undefined;
      const terms: Record<string, number> = {};
      try {
        const { value, grads } = tf.variableGrads(
          () => {
            const { loss, adapted } = studentLoss(
              detector,
              batch,
              cfg,
              teacherWeights,
              adapter,
              adversarialOn ? discriminate : undefined,
              terms,
            );
            if (adversarialOn && adapted) fakeFeature = tf.keep(adapted.clone());
            return loss;
          },
          params.map((p) => p.variable),
        );
        const total = value.dataSync()[0]!;
        value.dispose();
        if (!Number.isFinite(total)) throw new Error(`detect-train: loss is ${total} at step ${step} (lower lr?)`);
        const named: Record<string, tf.Tensor> = {};
        for (const p of params) if (grads[p.variable.name]) named[p.name] = grads[p.variable.name]!;
        optimizer.apply(named, cfg.lr * scheduleFactor(schedule, step, totalSteps));
        record('total', total);
        if (fakeFeature && discOptimizer) {
          const fake = fakeFeature;
          const real = tf.concat(
            batch.teachers.map((t) => t.feature!),
            0,
          ) as tf.Tensor4D;
          const d = tf.variableGrads(
            () => discriminatorLoss(discriminate(real), discriminate(fake)),
            discParams.map((p) => p.variable),
          );
          const dNamed: Record<string, tf.Tensor> = {};
          for (const p of discParams) if (d.grads[p.variable.name]) dNamed[p.name] = d.grads[p.variable.name]!;
          record('discriminator', d.value.dataSync()[0]!);
          d.value.dispose();
          discOptimizer.apply(dNamed, cfg.adversarial.lr);
          real.dispose();
        }
      } finally {
        fakeFeature?.dispose();
        disposeBatch(batch);
      }
      for (const [name, v] of Object.entries(terms)) record(name, v);
      step++;
      if (step % 20 === 0 || step === totalSteps) {
        for (const [name, v] of Object.entries(smoothed)) hooks.metric(`loss.${name}`, v, step);
        hooks.progress(step, totalSteps);
      }
    }
  }
  const seconds = (Date.now() - started) / 1000;
  hooks.log(`detector: ${step} steps in ${seconds.toFixed(1)} s; smoothed loss ${smoothed.total?.toFixed(4)}`);
  const info: DetectTrainInfo = {
    detector: cfg.detector,
    geometry,
    parameters: detector.parameterCount(),
    steps: step,
    epochs: epoch,
    rows: data.rows,
    teachers: data.teachers.length,
    seconds,
    finalLosses: smoothed,
  };
  detector.writeOnnx(join(outDir, 'model.onnx'), { 'distillery.seed': String(cfg.seed) });
  writeFileAtomicSync(join(outDir, 'training.json'), `${JSON.stringify(info, null, 2)}\n`);
  for (const p of [...params, ...discParams]) p.variable.dispose();
  optimizer.dispose();
  discOptimizer?.dispose();
  return info;
}

/**
 * The student's loss for one batch (the module comment's formula), recording each term's value
 * into `terms` (numbers read after the step). Returns the adapted student feature too (for the
 * discriminator's step).
 */
export function studentLoss(
  detector: Detector,
  batch: BatchTensors,
  cfg: Pick<DetectTrainConfig, 'hard' | 'sizeWeight' | 'offsetWeight' | 'kd' | 'adversarial'>,
  teacherWeights: readonly number[],
  adapter: Conv1x1 | undefined,
  discriminate: ((f: tf.Tensor4D) => tf.Tensor) | undefined,
  terms: Record<string, number>,
): { loss: tf.Scalar; adapted?: tf.Tensor4D } {
  const out = detector.apply(batch.x);
  const parts: [string, number, tf.Scalar][] = [];
  if (cfg.hard > 0) {
    parts.push(['focal', cfg.hard, centerNetFocal(out.heatmapLogits, batch.heatmap, batch.positive, batch.peaks)]);
    parts.push(['size', cfg.hard * cfg.sizeWeight, maskedL1(out.size, batch.size, batch.mask, batch.centres)]);
    parts.push(['offset', cfg.hard * cfg.offsetWeight, maskedL1(out.offset, batch.offset, batch.mask, batch.centres)]);
  }
  const adapted = adapter ? applyConv1x1(out.feature, adapter, 'linear') : undefined;
  batch.teachers.forEach((t, k) => {
    const w = teacherWeights[k]!;
    if (cfg.kd.heatmap > 0)
      parts.push([
        `kd_heatmap.${k}`,
        w * cfg.kd.heatmap,
        heatmapKd(out.heatmapLogits, t.heatmapLogits, cfg.kd.temperature, batch.peaks),
      ]);
    if (cfg.kd.box > 0) {
      const weight = tf.max(tf.sigmoid(t.heatmapLogits), 3, true) as tf.Tensor4D;
      parts.push([`kd_box.${k}`, w * cfg.kd.box, boxKd(out, t, weight)]);
    }
    if (cfg.kd.feature > 0 && adapted && t.feature)
      parts.push([`kd_feature.${k}`, w * cfg.kd.feature, featureMse(adapted, t.feature)]);
  });
  if (discriminate && adapted)
    parts.push(['adversarial', cfg.adversarial.weight, generatorLoss(discriminate(adapted))]);
  let loss = tf.scalar(0);
  for (const [name, weight, value] of parts) {
    // dataSync on a scalar already computed for the loss: the value is read, not recomputed.
    terms[name] = value.dataSync()[0]!;
    loss = tf.add(loss, tf.mul(value, weight));
  }
  return adapted ? { loss, adapted } : { loss };
}
