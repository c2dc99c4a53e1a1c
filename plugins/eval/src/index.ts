export * from './errors.js';
export * from './coco/index.js';
export * from './fid/index.js';
export * from './classification/index.js';
export {
  pairedTInterval,
  summarize,
  type PairedInterval,
  type PairedVerdict,
  type SeedSummary,
} from './stats/paired.js';
export { roleOf, suffixOf } from './stage/seeds.js';
