/**
 * The eval stage's work: runs every model (teachers first, then students) with onnxruntime-node
 * over one split of a dataset shard set in lockstep, batch by batch (each dataset batch is read
 * once and fed to every model; memory stays flat apart from what mean per-vertical AP keeps,
 * see classification/streaming.ts), accumulates the classification metrics, then measures
 * parameters, FLOPs and latency of each model under identical session options, and writes
 * report.json, report.md and SVG plots into the output directory (each file via temp + rename).
 *
 * Input preprocessing follows teacher-infer: pixels x scale, then (x - mean[c]) / std[c] per
 * channel; `inputLayout: 'CHW'` transposes HWC images; uint8 model inputs get the raw pixels.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { openShardSet, parseDatasetSchema, type DatasetInfo, type ShardSet } from '@distillery/runtime/shards';
import { readModelFile } from '@distillery/runtime/onnx';
import { StreamingClassificationMetrics, type ApScore, type VerticalMap } from '../classification/streaming.js';
import { measureLatency, modelCost } from '../classification/efficiency.js';
import {
  REPORT_FORMAT,
  renderMarkdown,
  type EfficiencyComparison,
  type EvalReport,
  type LossPoint,
  type ModelEfficiency,
  type ModelReport,
} from './report.js';
import { renderSvg, reportPlots } from './plots.js';
import type { MsdBundle } from '@distillery/plugin-multi-student';
import { hashFileContent, writeFileAtomicSync } from '@distillery/core/plugin';

/**
 * One model to evaluate: the directory holding model.onnx (or an MSD bundle's manifest.json, see
 * plugins/multi-student: router + K students evaluated as one composite model) and the stage id
 * that names it.
 */
export interface EvalModelSpec {
  name: string;
  role: 'teacher' | 'student';
  dir: string;
}

/** Everything one evaluation needs; the plugin fills it from params and the stage context. */
export interface EvaluateOptions {
  datasetDir: string;
  /** Teachers first: the first teacher is the reference for agreement and efficiency ratios. */
  models: EvalModelSpec[];
  /** Split to evaluate; '*' = every row. */
  split: string;
  batchSize: number;
  topk: number[];
  eceBins: number;
  /** 'logits' (softmaxed for ECE and AP) or 'probabilities' (used as they are). */
  outputs: 'logits' | 'probabilities';
  /** What mean per-vertical AP ranks (classification/streaming.ts; default softmax). */
  apScore?: ApScore;
  inputName?: string;
  outputName?: string;
  scale: number;
  mean: number[];
  std: number[];
  inputLayout: 'as-is' | 'CHW';
  verticals?: VerticalMap;
  latency: { warmup: number; iterations: number; batch: number };
  threads: number;
  /** GPUs the runner assigned: latency is then measured on the CUDA provider (CPU fallback with a warning). */
  gpus?: readonly number[];
  outDir: string;
  signal?: AbortSignal;
  progress?: (done: number, total: number | undefined) => void;
  warn?: (message: string) => void;
}

const isFixed = (d: number | string | undefined): d is number => typeof d === 'number' && d > 0;

/** An opened model with its checked input/output. */
interface OpenModel {
  spec: EvalModelSpec;
  path: string;
  session: Ort.InferenceSession;
  inputName: string;
  outputName: string;
  inputType: 'float32' | 'uint8';
  sampleDims: number[];
  fixedBatch: number | undefined;
  metrics: StreamingClassificationMetrics;
  /** Set for an MSD bundle (then `session` is its router and `path` its manifest.json). */
  bundle?: BundleState;
}

/** An opened MSD bundle and its routing counts. */
interface BundleState {
  runner: MsdBundle;
  samples: number;
  /** Samples the router sent to the student owning their label. */
  routedCorrectly: number;
  /** Samples the student of the true partition classifies correctly (the condition known). */
  knownPartitionCorrect: number;
  /** Samples routed to each student. */
  routedTo: number[];
}

/** Opens an MSD bundle directory (manifest.json) as one composite model. */
async function openBundle(spec: EvalModelSpec, o: EvaluateOptions, data: DatasetInfo): Promise<OpenModel> {
  const { MsdBundle } = await import('@distillery/plugin-multi-student');
  const runner = await MsdBundle.open(spec.dir, {
    intraOpNumThreads: Math.max(1, o.threads),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
  });
  const m = runner.manifest;
  const where = `MSD bundle ${spec.dir} (${spec.name})`;
  const width = m.input.shape.reduce((a, b) => a * b, 1);
  const problem =
    m.numClasses !== data.numClasses
      ? `covers ${m.numClasses} classes but the dataset has ${data.numClasses}`
      : width !== data.width
        ? `takes ${width} values per sample but the dataset's samples have ${data.width}`
        : undefined;
  if (problem) {
    await runner.release();
    throw new Error(`${where}: ${problem}`);
  }
  const metrics = new StreamingClassificationMetrics({
    numClasses: data.numClasses,
    topk: o.topk,
    eceBins: o.eceBins,
    probabilities: false,
    ...(o.verticals ? { verticals: o.verticals } : {}),
  });
  return {
    spec,
    path: join(spec.dir, 'manifest.json'),
    session: runner.router,
    inputName: m.input.name,
    outputName: 'scores',
    inputType: 'float32',
    sampleDims: m.input.shape,
    fixedBatch: undefined,
    metrics,
    bundle: {
      runner,
      samples: 0,
      routedCorrectly: 0,
      knownPartitionCorrect: 0,
      routedTo: new Array<number>(m.students).fill(0),
    },
  };
}

/**
 * Composite scores of a bundle for one batch, counting routing accuracy and the accuracy with the
 * partition known (misrouted samples are run again through their true partition's student).
 */
async function runBundleBatch(
  b: BundleState,
  input: Float32Array,
  rows: number,
  labels: Int32Array,
): Promise<Float32Array> {
  const routing = b.runner.manifest.classToStudent;
  const p = await b.runner.predict(input, rows);
  const width = input.length / rows;
  const misrouted: number[] = [];
  for (let r = 0; r < rows; r++) {
    const k = p.partition[r]!;
    b.routedTo[k] = b.routedTo[k]! + 1;
    if (k === routing[labels[r]!]) {
      b.routedCorrectly++;
      if (p.label[r] === labels[r]) b.knownPartitionCorrect++;
    } else misrouted.push(r);
  }
  if (misrouted.length > 0) {
    const sub = new Float32Array(misrouted.length * width);
    misrouted.forEach((r, i) => sub.set(input.subarray(r * width, (r + 1) * width), i * width));
    const known = await b.runner.predict(
      sub,
      misrouted.length,
      Int32Array.from(misrouted, (r) => routing[labels[r]!]!),
    );
    misrouted.forEach((r, i) => {
      if (known.label[i] === labels[r]) b.knownPartitionCorrect++;
    });
  }
  b.samples += rows;
  return p.scores;
}

/** Latency of a bundle per query batch: router + the chosen student(s), on seeded random input as measureLatency. */
async function bundleLatency(
  b: BundleState,
  shape: number[],
  warmup: number,
  iterations: number,
): Promise<{ p50Ms: number; p95Ms: number; throughput: number; batch: number; iterations: number }> {
  let state = 0;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
  const n = shape.reduce((a, c) => a * c, 1);
  const input = Float32Array.from({ length: n }, () => next() - 0.5);
  for (let i = 0; i < warmup; i++) await b.runner.predict(input, shape[0]!);
  const times: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await b.runner.predict(input, shape[0]!);
    times.push(performance.now() - t0);
  }
  const sorted = [...times].sort((x, y) => x - y);
  const pct = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil((q / 100) * sorted.length) - 1)]!;
  const mean = times.reduce((a, c) => a + c, 0) / times.length;
  return { p50Ms: pct(50), p95Ms: pct(95), throughput: (shape[0]! * 1000) / mean, batch: shape[0]!, iterations };
}

async function openModel(
  ort: typeof Ort,
  spec: EvalModelSpec,
  o: EvaluateOptions,
  data: DatasetInfo,
): Promise<OpenModel> {
  const path = join(spec.dir, 'model.onnx');
  if (!existsSync(path) && existsSync(join(spec.dir, 'manifest.json'))) return openBundle(spec, o, data);
  if (!existsSync(path))
    throw new Error(`model ${spec.name}: no model.onnx in ${spec.dir} (nor an MSD bundle manifest.json)`);
  let session: Ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path, {
      intraOpNumThreads: Math.max(1, o.threads),
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionProviders: ['cpu'],
    });
  } catch (error) {
    throw new Error(`ONNX model ${path}: cannot load (${(error as Error).message.split('\n')[0]})`);
  }
  try {
    const where = `ONNX model ${path} (${spec.name})`;
    const inputName = o.inputName ?? session.inputNames[0];
    const input = session.inputMetadata.find((m) => m.name === inputName);
    if (!inputName || !input || !input.isTensor)
      throw new Error(
        `${where}: no tensor input ${JSON.stringify(o.inputName)} (inputs: ${session.inputNames.join(', ')})`,
      );
    if (session.inputNames.length > 1 && !o.inputName)
      throw new Error(`${where}: several inputs (${session.inputNames.join(', ')}); set params.input`);
    if (input.type !== 'float32' && input.type !== 'uint8')
      throw new Error(`${where}: input ${inputName} has dtype ${input.type}; eval feeds float32 (or uint8 pixels)`);
    if (input.type === 'uint8' && data.input !== 'pixels')
      throw new Error(`${where}: input ${inputName} is uint8 but the dataset holds float32 features`);
    const dims = [...input.shape];
    const sampleDims = dims.slice(1);
    if (dims.length < 2 || !sampleDims.every(isFixed))
      throw new Error(`${where}: input ${inputName} has shape [${dims.join(', ')}]; need [batch, fixed dims...]`);
    const perSample = (sampleDims as number[]).reduce((a, b) => a * b, 1);
    if (perSample !== data.width)
      throw new Error(
        `${where}: input ${inputName} takes ${perSample} values per sample but the dataset's samples have shape [${data.shape.join(', ')}] (${data.width} values)`,
      );
    const outputName = o.outputName ?? session.outputNames[0]!;
    const output = session.outputMetadata.find((m) => m.name === outputName);
    if (!output || !output.isTensor)
      throw new Error(`${where}: no tensor output ${outputName} (outputs: ${session.outputNames.join(', ')})`);
    const outDims = [...output.shape];
    const width = outDims[outDims.length - 1];
    if (outDims.length !== 2)
      throw new Error(`${where}: output ${outputName} has shape [${outDims.join(', ')}]; need [batch, classes]`);
    if (isFixed(width) && width !== data.numClasses)
      throw new Error(`${where}: output ${outputName} has ${width} classes but the dataset has ${data.numClasses}`);
    if (output.type !== 'float32')
      throw new Error(`${where}: output ${outputName} has dtype ${output.type}, need float32`);
    const metrics = new StreamingClassificationMetrics({
      numClasses: data.numClasses,
      topk: o.topk,
      eceBins: o.eceBins,
      probabilities: o.outputs === 'probabilities',
      apScore: o.apScore ?? 'softmax',
      ...(o.verticals ? { verticals: o.verticals } : {}),
    });
    return {
      spec,
      path,
      session,
      inputName,
      outputName,
      inputType: input.type,
      sampleDims: sampleDims as number[],
      fixedBatch: isFixed(dims[0]) ? dims[0] : undefined,
      metrics,
    };
  } catch (error) {
    await session.release();
    throw error;
  }
}

/** Per-channel affine transform of teacher-infer (see module comment); returns a row filler. */
function inputTransform(
  o: EvaluateOptions,
  data: DatasetInfo,
): (dst: Float32Array, row: number, src: ArrayLike<number>, srcStart: number) => void {
  const width = data.width;
  const channels =
    data.shape.length === 3 ? (data.layout === 'HWC' ? data.shape[2]! : data.layout === 'CHW' ? data.shape[0]! : 1) : 1;
  const spatial = width / channels;
  const transpose = o.inputLayout === 'CHW' && data.layout === 'HWC' && channels > 1;
  if (o.mean.length > 0 && o.mean.length !== channels && o.mean.length !== 1)
    throw new Error(`params.mean has ${o.mean.length} values for ${channels} channels`);
  if (o.std.length > 0 && o.std.length !== channels && o.std.length !== 1)
    throw new Error(`params.std has ${o.std.length} values for ${channels} channels`);
  const mul = new Float32Array(channels);
  const add = new Float32Array(channels);
  for (let ch = 0; ch < channels; ch++) {
    const mean = o.mean.length ? o.mean[o.mean.length === 1 ? 0 : ch]! : 0;
    const std = o.std.length ? o.std[o.std.length === 1 ? 0 : ch]! : 1;
    if (!(std > 0)) throw new Error(`params.std[${ch}] must be > 0`);
    mul[ch] = (data.input === 'pixels' ? o.scale : 1) / std;
    add[ch] = -mean / std;
  }
  const chOf = (i: number) => (data.layout === 'CHW' ? Math.floor(i / spatial) : i % channels);
  return (dst, row, src, srcStart) => {
    const base = row * width;
    if (transpose) {
      for (let p = 0; p < spatial; p++)
        for (let ch = 0; ch < channels; ch++)
          dst[base + ch * spatial + p] = src[srcStart + p * channels + ch]! * mul[ch]! + add[ch]!;
    } else {
      for (let i = 0; i < width; i++) {
        const ch = chOf(i);
        dst[base + i] = src[srcStart + i]! * mul[ch]! + add[ch]!;
      }
    }
  };
}

/** Reads `lossHistory` from a model directory's training.json: [{step, loss, lr?, terms?}] or [loss, ...]. */
export function readLossHistory(dir: string): LossPoint[] | undefined {
  const file = join(dir, 'training.json');
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: malformed JSON (${(error as Error).message})`);
  }
  const history = (parsed as { lossHistory?: unknown } | null)?.lossHistory;
  if (history === undefined) return undefined;
  if (!Array.isArray(history)) throw new Error(`${file}: lossHistory must be an array`);
  return history.map((entry, i) => {
    const point =
      typeof entry === 'number'
        ? { step: i, loss: entry }
        : (entry as { step?: unknown; loss?: unknown; lr?: unknown; terms?: unknown });
    if (typeof point.step !== 'number' || typeof point.loss !== 'number')
      throw new Error(`${file}: lossHistory[${i}] must be a number or {"step": number, "loss": number}`);
    const lr = 'lr' in point && typeof point.lr === 'number' ? { lr: point.lr } : {};
    const rawTerms =
      'terms' in point && point.terms !== null && typeof point.terms === 'object'
        ? Object.entries(point.terms as Record<string, unknown>)
        : [];
    const terms = Object.fromEntries(rawTerms.filter((t): t is [string, number] => typeof t[1] === 'number'));
    return { step: point.step, loss: point.loss, ...lr, ...(rawTerms.length > 0 ? { terms } : {}) };
  });
}

/** Checks the options and opens the dataset; returns its shard set and schema. */
async function openEvalDataset(o: EvaluateOptions): Promise<{ dataset: ShardSet; data: DatasetInfo }> {
  if (o.models.length === 0)
    throw new Error('eval: no models to evaluate (bind the input "model" to one or more stages holding model.onnx)');
  const names = new Set<string>();
  for (const m of o.models) {
    if (names.has(m.name)) throw new Error(`eval: two models are named ${m.name}`);
    names.add(m.name);
  }
  if (o.topk.some((k) => !Number.isInteger(k) || k < 1))
    throw new Error(`params.topk: every k must be an integer >= 1, got ${JSON.stringify(o.topk)}`);
  const dataset = await openShardSet(o.datasetDir);
  const data = parseDatasetSchema(dataset.schema, `dataset ${o.datasetDir}`);
  if (data.labels !== 'single')
    throw new Error(
      `dataset ${o.datasetDir}: multi-label evaluation in the eval stage is not implemented (use multiLabelMAP from the library)`,
    );
  if (!(data.numClasses > 0)) throw new Error(`dataset ${o.datasetDir}: distillery.num_classes is missing`);
  if (o.verticals && o.verticals.classToVertical.length !== data.numClasses) {
    throw new Error(
      `vertical map covers ${o.verticals.classToVertical.length} classes but dataset ${o.datasetDir} has ${data.numClasses}`,
    );
  }
  return { dataset, data };
}

/** The batch size every model accepts: a model's fixed batch dimension, else `o.batchSize`. */
function commonBatchSize(models: readonly OpenModel[], o: EvaluateOptions): number {
  const fixed = [...new Set(models.map((m) => m.fixedBatch).filter((b): b is number => b !== undefined))];
  if (fixed.length > 1)
    throw new Error(
      `eval: models have different fixed batch sizes (${fixed.join(', ')}); export them with a dynamic batch dimension`,
    );
  const batchSize = fixed[0] ?? o.batchSize;
  if (fixed.length === 1 && batchSize !== o.batchSize)
    o.warn?.(`a model has a fixed batch size ${batchSize}; using it instead of ${o.batchSize}`);
  return batchSize;
}

/**
 * One batch of labelled samples of the evaluated split, preprocessed. The buffers are reused: a
 * batch is valid until the next one is requested.
 */
interface EvalBatch {
  /** Preprocessed inputs, `rows` x width (zero-padded to the batch size when `padded`). */
  floatInput: Float32Array;
  /** Raw values for uint8 models; undefined when no model takes uint8. */
  rawInput: Uint8Array | undefined;
  labels: Int32Array;
  ids: string[];
  rows: number;
}

/** What the iteration over the dataset saw, once it is done. */
interface IterationCounts {
  samples: number;
  skippedUnlabelled: number;
  splitsSeen: Set<string>;
}

/**
 * The data iteration: labelled samples of split `o.split` in batches of `batchSize`, through the
 * input transform; unlabelled samples (label -1) are counted and skipped. `padded` zeroes the
 * buffers after each batch (models with a fixed batch dimension read all of it).
 */
async function* labelledBatches(
  dataset: ShardSet,
  data: DatasetInfo,
  o: EvaluateOptions,
  batchSize: number,
  rawNeeded: boolean,
  padded: boolean,
  counts: IterationCounts,
): AsyncGenerator<EvalBatch> {
  const fill = inputTransform(o, data);
  const width = data.width;
  const batch: EvalBatch = {
    floatInput: new Float32Array(batchSize * width),
    rawInput: rawNeeded ? new Uint8Array(batchSize * width) : undefined,
    labels: new Int32Array(batchSize),
    ids: [],
    rows: 0,
  };
  const emitted = function* (): Generator<EvalBatch> {
    yield batch;
    counts.samples += batch.rows;
    batch.rows = 0;
    batch.ids.length = 0;
    if (padded) {
      batch.floatInput.fill(0);
      batch.rawInput?.fill(0);
    }
  };
  for await (const shard of dataset.batches()) {
    if (o.signal?.aborted) throw new Error('eval: cancelled');
    const batchIds = shard.strings('id');
    const splits = shard.strings('split');
    const label = shard.numeric('label');
    const values = shard.numeric(data.input);
    for (let r = 0; r < shard.numRows; r++) {
      counts.splitsSeen.add(splits[r]!);
      if (o.split !== '*' && splits[r] !== o.split) continue;
      const y = label[r]!;
      if (y === -1) {
        counts.skippedUnlabelled++;
        continue;
      }
      if (!Number.isInteger(y) || y < 0 || y >= data.numClasses) {
        throw new Error(`dataset ${shard.file}: sample ${batchIds[r]} has label ${y}, outside [0, ${data.numClasses})`);
      }
      fill(batch.floatInput, batch.rows, values, r * width);
      if (batch.rawInput) batch.rawInput.set(values.subarray(r * width, (r + 1) * width), batch.rows * width);
      batch.labels[batch.rows] = y;
      batch.ids.push(batchIds[r]!);
      batch.rows++;
      if (batch.rows === batchSize) yield* emitted();
    }
  }
  if (batch.rows > 0) yield* emitted();
}

/**
 * The model runner: every model on one batch, accumulating its metrics; the reference teacher
 * runs first and its top-1 feeds the others' agreement.
 */
async function runModelsOnBatch(
  ort: typeof Ort,
  models: readonly OpenModel[],
  reference: OpenModel | undefined,
  batch: EvalBatch,
  data: DatasetInfo,
): Promise<void> {
  const { rows, labels, ids } = batch;
  const width = data.width;
  let refTop1: Int32Array | undefined;
  for (const m of models) {
    if (m.bundle) {
      const top1 = m.metrics.add(
        await runBundleBatch(m.bundle, batch.floatInput.subarray(0, rows * width), rows, labels),
        labels,
        rows,
        m === reference ? undefined : refTop1,
      );
      if (m === reference) refTop1 = top1;
      continue;
    }
    const n = m.fixedBatch ?? rows;
    const tensor =
      m.inputType === 'uint8'
        ? new ort.Tensor('uint8', batch.rawInput!.subarray(0, n * width), [n, ...m.sampleDims])
        : new ort.Tensor('float32', batch.floatInput.subarray(0, n * width), [n, ...m.sampleDims]);
    const out = await m.session.run({ [m.inputName]: tensor }, [m.outputName]);
    const result = out[m.outputName]!;
    const c = result.dims[1];
    if (result.dims.length !== 2 || c !== data.numClasses) {
      throw new Error(
        `ONNX model ${m.path} (${m.spec.name}): output ${m.outputName} has shape [${result.dims.join(', ')}] but the dataset has ${data.numClasses} classes`,
      );
    }
    const scores = (result.data as Float32Array).subarray(0, rows * c);
    for (let i = 0; i < scores.length; i++) {
      if (!Number.isFinite(scores[i]!))
        throw new Error(
          `ONNX model ${m.path} (${m.spec.name}): non-finite output (NaN or Inf) for sample ${ids[Math.floor(i / c)]}`,
        );
    }
    const top1 = m.metrics.add(scores, labels, rows, m === reference ? undefined : refTop1);
    if (m === reference) refTop1 = top1;
    result.dispose();
  }
}

/** Parameters, FLOPs and latency of one (non-bundle) model, with its metrics and loss history. */
async function modelReport(
  m: OpenModel,
  shape: number[],
  o: EvaluateOptions,
  warnOnce: (message: string) => void,
): Promise<ModelReport> {
  let flops: number | null = null;
  let flopsNote: string | undefined;
  const graph = await readModelFile(m.path);
  let parameters: number;
  try {
    const cost = modelCost(graph, { [m.inputName]: shape });
    parameters = cost.parameters;
    flops = cost.flops;
  } catch (error) {
    // Parameters do not depend on the op set; FLOPs are left out rather than undercounted.
    parameters = modelCost({ ...graph, graph: { ...graph.graph, nodes: [] } }, { [m.inputName]: shape }).parameters;
    flopsNote = (error as Error).message;
    o.warn?.(`model ${m.spec.name}: FLOPs not counted (${flopsNote})`);
  }
  const latency = await measureLatency(m.path, m.fixedBatch ? [m.fixedBatch, ...m.sampleDims] : shape, {
    warmup: o.latency.warmup,
    iterations: o.latency.iterations,
    intraOpNumThreads: Math.max(1, o.threads),
    gpus: o.gpus ?? [],
    warn: warnOnce,
  });
  const efficiency: ModelEfficiency = {
    parameters,
    flops,
    latencyP50Ms: latency.p50Ms,
    latencyP95Ms: latency.p95Ms,
    throughput: latency.throughput,
    batch: latency.batch,
    iterations: latency.iterations,
    threads: Math.max(1, o.threads),
    provider: latency.provider,
    ...(flopsNote ? { flopsNote } : {}),
  };
  const lossHistory = readLossHistory(m.spec.dir);
  return {
    name: m.spec.name,
    role: m.spec.role,
    modelSha256: await hashFileContent(m.path),
    metrics: m.metrics.summary(),
    efficiency,
    ...(lossHistory ? { lossHistory } : {}),
  };
}

/** Efficiency of each model, one at a time under the same session options. */
async function modelReports(models: readonly OpenModel[], o: EvaluateOptions): Promise<ModelReport[]> {
  const reports: ModelReport[] = [];
  // One CPU-fallback warning for all models, not one per model.
  const warned = new Set<string>();
  const warnOnce = (message: string) => {
    if (warned.has(message)) return;
    warned.add(message);
    o.warn?.(message);
  };
  for (const m of models) {
    if (o.signal?.aborted) throw new Error('eval: cancelled');
    const shape = [o.latency.batch, ...m.sampleDims];
    reports.push(m.bundle ? await bundleReport(m, m.bundle, shape, o) : await modelReport(m, shape, o, warnOnce));
  }
  return reports;
}

/** Each student against the reference teacher: speed-up, parameter and FLOP reductions. */
function efficiencyComparisons(reports: readonly ModelReport[], ref: ModelReport | undefined): EfficiencyComparison[] {
  if (!ref) return [];
  return reports
    .filter((r) => r.role === 'student')
    .map((s) => ({
      teacher: ref.name,
      student: s.name,
      speedup: ref.efficiency.latencyP50Ms / s.efficiency.latencyP50Ms,
      parameterReduction: ref.efficiency.parameters / s.efficiency.parameters,
      flopReduction:
        ref.efficiency.flops !== null && s.efficiency.flops !== null ? ref.efficiency.flops / s.efficiency.flops : null,
    }));
}

/** Writes the report: plots, report.json and report.md (each atomically). */
async function writeReport(report: EvalReport, outDir: string): Promise<void> {
  await writePlots(report, outDir);
  writeFileAtomicSync(join(outDir, 'report.json'), `${JSON.stringify(report, null, 1)}\n`);
  writeFileAtomicSync(join(outDir, 'report.md'), renderMarkdown(report));
}

/**
 * The eval stage: opens the dataset and the models, runs every model on each batch of the split
 * (labelledBatches, runModelsOnBatch), measures each model's efficiency (modelReports) and writes
 * the report (writeReport).
 */
export async function evaluateModels(o: EvaluateOptions): Promise<EvalReport> {
  const { dataset, data } = await openEvalDataset(o);
  const ort = await import('onnxruntime-node');
  const models: OpenModel[] = [];
  try {
    for (const spec of o.models) models.push(await openModel(ort, spec, o, data));
    const batchSize = commonBatchSize(models, o);
    const reference = models.find((m) => m.spec.role === 'teacher');
    const counts: IterationCounts = { samples: 0, skippedUnlabelled: 0, splitsSeen: new Set() };
    const rawNeeded = models.some((m) => m.inputType === 'uint8');
    const padded = models.some((m) => m.fixedBatch !== undefined);
    for await (const batch of labelledBatches(dataset, data, o, batchSize, rawNeeded, padded, counts)) {
      await runModelsOnBatch(ort, models, reference, batch, data);
      o.progress?.(counts.samples + batch.rows, o.split === '*' ? dataset.totalRows : undefined);
    }
    if (counts.samples === 0)
      throw new Error(
        `dataset ${o.datasetDir}: no labelled samples in split "${o.split}" (splits present: ${[...counts.splitsSeen].join(', ') || 'none'})`,
      );
    if (counts.skippedUnlabelled > 0) o.warn?.(`${counts.skippedUnlabelled} unlabelled samples (label -1) skipped`);

    const reports = await modelReports(models, o);
    const ref = reports.find((r) => r.role === 'teacher');
    const report: EvalReport = {
      format: REPORT_FORMAT,
      version: 1,
      dataset: {
        split: o.split,
        samples: counts.samples,
        skippedUnlabelled: counts.skippedUnlabelled,
        numClasses: data.numClasses,
        ...(data.classNames ? { classNames: data.classNames } : {}),
      },
      topk: o.topk,
      eceBins: o.eceBins,
      ...(o.verticals
        ? {
            verticals: { names: o.verticals.names, classToVertical: Array.from(o.verticals.classToVertical) },
            apScore: o.apScore ?? 'softmax',
          }
        : {}),
      ...(ref ? { referenceTeacher: ref.name } : {}),
      models: reports,
      efficiency: efficiencyComparisons(reports, ref),
      plots: [],
    };
    await writeReport(report, o.outDir);
    return report;
  } finally {
    for (const m of models) await (m.bundle ? m.bundle.runner.release() : m.session.release());
  }
}

/**
 * Report of a bundle: parameters = router + all students (the total), FLOPs = router + the
 * costliest student (what one query runs), latency = router + the chosen student.
 */
async function bundleReport(m: OpenModel, b: BundleState, shape: number[], o: EvaluateOptions): Promise<ModelReport> {
  const manifest = b.runner.manifest;
  const cost = async (file: string) => {
    const graph = await readModelFile(join(m.spec.dir, file));
    try {
      return modelCost(graph, { [m.inputName]: shape });
    } catch (error) {
      return {
        parameters: modelCost({ ...graph, graph: { ...graph.graph, nodes: [] } }, { [m.inputName]: shape }).parameters,
        flops: null as number | null,
        note: (error as Error).message,
      };
    }
  };
  const router = await cost(manifest.router.file);
  const students = [];
  for (const s of manifest.studentModels) students.push(await cost(s.file));
  const studentFlops = students.map((s) => s.flops);
  const flops =
    router.flops !== null && studentFlops.every((f) => f !== null)
      ? router.flops + Math.max(...(studentFlops as number[]))
      : null;
  const latency = await bundleLatency(b, shape, o.latency.warmup, o.latency.iterations);
  const total = router.parameters + students.reduce((a, s) => a + s.parameters, 0);
  const efficiency: ModelEfficiency = {
    parameters: total,
    flops,
    latencyP50Ms: latency.p50Ms,
    latencyP95Ms: latency.p95Ms,
    throughput: latency.throughput,
    batch: latency.batch,
    iterations: latency.iterations,
    threads: Math.max(1, o.threads),
    provider: 'cpu',
    ...(flops === null ? { flopsNote: 'FLOPs of a bundle model not counted (an op the counter does not know)' } : {}),
  };
  return {
    name: m.spec.name,
    role: m.spec.role,
    modelSha256: await hashFileContent(m.path),
    metrics: m.metrics.summary(),
    efficiency,
    composite: {
      students: manifest.students,
      routingAccuracy: b.routedCorrectly / b.samples,
      knownPartitionTop1: b.knownPartitionCorrect / b.samples,
      routedShare: b.routedTo.map((c) => c / b.samples),
      totalParameters: total,
      activeParameters: router.parameters + Math.max(...students.map((s) => s.parameters)),
      routerParameters: router.parameters,
    },
  };
}

/**
 * Writes each plot as a Vega-Lite spec (`<name>.vl.json`) and its SVG rendering (`<name>.svg`),
 * and lists the SVGs in `report.plots`.
 */
async function writePlots(report: EvalReport, outDir: string): Promise<void> {
  for (const plot of reportPlots(report)) {
    writeFileAtomicSync(join(outDir, `${plot.name}.vl.json`), `${JSON.stringify(plot.spec, null, 1)}\n`);
    writeFileAtomicSync(join(outDir, `${plot.name}.svg`), await renderSvg(plot.spec));
    report.plots.push(`${plot.name}.svg`);
  }
}
