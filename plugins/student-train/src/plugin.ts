/**
 * The `student-train` stage: trains a student (MLP, CNN, Knowledge Concentration head, or the
 * user's own ONNX model) on a dataset shard set, from hard labels (loss ce, how the pipeline trains its own teachers) or from
 * one or several teachers' output shards, and writes `model.onnx` plus `training.json`.
 *
 * Inputs: `dataset` (a dataset shard set), optional `teacher` (teacher-output shard sets; several
 * for loss kc, one per vertical), optional `init` (a stage whose model.onnx, written by
 * student-train for the same architecture and widths, gives the starting weights), optional
 * `studentModel` (arch onnx / tfjs-layers: a stage whose output holds the .onnx file or model.json,
 * `student.modelFile`). A tfjs-layers student also writes model.json + model.weights.bin.
 */
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core';
import { TrainingHistory } from './history.js';
import type { StudentConfig } from './models/types.js';

const Student = Type.Object(
  {
    arch: Type.Union(
      [Type.Literal('mlp'), Type.Literal('cnn'), Type.Literal('kc'), Type.Literal('onnx'), Type.Literal('tfjs-layers')],
      {
        default: 'mlp',
        description:
          'mlp / cnn / kc: built by student-train; onnx: the ONNX model in `model` (or the input "studentModel"), trained as it is; tfjs-layers: a TensorFlow.js Layers model (model.json), trained the same way and written back as model.json too',
      },
    ),
    model: Type.Optional(
      PathParam({
        description:
          'onnx: the .onnx file to train; tfjs-layers: its model.json, or the folder holding it (then the weight files are in the cache key too). Its weights are the start unless reinit',
      }),
    ),
    modelFile: Type.String({
      default: 'model.onnx',
      description:
        'onnx / tfjs-layers without `model`: the file inside the stage input "studentModel" (e.g. an exec stage that exported it; model.json for tfjs-layers)',
    }),
    reinit: Type.Boolean({
      default: false,
      description: "onnx / tfjs-layers: start from fresh seeded weights instead of the file's",
    }),
    freeze: Type.Array(Type.String(), {
      default: [],
      description:
        'onnx: initializers kept as they are (not trained); tfjs-layers: weights (<layer>/<weight>) or layer names',
    }),
    hidden: Type.Array(Type.Integer({ minimum: 1 }), {
      default: [256],
      description: 'dense hidden widths (mlp, cnn head, kc trunk)',
    }),
    channels: Type.Array(Type.Integer({ minimum: 1 }), {
      default: [16, 32],
      description: 'cnn: output channels per conv block',
    }),
    kernel: Type.Integer({ minimum: 1, default: 3 }),
    batchNorm: Type.Boolean({ default: true }),
    padding: Type.Union([Type.Literal('same'), Type.Literal('valid')], {
      default: 'same',
      description: 'cnn: convolution padding',
    }),
    dropout: Type.Number({
      minimum: 0,
      exclusiveMaximum: 1,
      default: 0,
      description: 'cnn: dropout rate on the input of each dense head layer while training',
    }),
    sharedWidth: Type.Integer({ minimum: 1, default: 256, description: 'kc: s1' }),
    verticalWidth: Type.Integer({ minimum: 1, default: 64, description: 'kc: s2' }),
    selfPaced: Type.Boolean({ default: true, description: 'kc: learnable per-vertical scale on L2-normalised logits' }),
  },
  { additionalProperties: false, default: {} },
);

const params = Type.Object(
  {
    student: Student,
    loss: Type.Union(
      [
        Type.Literal('ce'),
        Type.Literal('sigmoid_ce'),
        Type.Literal('kd'),
        Type.Literal('sigmoid_kd'),
        Type.Literal('kc'),
        Type.Literal('dkd'),
      ],
      { default: 'ce' },
    ),
    dkd: Type.Object(
      {
        alpha: Type.Number({ minimum: 0, default: 1, description: 'weight of TCKD (target vs non-target mass)' }),
        beta: Type.Number({
          minimum: 0,
          default: 8,
          description: 'weight of NCKD (distribution among the non-target classes)',
        }),
        ceWeight: Type.Number({
          minimum: 0,
          default: 1,
          description: 'weight of the hard-label cross-entropy added to DKD',
        }),
        warmupSteps: Type.Integer({
          minimum: 0,
          default: 0,
          description: 'the DKD term grows linearly from 0 over this many steps',
        }),
      },
      {
        additionalProperties: false,
        default: {},
        description: 'loss dkd: decoupled KD (Zhao et al. 2022) from dense teacher logits at `temperature`',
      },
    ),
    divergence: Type.Union(
      ['forward_kl', 'reverse_kl', 'js', 'tv', 'hellinger', 'skew_kl', 'skew_rkl'].map((d) => Type.Literal(d)),
      { default: 'forward_kl' },
    ),
    temperature: Type.Number({ exclusiveMinimum: 0, default: 1 }),
    alpha: Type.Number({ minimum: 0, maximum: 1, default: 0, description: 'weight of the hard-label loss' }),
    skew: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, default: 0.1 }),
    softLabels: Type.Union(
      [Type.Literal('auto'), Type.Literal('dense'), Type.Literal('topk'), Type.Literal('sampled')],
      { default: 'auto' },
    ),
    topkPolicy: Type.Union([Type.Literal('renormalise'), Type.Literal('rest')], { default: 'renormalise' }),
    kcTopK: Type.Integer({ minimum: 1, default: 100 }),
    kcGtMix: Type.Number({ minimum: 0, maximum: 1, default: 0 }),
    sampledNegatives: Type.Integer({
      minimum: 0,
      default: 0,
      description:
        'sigmoid losses: 0 = all classes; R = batch positives + R shared uniform negatives weighted to the full sum (an unbiased approximation)',
    }),
    feature: Type.Object(
      {
        kind: Type.Union([Type.Literal('none'), Type.Literal('hint'), Type.Literal('attention'), Type.Literal('rkd')], {
          default: 'none',
          description:
            'hint: FitNets (learned linear regressor of the student layer, MSE to the teacher feature); attention: attention transfer (normalised spatial attention maps, cnn); rkd: relational KD (distance and angle structure of the batch embeddings)',
        }),
        rkd: Type.Object(
          {
            distance: Type.Number({ minimum: 0, default: 1, description: 'weight of the RKD distance term' }),
            angle: Type.Number({ minimum: 0, default: 2, description: 'weight of the RKD angle term' }),
          },
          {
            additionalProperties: false,
            default: {},
            description: 'kind rkd: term = distance * L_dist + angle * L_angle (Park et al. 2019)',
          },
        ),
        weight: Type.Number({
          minimum: 0,
          default: 1,
          description: 'total = logit loss (ce / kd / ...) + weight * feature term',
        }),
        studentLayer: Type.String({
          default: 'conv0',
          description:
            'student activation: conv<i> (conv block i after relu and pool) or fc<i> (dense layer i); onnx students: an ONNX node name or value name',
        }),
        teacherFeature: Type.String({
          default: '',
          description: 'the teacher model output teacher-infer stored (its featuresOutput)',
        }),
        teacherLayout: Type.Union([Type.Literal('nchw'), Type.Literal('nhwc')], {
          default: 'nchw',
          description: 'layout of a rank-3 stored teacher feature (ONNX conv outputs are nchw)',
        }),
      },
      {
        additionalProperties: false,
        default: {},
        description: 'feature distillation from the teacher\'s stored features (input "teacher")',
      },
    ),
    exportActivations: Type.Array(Type.String(), {
      default: [],
      description:
        'student layers (conv<i>, fc<i>) added to model.onnx as extra outputs after logits (conv<i>.pool [batch, c, h, w], fc<i>.out), e.g. for a teacher-infer featuresOutput',
    }),
    headInit: Type.Union([Type.Literal('prior'), Type.Literal('imprint'), Type.Literal('ncm')], {
      default: 'prior',
      description:
        'output layer at step 0: prior (zero weights, class-prior biases for sigmoid losses), imprint (centred class means of the initial features, one pass over the data; mlp and kc) or ncm (the nearest-class-mean classifier on the initial features: with epochs 0 and mlp hidden [], nearest class mean on the raw inputs)',
    }),
    imprintMargin: Type.Number({
      minimum: 0,
      default: 0,
      description: 'imprint: logit of a class mean above the prior (0 = log C)',
    }),
    imprintAfter: Type.Boolean({
      default: false,
      description:
        'after training, set the output rows again from the class means of the trained features (one more pass)',
    }),
    headOptimizer: Type.Union([Type.Literal('dense'), Type.Literal('row-sparse')], {
      default: 'dense',
      description:
        "row-sparse (with sampledNegatives, adam; mlp and kc): the output rows live in host memory and a step reads and updates only its columns' rows with lazy Adam (untouched rows keep weights and moments); the self-paced norm's gradient into the rows is dropped",
    }),
    optimizer: Type.Union([Type.Literal('adam'), Type.Literal('sgd')], { default: 'adam' }),
    lr: Type.Number({ exclusiveMinimum: 0, default: 1e-3 }),
    momentum: Type.Number({ minimum: 0, maximum: 1, default: 0.9 }),
    weightDecay: Type.Number({ minimum: 0, default: 0 }),
    schedule: Type.Union(
      [Type.Literal('constant'), Type.Literal('cosine'), Type.Literal('step'), Type.Literal('linear')],
      { default: 'constant' },
    ),
    warmupSteps: Type.Integer({ minimum: 0, default: 0 }),
    stepSize: Type.Integer({ minimum: 1, default: 1000 }),
    gamma: Type.Number({ exclusiveMinimum: 0, default: 0.1 }),
    epochs: Type.Integer({
      minimum: 0,
      default: 1,
      description: '0: no training step (exports the initial model: untrained or nearest-class-mean baselines)',
    }),
    maxSteps: Type.Integer({ minimum: 0, default: 0 }),
    batchSize: Type.Integer({ minimum: 1, default: 128 }),
    shuffleBuffer: Type.Integer({ minimum: 1, default: 10000 }),
    clipNorm: Type.Number({ minimum: 0, default: 0 }),
    augment: Type.Object(
      {
        flip: Type.Boolean({
          default: false,
          description: 'mirror each training image left-right with probability 1/2',
        }),
        shift: Type.Integer({
          minimum: 0,
          default: 0,
          description: 'translate each training image by up to this many pixels in each axis (zero fill)',
        }),
      },
      {
        additionalProperties: false,
        default: {},
        description: 'per-step image augmentation of [H, W, C] inputs (seeded by seed and step)',
      },
    ),
    seed: Type.Integer({ default: 0 }),
    split: Type.String({ default: 'train' }),
    validationSplit: Type.String({
      default: '',
      description:
        'a held-out split of the dataset (e.g. val) scored after every epoch: metric val/top1, training.json validation',
    }),
    checkpointEvery: Type.Integer({ minimum: 0, default: 200 }),
    backend: Type.Union(
      ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'].map((b) => Type.Literal(b)),
      { default: 'auto' },
    ),
  },
  { additionalProperties: false },
);

type StudentParams = Static<typeof Student>;

/** The training loop's student configuration from the `student` block (onnx: the model file resolved). */
function studentConfig(s: StudentParams, studentModelDirs: string[]): StudentConfig {
  if (s.arch === 'mlp') return { arch: 'mlp', hidden: s.hidden };
  if (s.arch === 'cnn')
    return {
      arch: 'cnn',
      hidden: s.hidden,
      channels: s.channels,
      kernel: s.kernel,
      batchNorm: s.batchNorm,
      padding: s.padding,
      dropout: s.dropout,
    };
  if (s.arch === 'kc')
    return {
      arch: 'kc',
      hidden: s.hidden,
      sharedWidth: s.sharedWidth,
      verticalWidth: s.verticalWidth,
      verticals: [],
      selfPaced: s.selfPaced,
    };
  if (s.model !== undefined && studentModelDirs.length > 0)
    throw new Error(
      'student-train: params.student.model and the input "studentModel" both name the student model; give one',
    );
  if (studentModelDirs.length > 1)
    throw new Error(`student-train: input "studentModel" is bound to ${studentModelDirs.length} artifacts; bind one`);
  const model = s.model ?? (studentModelDirs[0] !== undefined ? join(studentModelDirs[0], s.modelFile) : undefined);
  if (model === undefined)
    throw new Error(
      `student-train: student.arch ${s.arch} needs params.student.model (${s.arch === 'onnx' ? 'a .onnx file' : 'a model.json or its folder'}) or the input "studentModel"`,
    );
  return { arch: s.arch, model, reinit: s.reinit, freeze: s.freeze };
}

export default definePlugin({
  name: 'student-train',
  version: '1',
  description:
    'Trains a student (MLP / CNN / Knowledge Concentration, or your own ONNX or TensorFlow.js Layers model) by hard labels or distillation and exports model.onnx',
  params,
  resources: { cpus: 2, gpus: 0, memoryMiB: 4096 },
  async run(ctx) {
    const p = ctx.params;
    const { selectBackend } = await import('@distillery/runtime/tfjs/backend');
    const backend = await selectBackend({
      cpus: ctx.devices.cpus,
      gpus: ctx.devices.gpus,
      prefer: p.backend as 'auto',
      log: (m) => ctx.log.info(m),
    });
    const { openTrainingData } = await import('./data.js');
    const { writeFileAtomicSync } = await import('@distillery/core/plugin');
    const { trainStudent, exportOnnx, ONNX_OPSET } = await import('./train.js');
    const teacherDirs = (ctx.inputs.teacher ?? []).map((a) => a.path);
    const feature = p.feature.kind === 'none' ? undefined : p.feature;
    if (feature && feature.teacherFeature === '')
      throw new Error(
        'student-train: params.feature.teacherFeature is empty; name the teacher output teacher-infer stored (its featuresOutput)',
      );
    const data = await openTrainingData(ctx.input('dataset'), teacherDirs, p.split, {
      readFeatures: feature !== undefined,
    });
    if (p.validationSplit !== '' && p.validationSplit === p.split)
      throw new Error(`student-train: validationSplit "${p.validationSplit}" is the training split`);
    const validation =
      p.validationSplit !== '' ? await openTrainingData(ctx.input('dataset'), [], p.validationSplit) : undefined;
    if (validation && validation.rows === 0)
      throw new Error(`student-train: validationSplit "${p.validationSplit}" has no rows in ${ctx.input('dataset')}`);
    let init: { model: import('@distillery/runtime/onnx').OnnxModel; where: string } | undefined;
    if (ctx.inputs.init && ctx.inputs.init.length > 0) {
      if (ctx.inputs.init.length > 1)
        throw new Error(`student-train: input "init" is bound to ${ctx.inputs.init.length} artifacts; bind one`);
      const { readModelFile } = await import('@distillery/runtime/onnx');
      const where = join(ctx.inputs.init[0]!.path, 'model.onnx');
      init = { model: await readModelFile(where), where };
    }
    const s = p.student;
    const student = studentConfig(s, ctx.inputs.studentModel?.map((a) => a.path) ?? []);
    const history = new TrainingHistory();
    const result = await trainStudent(
      data,
      {
        student,
        loss: {
          kind: p.loss,
          divergence: p.divergence as 'forward_kl',
          temperature: p.temperature,
          alpha: p.alpha,
          skew: p.skew,
          softLabels: p.softLabels,
          topkPolicy: p.topkPolicy,
          kcTopK: p.kcTopK,
          kcGtMix: p.kcGtMix,
          sampledNegatives: p.sampledNegatives,
          dkd: p.dkd,
          ...(feature ? { feature } : {}),
        },
        optimizer: {
          name: p.optimizer,
          lr: p.lr,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          momentum: p.momentum,
          weightDecay: p.weightDecay,
        },
        schedule: { name: p.schedule, warmupSteps: p.warmupSteps, stepSize: p.stepSize, gamma: p.gamma, minFactor: 0 },
        epochs: p.epochs,
        maxSteps: p.maxSteps,
        batchSize: p.batchSize,
        shuffleBuffer: p.shuffleBuffer,
        clipNorm: p.clipNorm,
        augment: p.augment,
        ...(validation ? { validation } : {}),
        seed: p.seed,
        checkpointEvery: p.checkpointEvery,
        headInit: p.headInit,
        imprintMargin: p.imprintMargin,
        imprintAfter: p.imprintAfter,
        headOptimizer: p.headOptimizer,
        ...(init ? { init } : {}),
      },
      ctx.stateDir,
      {
        log: (m) => ctx.log.info(m),
        metric: (n, v, st) => {
          ctx.metric(n, v, st);
          history.record(n, v, st);
        },
        progress: (d, t, u) => ctx.progress(d, t, u),
        signal: ctx.signal,
      },
    );
    exportOnnx(
      result.student,
      join(ctx.outDir, 'model.onnx'),
      { 'distillery.backend': backend.name, 'distillery.seed': String(p.seed) },
      p.exportActivations,
    );
    const native = result.student.exportNative?.(ctx.outDir) ?? [];
    if (native.length > 0) ctx.log.info(`trained ${student.arch} model written back: ${native.join(', ')}`);
    const summary = {
      arch: student.arch,
      parameters: result.parameters,
      steps: result.steps,
      finalLoss: result.finalLoss,
      backend: backend.name,
      threads: backend.threads,
      onnxOpset: ONNX_OPSET,
      resumedFrom: result.resumedFrom,
      lossHistory: history.toJSON(),
      validation: history.validation,
    };
    writeFileAtomicSync(join(ctx.outDir, 'training.json'), JSON.stringify(summary, null, 2));
    return { metrics: { final_loss: result.finalLoss, parameters: result.parameters, steps: result.steps } };
  },
});
