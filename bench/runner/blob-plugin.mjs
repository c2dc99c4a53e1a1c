// Benchmark plugin: writes `mib` MiB of seeded pseudo-random bytes plus a small text file.
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

export default definePlugin({
  name: 'bench-blob',
  version: '1',
  description: 'Writes a blob of pseudo-random bytes (runner benchmark)',
  params: Type.Object({ seed: Type.Integer(), mib: Type.Number({ minimum: 0 }) }, { additionalProperties: false }),
  resources: { cpus: 1 },
  async run(ctx) {
    const out = createWriteStream(join(ctx.outDir, 'blob.bin'));
    const chunk = new Uint32Array(1 << 18); // 1 MiB
    let x = (ctx.params.seed * 2654435761) >>> 0;
    for (let m = 0; m < ctx.params.mib; m++) {
      for (let i = 0; i < chunk.length; i++) chunk[i] = x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      if (!out.write(Buffer.from(chunk.buffer.slice(0)))) await new Promise((r) => out.once('drain', r));
    }
    await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())));
  },
});
