export * from './load.js';
export * from './cocoeval.js';
