/**
 * Test plugin: appends "start <stage> <pid> <time> <CUDA_VISIBLE_DEVICES>" to a journal when it
 * begins, sleeps, writes `text` (after its inputs' out.txt) to out.txt, logs a line, and appends
 * "end ..." when done (or fails on request, before writing anything). The start line lets tests act while a stage is in flight (kill, overlap).
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core';

export default definePlugin({
  name: 'test-marker',
  version: '1',
  description: 'Journals its start and end around a sleep (runner tests)',
  params: Type.Object(
    {
      text: Type.String({ default: '' }),
      sleepMs: Type.Integer({ minimum: 0, default: 0 }),
      journal: Type.String(),
      /** After sleeping, wait until this file exists (lets a test hold a stage in flight). */
      waitFile: Type.Optional(Type.String()),
      fail: Type.Boolean({ default: false }),
      /** Append "<stage> <Cpus_allowed_list>" (this process's CPU affinity, Linux) to this file. */
      affinityOut: Type.Optional(Type.String()),
      /** Fail unless this file exists; each attempt is counted in ctx.stateDir (checkpoint tests). */
      failUnless: Type.Optional(Type.String()),
      /** Nested options, for located errors below `with:`. */
      options: Type.Optional(Type.Object({ level: Type.Integer({ minimum: 0 }) }, { additionalProperties: false })),
    },
    { additionalProperties: false },
  ),
  resources: { cpus: 1 },
  async run(ctx) {
    const cuda = process.env.CUDA_VISIBLE_DEVICES ?? '';
    appendFileSync(ctx.params.journal, `start ${ctx.stageId} ${process.pid} ${Date.now()} ${cuda}\n`);
    if (ctx.params.affinityOut) {
      const allowed = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '?';
      appendFileSync(ctx.params.affinityOut, `${ctx.stageId} ${allowed}\n`);
    }
    ctx.log.info(`marker ${ctx.stageId} writing ${JSON.stringify(ctx.params.text)}`);
    const parts: string[] = [];
    for (const name of Object.keys(ctx.inputs).sort()) {
      for (const artifact of ctx.inputs[name] ?? []) parts.push(readFileSync(join(artifact.path, 'out.txt'), 'utf8'));
    }
    if (ctx.params.failUnless !== undefined) {
      const attemptsFile = join(ctx.stateDir, 'attempts');
      const attempts = existsSync(attemptsFile) ? Number(readFileSync(attemptsFile, 'utf8')) : 0;
      writeFileSync(attemptsFile, String(attempts + 1));
      if (!existsSync(ctx.params.failUnless))
        throw new Error(`stage ${ctx.stageId}: ${ctx.params.failUnless} is missing`);
      parts.push(`attempt${attempts + 1}`);
    }
    parts.push(ctx.params.text);
    await new Promise((r) => setTimeout(r, ctx.params.sleepMs));
    while (ctx.params.waitFile && !existsSync(ctx.params.waitFile)) await new Promise((r) => setTimeout(r, 20));
    if (ctx.params.fail) {
      console.error(`marker ${ctx.stageId}: failing on purpose`);
      throw new Error(`stage ${ctx.stageId} failed on purpose`);
    }
    writeFileSync(join(ctx.outDir, 'out.txt'), parts.join('+'));
    appendFileSync(ctx.params.journal, `end ${ctx.stageId} ${process.pid} ${Date.now()} ${cuda}\n`);
  },
});
