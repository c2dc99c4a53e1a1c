/** @distillery/plugin-f-distill: diffusion teacher bootstrap, f-distill one-step generators, generative evaluation. */
export * from './edm.js';
export * from './divergence.js';
export { consecutivePartition, rowsOfClasses, SAMPLES_SCHEMA, type SampleSet } from './io.js';
