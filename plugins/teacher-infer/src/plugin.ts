/**
 * `teacher-infer`: runs one ONNX teacher over a dataset shard set and writes teacher-output shards
 * (schema: tools/runtime/src/shards/SCHEMA.md). Specialists: one stage per teacher (fan-out), each
 * with its local-to-global class map. Heavy work lives in ./infer.js, imported inside run().
 */
import { Type } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core/plugin';
import { describeProvider } from '@distillery/runtime/onnx/execution-provider';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const params = Type.Object(
  {
    model: Type.Optional(
      PathParam({
        description:
          'ONNX teacher model file; default: model.onnx of the stage input named "model" (e.g. a student-train stage)',
      }),
    ),
    dataset: Type.Optional(
      PathParam({ description: 'Dataset shard set directory; default: the stage input named "dataset"' }),
    ),
    teacherId: Type.Optional(
      Type.String({ description: 'Teacher name stored in the metadata; default: the stage id' }),
    ),
    input: Type.Optional(Type.String({ description: 'Model input name; default: the only input' })),
    output: Type.Optional(Type.String({ description: 'Model output holding logits; default: the first output' })),
    featuresOutput: Type.Optional(
      Type.String({ description: 'Model output with penultimate features; stored when set' }),
    ),
    activation: Type.Union([Type.Literal('softmax'), Type.Literal('sigmoid')], {
      default: 'softmax',
      description: 'softmax: one distribution; sigmoid: multi-label',
    }),
    temperature: Type.Number({
      default: 1,
      exclusiveMinimum: 0,
      description: 'Capture temperature T for top-k log-probs and sampling',
    }),
    numClasses: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: "Global label space size; default max(classMap)+1 or the model's classes",
      }),
    ),
    classMap: Type.Optional(
      Type.Array(Type.Integer({ minimum: 0 }), {
        description:
          'Global id of each local class (specialist vertical); default: class_map.json of the stage input named "classMap", if bound',
      }),
    ),
    restrictTo: Type.Optional(
      Type.Array(Type.Integer({ minimum: 0 }), {
        description:
          'Keep only these teacher output columns, in this order (a multi-student partition in local order): outputs live in that restricted label space. Default: class_map.json of the stage input named "restrictTo", if bound',
      }),
    ),
    storage: Type.Array(Type.Union([Type.Literal('dense'), Type.Literal('topk'), Type.Literal('sampled')]), {
      default: ['dense'],
      uniqueItems: true,
      description: 'Storage modes (combinable); features are stored when featuresOutput is set',
    }),
    k: Type.Integer({ default: 20, minimum: 1, description: 'top-k: classes kept per sample' }),
    draws: Type.Integer({ default: 50, minimum: 1, maximum: 65535, description: 'sampled: draws N per sample' }),
    tau: Type.Number({ default: 1, exclusiveMinimum: 0, description: 'sampled: proposal q proportional to t^tau' }),
    seed: Type.Integer({
      default: 0,
      description: 'sampled: seed (each sample draws from a stream seeded by (seed, id))',
    }),
    batchSize: Type.Integer({ default: 64, minimum: 1 }),
    rowsPerShard: Type.Integer({ default: 8192, minimum: 1 }),
    split: Type.Optional(Type.String({ description: 'Only samples of this split; default all' })),
    rows: Type.Union([Type.Literal('all'), Type.Literal('classMap')], {
      default: 'all',
      description:
        "classMap: only rows whose label is one of the class map's global ids (a specialist on its own vertical; student-train joins teacher rows by id)",
    }),
    scale: Type.Number({ default: 1 / 255, description: 'pixels are multiplied by this before mean/std' }),
    mean: Type.Array(Type.Number(), { default: [], description: 'per-channel mean (after scale); empty = 0' }),
    std: Type.Array(Type.Number(), { default: [], description: 'per-channel std; empty = 1' }),
    inputLayout: Type.Union([Type.Literal('as-is'), Type.Literal('CHW')], {
      default: 'as-is',
      description: 'CHW: transpose HWC images for the model',
    }),
    pixelTransform: Type.Union([Type.Literal('model'), Type.Literal('js')], {
      default: 'model',
      description:
        'model: a float model is rewritten to take the uint8 pixels, with transpose, scale and mean/std as its first nodes (falls back to js where it cannot be); js: converted on the JS thread',
    }),
    verifyInput: Type.Union([Type.Literal('sha256'), Type.Literal('size')], {
      default: 'sha256',
      description:
        'sha256: hash every dataset shard against its manifest; size: sizes and Arrow structure only (inputs the store already verified)',
    }),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'teacher-infer',
  version: '1',
  description:
    'Run an ONNX teacher over a dataset; store dense logits, top-k log-probs, sampled soft labels and/or features as Arrow shards',
  params,
  resources: { cpus: 2, gpus: 0, memoryMiB: 2048 },
  async run(ctx) {
    const { extractTeacherOutputs } = await import('./infer.js');
    const p = ctx.params;
    if (p.classMap && ctx.inputs.classMap)
      throw new Error('teacher-infer: both the classMap parameter and a "classMap" input are given; use one');
    if (p.restrictTo && ctx.inputs.restrictTo)
      throw new Error('teacher-infer: both the restrictTo parameter and a "restrictTo" input are given; use one');
    const restrictTo = p.restrictTo ?? classMapFromInput(ctx.inputs.restrictTo, 'restrictTo');
    const result = await extractTeacherOutputs({
      modelPath: p.model ?? modelFromInput(ctx.input('model')),
      datasetDir: p.dataset ?? ctx.input('dataset'),
      outDir: ctx.outDir,
      teacherId: p.teacherId ?? ctx.stageId,
      inputName: p.input,
      outputName: p.output,
      featuresOutput: p.featuresOutput,
      activation: p.activation,
      temperature: p.temperature,
      numClasses: p.numClasses,
      classMap: p.classMap ?? classMapFromInput(ctx.inputs.classMap),
      ...(restrictTo ? { restrictTo } : {}),
      dense: p.storage.includes('dense'),
      topk: p.storage.includes('topk') ? { k: p.k } : undefined,
      sampled: p.storage.includes('sampled') ? { draws: p.draws, tau: p.tau, seed: p.seed } : undefined,
      batchSize: p.batchSize,
      rowsPerShard: p.rowsPerShard,
      threads: ctx.devices.cpus,
      gpus: ctx.devices.gpus,
      split: p.split,
      onlyClassMapRows: p.rows === 'classMap',
      scale: p.scale,
      mean: p.mean,
      std: p.std,
      inputLayout: p.inputLayout,
      pixelTransformIn: p.pixelTransform,
      verifyInput: p.verifyInput,
      signal: ctx.signal,
      progress: (done, total) => ctx.progress(done, total >= 0 ? total : undefined, 'samples'),
      warn: (m) => ctx.log.warn(m),
    });
    ctx.log.info(`execution provider: ${describeProvider(result.executionProvider)}`);
    const transform = result.pixelTransform;
    if (transform)
      ctx.log.info(
        `pixel transform: ${transform.applied ? `in the model (its input is now uint8 ${transform.input})` : `on the JS thread (${transform.reason})`}`,
      );
    ctx.log.info(
      `teacher ${p.teacherId ?? ctx.stageId}: ${result.samples} samples in ${result.seconds.toFixed(1)} s, ${result.manifest.shards.length} shards`,
    );
    return {
      metrics: {
        samples: result.samples,
        seconds: result.seconds,
        samples_per_s: result.samples / Math.max(result.seconds, 1e-9),
        on_gpu: result.executionProvider.name === 'cuda' ? 1 : 0,
      },
    };
  },
});

/**
 * A class map an upstream stage produced (e.g. eft-vertical, partition-subset): its directory's
 * class_map.json, a JSON array of non-negative integers (global id of each local class). Used for
 * the inputs "classMap" and "restrictTo". Undefined when unbound.
 */
function classMapFromInput(
  artifacts: readonly { path: string }[] | undefined,
  inputName = 'classMap',
): number[] | undefined {
  if (!artifacts || artifacts.length === 0) return undefined;
  if (artifacts.length > 1)
    throw new Error(`teacher-infer: input "${inputName}" is bound to ${artifacts.length} artifacts; bind one`);
  const path = resolve(artifacts[0]!.path, 'class_map.json');
  let map: unknown;
  try {
    map = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`teacher-infer: class map ${path}: cannot read (${(error as Error).message})`);
  }
  if (!Array.isArray(map) || map.length === 0 || !map.every((c) => Number.isInteger(c) && c >= 0)) {
    throw new Error(`teacher-infer: class map ${path} must be a non-empty JSON array of non-negative integers`);
  }
  return map as number[];
}

/** The model an upstream stage produced: its directory's model.onnx. */
function modelFromInput(dir: string): string {
  return resolve(dir, 'model.onnx');
}
