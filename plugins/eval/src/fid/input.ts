/** Loading either kind of FID input: a .npy feature matrix or an .npz with mu and sigma. */
import { EvalInputError } from '../errors.js';
import { readNpzStats } from './npz.js';
import { statsFromNpy, type GaussianStats } from './stats.js';

export async function loadFidInput(path: string): Promise<GaussianStats> {
  if (path.endsWith('.npz')) return readNpzStats(path);
  if (path.endsWith('.npy')) return statsFromNpy(path);
  throw new EvalInputError(`${path}: expected a .npy feature matrix (N x D) or an .npz with mu and sigma`);
}
