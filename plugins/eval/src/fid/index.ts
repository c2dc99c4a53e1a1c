export * from './npy.js';
export * from './npz.js';
export * from './stats.js';
export {
  frechetDistance,
  traceSqrtProduct,
  cholesky,
  symmetricEigenvalues,
  type FrechetOptions,
} from '@distillery/runtime/fid';
export { loadFidInput } from './input.js';
export * from './extract.js';
