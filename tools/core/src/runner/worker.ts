/**
 * Child-process entry that runs one stage: `node worker.js <job.json>`. The runner talks to it over
 * the IPC channel (progress, metrics, log lines) and reads its result file when it exits 0.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { InputArtifact, PluginDefinition, StageContext, StageLogger, StageResult } from '../plugin/contract.js';
import { writeFileAtomicSync } from '../util/fs.js';

/** What the runner writes for the worker. */
export interface WorkerJob {
  modulePath: string;
  stageId: string;
  pipeline: string;
  pipelineDir: string;
  params: Record<string, unknown>;
  inputs: Record<string, InputArtifact[]>;
  outDir: string;
  stateDir: string;
  devices: { cpus: number; gpus: number[] };
  resultFile: string;
}

/** Messages from worker to runner. */
export type WorkerMessage =
  | { type: 'progress'; done: number; total?: number; unit?: string }
  | { type: 'metrics'; points: Array<{ name: string; value: number; step?: number }> }
  | { type: 'log'; level: 'info' | 'warn' | 'debug'; message: string };

function send(message: WorkerMessage): void {
  if (process.send && process.connected) process.send(message);
}

/**
 * Progress and per-step metrics are batched: a training loop reports every step, and one IPC
 * message per step costs both processes CPU that the stage's own work should have.
 */
const FLUSH_MS = 250;
let pendingProgress: Extract<WorkerMessage, { type: 'progress' }> | undefined;
let pendingPoints: Array<{ name: string; value: number; step?: number }> = [];
let flushTimer: NodeJS.Timeout | undefined;
function flush(): void {
  flushTimer = undefined;
  if (pendingPoints.length > 0) send({ type: 'metrics', points: pendingPoints });
  if (pendingProgress) send(pendingProgress);
  pendingPoints = [];
  pendingProgress = undefined;
}
function schedule(): void {
  flushTimer ??= setTimeout(flush, FLUSH_MS);
}

async function main(): Promise<void> {
  const jobFile = process.argv[2];
  if (!jobFile) throw new Error('usage: worker.js <job.json>');
  const job = JSON.parse(readFileSync(jobFile, 'utf8')) as WorkerJob;
  const module = (await import(pathToFileURL(job.modulePath).href)) as { default: PluginDefinition };
  const plugin = module.default;
  const controller = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      controller.abort(new Error(`stage ${job.stageId} cancelled (${signal})`));
      // Give the plugin a moment to stop cleanly, then go.
      setTimeout(() => process.exit(130), 2000).unref();
    });
  }
  // The runner died (e.g. SIGKILL): stop, rather than work on for a result nobody will collect.
  process.on('disconnect', () => {
    controller.abort(new Error(`stage ${job.stageId}: the runner went away`));
    process.exit(137);
  });
  const log: StageLogger = {
    info: (message) => {
      console.log(message);
      send({ type: 'log', level: 'info', message });
    },
    warn: (message) => {
      console.error(`warning: ${message}`);
      send({ type: 'log', level: 'warn', message });
    },
    debug: (message) => {
      console.log(`debug: ${message}`);
    },
  };
  const metrics: Record<string, number> = {};
  const ctx: StageContext<Record<string, unknown>> = {
    stageId: job.stageId,
    pipeline: job.pipeline,
    params: job.params,
    inputs: job.inputs,
    input(name) {
      const list = job.inputs[name];
      if (!list || list.length === 0)
        throw new Error(
          `stage ${job.stageId}: no input named "${name}" (inputs: ${Object.keys(job.inputs).join(', ') || 'none'})`,
        );
      if (list.length > 1)
        throw new Error(
          `stage ${job.stageId}: input "${name}" holds ${list.length} artifacts; use ctx.inputs["${name}"]`,
        );
      return (list[0] as InputArtifact).path;
    },
    outDir: job.outDir,
    stateDir: job.stateDir,
    pipelineDir: job.pipelineDir,
    devices: job.devices,
    log,
    progress: (done, total, unit) => {
      pendingProgress = {
        type: 'progress',
        done,
        ...(total !== undefined ? { total } : {}),
        ...(unit ? { unit } : {}),
      };
      schedule();
    },
    metric: (name, value, step) => {
      metrics[name] = value;
      pendingPoints.push({ name, value, ...(step !== undefined ? { step } : {}) });
      schedule();
    },
    signal: controller.signal,
  };
  const result = ((await plugin.run(ctx)) ?? {}) as StageResult;
  if (flushTimer) clearTimeout(flushTimer);
  flush();
  writeFileAtomicSync(job.resultFile, JSON.stringify({ metrics: { ...metrics, ...(result.metrics ?? {}) } }));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    const err = error as Error;
    console.error(err?.stack ?? String(error));
    process.exit(1);
  },
);
