export * from './metrics.js';
export * from './efficiency.js';
