/**
 * Live progress for `distill ui`: a progress sink that keeps `.distill/progress/<pipeline>.json`
 * up to date (each running stage's done/total/unit), at most a few writes a second, and removes
 * it when the run ends. The UI reads it next to the run record (which says which stages run).
 */
import { rmSync } from 'node:fs';
import { writeFileAtomicSync } from '../util/fs.js';
import type { ProgressSink } from '../runner/progress.js';

/** What the file holds. */
export interface ProgressSnapshot {
  pid: number;
  updatedAt: string;
  stages: Record<string, { done: number; total?: number; unit?: string }>;
}

const WRITE_INTERVAL_MS = 250;

export class ProgressFile implements ProgressSink {
  private readonly stages: ProgressSnapshot['stages'] = {};
  private lastWrite = 0;
  private pending: NodeJS.Timeout | undefined;

  constructor(private readonly path: string) {}

  started(id: string): void {
    this.stages[id] = { done: 0 };
    this.write();
  }

  progress(id: string, done: number, total?: number, unit?: string): void {
    this.stages[id] = { done, ...(total !== undefined ? { total } : {}), ...(unit ? { unit } : {}) };
    const wait = this.lastWrite + WRITE_INTERVAL_MS - Date.now();
    if (wait <= 0) this.write();
    else this.pending ??= setTimeout(() => this.write(), wait);
  }

  finished(id: string): void {
    delete this.stages[id];
    this.write();
  }

  message(): void {}

  close(): void {
    clearTimeout(this.pending);
    rmSync(this.path, { force: true });
  }

  private write(): void {
    clearTimeout(this.pending);
    this.pending = undefined;
    this.lastWrite = Date.now();
    const snapshot: ProgressSnapshot = { pid: process.pid, updatedAt: new Date().toISOString(), stages: this.stages };
    try {
      writeFileAtomicSync(this.path, JSON.stringify(snapshot));
    } catch {
      // Progress for the UI is best effort; the run goes on.
    }
  }
}

/** One sink feeding several. */
export function teeProgress(...sinks: ProgressSink[]): ProgressSink {
  return {
    started: (id, detail) => sinks.forEach((s) => s.started(id, detail)),
    progress: (id, done, total, unit) => sinks.forEach((s) => s.progress(id, done, total, unit)),
    finished: (id, line) => sinks.forEach((s) => s.finished(id, line)),
    message: (line) => sinks.forEach((s) => s.message(line)),
    close: () => sinks.forEach((s) => s.close()),
  };
}
