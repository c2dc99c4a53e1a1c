/**
 * Features from a user-given ONNX feature extractor (InceptionV3 pool3 for real FID; any model
 * whose first output is [batch, D, ...]) run by onnxruntime-node, reduced batch by batch to
 * Gaussian statistics so memory stays flat.
 */
import { EvalInputError } from '../errors.js';
import { GaussianAccumulator, type GaussianStats } from './stats.js';

/** One batch of model input: float32 data and its shape (first dimension = batch). */
export interface FeatureBatch {
  data: Float32Array;
  shape: number[];
}

/** Options for running the extractor. Identical settings give identical features. */
export interface ExtractorOptions {
  /** Input to feed; default the model's first input. */
  inputName?: string;
  /** Output to read; default the model's first output. */
  outputName?: string;
  intraOpNumThreads?: number;
}

/** Runs `modelPath` over `batches` and returns the statistics of its output features. */
export async function extractFeatureStats(
  modelPath: string,
  batches: AsyncIterable<FeatureBatch> | Iterable<FeatureBatch>,
  options: ExtractorOptions = {},
): Promise<GaussianStats> {
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: options.intraOpNumThreads ?? 0,
    interOpNumThreads: 1,
  });
  try {
    const inputName = options.inputName ?? session.inputNames[0];
    const outputName = options.outputName ?? session.outputNames[0];
    if (!inputName || !outputName) throw new EvalInputError(`${modelPath}: model has no inputs or outputs`);
    let acc: GaussianAccumulator | undefined;
    for await (const batch of batches) {
      const out = await session.run({ [inputName]: new ort.Tensor('float32', batch.data, batch.shape) });
      const t = out[outputName];
      if (!t) throw new EvalInputError(`${modelPath}: output ${outputName} missing`);
      const rows = t.dims[0] ?? 0;
      const dim = rows === 0 ? 0 : t.data.length / rows;
      if (t.type !== 'float32' && t.type !== 'float64')
        throw new EvalInputError(`${modelPath}: output ${outputName} is ${t.type}, need float`);
      acc ??= new GaussianAccumulator(dim, `${modelPath} output ${outputName}`);
      if (dim !== acc.dim) throw new EvalInputError(`${modelPath}: feature width changed from ${acc.dim} to ${dim}`);
      await acc.add(t.data as Float32Array | Float64Array, rows);
    }
    if (!acc) throw new EvalInputError(`${modelPath}: no input batches`);
    return acc.finish();
  } finally {
    await session.release();
  }
}
