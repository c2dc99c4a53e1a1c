/**
 * The training loop: minibatches from data.ts, loss from losses/, optimiser from optim.ts,
 * checkpoints in the stage's state directory (resume after a kill), metrics and progress through
 * the stage context, a stop on NaN/Inf naming the step and the loss term, ONNX export at the end.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileAtomicSync } from '@distillery/core/plugin';
import { GraphBuilder, writeModelFile, type OnnxModel } from '@distillery/runtime/onnx';
import { initStudentFromOnnx } from './init.js';
import { imprintHeads } from './imprint.js';
import {
  augmentImages,
  epochBatches,
  inputTensor,
  inputValues,
  type AugmentConfig,
  type Sample,
  type TrainingData,
} from './data.js';
import type { DenseTarget, DivergenceName } from './losses/index.js';
import {
  decoupledKdLoss,
  hardLabelLoss,
  sampledSigmoidLoss,
  sigmoidKdLoss,
  softmaxKdLoss,
  withFeatureTerm,
  type StudentOutputs,
  type TrainingLoss,
} from './losses/objective.js';
import { createStudent, parameterCount, type Student, type StudentConfig } from './models/student.js';
import {
  clipByGlobalNorm,
  Optimizer,
  scheduleFactor,
  type OptimizerConfig,
  type ScheduleConfig,
} from '@distillery/runtime/optim';
import type { SparseRow } from './losses/sampled.js';
import { Rng } from './rng.js';
import { validationTop1 } from './validate.js';
import { SparseHead, type SparseHeadStep } from './sparse-head.js';
import type { Imprintable } from './imprint.js';
import { createFeatureTerm, type FeatureConfig, type FeatureTerm } from './features.js';
import {
  chooseSource,
  kcTarget,
  kcTargetRows,
  softTarget,
  teacherClasses,
  type SoftLabelSource,
  type TopkPolicy,
} from './targets.js';

/** What to learn from. */
export interface LossConfig {
  /**
   * ce: hard labels only (no teacher); kd: alpha * CE + (1-alpha) * T^2 * D(teacher || student);
   * sigmoid_kd: BCE against teacher sigmoids; kc: Knowledge Concentration (sigmoid BCE against the
   * label's vertical teacher, several teachers); sigmoid_ce: hard labels with per-class sigmoid
   * cross-entropy (one-hot or multi-hot), also on single-label data; dkd: decoupled KD
   * (losses/dkd.ts) from dense teacher logits plus dkd.ceWeight * CE.
   */
  kind: 'ce' | 'sigmoid_ce' | 'kd' | 'sigmoid_kd' | 'kc' | 'dkd';
  divergence: DivergenceName;
  temperature: number;
  alpha: number;
  skew: number;
  softLabels: SoftLabelSource | 'auto';
  topkPolicy: TopkPolicy;
  /** kc: teacher outputs kept per sample (below the teacher's top-K the target is 0). */
  kcTopK: number;
  /** kc: weight of the one-hot ground truth mixed into the target. */
  kcGtMix: number;
  /**
   * Sigmoid losses (sigmoid_ce, ce on multi-label data, kc): 0 = every class; R > 0 = the batch's
   * positive classes plus R shared uniform negatives reweighted to the full sum (losses/sampled.ts).
   */
  sampledNegatives: number;
  /** dkd: TCKD and NCKD weights, the CE weight and the DKD warm-up (losses/objective.ts). */
  dkd?: { alpha: number; beta: number; ceWeight: number; warmupSteps: number };
  /**
   * Feature distillation term added to the loss: total = logit loss + weight * term (features.ts;
   * hint or attention against the teacher's stored features). Absent or kind none: no term.
   */
  feature?: FeatureConfig;
}

export interface TrainConfig {
  student: StudentConfig;
  loss: LossConfig;
  optimizer: OptimizerConfig;
  schedule: ScheduleConfig;
  epochs: number;
  /** Stop after this many steps (0 = epochs * batches per epoch). */
  maxSteps: number;
  batchSize: number;
  shuffleBuffer: number;
  /** Global-norm clipping (0 = off). */
  clipNorm: number;
  /** Held-out rows scored after every epoch (metric `val/top1`; validate.ts). */
  validation?: TrainingData;
  /** Per-step image augmentation of the training batches (absent or all off: none). */
  augment?: AugmentConfig;
  seed: number;
  checkpointEvery: number;
  /** Warm start from an exported model of the same architecture (applied before a checkpoint resume). */
  init?: { model: OnnxModel; where: string };
  /**
   * Output layer at step 0: 'prior' (default: zero weights, biases at the class prior for sigmoid
   * losses, He-uniform otherwise) or 'imprint' (class means of the initial features, imprint.ts).
   */
  headInit?: 'prior' | 'imprint' | 'ncm';
  /** imprint: logit gap of a class mean over the prior (0 = log C). */
  imprintMargin?: number;
  /**
   * After the last step, set the output rows again from the class means of the TRAINED features.
   * Refused for loss kc: it would replace the head the specialists' soft targets trained.
   */
  imprintAfter?: boolean;
  /**
   * 'dense' (default): one optimiser for every parameter. 'row-sparse' (with sampledNegatives; mlp
   * and kc): the output rows live in host memory and each step reads and updates only its columns'
   * rows with lazy Adam (sparse-head.ts, sparse-adam.ts).
   */
  headOptimizer?: 'dense' | 'row-sparse';
}

/** Hooks into the stage context (or a test). */
export interface TrainHooks {
  log(message: string): void;
  metric(name: string, value: number, step?: number): void;
  progress(done: number, total?: number, unit?: string): void;
  signal?: AbortSignal;
}

export interface TrainResult {
  student: Student;
  steps: number;
  finalLoss: number;
  parameters: number;
  resumedFrom: number;
}

interface CheckpointHeader {
  version: 1;
  step: number;
  epoch: number;
  batchInEpoch: number;
  optimizerStep: number;
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
}

function saveCheckpoint(
  dir: string,
  header: Omit<CheckpointHeader, 'tensors' | 'version'>,
  tensors: Record<string, tf.Tensor>,
): void {
  mkdirSync(dir, { recursive: true });
  const entries: CheckpointHeader['tensors'] = [];
  const chunks: Float32Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const data = t.dataSync() as Float32Array;
    entries.push({ name, shape: t.shape, offset, length: data.length });
    chunks.push(data);
    offset += data.length;
  }
  const all = new Float32Array(offset);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  const full: CheckpointHeader = { version: 1, ...header, tensors: entries };
  // Binary first, header last (each written atomically): a header always describes a complete binary.
  writeFileAtomicSync(join(dir, `checkpoint-${header.step}.bin`), new Uint8Array(all.buffer));
  writeFileAtomicSync(join(dir, 'checkpoint.json'), JSON.stringify({ ...full, bin: `checkpoint-${header.step}.bin` }));
}

function loadCheckpoint(dir: string): { header: CheckpointHeader; tensors: Record<string, Float32Array> } | undefined {
  const path = join(dir, 'checkpoint.json');
  if (!existsSync(path)) return undefined;
  const header = JSON.parse(readFileSync(path, 'utf8')) as CheckpointHeader & { bin: string };
  const bytes = readFileSync(join(dir, header.bin));
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const tensors: Record<string, Float32Array> = {};
  for (const e of header.tensors) {
    if (e.offset + e.length > all.length)
      throw new Error(`checkpoint ${path}: tensor ${e.name} beyond the end of ${header.bin}`);
    tensors[e.name] = all.subarray(e.offset, e.offset + e.length);
  }
  return { header, tensors };
}

/** Verticals (global class ids per teacher) and class -> vertical map for KC. */
export function kcVerticals(
  data: TrainingData,
  numClasses: number,
): { verticals: number[][]; verticalOfClass: Int32Array } {
  const verticalOfClass = new Int32Array(numClasses).fill(-1);
  const verticals = data.teachers.map((t, v) => {
    const classes = teacherClasses(t.info);
    for (const c of classes) {
      if (c < 0 || c >= numClasses)
        throw new Error(`teacher ${t.where}: class_map names class ${c}, outside [0, ${numClasses})`);
      if (verticalOfClass[c] !== -1)
        throw new Error(
          `teacher ${t.where}: class ${c} is also in teacher ${data.teachers[verticalOfClass[c]!]!.where}'s vertical`,
        );
      verticalOfClass[c] = v;
    }
    return classes;
  });
  return { verticals, verticalOfClass };
}

/**
 * Sigmoid losses over C classes: the student starts at the class prior, every logit log(1/C):
 * output weights 0 and output biases log(1/C) (as focal-loss detectors do for the bias). With the
 * default He-uniform output layer the initial logits have a spread of several units, so thousands
 * of negatives start far above the prior and the first hundreds of steps only push them down;
 * measured at 1,000 classes (plugins/eft-data/README.md) this alone took a sigmoid generalist from
 * 0.08 to 0.27 test top-1 at 400 steps. Self-paced KC heads (y = gamma * z / ||z||) start with
 * gamma_v = sqrt(N_v) * log(C): with z = b = -log(C) everywhere, y is then also log(1/C) per class.
 */
function startAtPrior(student: Student, config: StudentConfig, numClasses: number): void {
  const prior = -Math.log(numClasses);
  const set = (name: string, value: (shape: number[]) => tf.Tensor) => {
    const p = student.params.find((q) => q.name === name);
    if (!p) throw new Error(`student: no parameter ${name} to initialise`);
    p.variable.assign(value(p.variable.shape));
  };
  if (config.arch === 'mlp') {
    set(`fc${config.hidden.length}.weight`, (s) => tf.zeros(s));
    set(`fc${config.hidden.length}.bias`, (s) => tf.fill(s, prior));
  } else if (config.arch === 'kc') {
    config.verticals.forEach((classes, v) => {
      set(`sc.out${v}.weight`, (s) => tf.zeros(s));
      set(`sc.out${v}.bias`, (s) => tf.fill(s, prior));
      if (config.selfPaced) set(`sc.gamma${v}`, (s) => tf.fill(s, Math.sqrt(classes.length) * -prior));
    });
  }
}

/** The batch's input tensor with each image augmented (a per-step Rng: resumed runs draw the same). */
function augmentedInput(samples: Sample[], shape: number[], augment: AugmentConfig, rng: Rng): tf.Tensor {
  return tf.tensor(augmentImages(inputValues(samples), samples.length, shape, augment, rng), [
    samples.length,
    ...shape,
  ]);
}

/** The student's forward pass a batch objective asks for: column subset, activations, or logits. */
function studentOutputs(
  student: Student,
  x: tf.Tensor,
  step: number,
  columns: Int32Array | undefined,
  activations: boolean,
): StudentOutputs {
  if (columns) return { logits: student.applyColumns!(x, true, columns) };
  if (activations) return student.applyWithActivations!(x, true, step);
  return { logits: student.apply(x, true, step) };
}

/** What createTrainingLoss needs to pick and configure the loss object of `loss.kind`. */
interface LossSetup {
  data: TrainingData;
  loss: LossConfig;
  numClasses: number;
  /** Where the single teacher's soft labels come from (kd, sigmoid_kd). */
  source: SoftLabelSource;
  /** Hard labels scored with per-class sigmoid CE (sigmoid_ce, or ce on multi-label data). */
  sigmoidHard: boolean;
  /** Sigmoid loss on sampled negative columns. */
  sampled: boolean;
  /** kc: the vertical of each class. */
  verticalOfClass: Int32Array | undefined;
  seed: number;
  featureTerm: FeatureTerm | undefined;
}

/** The loss object of the configured kind (losses/objective.ts), with the feature term when one is set. */
function createTrainingLoss(setup: LossSetup): TrainingLoss {
  const { data, loss, numClasses } = setup;
  const teacher = data.teachers[0];
  const infos = data.teachers.map((t) => t.info);
  const kcRows = (samples: Sample[]) => kcTargetRows(samples, infos, setup.verticalOfClass!, loss.kcTopK, loss.kcGtMix);
  let logitLoss: TrainingLoss;
  if (setup.sampled) {
    const hardRows = (samples: Sample[]): SparseRow[] =>
      samples.map((s) => {
        const ids = s.labels ?? (s.label >= 0 ? [s.label] : []);
        return { ids, probs: ids.map(() => 1) };
      });
    logitLoss = sampledSigmoidLoss(
      {
        numClasses,
        negatives: loss.sampledNegatives,
        temperature: loss.kind === 'kc' ? loss.temperature : 1,
        name: loss.kind === 'kc' ? 'soft' : 'hard',
      },
      loss.kind === 'kc' ? kcRows : hardRows,
      // A per-step seed: a resumed run draws the same columns.
      (step) => new Rng((setup.seed * 1000003 + step * 7919 + 17) >>> 0),
    );
  } else if (loss.kind === 'ce' || loss.kind === 'sigmoid_ce') {
    logitLoss = hardLabelLoss(setup.sigmoidHard, numClasses);
  } else if (loss.kind === 'kc') {
    logitLoss = sigmoidKdLoss({ temperature: loss.temperature, alpha: 0 }, numClasses, (samples) =>
      kcTarget(samples, infos, setup.verticalOfClass!, loss.kcTopK, loss.kcGtMix),
    );
  } else if (loss.kind === 'dkd') {
    const dkd = loss.dkd ?? { alpha: 1, beta: 8, ceWeight: 1, warmupSteps: 0 };
    logitLoss = decoupledKdLoss({ ...dkd, temperature: loss.temperature }, (samples) => {
      const target = softTarget(
        samples.map((s) => s.teachers[0]!),
        teacher!.info,
        'dense',
        loss.topkPolicy,
        loss.temperature,
        numClasses,
        teacher!.where,
      );
      return (target as DenseTarget).logits;
    });
  } else {
    const soft = (samples: Sample[]) =>
      softTarget(
        samples.map((s) => s.teachers[0]!),
        teacher!.info,
        setup.source,
        loss.topkPolicy,
        loss.temperature,
        numClasses,
        teacher!.where,
      );
    logitLoss =
      loss.kind === 'kd'
        ? softmaxKdLoss(
            { divergence: loss.divergence, temperature: loss.temperature, alpha: loss.alpha, skew: loss.skew },
            soft,
          )
        : sigmoidKdLoss({ temperature: loss.temperature, alpha: loss.alpha }, numClasses, soft);
  }
  return setup.featureTerm ? withFeatureTerm(logitLoss, setup.featureTerm, loss.feature!.weight) : logitLoss;
}

export async function trainStudent(
  data: TrainingData,
  config: TrainConfig,
  stateDir: string,
  hooks: TrainHooks,
): Promise<TrainResult> {
  const numClasses = data.info.numClasses;
  const loss = config.loss;
  if (config.imprintAfter && loss.kind === 'kc')
    throw new Error(
      "imprintAfter: not with loss kc, it would replace the head the specialists' soft targets trained with class means of the hard labels (imprinting may initialise a KC head: headInit)",
    );
  const needsTeacher = loss.kind !== 'ce' && loss.kind !== 'sigmoid_ce';
  if (needsTeacher && data.teachers.length === 0)
    throw new Error(`loss "${loss.kind}" needs teacher outputs (input "teacher")`);
  if (loss.kind !== 'kc' && data.teachers.length > 1)
    throw new Error(`loss "${loss.kind}" takes one teacher, got ${data.teachers.length} (several teachers: loss kc)`);
  let studentConfig = config.student;
  let verticalOfClass: Int32Array | undefined;
  if (loss.kind === 'kc') {
    const kc = kcVerticals(data, numClasses);
    verticalOfClass = kc.verticalOfClass;
    if (studentConfig.arch === 'kc' && studentConfig.verticals.length === 0)
      studentConfig = { ...studentConfig, verticals: kc.verticals };
  }
  const teacher = data.teachers[0];
  if (teacher && loss.kind !== 'kc' && teacher.coveredRows !== data.rows) {
    throw new Error(
      `teacher outputs ${teacher.where} cover ${teacher.coveredRows} of the ${data.rows} ${data.split} rows; loss "${loss.kind}" needs a teacher row for every row (only loss kc reads per-vertical teachers)`,
    );
  }
  const softLabels = loss.kind === 'kd' || loss.kind === 'sigmoid_kd';
  const source = teacher && softLabels ? chooseSource(teacher.info, loss.softLabels, teacher.where) : 'dense';
  if (teacher && (loss.kind === 'kd' || loss.kind === 'dkd') && teacher.info.activation !== 'softmax')
    throw new Error(
      `loss ${loss.kind} needs a softmax teacher; ${teacher.where} is ${teacher.info.activation} (use sigmoid_kd)`,
    );
  if (teacher && loss.kind === 'dkd' && !teacher.info.storage.dense)
    throw new Error(
      `loss dkd needs the teacher's dense logits; ${teacher.where} stores none (teacher-infer storage: [dense])`,
    );

  const student = createStudent(studentConfig, data.info.shape, numClasses, config.seed);
  for (const note of student.notes ?? []) hooks.log(note);
  const sigmoidHard = loss.kind === 'sigmoid_ce' || (loss.kind === 'ce' && data.info.labels === 'multi');
  const sampled = (loss.sampledNegatives ?? 0) > 0 && (sigmoidHard || loss.kind === 'kc');
  if ((loss.sampledNegatives ?? 0) > 0 && !sampled)
    throw new Error(
      `sampledNegatives applies to sigmoid losses (sigmoid_ce, ce on multi-label data, kc), not to loss "${loss.kind}"${loss.kind === 'ce' ? ' on single-label data (use sigmoid_ce)' : ''}`,
    );
  const rowSparse = config.headOptimizer === 'row-sparse';
  if (rowSparse && !sampled)
    throw new Error(
      'headOptimizer row-sparse: needs sampledNegatives > 0 with a sigmoid loss (sigmoid_ce, ce on multi-label data, kc)',
    );
  if (rowSparse && config.optimizer.name !== 'adam')
    throw new Error(
      `headOptimizer row-sparse: the row-sparse head is trained with Adam; optimizer is ${config.optimizer.name}`,
    );
  if (sampled && !student.applyColumns)
    throw new Error(`sampledNegatives: student arch "${studentConfig.arch}" has no column-subset head (use mlp or kc)`);
  if (sigmoidHard || loss.kind === 'kc' || loss.kind === 'sigmoid_kd') startAtPrior(student, studentConfig, numClasses);
  const featureConfig = loss.feature && loss.feature.kind !== 'none' ? loss.feature : undefined;
  if (featureConfig) {
    if (!teacher || loss.kind === 'kc')
      throw new Error(
        `feature ${featureConfig.kind}: needs one teacher's stored features (input "teacher"; not with loss kc)`,
      );
    if (sampled) throw new Error(`feature ${featureConfig.kind}: not combinable with sampledNegatives`);
    if (!data.readFeatures) throw new Error(`feature ${featureConfig.kind}: open the training data with readFeatures`);
  }
  const featureTerm = featureConfig ? createFeatureTerm(featureConfig, student, teacher!, config.seed) : undefined;
  const trainingLoss = createTrainingLoss({
    data,
    loss,
    numClasses,
    source,
    sigmoidHard,
    sampled,
    verticalOfClass,
    seed: config.seed,
    featureTerm,
  });
  // Trained and checkpointed together; only student.params are exported.
  const trainables = [...student.params, ...(featureTerm?.params ?? [])];
  const ckpt = loadCheckpoint(stateDir);
  const imprintOptions = {
    ...(config.imprintMargin ? { margin: config.imprintMargin } : {}),
    log: hooks.log,
    progress: hooks.progress,
  };
  // A resumed run or a warm start overwrites the head anyway: imprint only a fresh one.
  if ((config.headInit === 'imprint' || config.headInit === 'ncm') && !ckpt && !config.init) {
    await imprintHeads(student, data, { ...imprintOptions, rule: config.headInit });
  }
  if (config.init) {
    if (studentConfig.arch === 'onnx' || studentConfig.arch === 'tfjs-layers')
      throw new Error(
        `init ${config.init.where}: an imported student starts from its own file; give the earlier stage's model.onnx as the student model instead (input "studentModel")`,
      );
    initStudentFromOnnx(student, config.init.model, config.init.where);
    hooks.log(`initialised from ${config.init.where}`);
  }
  // Row-sparse: the output rows are trained by the SparseHead, every other parameter by the dense optimiser.
  const sparseHead = rowSparse ? new SparseHead(student as Student & Imprintable, config.optimizer) : undefined;
  const headVariables = sparseHead?.variables() ?? new Set<tf.Variable>();
  const denseParams = trainables.filter((p) => !headVariables.has(p.variable));
  const optimizer = new Optimizer(config.optimizer, denseParams);
  const batchesPerEpoch = Math.ceil(data.rows / config.batchSize);
  const totalSteps =
    config.maxSteps > 0 ? Math.min(config.maxSteps, batchesPerEpoch * config.epochs) : batchesPerEpoch * config.epochs;
  hooks.log(
    `student ${studentConfig.arch}: ${parameterCount(student)} parameters; ${data.rows} ${data.split} rows, ${batchesPerEpoch} batches/epoch, ${totalSteps} steps; loss ${loss.kind}${featureConfig ? ` + ${featureConfig.weight} * ${featureConfig.kind} (${featureConfig.studentLayer} -> ${featureConfig.teacherFeature}${featureTerm!.params.length ? `, regressor ${featureTerm!.params[0]!.variable.shape.join('x')} not exported` : ''})` : ''}${needsTeacher ? ` from ${loss.kind === 'kc' ? `${data.teachers.length} teachers` : source}` : ''}${sampled ? `; sigmoid CE on the batch's positives + ${loss.sampledNegatives} sampled negatives` : ''}`,
  );

  let step = 0;
  let startEpoch = 0;
  let skip = 0;
  if (ckpt) {
    for (const p of [...trainables, ...student.buffers]) {
      const v = ckpt.tensors[`param/${p.name}`];
      if (!v || v.length !== p.variable.size)
        throw new Error(
          `checkpoint in ${stateDir}: parameter ${p.name} missing or of another size (was the student config changed?)`,
        );
      p.variable.assign(tf.tensor(v, p.variable.shape));
    }
    const opt: Record<string, Float32Array> = {};
    for (const [k, v] of Object.entries(ckpt.tensors)) if (k.startsWith('opt/')) opt[k.slice(4)] = v;
    optimizer.load(opt, ckpt.header.optimizerStep);
    if (sparseHead) {
      const m = opt['sparsehead/m'];
      const v = opt['sparsehead/v'];
      if (!m || !v)
        throw new Error(`checkpoint in ${stateDir}: no row-sparse head moments (was headOptimizer changed?)`);
      sparseHead.optimizer.load({ m, v }, ckpt.header.optimizerStep);
    }
    step = ckpt.header.step;
    startEpoch = ckpt.header.epoch;
    skip = ckpt.header.batchInEpoch;
    hooks.log(`resuming from the checkpoint at step ${step} (epoch ${startEpoch}, batch ${skip})`);
  }
  sparseHead?.load();
  const resumedFrom = step;
  const checkpoint = (epoch: number, batchInEpoch: number) => {
    sparseHead?.store();
    const tensors: Record<string, tf.Tensor> = {};
    for (const p of [...trainables, ...student.buffers]) tensors[`param/${p.name}`] = p.variable;
    for (const [k, v] of Object.entries(optimizer.state())) tensors[`opt/${k}`] = v;
    const moments: tf.Tensor[] = [];
    if (sparseHead) {
      moments.push(
        (tensors['opt/sparsehead/m'] = tf.tensor1d(sparseHead.optimizer.m)),
        (tensors['opt/sparsehead/v'] = tf.tensor1d(sparseHead.optimizer.v)),
      );
    }
    saveCheckpoint(stateDir, { step, epoch, batchInEpoch, optimizerStep: optimizer.step }, tensors);
    for (const t of moments) t.dispose();
  };

  let lastValidated = -1;
  const validate = async (epoch: number): Promise<void> => {
    if (!config.validation || lastValidated === step) return;
    sparseHead?.store();
    const score = await validationTop1(student, config.validation);
    lastValidated = step;
    hooks.metric('val/top1', score.top1, step);
    hooks.log(
      `epoch ${epoch + 1} (step ${step}): validation top-1 ${(100 * score.top1).toFixed(2)}% on ${score.rows} ${config.validation.split} rows`,
    );
  };
  const vars = denseParams.map((p) => p.variable);
  let finalLoss = NaN;
  const started = Date.now();
  outer: for (let epoch = startEpoch; epoch < config.epochs; epoch++) {
    let batchInEpoch = 0;
    for await (const samples of epochBatches(data, config.batchSize, config.shuffleBuffer, config.seed, epoch)) {
      if (epoch === startEpoch && batchInEpoch < skip) {
        batchInEpoch++;
        continue;
      }
      if (step >= totalSteps) break outer;
      if (hooks.signal?.aborted)
        throw new Error(`training aborted at step ${step} (checkpoint at the last saved step in ${stateDir})`);
      const lr = config.optimizer.lr * scheduleFactor(config.schedule, step, totalSteps);
      const termValues: Record<string, number> = {};
      tf.tidy(() => {
        const augment =
          config.augment && (config.augment.flip || config.augment.shift > 0) ? config.augment : undefined;
        const x = augment
          ? augmentedInput(
              samples,
              data.info.shape,
              augment,
              new Rng((config.seed * 7368787 + step * 2654435761 + 3) >>> 0),
            )
          : inputTensor(samples, data.info.shape);
        const objective = trainingLoss.batch(samples, step);
        // Row-sparse head: the objective's columns read this step's rows, copied from host memory.
        const headStep = sparseHead && objective.columns ? sparseHead.begin(objective.columns) : undefined;
        const terms: Record<string, tf.Scalar> = {};
        const { value, grads } = tf.variableGrads(
          () => {
            const outputs = headStep
              ? { logits: sparseHead!.logits((student as Student & Imprintable).penultimate(x), headStep) }
              : studentOutputs(student, x, step, objective.columns, trainingLoss.needsActivations);
            const { total, terms: parts } = objective.loss(outputs);
            for (const [name, t] of Object.entries(parts)) terms[name] = tf.keep(t);
            return total;
          },
          headStep ? [...vars, ...headStep.variables] : vars,
        );
        for (const [name, t] of Object.entries(terms)) termValues[name] = t.dataSync()[0]!;
        termValues.total = value.dataSync()[0]!;
        finishStep(grads, headStep);
      });
      function finishStep(grads: tf.NamedTensorMap, headStep?: SparseHeadStep): void {
        for (const [name, v] of Object.entries(termValues)) {
          if (!Number.isFinite(v))
            throw new Error(`training stopped at step ${step}: loss term "${name}" is ${v} (lr ${lr})`);
        }
        const named: Record<string, tf.Tensor> = {};
        for (const p of denseParams) {
          const g = grads[p.variable.name];
          if (g) named[p.name] = tf.keep(g);
        }
        // The step's head rows are clipped together with the dense parameters.
        const headNames = headStep ? headStep.variables.map((v) => `sparsehead/${v.name}`) : [];
        headStep?.variables.forEach((v, i) => {
          const g = grads[v.name];
          if (g) named[headNames[i]!] = tf.keep(g);
        });
        const norm = clipByGlobalNorm(named, config.clipNorm);
        if (!Number.isFinite(norm))
          throw new Error(`training stopped at step ${step}: gradient norm is ${norm} (loss ${termValues.total})`);
        termValues.grad_norm = norm;
        if (headStep) {
          const headGrads = new Map<tf.Variable, tf.Tensor>();
          headStep.variables.forEach((v, i) => {
            const g = named[headNames[i]!];
            if (g) headGrads.set(v, g);
            delete named[headNames[i]!];
          });
          sparseHead!.apply(headStep, headGrads, lr);
          for (const g of headGrads.values()) g.dispose();
        }
        optimizer.apply(named, lr);
      }
      finalLoss = termValues.total!;
      for (const [name, v] of Object.entries(termValues))
        hooks.metric(name === 'total' ? 'loss' : `loss/${name}`, v, step);
      hooks.metric('lr', lr, step);
      step++;
      batchInEpoch++;
      hooks.progress(step, totalSteps, 'steps');
      if (config.checkpointEvery > 0 && step % config.checkpointEvery === 0 && step < totalSteps)
        checkpoint(epoch, batchInEpoch);
    }
    skip = 0;
    await validate(epoch);
  }
  if (lastValidated !== step) await validate(Math.max(0, Math.ceil(step / batchesPerEpoch) - 1));
  const seconds = (Date.now() - started) / 1000;
  sparseHead?.store();
  if (config.imprintAfter) await imprintHeads(student, data, imprintOptions);
  hooks.log(
    `trained ${step - resumedFrom} steps in ${seconds.toFixed(1)} s (${((step - resumedFrom) / Math.max(seconds, 1e-9)).toFixed(2)} steps/s), final loss ${finalLoss}`,
  );
  optimizer.dispose();
  return { student, steps: step, finalLoss, parameters: parameterCount(student), resumedFrom };
}

export const ONNX_OPSET = 17;

/**
 * Writes the student as ONNX (opset 17): input "input" float32 [batch, ...shape], output "logits"
 * first, then one output per name in `activations` (student layer names such as conv1 or fc0),
 * named by the graph value holding it (conv1.pool [batch, c, h, w], fc0.out [batch, width]) so a
 * teacher-infer stage can store it as features. An imported student (exportModel) is written as its
 * own graph with the trained initializers and the metadata added.
 */
export function exportOnnx(
  student: Student,
  path: string,
  metadata: Record<string, string> = {},
  activations: string[] = [],
): void {
  const info = {
    'distillery.arch': student.config.arch,
    'distillery.num_classes': String(student.numClasses),
    'distillery.input_shape': JSON.stringify(student.inputShape),
    'distillery.input_scale': 'pixels / 255 (features as stored)',
    ...metadata,
  };
  if (student.exportModel) {
    if (activations.length > 0)
      throw new Error(
        `exportActivations: not available for an imported (${student.config.arch}) student; its graph is exported as it was given`,
      );
    writeModelFile(path, student.exportModel(info));
    return;
  }
  if (!student.toOnnx) throw new Error(`student ${student.config.arch}: no ONNX export`);
  const available = student.onnxActivations?.() ?? new Map<string, { value: string; shape: number[] }>();
  const extra = activations.map((name) => {
    const a = available.get(name);
    if (!a)
      throw new Error(
        `exportActivations: the ${student.config.arch} student has no layer "${name}" (layers: ${Array.from(available.keys()).join(', ') || 'none'})`,
      );
    return a;
  });
  const builder = new GraphBuilder('student', { opset: ONNX_OPSET, metadata: info });
  builder.input('input', 'float32', ['batch', ...student.inputShape]);
  const logits = student.toOnnx(builder, 'input');
  builder.node('Identity', [logits], ['logits']);
  builder.output('logits', 'float32', ['batch', student.numClasses]);
  for (const a of extra) builder.output(a.value, 'float32', ['batch', ...a.shape]);
  writeModelFile(path, builder.build());
}
