export * from './metrics.js';
export * from './efficiency.js';
export * from './streaming.js';
