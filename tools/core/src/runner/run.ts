/**
 * The stage runner: walks the DAG, serves stages from the cache, and runs the rest concurrently in
 * child processes, bounded by CPU, GPU and memory slots.
 *
 * Crash safety: a stage writes into a private temporary directory; only after it exits 0 are its
 * files moved into the store, then the cache entry is written (the commit point), then the output
 * is materialised. A kill at any moment leaves at most an orphan temp directory, which nothing
 * trusts and `distill gc` removes. Per-key locks keep two concurrent runs from executing the same
 * stage twice: the second waits, then finds the first one's cache entry.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { availableParallelism, hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import lockfile from 'proper-lockfile';
import type { KeyParts } from '../cache/key.js';
import type { RemoteStore } from '../cache/store.js';
import type { InputArtifact } from '../plugin/contract.js';
import { withAbsolutePaths } from '../plugin/path-params.js';
import type { Pipeline, StageInstance } from '../pipeline/model.js';
import { faultPoint } from '../util/faults.js';
import type { MachineResources } from './devices.js';
import { LiveRun, removeDeadStaging } from './live.js';
import { forcedStages, plannedKeys, staleReason, type PlanOptions } from './plan.js';
import { formatDuration, ProgressView, type ProgressSink } from './progress.js';
import { newRunId, writeRunRecord, type RunRecord, type StageRecord } from './record.js';
import type { WorkerJob, WorkerMessage } from './worker.js';
import type { Workspace } from './workspace.js';
import { RunPlanError, StageError } from '../errors.js';

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'worker.js');

export interface RunOptions extends PlanOptions {
  machine: MachineResources;
  progress?: ProgressSink;
  /** Echo stage log lines to the progress view. */
  verbose?: boolean;
  /** Aborting cancels running stages (SIGTERM to their processes, SIGKILL 5 s later). */
  signal?: AbortSignal;
  /** Aborting kills running stages at once (SIGKILL). */
  forceSignal?: AbortSignal;
  /** Lines of stderr shown when a stage fails. */
  stderrTail?: number;
  /**
   * Execute only these instance ids (`distill stage run`); every other stage must be served from
   * the cache, and is left out (skipped) when it is not needed.
   */
  only?: Set<string>;
  /**
   * Run only these instance ids and the upstream stages they need (DVC's `repro <target>`): stale
   * ancestors run, everything else is left out (skipped, "not a target").
   */
  targets?: Set<string>;
  /** Shared store consulted on a local cache miss and published to after each stage. */
  remote?: RemoteStore;
  /** Warn when a running stage has reported no progress and written no log for this long (ms; 0: never). Default 120 s. */
  stallAfterMs?: number;
  /** Between SIGTERM and SIGKILL when a stage is cancelled or times out (ms). Default 5 s. */
  killGraceMs?: number;
  /** The `--set` overrides the pipeline was loaded with, kept in the run record (gc --workspace keeps the plain configuration's entries). */
  overrides?: string[];
  /**
   * Bind each stage process to cores of its own (Linux, util-linux `taskset`): a stage declaring
   * `cpus: N` then computes on exactly N cores, the lowest free ones. Without it, a lone "1-CPU"
   * Node stage also keeps a second core busy (V8's GC and compiler threads: measured ~1.6x
   * faster than when bound), so concurrent stages slow each other and timings are not comparable.
   */
  pinCpus?: boolean;
}

interface StageState {
  stage: StageInstance;
  record: StageRecord;
  done: boolean;
}

/**
 * Checks, before anything runs, that every stage fits the machine (only the stages in `scope`,
 * when given: the rest come from the cache or are not needed). GPUs, memory and `minCpus` are hard
 * limits; asking for more `cpus` than the machine has only earns a warning (the stage runs with
 * what there is).
 */
export function checkResources(
  pipeline: Pipeline,
  machine: MachineResources,
  scope?: Set<string>,
): { problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const clamped = new Map<number, string[]>();
  for (const stage of pipeline.stages.filter((s) => !scope || scope.has(s.id))) {
    const r = stage.resources;
    if (r.gpus > machine.gpus.length)
      problems.push(`stage ${stage.id} needs ${r.gpus} GPU(s) but this machine has ${machine.gpus.length}`);
    if ((r.minCpus ?? 0) > machine.cpus)
      problems.push(
        `stage ${stage.id} needs at least ${r.minCpus} CPUs (resources.minCpus) but this machine has ${machine.cpus}`,
      );
    else if (r.cpus > machine.cpus) clamped.set(r.cpus, [...(clamped.get(r.cpus) ?? []), stage.id]);
    if (r.memoryMiB > machine.memoryMiB)
      problems.push(
        `stage ${stage.id} needs ${Math.round(r.memoryMiB)} MiB of memory but this machine has ${Math.round(machine.memoryMiB)} MiB`,
      );
  }
  const warnings = [...clamped].map(
    ([cpus, ids]) =>
      `${ids.length === 1 ? `stage ${ids[0]} asks` : `stages ${ids.join(', ')} ask`} for ${cpus} CPUs; this machine has ${machine.cpus}: running with ${machine.cpus} (resources.minCpus makes it a requirement)`,
  );
  return { problems, warnings };
}

/** `ids` and every stage upstream of them. */
export function withAncestors(pipeline: Pipeline, ids: Iterable<string>): Set<string> {
  const result = new Set(ids);
  for (const stage of [...pipeline.stages].reverse())
    if (result.has(stage.id)) stage.upstream.forEach((u) => result.add(u));
  return result;
}

export async function runPipeline(ws: Workspace, pipeline: Pipeline, options: RunOptions): Promise<RunRecord> {
  const scope = options.only ?? (options.targets ? withAncestors(pipeline, options.targets) : undefined);
  const { problems, warnings } = checkResources(pipeline, options.machine, scope);
  if (problems.length > 0) throw new RunPlanError(`cannot run ${pipeline.file}:\n  ${problems.join('\n  ')}`);
  const runner = new Runner(ws, pipeline, options);
  for (const line of warnings) runner.warn(line);
  return runner.run();
}

class Runner {
  private readonly record: RunRecord;
  private readonly states = new Map<string, StageState>();
  private readonly forced: Set<string>;
  /** With `only`: the selected stages and everything upstream of them. */
  private readonly needed: Set<string>;
  private readonly progress: ProgressSink;
  private readonly manifest;
  private freeCpus: number;
  private readonly freeGpus: number[];
  private freeMemory: number;
  private readonly running = new Map<string, Promise<void>>();
  /**
   * Upstream outputs as this run's stages read them (inputArtifacts): one materialisation per
   * (stage, tree) under <store tmp>/<inputsName>, removed when the run ends. The pid prefix keeps
   * gc away from it while the run lives.
   */
  private readonly inputsName = `${process.pid}-inputs-${randomBytes(4).toString('hex')}`;
  private readonly inputDirs = new Map<string, Promise<string>>();
  private readonly assignedGpus = new Map<string, number[]>();
  /** With pinCpus: free core ids and each running stage's cores. */
  private readonly freeCores: number[];
  private readonly assignedCores = new Map<string, number[]>();
  private interrupted = false;
  private live: LiveRun | undefined;

  constructor(
    private readonly ws: Workspace,
    private readonly pipeline: Pipeline,
    private readonly options: RunOptions,
  ) {
    this.record = {
      runId: newRunId(),
      pipeline: pipeline.name,
      file: pipeline.file,
      startedAt: new Date().toISOString(),
      status: 'running',
      ...(options.overrides && options.overrides.length > 0 ? { overrides: options.overrides } : {}),
      stages: [],
    };
    this.forced = forcedStages(pipeline, options);
    this.needed = withAncestors(pipeline, options.only ?? options.targets ?? []);
    this.progress = options.progress ?? new ProgressView();
    this.manifest = ws.readManifest(pipeline.name);
    this.freeCpus = options.machine.cpus;
    this.freeGpus = [...options.machine.gpus];
    this.freeCores = Array.from({ length: options.machine.cpus }, (_, i) => i % Math.max(1, availableParallelism()));
    this.freeMemory = options.machine.memoryMiB;
    for (const stage of pipeline.stages) {
      const record: StageRecord = {
        id: stage.id,
        plugin: stage.plugin.name,
        status: 'skipped',
        durationMs: 0,
        metrics: {},
      };
      this.states.set(stage.id, { stage, record, done: false });
      this.record.stages.push(record);
    }
  }

  warn(line: string): void {
    this.progress.message(`⚠ ${line}`);
  }

  async run(): Promise<RunRecord> {
    const onAbort = (): void => {
      this.interrupted = true;
    };
    this.options.signal?.addEventListener('abort', onAbort);
    try {
      // Announce the run to gc, with the cache entries its plan will read, before reading any.
      try {
        this.live = await LiveRun.register(this.ws.stateRoot, {
          runId: this.record.runId,
          pipeline: this.pipeline.name,
          startedAt: this.record.startedAt,
        });
        await this.live.pin({ keys: await plannedKeys(this.ws, this.pipeline) });
      } catch (error) {
        // Say, a full disk: the run still goes ahead (and records how it fails), unseen by gc.
        this.live = undefined;
        this.warn(`could not announce this run to gc (.distill/live): ${(error as Error).message}`);
      }
      removeDeadStaging(join(this.ws.root, 'out', this.pipeline.name));
      await this.loop();
    } finally {
      this.options.signal?.removeEventListener('abort', onAbort);
      this.live?.close();
      await rm(join(this.ws.store.tmpDir, this.inputsName), { recursive: true, force: true }).catch(() => undefined);
      // Bookkeeping that fails (say, the disk is full) must not hide the run's own outcome.
      for (const [what, save] of [
        ['hash cache', () => this.ws.hashes.save()],
        ['workspace manifest', () => this.ws.writeManifest(this.pipeline.name, this.manifest)],
      ] as const) {
        try {
          save();
        } catch (error) {
          this.warn(`could not save the ${what}: ${(error as Error).message}`);
        }
      }
      this.progress.close();
    }
    const failed = this.record.stages.some((s) => s.status === 'failed');
    this.record.status = this.interrupted ? 'interrupted' : failed ? 'failed' : 'ok';
    this.record.finishedAt = new Date().toISOString();
    this.saveRecord();
    return this.record;
  }

  /** Writes the run record; a failure (ENOSPC) is reported, and the record is tried again later. */
  private saveRecord(): void {
    try {
      writeRunRecord(this.ws.runsDir(), this.record);
    } catch (error) {
      this.warn(`could not write the run record: ${(error as Error).message}`);
    }
  }

  private async loop(): Promise<void> {
    for (;;) {
      let progressed = false;
      for (const state of this.states.values()) {
        if (state.done || this.running.has(state.stage.id)) continue;
        const upstream = state.stage.upstream.map((id) => this.states.get(id) as StageState);
        if (upstream.some((u) => !u.done)) continue;
        const broken = upstream.filter((u) => u.record.status === 'failed' || u.record.status === 'skipped');
        if (broken.length > 0 || this.interrupted) {
          state.done = true;
          state.record.reason = this.interrupted
            ? 'run interrupted'
            : `upstream failed: ${broken.map((u) => u.stage.id).join(', ')}`;
          progressed = true;
          continue;
        }
        if ((this.options.only || this.options.targets) && !this.needed.has(state.stage.id)) {
          state.done = true;
          state.record.reason = this.options.targets ? 'not a target' : 'not selected';
          progressed = true;
          continue;
        }
        if (!this.fits(state.stage)) continue;
        this.take(state.stage);
        const task = this.execute(state).finally(() => {
          this.release(state.stage);
          this.running.delete(state.stage.id);
        });
        this.running.set(state.stage.id, task);
        progressed = true;
      }
      if (this.running.size === 0) {
        if (progressed) continue;
        break;
      }
      await Promise.race(this.running.values());
    }
  }

  /** CPU slots a stage holds: what it asks for, at most what the machine has. */
  private cpusOf(stage: StageInstance): number {
    return Math.min(stage.resources.cpus, this.options.machine.cpus);
  }

  private fits(stage: StageInstance): boolean {
    const r = stage.resources;
    return this.cpusOf(stage) <= this.freeCpus && r.memoryMiB <= this.freeMemory && r.gpus <= this.freeGpus.length;
  }

  /** Holds the stage's slots; its GPUs are the lowest free indices. */
  private take(stage: StageInstance): void {
    this.freeCpus -= this.cpusOf(stage);
    this.freeMemory -= stage.resources.memoryMiB;
    this.assignedGpus.set(stage.id, this.freeGpus.splice(0, stage.resources.gpus));
    if (this.options.pinCpus)
      this.assignedCores.set(stage.id, this.freeCores.splice(0, Math.max(1, this.cpusOf(stage))));
  }

  private release(stage: StageInstance): void {
    this.freeCpus += this.cpusOf(stage);
    this.freeMemory += stage.resources.memoryMiB;
    this.freeGpus.push(...(this.assignedGpus.get(stage.id) ?? []));
    this.freeGpus.sort((a, b) => a - b);
    this.assignedGpus.delete(stage.id);
    this.freeCores.push(...(this.assignedCores.get(stage.id) ?? []));
    this.freeCores.sort((a, b) => a - b);
    this.assignedCores.delete(stage.id);
  }

  private upstreamTree(id: string): string {
    return this.states.get(id)?.record.tree as string;
  }

  private async execute(state: StageState): Promise<void> {
    const { stage, record } = state;
    const started = Date.now();
    try {
      const parts = await this.ws.keyParts(stage, (id) => this.upstreamTree(id));
      const key = this.ws.key(parts);
      record.key = key;
      await this.live?.pin({ keys: [key] });
      if (!this.forced.has(stage.id) && (await this.serveFromCache(state, key))) return;
      const damaged = this.reportDamage(stage.id);
      if (this.options.only && !this.options.only.has(stage.id)) {
        throw new StageError(
          `stage ${stage.id} has no output in the store${this.options.remote ? ` (${this.options.remote.describe()})` : ''}; run it first (it is upstream of ${[...this.options.only].join(', ')})`,
        );
      }
      const reason = this.forced.has(stage.id)
        ? 'forced'
        : damaged
          ? 'its cached output failed verification'
          : staleReason(this.ws, this.pipeline, stage, parts, this.record.stages);
      const release = await this.lock(key, stage.id);
      try {
        // Another run may have produced it while we waited for the lock.
        if (!this.forced.has(stage.id) && (await this.serveFromCache(state, key))) return;
        await this.runStage(state, key, parts, reason, started);
      } finally {
        await release();
      }
    } catch (error) {
      record.status = 'failed';
      record.error ??= (error as Error).message;
      record.durationMs = Date.now() - started;
      this.progress.finished(
        stage.id,
        `✗ ${stage.id} failed after ${formatDuration(record.durationMs)}: ${record.error}`,
      );
    } finally {
      state.done = true;
      // A cached stage changes nothing worth keeping before the final record; an executed one does.
      if (record.status !== 'cached') this.saveRecord();
    }
  }

  /** Prints what store verification found (damaged or missing objects); true when anything was. */
  private reportDamage(stageId: string): boolean {
    const problems = this.ws.store.takeProblems();
    for (const line of problems) this.progress.message(`⚠ store: ${line}`);
    if (problems.length > 0) this.progress.message(`  ${stageId} reruns to restore its output`);
    return problems.length > 0;
  }

  private async serveFromCache(state: StageState, key: string): Promise<boolean> {
    let entry = this.ws.store.readEntry(key);
    if (!entry && this.options.remote && (await this.options.remote.pull(key, this.ws.store)))
      entry = this.ws.store.readEntry(key);
    if (!entry) return false;
    const { stage, record } = state;
    if (!this.ws.isMaterialised(this.manifest, this.pipeline.name, stage.id, entry.tree)) {
      await this.ws.materialise(this.manifest, this.pipeline.name, stage.id, entry.tree);
    }
    Object.assign(record, {
      status: 'cached',
      tree: entry.tree,
      metrics: entry.metrics,
      durationMs: 0,
      reason: 'up to date',
    });
    this.progress.message(`✓ ${stage.id} cached`);
    return true;
  }

  private async lock(key: string, stageId: string): Promise<() => Promise<void>> {
    const lockPath = join(this.ws.stateRoot, 'locks', key);
    await mkdir(dirname(lockPath), { recursive: true });
    const ownerFile = `${lockPath}.owner`;
    let announced = false;
    for (;;) {
      try {
        const release = await lockfile.lock(lockPath, { realpath: false, stale: 10_000, update: 2_000 });
        await writeFile(ownerFile, JSON.stringify({ pid: process.pid, host: hostname() }));
        return release;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
        // A lock left by a killed run on this host is broken at once instead of waiting until stale.
        if (await ownerIsDead(ownerFile)) {
          await rm(`${lockPath}.lock`, { recursive: true, force: true });
          await rm(ownerFile, { force: true });
          continue;
        }
        if (!announced) this.progress.message(`… ${stageId} is being run by another distill process; waiting for it`);
        announced = true;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  private async runStage(
    state: StageState,
    key: string,
    parts: KeyParts,
    reason: string,
    started: number,
  ): Promise<void> {
    const { stage, record } = state;
    const gpus = this.assignedGpus.get(stage.id) ?? [];
    const devices = { cpus: Math.max(1, this.cpusOf(stage)), gpus };
    // The pid in the name tells gc whose it is: it never removes a live run's scratch directory.
    const scratch = join(this.ws.store.tmpDir, `${process.pid}-${key.slice(0, 16)}-${randomBytes(4).toString('hex')}`);
    const outDir = join(scratch, 'out');
    const stateDir = this.ws.stateDir(key);
    const logPath = this.ws.logFile(this.record.runId, stage.id);
    await mkdir(outDir, { recursive: true });
    await mkdir(stateDir, { recursive: true });
    mkdirSync(dirname(logPath), { recursive: true });
    const cores = this.assignedCores.get(stage.id);
    Object.assign(record, { reason, log: logPath, devices: cores ? { ...devices, cores } : devices });
    // Recorded at the start too: if this run is killed, the next one can say it resumes this stage.
    this.saveRecord();
    const job: WorkerJob = {
      modulePath: stage.plugin.modulePath,
      stageId: stage.id,
      pipeline: this.pipeline.name,
      pipelineDir: this.pipeline.dir,
      params: withAbsolutePaths(stage.params, stage.pathParams),
      inputs: await this.inputArtifacts(stage),
      outDir,
      stateDir,
      devices,
      resultFile: join(scratch, 'result.json'),
    };
    await writeFile(join(scratch, 'job.json'), JSON.stringify(job));
    this.progress.started(
      stage.id,
      `(${stage.plugin.name}; ${reason}${gpus.length ? `; GPUs ${gpus.join(',')}` : ''})`,
    );
    const series: Record<string, Array<[number, number]>> = {};
    try {
      const attempts = stage.retries + 1;
      for (let attempt = 1; ; attempt++) {
        if (attempts > 1) record.attempts = attempt;
        const exit = await this.spawn(stage, job, join(scratch, 'job.json'), logPath, series, attempt, attempts);
        if (!exit.error) break;
        if (exit.cancelled || this.interrupted || attempt >= attempts) {
          record.error = exit.error;
          if (exit.timedOut) record.timedOut = true;
          throw new StageError(exit.error);
        }
        this.progress.message(
          `↻ ${stage.id} attempt ${attempt} of ${attempts} failed (${exit.error.split('\n')[0]}); retrying`,
        );
        // A fresh output directory; stateDir (checkpoints) is kept for the next attempt.
        await rm(outDir, { recursive: true, force: true });
        await mkdir(outDir, { recursive: true });
      }
      faultPoint('after-exit', stage.id);
      const result = JSON.parse(await readFile(job.resultFile, 'utf8')) as { metrics: Record<string, number> };
      // gc must keep these objects although no entry names them until the commit point.
      const { hash } = await this.ws.store.ingest(outDir, this.ws.hashes, (manifest) =>
        this.live?.pin({ objects: manifest.files.map((f) => f.hash) }),
      );
      faultPoint('after-store', stage.id);
      const durationMs = Date.now() - started;
      await this.ws.store.writeEntry({
        key,
        stage: stage.id,
        plugin: stage.plugin.name,
        tree: hash,
        parts,
        metrics: result.metrics,
        durationMs,
        createdAt: new Date().toISOString(),
      });
      faultPoint('after-entry', stage.id);
      await this.ws.materialise(this.manifest, this.pipeline.name, stage.id, hash);
      await rm(stateDir, { recursive: true, force: true });
      if (this.options.remote) await this.options.remote.push(key, this.ws.store);
      Object.assign(record, { status: 'ran', tree: hash, metrics: result.metrics, durationMs });
      if (Object.keys(series).length > 0) record.series = series;
      this.progress.finished(stage.id, `✓ ${stage.id} ran in ${formatDuration(durationMs)}`);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /**
   * Each upstream output as the worker reads it: the exact tree the stage's cache key names,
   * materialised (DISTILL_CACHE_TYPE: reflinks, else copies) once per run under inputsName. Not
   * out/<pipeline>/<stage>: another run of the same pipeline with other parameters may replace
   * that directory while this stage runs, and the stage would then compute from bytes its key does
   * not name and cache the result under that key (seen 2026-12-03: a teachers report of 400-step
   * members stored under the key of the 7-epoch members).
   */
  private async inputArtifacts(stage: StageInstance): Promise<Record<string, InputArtifact[]>> {
    const pathOf = (id: string): Promise<string> => {
      const tree = this.upstreamTree(id);
      const slot = `${id}\n${tree}`;
      let path = this.inputDirs.get(slot);
      if (path === undefined) {
        const dir = join(
          this.ws.store.tmpDir,
          this.inputsName,
          `${id.replace(/[^A-Za-z0-9._=,-]/g, '_')}-${tree.slice(0, 16)}`,
        );
        path = this.ws.store.materialise(tree, dir).then(() => dir);
        this.inputDirs.set(slot, path);
      }
      return path;
    };
    const inputs: Record<string, InputArtifact[]> = {};
    const named = new Set<string>();
    for (const [name, ids] of Object.entries(stage.inputs)) {
      inputs[name] = [];
      for (const id of ids) inputs[name].push({ stage: id, path: await pathOf(id) });
      ids.forEach((id) => named.add(id));
    }
    for (const id of stage.upstream) {
      if (!named.has(id)) inputs[id] = [{ stage: id, path: await pathOf(id) }];
    }
    return inputs;
  }

  /**
   * Runs the worker once; resolves with an error message when the attempt failed. Bounded by the
   * stage's `timeout`, and watched for stalls: no progress, IPC message or output for
   * `stallAfterMs` prints a warning (again after each further quiet period).
   */
  private async spawn(
    stage: StageInstance,
    job: WorkerJob,
    jobFile: string,
    logPath: string,
    series: Record<string, Array<[number, number]>>,
    attempt: number,
    attempts: number,
  ): Promise<{ error?: string; timedOut?: boolean; cancelled?: boolean }> {
    const log = createWriteStream(logPath, { flags: 'a' });
    if (attempts > 1) log.write(`--- attempt ${attempt} of ${attempts} (${new Date().toISOString()}) ---\n`);
    const tail: string[] = [];
    const keep = this.options.stderrTail ?? 20;
    const env: Record<string, string> = { DISTILL_STAGE: stage.id };
    env.CUDA_VISIBLE_DEVICES = job.devices.gpus.join(',');
    const { execa, execaNode } = await import('execa');
    const cores = this.assignedCores.get(stage.id);
    const spawnOptions = {
      ipc: true,
      reject: false,
      buffer: false,
      stdin: 'ignore',
      env,
      cancelSignal: this.options.signal,
      forceKillAfterDelay: this.options.killGraceMs ?? 5_000,
      ...(stage.timeoutMs !== undefined ? { timeout: stage.timeoutMs } : {}),
    } as const;
    // taskset execs node in place, which keeps the IPC channel (an inherited fd) working.
    const child = cores
      ? execa('taskset', ['-c', cores.join(','), process.execPath, WORKER, jobFile], spawnOptions)
      : execaNode(WORKER, [jobFile], spawnOptions);
    const kill = (): void => {
      child.kill('SIGKILL');
    };
    this.options.forceSignal?.addEventListener('abort', kill, { once: true });
    let lastActivity = Date.now();
    let warnedAt = 0;
    const stallAfterMs = this.options.stallAfterMs ?? 120_000;
    const stallTimer =
      stallAfterMs > 0
        ? setInterval(
            () => {
              const now = Date.now();
              if (now - lastActivity < stallAfterMs || now - warnedAt < stallAfterMs) return;
              warnedAt = now;
              const record = this.states.get(stage.id)?.record;
              if (record) record.stalls = (record.stalls ?? 0) + 1;
              const bound =
                stage.timeoutMs !== undefined
                  ? `it is stopped at its timeout of ${formatDuration(stage.timeoutMs)}`
                  : 'no timeout is set';
              this.progress.message(
                `⚠ ${stage.id}: no progress or log output for ${formatDuration(now - lastActivity)} (pid ${child.pid}; ${bound}; log: ${logPath})`,
              );
            },
            Math.max(20, Math.min(5_000, stallAfterMs / 4)),
          )
        : undefined;
    stallTimer?.unref();
    const onData = (chunk: Buffer, isErr: boolean): void => {
      lastActivity = Date.now();
      log.write(chunk);
      if (isErr) {
        tail.push(
          ...chunk
            .toString('utf8')
            .split('\n')
            .filter((l) => l.length > 0),
        );
        if (tail.length > keep) tail.splice(0, tail.length - keep);
      }
    };
    child.stdout?.on('data', (c: Buffer) => onData(c, false));
    child.stderr?.on('data', (c: Buffer) => onData(c, true));
    child.on('message', (raw: unknown) => {
      lastActivity = Date.now();
      const message = raw as WorkerMessage;
      if (message.type === 'progress') this.progress.progress(stage.id, message.done, message.total, message.unit);
      else if (message.type === 'metrics') {
        for (const point of message.points)
          if (point.step !== undefined) (series[point.name] ??= []).push([point.step, point.value]);
      } else if (message.type === 'log' && this.options.verbose)
        this.progress.message(`  [${stage.id}] ${message.message}`);
    });
    const result = await child;
    if (stallTimer) clearInterval(stallTimer);
    this.options.forceSignal?.removeEventListener('abort', kill);
    await new Promise<void>((resolve) => log.end(resolve));
    if (result.exitCode === 0 && !result.isCanceled && !result.timedOut) return {};
    const how = result.timedOut
      ? `timed out after ${formatDuration(stage.timeoutMs ?? 0)} (its timeout)`
      : result.isCanceled
        ? 'cancelled'
        : result.signal
          ? `killed by ${result.signal}${result.signal === 'SIGKILL' ? ' (out of memory?)' : ''}`
          : `exited with code ${result.exitCode}`;
    const lines = tail.length > 0 ? `\n    ${tail.join('\n    ')}` : '';
    return {
      error: `${how}; log: ${logPath}${lines}`,
      ...(result.timedOut ? { timedOut: true } : {}),
      ...(result.isCanceled ? { cancelled: true } : {}),
    };
  }
}

/** True when the lock's owner was a process on this host that no longer exists. */
async function ownerIsDead(ownerFile: string): Promise<boolean> {
  try {
    const owner = JSON.parse(await readFile(ownerFile, 'utf8')) as { pid: number; host: string };
    if (owner.host !== hostname() || owner.pid === process.pid) return false;
    process.kill(owner.pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
