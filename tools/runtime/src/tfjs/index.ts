/** TensorFlow.js helpers shared by training stages: backend selection and fast layers (dense, conv). */
export * from './backend.js';
export * from './dense.js';
export * from './conv.js';
