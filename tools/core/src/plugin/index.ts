/**
 * `@distillery/core/plugin`: what a stage plugin's code uses of core (the contract, the typed
 * errors, atomic writes). It loads none of the orchestrator, and it is the part of core that enters a
 * plugin's code version (plugin/registry.ts).
 */
export * from './contract.js';
export * from '../errors.js';
export { writeFileAtomic, writeFileAtomicSync } from '../util/fs.js';
export { hashFileContent } from '../cache/hash.js';
