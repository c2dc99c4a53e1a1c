/**
 * Teacher extraction: runs one ONNX teacher over a dataset shard set and streams its outputs into
 * a teacher-output shard set (schema: @distillery/core shards/schema.ts). The session lives in a
 * worker thread (core onnx/session-thread.ts): inference of batch i+1 runs there while batch i is
 * post-processed and written, and batch i+2 is read and converted, on the JS thread.
 * Any error aborts the shard writer, which deletes every shard it wrote.
 */
import { hashFileContent } from '@distillery/core/plugin';
import {
  ThreadedSession,
  type InputTransformOutcome,
  type ThreadRunResult,
  type ThreadValueMetadata,
} from '@distillery/runtime/onnx/session-thread';
import {
  ShardWriter,
  openShardSet,
  parseDatasetSchema,
  teacherOutputSchema,
  type ColumnValues,
  type DatasetInfo,
  type NumericArray,
  type ShardBatch,
  type ShardManifest,
  type StorageSpec,
} from '@distillery/runtime/shards';
import type { PixelInputTransform } from '@distillery/runtime/onnx/input-transform';
import type { ProviderOutcome } from '@distillery/runtime/onnx/execution-provider';
import { firstNonFiniteRow, sampledRows, topKRows } from './outputs.js';

/** Everything one extraction needs; the plugin fills it from params and the stage context. */
export interface ExtractOptions {
  modelPath: string;
  datasetDir: string;
  outDir: string;
  teacherId: string;
  /** Model input to feed (default: the model's only / first input). */
  inputName?: string;
  /** Model output holding logits (default: the first output). */
  outputName?: string;
  /** Model output holding penultimate features, stored when set. */
  featuresOutput?: string;
  activation: 'softmax' | 'sigmoid';
  temperature: number;
  /** Global label space size (default: max(classMap)+1, or the model's class count). */
  numClasses?: number;
  /** Global id of each local class of the teacher (a specialist's vertical); default identity. */
  classMap?: number[];
  /**
   * Keep only these output columns of the teacher, in this order (e.g. one multi-student
   * partition's classes, local order): the outputs then live in that restricted label space
   * (num_classes = restrictTo.length, no class map; logits are the gathered columns, top-k and
   * samples renormalised over them, i.e. the teacher conditioned on the subset). Recorded in the
   * metadata key `distillery.restricted_to`. Not combinable with classMap.
   */
  restrictTo?: number[];
  dense: boolean;
  topk?: { k: number };
  sampled?: { draws: number; tau: number; seed: number };
  batchSize: number;
  /** Batches queued on the inference thread at once (default 4, at least 2). */
  queueDepth?: number;
  rowsPerShard: number;
  threads: number;
  gpus: readonly number[];
  /** Only rows of this split (default: every row). */
  split?: string;
  /**
   * Only rows whose label (any label, multi-label data) is one of classMap's global ids: a
   * specialist inferred on its own vertical's rows only (Knowledge Concentration reads no other).
   * Needs classMap and a labelled dataset; unlabelled rows (label -1) are skipped.
   */
  onlyClassMapRows?: boolean;
  /** Input transform for pixels: x * scale, then (x - mean[c]) / std[c] per channel (last dim for HWC). */
  scale: number;
  mean: number[];
  std: number[];
  /** 'CHW' transposes HWC dataset images to CHW for the model. */
  inputLayout: 'as-is' | 'CHW';
  /**
   * Where uint8 pixels become the model's float input (transpose, scale, mean/std): 'model'
   * (default) prepends those steps to the float model's graph so it takes the raw pixels
   * (core onnx/input-transform.ts; falls back to 'js' where the model cannot be rewritten);
   * 'js' converts on the JS thread.
   */
  pixelTransformIn?: 'model' | 'js';
  /**
   * How dataset shards are checked against their manifest: 'sha256' (default) hashes every
   * shard; 'size' checks sizes and Arrow structure only, for inputs already verified (e.g. by the
   * artifact store when they were produced or pulled).
   */
  verifyInput?: 'sha256' | 'size';
  signal?: AbortSignal;
  progress?: (done: number, total: number) => void;
  warn?: (message: string) => void;
}

export interface ExtractResult {
  samples: number;
  seconds: number;
  manifest: ShardManifest;
  /** For pixel datasets: whether the pixel transform went into the model (or why not). */
  pixelTransform?: InputTransformOutcome;
  /** The execution provider inference ran on (CUDA when a GPU was assigned and it loaded; else CPU, and why). */
  executionProvider: ProviderOutcome;
}

function dimsOf(meta: ThreadValueMetadata): (number | string)[] | undefined {
  return meta.isTensor ? [...(meta.shape ?? [])] : undefined;
}
const isFixed = (d: number | string | undefined): d is number => typeof d === 'number' && d > 0;

/** Checks a class map against the global label space; returns it as Int32Array. */
export function checkClassMap(classMap: number[], numClasses: number, localClasses: number): Int32Array {
  if (classMap.length !== localClasses) {
    throw new Error(`classMap has ${classMap.length} entries but the teacher outputs ${localClasses} classes`);
  }
  const seen = new Set<number>();
  classMap.forEach((g, j) => {
    if (!Number.isInteger(g) || g < 0 || g >= numClasses)
      throw new Error(`classMap[${j}] = ${g} is out of range of the global label space [0, ${numClasses})`);
    if (seen.has(g)) throw new Error(`classMap[${j}] = ${g} is a duplicate global id`);
    seen.add(g);
  });
  return Int32Array.from(classMap);
}

/** Checks restrictTo: distinct output columns of the teacher; returns it as Int32Array. */
export function checkRestriction(restrictTo: number[], localClasses: number, hasClassMap: boolean): Int32Array {
  if (hasClassMap)
    throw new Error('restrictTo and classMap cannot be combined: restrictTo defines the output label space itself');
  if (restrictTo.length === 0) throw new Error('restrictTo is empty');
  const seen = new Set<number>();
  restrictTo.forEach((col, j) => {
    if (!Number.isInteger(col) || col < 0 || col >= localClasses)
      throw new Error(`restrictTo[${j}] = ${col} is not an output column of the teacher (it has ${localClasses})`);
    if (seen.has(col)) throw new Error(`restrictTo[${j}] = ${col} is a duplicate`);
    seen.add(col);
  });
  return Int32Array.from(restrictTo);
}

/** Row-major gather: out[r, j] = logits[r, columns[j]]. */
export function gatherColumns(logits: Float32Array, rows: number, width: number, columns: Int32Array): Float32Array {
  const m = columns.length;
  const out = new Float32Array(rows * m);
  for (let r = 0; r < rows; r++) for (let j = 0; j < m; j++) out[r * m + j] = logits[r * width + columns[j]!]!;
  return out;
}

interface ModelIo {
  inputName: string;
  outputName: string;
  featuresOutput: string | undefined;
  /** Fixed batch size of the model, or undefined when the batch dim is dynamic. */
  fixedBatch: number | undefined;
  /** Input dims after the batch dim. */
  sampleDims: number[];
  inputType: 'float32' | 'uint8';
  localClasses: number;
  featureDim: number | undefined;
  /** Dims of the features output after the batch dim. */
  featureShape: number[] | undefined;
}

function checkModelIo(session: ThreadedSession, o: ExtractOptions, data: DatasetInfo): ModelIo {
  const where = `ONNX model ${o.modelPath}`;
  const inputName = session.inputTransform.applied
    ? session.inputTransform.input
    : (o.inputName ?? session.inputNames[0]);
  const input = session.inputMetadata.find((m) => m.name === inputName);
  if (!inputName || !input)
    throw new Error(`${where}: no input ${JSON.stringify(o.inputName)} (inputs: ${session.inputNames.join(', ')})`);
  if (session.inputNames.length > 1 && !o.inputName)
    throw new Error(`${where}: several inputs (${session.inputNames.join(', ')}); set params.input`);
  if (!input.isTensor || (input.type !== 'float32' && input.type !== 'uint8')) {
    throw new Error(
      `${where}: input ${inputName} has dtype ${input.isTensor ? input.type : 'non-tensor'}; teacher-infer feeds float32 (or uint8 pixels)`,
    );
  }
  if (input.type === 'uint8' && data.input !== 'pixels')
    throw new Error(`${where}: input ${inputName} is uint8 but the dataset holds float32 features`);
  const dims = dimsOf(input)!;
  const sampleDims = dims.slice(1);
  if (dims.length < 2 || !sampleDims.every(isFixed)) {
    throw new Error(`${where}: input ${inputName} has shape [${dims.join(', ')}]; need [batch, fixed dims...]`);
  }
  const perSample = sampleDims.reduce((a, b) => a * b, 1);
  if (perSample !== data.width) {
    throw new Error(
      `${where}: input ${inputName} expects shape [${dims.join(', ')}] (${perSample} values per sample) but the dataset's samples have shape [${data.shape.join(', ')}] (${data.width} values)`,
    );
  }
  const outputName = o.outputName ?? session.outputNames[0]!;
  const output = session.outputMetadata.find((m) => m.name === outputName);
  if (!output || !output.isTensor)
    throw new Error(`${where}: no tensor output ${outputName} (outputs: ${session.outputNames.join(', ')})`);
  const outDims = dimsOf(output)!;
  const localClasses = outDims[outDims.length - 1];
  if (outDims.length !== 2 || !isFixed(localClasses))
    throw new Error(`${where}: output ${outputName} has shape [${outDims.join(', ')}]; need [batch, classes]`);
  if (output.type !== 'float32')
    throw new Error(`${where}: output ${outputName} has dtype ${output.type}, need float32`);
  let featureDim: number | undefined;
  let featureShape: number[] | undefined;
  if (o.featuresOutput) {
    const f = session.outputMetadata.find((m) => m.name === o.featuresOutput);
    if (!f || !f.isTensor)
      throw new Error(
        `${where}: no tensor output ${o.featuresOutput} for features (outputs: ${session.outputNames.join(', ')})`,
      );
    const fd = dimsOf(f)!.slice(1);
    if (!fd.every(isFixed) || f.type !== 'float32')
      throw new Error(
        `${where}: features output ${o.featuresOutput} must be float32 [batch, fixed dims], got ${f.type} [${dimsOf(f)!.join(', ')}]`,
      );
    featureDim = fd.reduce((a, b) => a * b, 1);
    featureShape = fd as number[];
  }
  const batchDim = dims[0];
  return {
    inputName,
    outputName,
    featuresOutput: o.featuresOutput,
    fixedBatch: isFixed(batchDim) ? batchDim : undefined,
    sampleDims: sampleDims as number[],
    inputType: input.type,
    localClasses,
    featureDim,
    featureShape,
  };
}

/** a[start + i*stride] = a[...] * mul + add for i < n. */
function affineInPlace(a: Float32Array, start: number, n: number, stride: number, mul: number, add: number): void {
  for (let i = 0, j = start; i < n; i++, j += stride) a[j] = a[j]! * mul + add;
}

/** One model batch being assembled: flat inputs plus the sample ids. */
interface PendingBatch {
  input: Float32Array | Uint8Array;
  ids: string[];
  rows: number;
}

/** How dataset samples become model inputs: x * mul[c] + add[c] per channel, optional HWC -> CHW. */
interface InputPrep {
  width: number;
  channels: number;
  spatial: number;
  transpose: boolean;
  channelMul: Float32Array;
  channelAdd: Float32Array;
  /** The same mul and add for every channel. */
  uniform: boolean;
  identity: boolean;
}

function inputPrep(o: ExtractOptions, data: DatasetInfo): InputPrep {
  const width = data.width;
  const channels =
    data.layout === 'HWC' && data.shape.length === 3
      ? data.shape[2]!
      : data.layout === 'CHW' && data.shape.length === 3
        ? data.shape[0]!
        : 1;
  if (o.mean.length > 0 && o.mean.length !== channels && o.mean.length !== 1)
    throw new Error(`mean has ${o.mean.length} values for ${channels} channels`);
  if (o.std.length > 0 && o.std.length !== channels && o.std.length !== 1)
    throw new Error(`std has ${o.std.length} values for ${channels} channels`);
  const channelMul = new Float32Array(channels);
  const channelAdd = new Float32Array(channels);
  for (let ch = 0; ch < channels; ch++) {
    const mean = o.mean.length ? o.mean[o.mean.length === 1 ? 0 : ch]! : 0;
    const std = o.std.length ? o.std[o.std.length === 1 ? 0 : ch]! : 1;
    if (!(std > 0)) throw new Error(`std[${ch}] must be > 0`);
    const scale = data.input === 'pixels' ? o.scale : 1;
    channelMul[ch] = scale / std;
    channelAdd[ch] = -mean / std;
  }
  return {
    width,
    channels,
    spatial: width / channels,
    channelMul,
    channelAdd,
    transpose: o.inputLayout === 'CHW' && data.layout === 'HWC' && channels > 1,
    uniform: channelMul.every((v) => v === channelMul[0]) && channelAdd.every((v) => v === channelAdd[0]),
    identity: channelMul.every((v) => v === 1) && channelAdd.every((v) => v === 0),
  };
}

/** The pixel transform to move into the model (see ExtractOptions.pixelTransformIn), if any. */
function pixelTransformFor(o: ExtractOptions, data: DatasetInfo, prep: InputPrep): PixelInputTransform | undefined {
  if (data.input !== 'pixels' || o.pixelTransformIn === 'js') return undefined;
  return {
    input: o.inputName,
    pixelShape: data.shape,
    hwcToChw: prep.transpose,
    mul: prep.uniform ? [prep.channelMul[0]!] : Array.from(prep.channelMul),
    add: prep.uniform ? [prep.channelAdd[0]!] : Array.from(prep.channelAdd),
    channelAxis: prep.transpose || data.layout === 'CHW' ? 'first' : 'last',
  };
}

export async function extractTeacherOutputs(o: ExtractOptions): Promise<ExtractResult> {
  const t0 = performance.now();
  if (!(o.temperature > 0)) throw new Error(`temperature must be > 0, got ${o.temperature}`);
  if (o.sampled && o.activation !== 'softmax')
    throw new Error('sampled storage needs a softmax teacher (sigmoid outputs are not one distribution)');
  const dataset = await openShardSet(o.datasetDir);
  const data = parseDatasetSchema(dataset.schema, `dataset ${o.datasetDir}`);
  const prep = inputPrep(o, data);
  // Start-up work overlaps: the worker loads the model while this thread hashes it and reads
  // the first dataset shard.
  const opening = ThreadedSession.open(o.modelPath, {
    threads: o.threads,
    gpus: o.gpus,
    warn: o.warn,
    pixelTransform: pixelTransformFor(o, data, prep),
  });
  opening.catch(() => {}); // awaited below
  const source = dataset.batches({ reuseBuffers: true, verify: o.verifyInput ?? 'sha256' });
  const first = source.next();
  first.catch(() => {}); // surfaces when runBatches reaches it
  let modelSha256: string;
  try {
    modelSha256 = await hashFileContent(o.modelPath);
  } catch (error) {
    await opening.then(
      (s) => s.release(),
      () => {},
    );
    throw new Error(`ONNX model ${o.modelPath}: cannot read (${(error as Error).message})`);
  }
  const session = await opening;
  try {
    const io = checkModelIo(session, o, data);
    const restrict = o.restrictTo
      ? checkRestriction(o.restrictTo, io.localClasses, o.classMap !== undefined)
      : undefined;
    const outClasses = restrict ? restrict.length : io.localClasses;
    const numClasses = o.numClasses ?? (o.classMap ? Math.max(...o.classMap) + 1 : outClasses);
    const classMap = o.classMap ? checkClassMap(o.classMap, numClasses, io.localClasses) : undefined;
    if (!classMap && numClasses !== outClasses)
      throw new Error(
        `numClasses ${numClasses} differs from the teacher's ${outClasses} outputs${restrict ? ' after restrictTo' : ''}; give a classMap`,
      );
    if (o.onlyClassMapRows && !classMap)
      throw new Error('onlyClassMapRows needs a classMap (the global ids whose rows to keep)');
    if (o.topk && (!Number.isInteger(o.topk.k) || o.topk.k < 1 || o.topk.k > outClasses))
      throw new Error(`topk.k = ${o.topk.k} must be in [1, ${outClasses}]`);
    if (o.sampled && (!Number.isInteger(o.sampled.draws) || o.sampled.draws < 1 || o.sampled.draws > 65535))
      throw new Error(`sampled.draws = ${o.sampled.draws} must be in [1, 65535]`);
    if (!o.dense && !o.topk && !o.sampled && !io.featureDim)
      throw new Error('no storage mode selected (dense, topk, sampled or features)');
    const storage: StorageSpec = { dense: o.dense };
    if (o.topk) storage.topk = { k: o.topk.k };
    if (o.sampled) storage.sampled = { ...o.sampled };
    if (io.featureDim) storage.features = { dim: io.featureDim, output: io.featuresOutput!, shape: io.featureShape! };
    const schema = teacherOutputSchema({
      teacherId: o.teacherId,
      modelSha256,
      temperature: o.temperature,
      activation: o.activation,
      numClasses,
      classMap: o.classMap,
      storage,
    });
    if (restrict) schema.metadata['distillery.restricted_to'] = JSON.stringify(Array.from(restrict));
    // Record batches of ~1 MiB: small rows (dense logits of 10 classes) are coalesced, since every
    // record batch has a fixed encoding cost on the JS thread.
    const rowBytes =
      16 +
      (o.dense ? outClasses * 4 : 0) +
      (o.topk ? o.topk.k * 8 + 4 : 0) +
      (o.sampled ? Math.min(o.sampled.draws, outClasses) * 8 : 0) +
      (io.featureDim ?? 0) * 4;
    const minBatchRows = Math.max(1, Math.min(o.rowsPerShard, Math.floor((1 << 20) / rowBytes)));
    const writer = await ShardWriter.create({ dir: o.outDir, schema, rowsPerShard: o.rowsPerShard, minBatchRows });
    try {
      const samples = await runBatches(
        session,
        io,
        o,
        data,
        prep,
        withFirst(first, source),
        dataset.totalRows,
        classMap,
        restrict,
        writer,
      );
      const manifest = await writer.close();
      const pixelTransform =
        data.input !== 'pixels'
          ? undefined
          : o.pixelTransformIn === 'js'
            ? { applied: false as const, reason: 'pixelTransform: js' }
            : session.inputTransform;
      return {
        samples,
        seconds: (performance.now() - t0) / 1000,
        manifest,
        executionProvider: session.executionProvider,
        ...(pixelTransform ? { pixelTransform } : {}),
      };
    } catch (error) {
      await writer.abort();
      throw error;
    }
  } finally {
    await session.release();
  }
}

/** `rest` with its already requested first result in front. */
async function* withFirst<T>(first: Promise<IteratorResult<T>>, rest: AsyncGenerator<T>): AsyncGenerator<T> {
  const head = await first;
  if (head.done) return;
  yield head.value;
  yield* rest;
}

/**
 * The input transform as a row copier: `fill` copies sample `r` of a dataset batch into model-input
 * row `row`, applying the transform. The copy (with its uint8 -> float32 conversion) is
 * TypedArray.set, native code; the affine transform is then applied in place by monomorphic loops
 * (a generic element loop over differently typed arrays ran at ~6 ns per value and was the
 * extraction's main cost). uint8 pixels with one transform for all channels go through a 256-entry
 * table instead. `rawCopy`: samples reach the model unchanged (fill is a plain copy).
 */
function sampleFiller(
  prep: InputPrep,
  data: DatasetInfo,
  useUint8: boolean,
  transpose: boolean,
): {
  fill: (dst: Float32Array | Uint8Array, row: number, src: NumericArray, srcStart: number) => void;
  rawCopy: boolean;
} {
  const { width, channels, spatial, channelMul, channelAdd, uniform, identity } = prep;
  // uint8 models get the raw pixels (transposed when asked); float models the transformed values.
  const lut =
    !useUint8 && uniform && data.input === 'pixels'
      ? Float32Array.from({ length: 256 }, (_, v) => v * channelMul[0]! + channelAdd[0]!)
      : undefined;
  const [transposeMul, transposeAdd] = useUint8
    ? [new Float32Array(channels).fill(1), new Float32Array(channels)]
    : [channelMul, channelAdd];
  const fill = (dst: Float32Array | Uint8Array, row: number, src: NumericArray, srcStart: number) => {
    const base = row * width;
    if (lut && !transpose && src instanceof Uint8Array) {
      for (let i = 0; i < width; i++) dst[base + i] = lut[src[srcStart + i]!]!;
      return;
    }
    if (transpose) {
      for (let p = 0; p < spatial; p++)
        for (let ch = 0; ch < channels; ch++) {
          dst[base + ch * spatial + p] = src[srcStart + p * channels + ch]! * transposeMul[ch]! + transposeAdd[ch]!;
        }
      return;
    }
    dst.set(src.subarray(srcStart, srcStart + width), base);
    if (useUint8 || identity) return;
    const out = dst as Float32Array;
    if (uniform) affineInPlace(out, base, width, 1, channelMul[0]!, channelAdd[0]!);
    else if (data.layout === 'CHW')
      for (let ch = 0; ch < channels; ch++)
        affineInPlace(out, base + ch * spatial, spatial, 1, channelMul[ch]!, channelAdd[ch]!);
    else
      for (let ch = 0; ch < channels; ch++)
        affineInPlace(out, base + ch, spatial, channels, channelMul[ch]!, channelAdd[ch]!);
  };
  return { fill, rawCopy: !transpose && (useUint8 || identity) };
}

/** The shard columns of one finished batch: logits as stored (dense, top-k, sampled) and features. */
function teacherOutputColumns(
  b: PendingBatch,
  out: ThreadRunResult['outputs'],
  io: ModelIo,
  o: ExtractOptions,
  classMap: Int32Array | undefined,
  restrict: Int32Array | undefined,
): Record<string, ColumnValues> {
  const n = b.rows;
  const logitsTensor = out[io.outputName]!;
  const full = (logitsTensor.data as Float32Array).subarray(0, n * io.localClasses);
  const logits = restrict ? gatherColumns(full, n, io.localClasses, restrict) : full;
  const c = restrict ? restrict.length : io.localClasses;
  const bad = firstNonFiniteRow(logits, c);
  if (bad >= 0)
    throw new Error(
      `teacher ${o.teacherId}: non-finite output (NaN or Inf) for sample ${b.ids[bad]} (model ${o.modelPath})`,
    );
  const columns: Record<string, ColumnValues> = { id: b.ids };
  if (o.dense) columns.logits = logits;
  if (o.topk) {
    const t = topKRows(logits, n, c, o.topk.k, o.temperature, o.activation, classMap);
    columns.topk_ids = t.ids;
    columns.topk_logprobs = t.logprobs;
    columns.topk_missing_mass = t.missingMass;
  }
  if (o.sampled) {
    const s = sampledRows(logits, n, c, b.ids, o.sampled.draws, o.sampled.tau, o.sampled.seed, o.temperature, classMap);
    columns.sample_ids = { offsets: s.offsets, values: s.ids };
    columns.sample_counts = { offsets: s.offsets, values: s.counts };
    if (o.sampled.tau !== 1) columns.sample_weights = { offsets: s.offsets, values: s.weights };
  }
  if (io.featuresOutput) {
    const f = (out[io.featuresOutput]!.data as Float32Array).subarray(0, n * io.featureDim!);
    const badF = firstNonFiniteRow(f, io.featureDim!);
    if (badF >= 0)
      throw new Error(
        `teacher ${o.teacherId}: non-finite features (NaN or Inf) for sample ${b.ids[badF]} (model ${o.modelPath})`,
      );
    columns.features = f;
  }
  return columns;
}

/**
 * The model runner: a pool of batch buffers. `launch` queues the filled `current` batch on the
 * worker right away and hands back an empty one; the JS thread waits for (and passes to `finish`)
 * the oldest result only when it needs its buffer back. With `depth` batches in flight the worker
 * keeps computing through the JS thread's stalls (reading and verifying the next shard, garbage
 * collection).
 */
class BatchQueue {
  private readonly free: PendingBatch[];
  private readonly inflight: { batch: PendingBatch; result: Promise<ThreadRunResult> }[] = [];
  /** The batch being filled. */
  current: PendingBatch;

  constructor(
    private readonly session: ThreadedSession,
    private readonly io: ModelIo,
    private readonly width: number,
    batchSize: number,
    depth: number,
    private readonly finish: (b: PendingBatch, result: ThreadRunResult) => void,
  ) {
    const useUint8 = io.inputType === 'uint8';
    this.free = Array.from(
      { length: depth },
      (): PendingBatch => ({
        input: useUint8 ? new Uint8Array(batchSize * width) : new Float32Array(batchSize * width),
        ids: [],
        rows: 0,
      }),
    );
    this.current = this.free.pop()!;
  }

  /** Starts inference of `b` in the session's thread; `b.input` is detached until the result hands it back. */
  private async run(b: PendingBatch): Promise<ThreadRunResult> {
    const io = this.io;
    const useUint8 = io.inputType === 'uint8';
    const n = io.fixedBatch ?? b.rows; // fixed-batch models get the zero-padded full batch
    const input = b.input.subarray(0, n * this.width);
    const fetches = io.featuresOutput ? [io.outputName, io.featuresOutput] : [io.outputName];
    const result = await this.session.run(
      { [io.inputName]: { type: useUint8 ? 'uint8' : 'float32', data: input, dims: [n, ...io.sampleDims] } },
      fetches,
    );
    const back = result.inputs[io.inputName]!.data;
    b.input = useUint8 ? new Uint8Array(back.buffer as ArrayBuffer) : new Float32Array(back.buffer as ArrayBuffer);
    return result;
  }

  async launch(): Promise<void> {
    const result = this.run(this.current);
    result.catch(() => {}); // awaited (and rethrown) below or at the end
    this.inflight.push({ batch: this.current, result });
    if (this.free.length === 0) {
      const oldest = this.inflight.shift()!;
      this.finish(oldest.batch, await oldest.result);
      this.free.push(oldest.batch);
    }
    this.current = this.free.pop()!;
    this.current.rows = 0;
    this.current.ids = [];
    if (this.io.fixedBatch) this.current.input.fill(0);
  }

  /** Finishes every batch in flight, oldest first. */
  async drain(): Promise<void> {
    for (const { batch, result } of this.inflight.splice(0)) this.finish(batch, await result);
  }

  /** Lets queued inferences end (after a failure) before the session is released. */
  async settle(): Promise<void> {
    for (const { result } of this.inflight) await result.catch(() => {});
  }
}

/**
 * The data iteration: the kept rows of the dataset (split, onlyClassMapRows) go through the input
 * transform into model batches (BatchQueue); each finished batch's columns are appended to
 * `writer`. Returns the number of samples written.
 */
async function runBatches(
  session: ThreadedSession,
  io: ModelIo,
  o: ExtractOptions,
  data: DatasetInfo,
  prep: InputPrep,
  source: AsyncGenerator<ShardBatch>,
  totalRows: number,
  classMap: Int32Array | undefined,
  restrict: Int32Array | undefined,
  writer: ShardWriter,
): Promise<number> {
  const batchSize = io.fixedBatch ?? o.batchSize;
  if (io.fixedBatch && o.batchSize !== io.fixedBatch)
    o.warn?.(`model has a fixed batch size ${io.fixedBatch}; using it instead of ${o.batchSize}`);
  const width = prep.width;
  // The model transposes and normalises itself when the pixel transform was moved into it.
  const { fill, rawCopy } = sampleFiller(
    prep,
    data,
    io.inputType === 'uint8',
    prep.transpose && !session.inputTransform.applied,
  );
  const total = o.split || o.onlyClassMapRows ? -1 : totalRows;
  const keepClass = o.onlyClassMapRows && classMap ? new Set(classMap) : undefined;
  let done = 0;
  const queue = new BatchQueue(session, io, width, batchSize, Math.max(2, o.queueDepth ?? 4), (b, { outputs }) => {
    writer.append(teacherOutputColumns(b, outputs, io, o, classMap, restrict), b.rows);
    done += b.rows;
    o.progress?.(done, total);
  });
  try {
    for await (const batch of source) {
      if (o.signal?.aborted) throw new Error('teacher-infer: cancelled');
      const ids = batch.strings('id');
      const splits = o.split ? batch.strings('split') : undefined;
      const values = batch.numeric(data.input);
      const labels = keepClass && data.labels === 'single' ? batch.numeric('label') : undefined;
      const labelLists = keepClass && data.labels === 'multi' ? batch.list('labels') : undefined;
      if (rawCopy && !splits && !keepClass) {
        // Every row is kept and copied as is: one copy per run of rows instead of one per row.
        for (let r = 0; r < batch.numRows; ) {
          const current = queue.current;
          const take = Math.min(batchSize - current.rows, batch.numRows - r);
          current.input.set(values.subarray(r * width, (r + take) * width), current.rows * width);
          for (let j = r; j < r + take; j++) current.ids.push(ids[j]!);
          current.rows += take;
          r += take;
          if (current.rows === batchSize) await queue.launch();
        }
        continue;
      }
      for (let r = 0; r < batch.numRows; r++) {
        if (splits && splits[r] !== o.split) continue;
        if (keepClass) {
          let keep = false;
          if (labels) keep = keepClass.has(labels[r]!);
          else
            for (let j = labelLists!.offsets[r]!; j < labelLists!.offsets[r + 1]! && !keep; j++)
              keep = keepClass.has(labelLists!.values[j]!);
          if (!keep) continue;
        }
        const current = queue.current;
        fill(current.input, current.rows, values, r * width);
        current.ids.push(ids[r]!);
        current.rows++;
        if (current.rows === batchSize) await queue.launch();
      }
    }
    if (queue.current.rows > 0) await queue.launch();
    await queue.drain();
  } catch (error) {
    await queue.settle();
    throw error;
  }
  return done;
}
