/** @distillery/plugin-f-distill: diffusion teacher bootstrap, f-distill one-step generators, generative evaluation. */
export * from './edm.js';
export * from './divergence.js';
export { ConditionedNet, exportConditionedOnnx, adam, trainStep, type ConditionedSpec } from './nets.js';
export { DenoiserSession, GeneratorSession } from './ort.js';
export { consecutivePartition, rowsOfClasses, SAMPLES_SCHEMA, type SampleSet } from './io.js';
