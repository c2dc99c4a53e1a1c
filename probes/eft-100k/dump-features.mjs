#!/usr/bin/env node
// Dumps an EFT data stage output (features, label, split) to raw files for the numpy probes:
//   <out>.f32 (N x D float32), <out>.lab (int32), <out>.split (uint8: 0 train, 1 val, 2 test).
// Usage: node probes/eft-100k/dump-features.mjs <data stage dir> <out prefix>
import { writeFileSync } from 'node:fs';
import { openShardSet } from '@distillery/runtime/shards';

const [dir, out] = process.argv.slice(2);
if (!dir || !out) throw new Error('usage: dump-features.mjs <data stage dir> <out prefix>');
const feats = [];
const labels = [];
const splits = [];
for await (const b of (await openShardSet(dir)).batches()) {
  const f = b.numeric('features');
  feats.push(Buffer.from(f.buffer, f.byteOffset, f.byteLength));
  labels.push(Buffer.from(Int32Array.from(b.numeric('label')).buffer));
  splits.push(Buffer.from(Uint8Array.from(b.strings('split'), (x) => (x === 'train' ? 0 : x === 'val' ? 1 : 2))));
}
writeFileSync(`${out}.f32`, Buffer.concat(feats));
writeFileSync(`${out}.lab`, Buffer.concat(labels));
writeFileSync(`${out}.split`, Buffer.concat(splits));
