/**
 * @distillery/plugin-multi-student's public API: the MSD bundle (router + students) as written
 * (bundle.ts) and as run (bundle-runner.ts, used by eval), and the routing table.
 */
export {
  MsdBundle,
  MSD_BUNDLE_FORMAT,
  checkBundleManifest,
  type MsdBundleManifest,
  type MsdPrediction,
} from './bundle-runner.js';
export { writeBundle, type BundleModelSource, type WriteBundleOptions } from './bundle.js';
export { gatherColumns, writeMaskedBundle, type MaskedBundleOptions } from './masked.js';
export { routingTable, type PartitionStrategy, type RoutingTable } from './partition.js';
