/**
 * The run record: what one `distill run` did, written to .distill/runs/<runId>.json after every
 * stage (so a killed run still leaves an account) and read by status, why, reports and compare.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../util/fs.js';

export type StageStatus = 'ran' | 'cached' | 'failed' | 'skipped';

export interface StageRecord {
  id: string;
  plugin: string;
  status: StageStatus;
  durationMs: number;
  /** Cache key; absent when the stage never got as far as computing it (skipped). */
  key?: string;
  /** Output tree hash. */
  tree?: string;
  /** Why it ran, or why it failed or was skipped. */
  reason?: string;
  error?: string;
  /** Path of the stage's full log. */
  log?: string;
  metrics: Record<string, number>;
  /** Per-step metric values: name -> [step, value] pairs. */
  series?: Record<string, Array<[number, number]>>;
  /** Attempts made, when the stage has `retries` (1 = the first succeeded or failed for good). */
  attempts?: number;
  /** True when the stage failed by reaching its `timeout`. */
  timedOut?: boolean;
  /** Stall warnings printed (no progress or log output for the stall period). */
  stalls?: number;
  /** CPU slots and GPU indices given to the stage; `cores`: the cores it was bound to (--pin-cpus). */
  devices?: { cpus: number; gpus: number[]; cores?: number[] };
}

export interface RunRecord {
  runId: string;
  pipeline: string;
  file: string;
  startedAt: string;
  finishedAt?: string;
  status: 'running' | 'ok' | 'failed' | 'interrupted';
  /** `--set` overrides of the run; absent for the configuration the pipeline file describes. */
  overrides?: string[];
  stages: StageRecord[];
}

export function writeRunRecord(runsDir: string, record: RunRecord): void {
  writeFileAtomicSync(join(runsDir, `${record.runId}.json`), JSON.stringify(record, null, 1));
}

/** Run records of a pipeline, newest first. */
export function readRunRecords(runsDir: string, pipeline?: string): RunRecord[] {
  let names: string[];
  try {
    names = readdirSync(runsDir).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const records: RunRecord[] = [];
  for (const name of names.sort().reverse()) {
    try {
      const record = JSON.parse(readFileSync(join(runsDir, name), 'utf8')) as RunRecord;
      if (!pipeline || record.pipeline === pipeline) records.push(record);
    } catch {
      // a record being written by a concurrent run; skip
    }
  }
  // Newest first by start time (ids of older versions had one-second resolution).
  return records.sort((a, b) =>
    a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : a.runId < b.runId ? 1 : -1,
  );
}

export function newRunId(): string {
  // Millisecond resolution, so that runs started in the same second still sort by time.
  return `${new Date().toISOString().replace(/[-:]/g, '').replace('.', '').replace('Z', '')}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
}
