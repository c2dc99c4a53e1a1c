/**
 * Test plugin that blocks its event loop (a synchronous busy loop, like a long wasm kernel), so
 * its SIGTERM handler never runs: only the runner's SIGKILL escalation can stop it. Writes its pid
 * to `pidFile` first.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core';

export default definePlugin({
  name: 'test-busy',
  version: '1',
  description: 'Blocks the event loop for busyMs (runner tests)',
  params: Type.Object(
    { pidFile: Type.String(), busyMs: Type.Integer({ minimum: 0 }) },
    { additionalProperties: false },
  ),
  resources: { cpus: 1 },
  async run(ctx) {
    writeFileSync(ctx.params.pidFile, String(process.pid));
    const until = Date.now() + ctx.params.busyMs;
    while (Date.now() < until) {
      // spin: no await, no timers, no signal handlers
    }
    writeFileSync(join(ctx.outDir, 'done.txt'), 'done');
  },
});
