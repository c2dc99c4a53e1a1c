/**
 * Shared helpers for the core tests: throw-away project directories, pipeline files that use the
 * test plugins by absolute path, the `distill` CLI as a subprocess, and journal/record readers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';
import { loadPipeline } from '../src/pipeline/load.js';
import { PipelineError, type Diagnostic } from '../src/pipeline/diagnostics.js';
import type { Pipeline } from '../src/pipeline/model.js';
import { ModuleRegistry } from '../src/plugin/registry.js';
import type { ProgressSink } from '../src/runner/progress.js';
import type { RunRecord } from '../src/runner/record.js';
import { runPipeline, type RunOptions } from '../src/runner/run.js';
import { Workspace } from '../src/runner/workspace.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Compiled test plugins (tools/core/dist/test/plugins/*.js). */
export const CONCAT = join(here, 'plugins', 'concat.js');
export const MARKER = join(here, 'plugins', 'marker.js');
export const BUSY = join(here, 'plugins', 'busy.js');
/** The `distill` executable of this package. */
export const DISTILL_BIN = join(here, '..', '..', 'bin', 'distill.js');

/** A temporary project (it holds .distill/ so it is its own project root); removed after the test file. */
export function makeProject(prefix = 'distill-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(dir, '.distill'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `text` to dir/name (creating parents) and returns the absolute path. */
export function writeText(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  return path;
}

/** A registry that knows only the test plugins (no workspace packages), so tests are isolated. */
export async function testRegistry(): Promise<ModuleRegistry> {
  const empty = mkdtempSync(join(tmpdir(), 'distill-registry-'));
  after(() => rmSync(empty, { recursive: true, force: true }));
  return new ModuleRegistry(empty, [CONCAT, MARKER]).init();
}

let sharedRegistry: Promise<ModuleRegistry> | undefined;
function registry(): Promise<ModuleRegistry> {
  sharedRegistry ??= testRegistry();
  return sharedRegistry;
}

export async function load(file: string, overrides: string[] = []): Promise<Pipeline> {
  return loadPipeline(file, { registry: await registry(), overrides });
}

/** The diagnostics of a pipeline that must fail to load. */
export async function loadErrors(file: string, overrides: string[] = []): Promise<Diagnostic[]> {
  try {
    await load(file, overrides);
  } catch (error) {
    if (error instanceof PipelineError) return error.diagnostics;
    throw error;
  }
  throw new Error(`${file} loaded without errors`);
}

/** A progress sink that records messages instead of printing them. */
export class RecordingProgress implements ProgressSink {
  readonly lines: string[] = [];
  started(id: string, detail: string): void {
    this.lines.push(`started ${id} ${detail}`);
  }
  readonly progressCalls: Array<[string, number, number | undefined]> = [];
  progress(id: string, done: number, total?: number): void {
    this.progressCalls.push([id, done, total]);
  }
  finished(_id: string, line: string): void {
    this.lines.push(line);
  }
  message(line: string): void {
    this.lines.push(line);
  }
  close(): void {}
}

/** Loads and runs a pipeline in-process (stages still run in worker processes). */
export async function runApi(
  root: string,
  file: string,
  options: Partial<RunOptions> & { set?: string[] } = {},
): Promise<RunRecord> {
  const pipeline = await load(file, options.set ?? []);
  const ws = new Workspace(root);
  return runPipeline(ws, pipeline, {
    machine: { cpus: 2, gpus: [], memoryMiB: 1024 },
    progress: new RecordingProgress(),
    ...options,
  });
}

/** Status of each stage of a run record, by id. */
export function statuses(record: RunRecord): Record<string, string> {
  return Object.fromEntries(record.stages.map((s) => [s.id, s.status]));
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `distill <args>` in `cwd` as the leader of its own process group (so tests can kill the group). */
export function startCli(
  args: string[],
  options: { cwd: string; env?: Record<string, string> },
): ChildProcess & { result: Promise<CliResult> } {
  const child = spawn(process.execPath, [DISTILL_BIN, ...args], {
    cwd: options.cwd,
    env: { ...process.env, CI: 'true', DISTILL_FAKE_GPUS: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return Object.assign(child, { result });
}

/** Runs `distill <args>` to completion (killed after `timeoutMs`). */
export async function runCli(
  args: string[],
  options: { cwd: string; env?: Record<string, string>; timeoutMs?: number },
): Promise<CliResult> {
  const child = startCli(args, options);
  const timer = setTimeout(() => {
    if (child.pid) process.kill(-child.pid, 'SIGKILL');
  }, options.timeoutMs ?? 30_000);
  try {
    return await child.result;
  } finally {
    clearTimeout(timer);
  }
}

/** One journal line written by a test plugin. */
export interface JournalLine {
  /** 'start' or 'end' for the marker plugin; 'done' for concat (one line after its work). */
  event: string;
  stage: string;
  pid: number;
  start: number;
  end: number;
  cuda: string;
}

/** Parses a journal: concat writes "<stage> <pid> <start> <end> <cuda>", marker "start|end <stage> <pid> <time> <cuda>". */
export function readJournal(file: string): JournalLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((line) => {
      const f = line.split(' ');
      if (f[0] === 'start' || f[0] === 'end') {
        const t = Number(f[3]);
        return { event: f[0], stage: f[1] ?? '', pid: Number(f[2]), start: t, end: t, cuda: f[4] ?? '' };
      }
      return {
        event: 'done',
        stage: f[0] ?? '',
        pid: Number(f[1]),
        start: Number(f[2]),
        end: Number(f[3]),
        cuda: f[4] ?? '',
      };
    });
}

/** Stage ids in journal order (one per execution). */
export function executed(file: string): string[] {
  return readJournal(file)
    .filter((l) => l.event === 'done' || l.event === 'end')
    .map((l) => l.stage);
}

/** Waits until `predicate` holds, polling every 25 ms. */
export async function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every file below `dir` (relative paths), sorted; [] when it does not exist. */
export function listTree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, prefix: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(d, entry.name), `${prefix}${entry.name}/`);
      else out.push(`${prefix}${entry.name}`);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** Content of out/<pipeline>/<stage>/out.txt. */
export function output(root: string, pipeline: string, stage: string): string {
  return readFileSync(join(root, 'out', pipeline, stage, 'out.txt'), 'utf8');
}

/** Number of cache entries in a project's store. */
export function cacheEntryCount(root: string): number {
  return listTree(join(root, '.distill', 'cache')).filter((p) => p.endsWith('.json')).length;
}

/** YAML for a stage of the concat plugin: `stage(name, {text: 'A'}, {inputs: 'x: a'})`. */
export function concatStage(
  name: string,
  params: Record<string, unknown>,
  extra: {
    inputs?: Record<string, string | string[]>;
    needs?: string[];
    resources?: Record<string, unknown>;
    plugin?: string;
  } = {},
): string {
  const lines = [`  ${name}:`, `    plugin: ${extra.plugin ?? CONCAT}`];
  if (extra.inputs) lines.push(`    inputs: ${JSON.stringify(extra.inputs)}`);
  if (extra.needs) lines.push(`    needs: ${JSON.stringify(extra.needs)}`);
  if (extra.resources) lines.push(`    resources: ${JSON.stringify(extra.resources)}`);
  lines.push(`    with: ${JSON.stringify(params)}`);
  return lines.join('\n');
}

/** A pipeline file from stage snippets (see concatStage). */
export function pipelineYaml(stages: string[], head = ''): string {
  return `${head}stages:\n${stages.join('\n')}\n`;
}
