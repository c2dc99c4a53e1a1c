export * from './errors.js';
export * from './coco/index.js';
export * from './fid/index.js';
export * from './classification/index.js';
