/**
 * Live runs and gc: how `distill gc` knows what running pipelines use.
 *
 * Each run writes .distill/live/<runId>.json (pid, host, pipeline) and adds to it, before using
 * them, the cache keys its plan needs and the objects it is about to move into the store. gc holds
 * an exclusive lock (.distill/locks/gc) while it decides and deletes, and keeps everything a live
 * run has pinned. The order makes this race-free: a run pins first, then waits while the gc lock
 * is held; gc takes the lock first, then reads the pins. So a pin is either seen by gc, or made
 * while gc holds the lock, in which case the run waits for gc to finish before it uses the key.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { writeFileAtomic } from '../util/fs.js';

/** What a live run's file holds. */
export interface LiveRunFile {
  runId: string;
  pipeline: string;
  pid: number;
  host: string;
  startedAt: string;
  /** Cache keys the run uses or will use (entries gc must keep). */
  keys: string[];
  /** Objects the run is moving into the store before their entry exists. */
  objects: string[];
}

const GC_LOCK = { realpath: false, stale: 10_000 } as const;

function liveDir(stateRoot: string): string {
  return join(stateRoot, 'live');
}

function gcLockPath(stateRoot: string): string {
  return join(stateRoot, 'locks', 'gc');
}

/** True unless the process is known to be gone (same host, no such pid). */
export function processAlive(pid: number, host = hostname()): boolean {
  if (host !== hostname()) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** The pid in a temporary name written by distill, if any. */
export function tempOwner(name: string): number | undefined {
  const match =
    /\.tmp-(\d+)-[0-9a-f]+$/.exec(name) ??
    /^pull-[0-9a-f]+-(\d+)-/.exec(name) ??
    /^(\d+)-[0-9a-f]{16}-[0-9a-f]+$/.exec(name);
  return match ? Number(match[1]) : undefined;
}

/**
 * Removes the staging and moved-aside directories (<stage>.tmp-<pid>-<hex>) that a killed process
 * left in an out/<pipeline>/ directory.
 */
export function removeDeadStaging(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const owner = name.includes('.tmp-') ? tempOwner(name) : undefined;
    if (owner !== undefined && !processAlive(owner)) rmSync(join(dir, name), { recursive: true, force: true });
  }
}

/** Resolves once no gc holds the lock. */
async function waitForGc(stateRoot: string): Promise<void> {
  while (await lockfile.check(gcLockPath(stateRoot), GC_LOCK)) await new Promise((r) => setTimeout(r, 200));
}

export class LiveRun {
  private readonly file: string;
  private readonly keys = new Set<string>();
  private readonly objects = new Set<string>();

  private constructor(
    private readonly stateRoot: string,
    private readonly info: Pick<LiveRunFile, 'runId' | 'pipeline' | 'startedAt'>,
  ) {
    this.file = join(liveDir(stateRoot), `${info.runId}.json`);
  }

  /** Announces a run (and waits for a gc in progress to finish). */
  static async register(
    stateRoot: string,
    info: Pick<LiveRunFile, 'runId' | 'pipeline' | 'startedAt'>,
  ): Promise<LiveRun> {
    const run = new LiveRun(stateRoot, info);
    await run.write();
    await waitForGc(stateRoot);
    return run;
  }

  /** Adds keys and objects gc must keep; returns once it is safe to use them. */
  async pin(items: { keys?: Iterable<string>; objects?: Iterable<string> }): Promise<void> {
    let added = false;
    for (const [set, values] of [
      [this.keys, items.keys ?? []],
      [this.objects, items.objects ?? []],
    ] as const) {
      for (const value of values) {
        if (set.has(value)) continue;
        set.add(value);
        added = true;
      }
    }
    if (!added) return;
    await this.write();
    await waitForGc(this.stateRoot);
  }

  close(): void {
    rmSync(this.file, { force: true });
  }

  private async write(): Promise<void> {
    const content: LiveRunFile = {
      ...this.info,
      pid: process.pid,
      host: hostname(),
      keys: [...this.keys],
      objects: [...this.objects],
    };
    await writeFileAtomic(this.file, JSON.stringify(content));
  }
}

/** The runs in progress; files of runs whose process is gone are removed. */
export function readLiveRuns(stateRoot: string): LiveRunFile[] {
  const dir = liveDir(stateRoot);
  if (!existsSync(dir)) return [];
  const runs: LiveRunFile[] = [];
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
    try {
      const run = JSON.parse(readFileSync(join(dir, name), 'utf8')) as LiveRunFile;
      if (processAlive(run.pid, run.host)) runs.push(run);
      else rmSync(join(dir, name), { force: true });
    } catch {
      // being replaced by its writer (atomic rename): the next read sees it whole
    }
  }
  return runs;
}

/** Takes gc's exclusive lock; live runs wait for it before using a key they just pinned. */
export async function lockForGc(stateRoot: string): Promise<() => Promise<void>> {
  await mkdir(join(stateRoot, 'locks'), { recursive: true });
  try {
    return await lockfile.lock(gcLockPath(stateRoot), { ...GC_LOCK, update: 2_000 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOCKED') throw new Error('another distill gc is running');
    throw error;
  }
}
