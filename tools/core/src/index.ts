/** @distillery/core: the plugin contract, the pipeline loader, the cache and the runner. */
export * from './plugin/contract.js';
export {
  ModuleRegistry,
  workspaceRoot,
  distilleryPackages,
  type PluginRegistry,
  type DistilleryPackageFields,
} from './plugin/registry.js';
export { loadPipeline, parseMemoryMiB, type LoadOptions } from './pipeline/load.js';
export type { Pipeline, StageInstance, LoadedPlugin, PathParamRef } from './pipeline/model.js';
export { PipelineError, formatDiagnostic, type Diagnostic } from './pipeline/diagnostics.js';
export {
  DistilleryError,
  UsageError,
  RunPlanError,
  InputError,
  StageError,
  StoreError,
  IntegrityError,
} from './errors.js';
export { HashCache, sha256, canonicalJson, hashFileContent, type TreeManifest, type TreeFile } from './cache/hash.js';
export { cacheKey, explainKeyChange, type KeyParts } from './cache/key.js';
export {
  LocalStore,
  replaceDirectory,
  type CacheEntry,
  type RemoteStore,
  type MaterialiseMethod,
} from './cache/store.js';
export { Workspace, findProjectRoot } from './runner/workspace.js';
export { planPipeline, selectStages, downstreamOf, type PlannedStage, type PlanOptions } from './runner/plan.js';
export { runPipeline, checkResources, type RunOptions } from './runner/run.js';
export { detectResources, nvidiaSmiGpus, type MachineResources, type GpuDetector } from './runner/devices.js';
export { readRunRecords, type RunRecord, type StageRecord, type StageStatus } from './runner/record.js';
export { ProgressView, formatDuration, type ProgressSink } from './runner/progress.js';
export { writeFileAtomic, writeFileAtomicSync } from './util/fs.js';
export { makeTestContext, type TestContextOptions, type TestContextRecord } from './plugin/testing.js';
