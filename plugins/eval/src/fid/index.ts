export * from './npy.js';
export * from './npz.js';
export * from './stats.js';
export * from './frechet.js';
export * from './linalg.js';
export { loadFidInput } from './input.js';
export * from './extract.js';
