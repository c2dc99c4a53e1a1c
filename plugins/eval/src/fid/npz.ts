/** Reference statistics as .npz (zip of mu.npy and sigma.npy, as pytorch-fid's --save-stats writes). */
import AdmZip from 'adm-zip';
import { readFile } from 'node:fs/promises';
import { EvalInputError } from '../errors.js';
import { encodeNpy, parseNpy } from './npy.js';
import type { GaussianStats } from './stats.js';
import { writeFileAtomic } from '@distillery/core/plugin';

/** Reads `mu` (D) and `sigma` (D x D) from an .npz file. */
export async function readNpzStats(path: string): Promise<GaussianStats> {
  let entries: ReturnType<AdmZip['getEntries']>;
  try {
    entries = new AdmZip(await readFile(path)).getEntries();
  } catch (err) {
    throw new EvalInputError(`${path}: not a readable .npz (zip) file: ${(err as Error).message}`);
  }
  const get = (name: string) => {
    const entry = entries.find((e) => e.entryName === `${name}.npy`);
    if (!entry)
      throw new EvalInputError(`${path}: no "${name}" array (entries: ${entries.map((e) => e.entryName).join(', ')})`);
    return parseNpy(entry.getData(), `${path}:${name}.npy`);
  };
  const mu = get('mu');
  const sigma = get('sigma');
  const d = mu.shape.length === 1 ? mu.shape[0]! : -1;
  if (d < 1) throw new EvalInputError(`${path}: "mu" must be 1-D, got shape (${mu.shape.join(', ')})`);
  if (sigma.shape.length !== 2 || sigma.shape[0] !== d || sigma.shape[1] !== d) {
    throw new EvalInputError(
      `${path}: "sigma" must be ${d} x ${d} to match "mu", got shape (${sigma.shape.join(', ')})`,
    );
  }
  for (const [name, arr] of [
    ['mu', mu.data],
    ['sigma', sigma.data],
  ] as const) {
    const bad = arr.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new EvalInputError(`${path}: "${name}" has a non-finite value at flat index ${bad}`);
  }
  return { dim: d, mu: mu.data, sigma: sigma.data };
}

/** Saves statistics as .npz with `mu` and `sigma` (float64), atomically. */
export async function writeNpzStats(path: string, stats: GaussianStats): Promise<void> {
  const zip = new AdmZip();
  zip.addFile('mu.npy', Buffer.from(encodeNpy(stats.mu, [stats.dim])));
  zip.addFile('sigma.npy', Buffer.from(encodeNpy(stats.sigma, [stats.dim, stats.dim])));
  await writeFileAtomic(path, zip.toBuffer());
}
