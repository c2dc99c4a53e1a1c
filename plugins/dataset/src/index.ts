/** @distillery/plugin-dataset: the `dataset` plugin's import, for benchmarks and other packages. */
export { importDataset, type ImportOptions, type ImportSource } from './import.js';
