/** @distillery/plugin-eft-data: the EFT stand-in generator, taxonomy files and vertical subsets. */
export * from './taxonomy.js';
export * from './generator.js';
export { generateEft, type GenerateOptions, type GenerateResult } from './generate.js';
export { extractVertical, CLASS_MAP_FILE, type VerticalOptions } from './vertical.js';
export { taxonomyFromMap } from './import-map.js';
