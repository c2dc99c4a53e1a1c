/**
 * Running a detector ONNX model (./model-contract.ts) over one split of a detection data set in
 * onnxruntime, streaming: `detectorBatches` yields the maps of each batch of rows, and
 * `writeDetectorOutputs` stores them as a `detector-outputs/1` shard set (./data.ts reads it for
 * distillation). Memory is one batch of maps plus the shard writer's current shard.
 */
import { readModelFile } from '@distillery/runtime/onnx';
import { openShardSet, parseDatasetSchema, writeShards, type ShardSchema } from '@distillery/runtime/shards';
import type * as Ort from 'onnxruntime-node';
import { DETECTOR_OUTPUTS_SCHEMA } from './data.js';
import {
  DETECTOR_INPUT,
  DETECTOR_METADATA_KEY,
  DETECTOR_OUTPUTS,
  parseDetectorGeometry,
  type DetectorGeometry,
} from './model-contract.js';

/** The maps of `rows` images, NCHW per image as the model returns them. */
export interface DetectorBatch {
  rows: number;
  ids: string[];
  heatmap: Float32Array;
  heatmapLogits: Float32Array;
  size: Float32Array;
  offset: Float32Array;
  /** Only when asked for. */
  feature?: Float32Array;
}

export interface DetectorRunOptions {
  modelPath: string;
  datasetDir: string;
  split: string;
  batchSize: number;
  /** Read the `feature` output too. */
  feature: boolean;
  threads: number;
  signal?: AbortSignal;
}

/** Opens the model, checks its geometry against the data set, and names both in errors. */
export async function openDetector(
  modelPath: string,
  datasetDir: string,
  threads: number,
): Promise<{ session: Ort.InferenceSession; geometry: DetectorGeometry }> {
  const model = await readModelFile(modelPath);
  const geometry = parseDetectorGeometry(model.metadata[DETECTOR_METADATA_KEY], modelPath);
  const names = new Set(model.graph.outputs.map((o) => o.name));
  for (const name of Object.values(DETECTOR_OUTPUTS))
    if (!names.has(name))
      throw new Error(
        `${modelPath}: no output "${name}" (a detector model has ${Object.values(DETECTOR_OUTPUTS).join(', ')})`,
      );
  if (!model.graph.inputs.some((i) => i.name === DETECTOR_INPUT))
    throw new Error(`${modelPath}: no input "${DETECTOR_INPUT}"`);
  const set = await openShardSet(datasetDir);
  const { shape } = parseDatasetSchema(set.schema, datasetDir);
  if (shape[0] !== geometry.inputHeight || shape[1] !== geometry.inputWidth || shape[2] !== 1)
    throw new Error(
      `${modelPath}: made for ${geometry.inputWidth}x${geometry.inputHeight}x1 inputs; dataset ${datasetDir} holds [${shape}] images`,
    );
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: Math.max(1, threads),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  return { session, geometry };
}

/** The split's rows in file order, `batchSize` at a time, through the model. */
export async function* detectorBatches(o: DetectorRunOptions): AsyncGenerator<DetectorBatch> {
  const { session, geometry } = await openDetector(o.modelPath, o.datasetDir, o.threads);
  const ort = await import('onnxruntime-node');
  const pixelsPerImage = geometry.inputWidth * geometry.inputHeight;
  const fetches = [
    DETECTOR_OUTPUTS.heatmap,
    DETECTOR_OUTPUTS.heatmapLogits,
    DETECTOR_OUTPUTS.size,
    DETECTOR_OUTPUTS.offset,
    ...(o.feature ? [DETECTOR_OUTPUTS.feature] : []),
  ];
  let ids: string[] = [];
  let pixels = new Float32Array(o.batchSize * pixelsPerImage);
  let seen = 0;
  const run = async (): Promise<DetectorBatch> => {
    const n = ids.length;
    const input = new ort.Tensor('float32', pixels.subarray(0, n * pixelsPerImage), [
      n,
      geometry.inputHeight,
      geometry.inputWidth,
      1,
    ]);
    const out = await session.run({ [DETECTOR_INPUT]: input }, fetches);
    const data = (name: string) => out[name]!.data as Float32Array;
    const batch: DetectorBatch = {
      rows: n,
      ids,
      heatmap: data(DETECTOR_OUTPUTS.heatmap),
      heatmapLogits: data(DETECTOR_OUTPUTS.heatmapLogits),
      size: data(DETECTOR_OUTPUTS.size),
      offset: data(DETECTOR_OUTPUTS.offset),
    };
    if (o.feature) batch.feature = data(DETECTOR_OUTPUTS.feature);
    ids = [];
    pixels = new Float32Array(o.batchSize * pixelsPerImage);
    return batch;
  };
  try {
    const set = await openShardSet(o.datasetDir);
    for await (const batch of set.batches({ verify: 'size' })) {
      const splits = batch.strings('split');
      const rowIds = batch.strings('id');
      const raw = batch.numeric('pixels') as Uint8Array;
      for (let r = 0; r < batch.numRows; r++) {
        if (splits[r] !== o.split) continue;
        if (o.signal?.aborted) throw new Error('detector inference cancelled');
        const at = ids.length * pixelsPerImage;
        for (let i = 0; i < pixelsPerImage; i++) pixels[at + i] = raw[r * pixelsPerImage + i]! / 255;
        ids.push(rowIds[r]!);
        seen++;
        if (ids.length === o.batchSize) yield await run();
      }
    }
    if (ids.length > 0) yield await run();
  } finally {
    await session.release();
  }
  if (seen === 0) throw new Error(`dataset ${o.datasetDir}: no rows with split "${o.split}"`);
}

/**
 * Writes the split's maps as a detector-outputs/1 shard set (columns id, heatmap_logits, size,
 * offset and, with `feature`, feature; CHW per image; the model's geometry in the metadata).
 * Returns the rows written and the geometry.
 */
export async function writeDetectorOutputs(
  o: DetectorRunOptions & {
    outDir: string;
    rowsPerShard: number;
    teacherId: string;
    progress?: (rows: number) => void;
  },
): Promise<{ rows: number; geometry: DetectorGeometry }> {
  const model = await readModelFile(o.modelPath);
  const geometry = parseDetectorGeometry(model.metadata[DETECTOR_METADATA_KEY], o.modelPath);
  const cells = (geometry.inputWidth / geometry.stride) * (geometry.inputHeight / geometry.stride);
  const schema: ShardSchema = {
    columns: [
      { name: 'id', type: 'utf8' },
      { name: 'heatmap_logits', type: 'float32', width: geometry.numClasses * cells },
      { name: 'size', type: 'float32', width: 2 * cells },
      { name: 'offset', type: 'float32', width: 2 * cells },
      ...(o.feature ? [{ name: 'feature', type: 'float32' as const, width: geometry.featureChannels * cells }] : []),
    ],
    metadata: {
      'distillery.schema': DETECTOR_OUTPUTS_SCHEMA,
      [DETECTOR_METADATA_KEY]: JSON.stringify(geometry),
      'distillery.teacher': o.teacherId,
      'distillery.split': o.split,
    },
  };
  let rows = 0;
  async function* columns() {
    for await (const b of detectorBatches(o)) {
      rows += b.rows;
      o.progress?.(rows);
      yield {
        rows: b.rows,
        columns: {
          id: b.ids,
          heatmap_logits: b.heatmapLogits,
          size: b.size,
          offset: b.offset,
          ...(b.feature ? { feature: b.feature } : {}),
        },
      };
    }
  }
  await writeShards({ dir: o.outDir, schema, rowsPerShard: o.rowsPerShard }, columns());
  return { rows, geometry };
}
