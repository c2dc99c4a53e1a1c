/**
 * FID mathematics (docs/methods.md, FID): Gaussian statistics of feature matrices, accumulated in
 * chunks, and the Fréchet distance between two of them. File formats (.npy, .npz) and the feature
 * extraction stay in plugins/eval.
 */
export * from './stats.js';
export * from './frechet.js';
export * from './linalg.js';
