/**
 * @distillery/plugin-student-train's public API, for benchmarks and probes: students, losses,
 * training data, the training loop and ONNX export. Importing it loads tfjs-core; the plugin
 * itself is `@distillery/plugin-student-train/plugin`.
 */
export { createStudent, parameterCount, type Student, type StudentConfig } from './models/student.js';
export { crossEntropy, sigmoidKd } from './losses/index.js';
export { sampleColumns, sampledSigmoidCrossEntropy, targetsAtColumns } from './losses/sampled.js';
export { sparseFromLists } from './targets.js';
export { openTrainingData, epochBatches } from './data.js';
export { trainStudent, exportOnnx } from './train.js';
export { SparseHead } from './sparse-head.js';
export { layersSaveHandler } from './models/tfjs-layers/write.js';
