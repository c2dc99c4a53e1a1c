/**
 * Test plugin: writes `text` (and the content of every input's out.txt) to out.txt. Knobs make it
 * sleep, report progress, fail, crash, or record when it ran, for runner tests.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { definePlugin, PathParam } from '@distillery/core';

export default definePlugin({
  name: 'test-concat',
  version: '1',
  description: 'Concatenates text and its inputs (runner tests)',
  params: Type.Object(
    {
      text: Type.String({ default: '' }),
      repeat: Type.Integer({ minimum: 1, default: 1 }),
      sleepMs: Type.Integer({ minimum: 0, default: 0 }),
      fail: Type.Boolean({ default: false }),
      crash: Type.Boolean({ default: false }),
      /** A file whose content is appended (a path param: its content is in the cache key). */
      file: Type.Optional(PathParam()),
      /** Appends "<stage> <pid> <start> <end> <CUDA_VISIBLE_DEVICES>" here (not part of the output). */
      journal: Type.Optional(Type.String()),
      bytes: Type.Integer({
        minimum: 0,
        default: 0,
        description: 'also write this many pseudo-random bytes to blob.bin',
      }),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1 },
  async run(ctx) {
    const start = Date.now();
    const steps = 5;
    for (let i = 1; i <= steps; i++) {
      await new Promise((r) => setTimeout(r, ctx.params.sleepMs / steps));
      ctx.progress(i, steps, 'steps');
      ctx.metric('loss', 1 / i, i);
    }
    // Inputs are read after the sleep, as a long stage reads its inputs while it runs (runner tests
    // change other runs' outputs meanwhile).
    const parts: string[] = [];
    for (const name of Object.keys(ctx.inputs).sort()) {
      for (const artifact of ctx.inputs[name] ?? []) parts.push(readFileSync(join(artifact.path, 'out.txt'), 'utf8'));
    }
    parts.push(ctx.params.text.repeat(ctx.params.repeat));
    if (ctx.params.file) parts.push(readFileSync(ctx.params.file, 'utf8'));
    writeFileSync(join(ctx.outDir, 'out.txt'), parts.join('+'));
    if (ctx.params.bytes > 0) {
      const blob = Buffer.alloc(ctx.params.bytes);
      let x = (ctx.params.text.length + 1) * 2654435761;
      for (let i = 0; i < blob.length; i += 4) {
        x = (x * 1103515245 + 12345) >>> 0;
        blob.writeUInt32LE(x, Math.min(i, blob.length - 4));
      }
      writeFileSync(join(ctx.outDir, 'blob.bin'), blob);
    }
    if (ctx.params.journal) {
      appendFileSync(
        ctx.params.journal,
        `${ctx.stageId} ${process.pid} ${start} ${Date.now()} ${process.env.CUDA_VISIBLE_DEVICES ?? ''}\n`,
      );
    }
    if (ctx.params.crash) process.kill(process.pid, 'SIGKILL');
    if (ctx.params.fail) throw new Error(`stage ${ctx.stageId} failed on purpose`);
    return { metrics: { length: parts.join('+').length } };
  },
});
