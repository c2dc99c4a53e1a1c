/**
 * Gaussian statistics of a .npy feature file; the accumulation itself is the runtime's
 * (tools/runtime/src/fid/stats.ts).
 */
import { GaussianAccumulator, type GaussianStats } from '@distillery/runtime/fid';
import { EvalInputError } from '../errors.js';
import { streamNpyRows } from './npy.js';

export { GaussianAccumulator, statsFromMatrix, type GaussianStats } from '@distillery/runtime/fid';

/** Statistics of a .npy feature matrix (N x D, float32 or float64), streamed in row chunks. */
export async function statsFromNpy(path: string, chunkRows = 4096): Promise<GaussianStats> {
  let acc: GaussianAccumulator | undefined;
  const { rows, cols } = await streamNpyRows(path, chunkRows, async (chunk, count) => {
    acc ??= new GaussianAccumulator(chunk.length / count, path);
    await acc.add(chunk, count);
  });
  if (!acc)
    throw new EvalInputError(`${path}: need at least 2 feature rows for a covariance, got ${rows} (D = ${cols})`);
  return acc.finish();
}
