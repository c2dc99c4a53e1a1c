export * from './plugin/contract.js';
