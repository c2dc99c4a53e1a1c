/**
 * @distillery/plugin-teacher-infer's public API, for benchmarks: teacher inference into shards.
 * The plugin itself is `@distillery/plugin-teacher-infer/plugin`.
 */
export { extractTeacherOutputs, type ExtractOptions, type ExtractResult } from './infer.js';
