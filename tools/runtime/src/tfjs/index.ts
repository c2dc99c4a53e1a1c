/** TensorFlow.js helpers shared by training stages: backend selection and fast layers. */
export * from './backend.js';
export * from './dense.js';
