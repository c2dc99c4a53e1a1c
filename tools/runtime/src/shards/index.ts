/**
 * Arrow IPC shard library of the project: schemas (schema.ts, SCHEMA.md), streaming writer and
 * streaming reader. apache-arrow is loaded lazily, so importing this module is cheap.
 */
export * from './schema.js';
export { ShardWriter, writeShards, type ShardWriterOptions } from './writer.js';
export { openShardSet, type ShardBatch, type ShardSet, type ReadOptions } from './reader.js';
export { allocNumeric } from './arrow.js';
