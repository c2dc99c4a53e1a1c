/** ONNX models without onnxruntime: graph builder, encode/decode, atomic write (see model.ts). */
export * from './model.js';
