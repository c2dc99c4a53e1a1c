/**
 * The `exec` built-in plugin: any command as a stage (DVC's `cmd`).
 *
 *   train:
 *     plugin: exec
 *     inputs: { data: prepare }
 *     resources: { gpus: 1 }
 *     with:
 *       command: python scripts/train.py --data "$DISTILL_INPUT_DATA" --out "$DISTILL_OUT/model.pt"
 *       deps: [scripts/train.py]            # hashed into the cache key
 *       outputs: [model.pt, logs/]           # relative to $DISTILL_OUT; a trailing / is a directory
 *       params: { lr: 0.001, epochs: 3 }     # env DISTILL_PARAM_LR, --lr=0.001, or $DISTILL_PARAMS_FILE
 *       paramsAs: [env, file]
 *
 * The command runs in the pipeline's directory (or `cwd`), with /bin/sh when it is a string and
 * directly when it is an argv array. Everything in `with` is in the cache key, and so is the
 * content of every `deps` path and of every input; the runner sets CUDA_VISIBLE_DEVICES to the
 * GPUs it assigned. After the command exits 0 the stage fails when a declared output is missing,
 * when $DISTILL_OUT holds undeclared files, or when files changed in the working directory, the
 * inputs or the deps (writes outside the declared outputs), so that what is cached is exactly
 * what the stage declares.
 *
 * This module imports only node built-ins, typebox and the contract: its own code is the plugin's
 * code version in the cache key.
 */
import { spawn } from 'node:child_process';
import { existsSync, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { definePlugin, PathParam, type StageContext } from '../plugin/contract.js';

const ENV_NAME = '^[A-Za-z_][A-Za-z0-9_]*$';

const ExecParams = Type.Object(
  {
    command: Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String(), { minItems: 1 })], {
      description: 'A shell command line (run by /bin/sh -c) or an argv array (run without a shell)',
    }),
    deps: Type.Array(PathParam(), {
      default: [],
      description: 'Files or directories the command reads (scripts, data): their content is in the cache key',
    }),
    outputs: Type.Array(Type.String({ minLength: 1, pattern: '^[^/]' }), {
      default: [],
      description:
        'Paths the command writes, relative to $DISTILL_OUT; a trailing / marks a directory. Anything else there fails the stage',
    }),
    params: Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_.-]*$' }), Type.Unknown(), {
      default: {},
      description: 'Parameters for the command, handed over as paramsAs says',
    }),
    paramsAs: Type.Array(Type.Union([Type.Literal('env'), Type.Literal('args'), Type.Literal('file')]), {
      default: ['env', 'file'],
      uniqueItems: true,
      description:
        'env: DISTILL_PARAM_<NAME>; args: --name=value appended to the command; file: JSON at $DISTILL_PARAMS_FILE',
    }),
    env: Type.Record(Type.String({ pattern: ENV_NAME }), Type.String(), {
      default: {},
      description:
        'Extra environment variables. Their values are in the cache key and stored in cache entries (also in a shared store): never put secrets here, use secretEnv',
    }),
    secretEnv: Type.Array(Type.String({ pattern: ENV_NAME }), {
      default: [],
      uniqueItems: true,
      description:
        "Names of environment variables passed from distill's environment to the command (tokens, passwords). The names are in the cache key; the values never enter a key, a record or a log (they are masked in the command's output)",
    }),
    cwd: Type.Optional(
      Type.String({ description: 'Working directory, relative to the pipeline file (default: its directory)' }),
    ),
    checkWrites: Type.Boolean({
      default: true,
      description:
        'Fail when the command changes files in the working directory, the inputs or the deps (stat snapshot before and after). ' +
        'Exec stages that check writes in the same working directory run one at a time; set false (or give each its own cwd) to run them concurrently',
    }),
  },
  { additionalProperties: false },
);

type ExecParamsValue = Static<typeof ExecParams>;

/** Directory names never watched for stray writes: caches that tools write as a side effect. */
const UNWATCHED_NAMES = new Set([
  '.git',
  '.distill',
  'node_modules',
  '__pycache__',
  '.pytest_cache',
  '.mypy_cache',
  '.ipynb_checkpoints',
]);
/** A working directory with more files than this is not watched (the stat walk would cost too much). */
const WATCH_LIMIT = 20_000;

export default definePlugin({
  name: 'exec',
  version: '1',
  description: 'Runs a command as a stage: declared deps, outputs, params and inputs; cached like any stage',
  params: ExecParams,
  resources: { cpus: 1 },
  async run(ctx) {
    const p = ctx.params;
    const outputs = p.outputs.map((o) => checkOutputPath(o));
    const cwd = p.cwd ? resolve(ctx.pipelineDir, p.cwd) : ctx.pipelineDir;
    if (!existsSync(cwd)) throw new Error(`stage ${ctx.stageId}: working directory ${cwd} does not exist`);
    const scratch = await mkdtemp(join(tmpdir(), 'distill-exec-'));
    try {
      const env = await buildEnv(ctx, scratch);
      const secrets = secretValues(ctx, env);
      const argv = commandLine(p);
      const watched = p.checkWrites ? watchRoots(ctx, cwd) : [];
      // Exec stages that share a working directory run one at a time while their writes are
      // checked: otherwise one stage's files would be blamed on another running beside it.
      const release = p.checkWrites ? await lockWorkingDirectory(ctx, cwd) : async () => {};
      let problems: string[];
      try {
        const before = await snapshots(watched, ctx);
        ctx.log.info(`$ ${Array.isArray(p.command) ? argv.join(' ') : (argv[2] ?? '')}`);
        await runCommand(ctx, argv, cwd, env, secrets);
        problems = [
          ...(await checkOutDir(ctx.outDir, outputs)),
          ...(await strayWrites(before, await snapshots(watched, ctx))),
        ];
      } finally {
        await release();
      }
      if (problems.length > 0) throw new Error(`stage ${ctx.stageId}: ${problems.join('; ')}`);
      return { metrics: await readMetrics(join(scratch, 'metrics.json'), ctx.stageId) };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  },
});

/** A declared output: its path below $DISTILL_OUT and whether it must be a directory. */
interface DeclaredOutput {
  path: string;
  directory: boolean;
}

function checkOutputPath(text: string): DeclaredOutput {
  const directory = text.endsWith('/');
  const path = text.replace(/\/+$/, '');
  const parts = path.split('/');
  if (isAbsolute(text) || parts.some((part) => part === '..' || part === '.' || part === '')) {
    throw new Error(`output "${text}": outputs are paths inside $DISTILL_OUT, without "..", "." or empty parts`);
  }
  return { path, directory };
}

/** `NAME-x@y` -> `NAME_X_Y`: the form names take in environment variables. */
export function envName(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
}

function paramText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function shellQuote(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The argv to spawn, with `--name=value` arguments appended when paramsAs holds "args". */
function commandLine(p: ExecParamsValue): string[] {
  const args = p.paramsAs.includes('args') ? Object.entries(p.params).map(([k, v]) => `--${k}=${paramText(v)}`) : [];
  if (Array.isArray(p.command)) return [...p.command, ...args];
  return ['/bin/sh', '-c', [p.command, ...args.map(shellQuote)].join(' ')];
}

async function buildEnv(ctx: StageContext<ExecParamsValue>, scratch: string): Promise<Record<string, string>> {
  const p = ctx.params;
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  const ours: Record<string, string> = {
    DISTILL_STAGE: ctx.stageId,
    DISTILL_PIPELINE: ctx.pipeline,
    DISTILL_PIPELINE_DIR: ctx.pipelineDir,
    DISTILL_OUT: ctx.outDir,
    DISTILL_STATE: ctx.stateDir,
    DISTILL_CPUS: String(ctx.devices.cpus),
    DISTILL_METRICS_FILE: join(scratch, 'metrics.json'),
    DISTILL_INPUTS_FILE: join(scratch, 'inputs.json'),
    CUDA_VISIBLE_DEVICES: ctx.devices.gpus.join(','),
  };
  await writeFile(ours.DISTILL_INPUTS_FILE as string, JSON.stringify(ctx.inputs, null, 1));
  const origin = new Map<string, string>();
  const claim = (name: string, what: string, value: string): void => {
    const previous = origin.get(name);
    if (previous)
      throw new Error(
        `stage ${ctx.stageId}: ${what} and ${previous} both map to the environment variable ${name}; rename one`,
      );
    origin.set(name, what);
    ours[name] = value;
  };
  for (const [name, artifacts] of Object.entries(ctx.inputs)) {
    claim(`DISTILL_INPUT_${envName(name)}`, `input "${name}"`, artifacts.map((a) => a.path).join(':'));
  }
  if (p.paramsAs.includes('env'))
    for (const [name, value] of Object.entries(p.params))
      claim(`DISTILL_PARAM_${envName(name)}`, `param "${name}"`, paramText(value));
  if (p.paramsAs.includes('file')) {
    ours.DISTILL_PARAMS_FILE = join(scratch, 'params.json');
    await writeFile(ours.DISTILL_PARAMS_FILE, JSON.stringify(p.params, null, 1));
  }
  for (const [name, value] of Object.entries(p.env)) {
    if (name in ours)
      throw new Error(`stage ${ctx.stageId}: env.${name} would override a variable distill sets; use another name`);
    env[name] = value;
  }
  return Object.assign(env, ours);
}

/** Names in `env:` that look like credentials. */
const SECRET_LIKE = /SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL/i;

/**
 * The values of the stage's `secretEnv` names, from distill's own environment (they reach the
 * command through it). A missing one fails the stage; `env:` entries that look like credentials
 * earn a warning, since their values are stored in cache entries.
 */
function secretValues(ctx: StageContext<ExecParamsValue>, env: Record<string, string>): string[] {
  const p = ctx.params;
  for (const name of Object.keys(p.env)) {
    if (p.secretEnv.includes(name))
      throw new Error(`stage ${ctx.stageId}: ${name} is in both env and secretEnv; keep it in secretEnv only`);
    if (SECRET_LIKE.test(name))
      ctx.log.warn(
        `env.${name} looks like a secret: values under env are stored in cache entries and shared stores; pass it with secretEnv: [${name}]`,
      );
  }
  const missing = p.secretEnv.filter((name) => process.env[name] === undefined);
  if (missing.length > 0)
    throw new Error(
      `stage ${ctx.stageId}: secretEnv ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not set in distill's environment`,
    );
  // Every value is in the command's environment (env starts from process.env); those of 4 or more
  // characters are masked in its output (shorter ones would mask ordinary text).
  return p.secretEnv.map((name) => env[name] ?? '').filter((value) => value.length >= 4);
}

/** Replaces every occurrence of each secret with ***. */
function mask(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join('***');
  return out;
}

/**
 * Splits a stream into complete lines (so a secret split across two chunks is still masked) and
 * hands each batch of lines, masked, to `emit`; the rest is flushed at the end.
 */
function lineForwarder(secrets: string[], emit: (text: string) => void): { push(chunk: Buffer): void; flush(): void } {
  let pending = '';
  return {
    push(chunk) {
      pending += chunk.toString('utf8');
      const cut = pending.lastIndexOf('\n');
      if (cut < 0 && pending.length < 65_536) return;
      const ready = cut < 0 ? pending : pending.slice(0, cut + 1);
      pending = cut < 0 ? '' : pending.slice(cut + 1);
      emit(mask(ready, secrets));
    },
    flush() {
      if (pending) emit(mask(pending, secrets));
      pending = '';
    },
  };
}

/** Runs the command in its own process group, forwarding (masked) output and reading progress lines. */
function runCommand(
  ctx: StageContext<ExecParamsValue>,
  argv: string[],
  cwd: string,
  env: Record<string, string>,
  secrets: string[],
): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const [file, ...args] = argv as [string, ...string[]];
    // Own process group: a cancel stops the shell and everything it started.
    const child = spawn(file, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const killGroup = (signal: NodeJS.Signals): void => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const onExit = (): void => killGroup('SIGKILL');
    process.on('exit', onExit);
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), 1500);
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    let pending = '';
    const stdout = lineForwarder(secrets, (text) => {
      process.stdout.write(text);
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) reportLine(ctx, line);
    });
    const stderr = lineForwarder(secrets, (text) => process.stderr.write(text));
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error) => {
      cleanup();
      reject(new Error(`stage ${ctx.stageId}: cannot start ${file}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      cleanup();
      stdout.flush();
      stderr.flush();
      if (pending) reportLine(ctx, pending);
      if (ctx.signal.aborted) reject(new Error(`stage ${ctx.stageId}: cancelled`));
      else if (code === 0) resolvePromise();
      else
        reject(
          new Error(
            `stage ${ctx.stageId}: the command ${signal ? `was killed by ${signal}` : `exited with code ${code}`} (see the stage log)`,
          ),
        );
    });
    function cleanup(): void {
      process.off('exit', onExit);
      ctx.signal.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
    }
  });
}

/**
 * Lines the command may print on stdout to report to the runner:
 *   ::distill-progress <done>[/<total>] [unit]
 *   ::distill-metric <name> <value> [step]
 */
function reportLine(ctx: StageContext<ExecParamsValue>, line: string): void {
  const progress = /^::distill-progress (\d+(?:\.\d+)?)(?:\/(\d+(?:\.\d+)?))?(?: (\S+))?\s*$/.exec(line);
  if (progress) {
    ctx.progress(Number(progress[1]), progress[2] === undefined ? undefined : Number(progress[2]), progress[3]);
    return;
  }
  const metric = /^::distill-metric (\S+) (\S+)(?: (\d+))?\s*$/.exec(line);
  if (metric && Number.isFinite(Number(metric[2])))
    ctx.metric(metric[1] as string, Number(metric[2]), metric[3] === undefined ? undefined : Number(metric[3]));
}

async function readMetrics(file: string, stageId: string): Promise<Record<string, number>> {
  if (!existsSync(file)) return {};
  let value: unknown;
  try {
    value = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`stage ${stageId}: $DISTILL_METRICS_FILE is not valid JSON: ${(error as Error).message}`);
  }
  if (
    !value ||
    typeof value !== 'object' ||
    Array.isArray(value) ||
    !Object.values(value).every((v) => typeof v === 'number' && Number.isFinite(v))
  ) {
    throw new Error(`stage ${stageId}: $DISTILL_METRICS_FILE must hold a JSON object of finite numbers`);
  }
  return value as Record<string, number>;
}

/** Files (and symlinks) below `dir`, relative with `/`; empty directories as `path/`. */
async function listEntries(dir: string): Promise<Array<{ path: string; kind: 'file' | 'link' | 'emptydir' }>> {
  const out: Array<{ path: string; kind: 'file' | 'link' | 'emptydir' }> = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    if (entries.length === 0 && rel) out.push({ path: rel, kind: 'emptydir' });
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(join(d, entry.name), childRel);
      else out.push({ path: childRel, kind: entry.isSymbolicLink() ? 'link' : 'file' });
    }
  };
  await walk(dir, '');
  return out;
}

/** Problems with $DISTILL_OUT: undeclared files, missing declared outputs, symlinks. */
async function checkOutDir(outDir: string, outputs: DeclaredOutput[]): Promise<string[]> {
  const entries = await listEntries(outDir);
  const covered = (path: string): boolean => outputs.some((o) => path === o.path || path.startsWith(`${o.path}/`));
  const problems: string[] = [];
  const undeclared = entries.filter((e) => e.kind !== 'emptydir' && !covered(e.path)).map((e) => e.path);
  if (undeclared.length > 0) {
    problems.push(
      `the command wrote ${undeclared.length} file(s) in $DISTILL_OUT that are not declared outputs: ${preview(undeclared)} (add them to outputs:)`,
    );
  }
  const links = entries.filter((e) => e.kind === 'link' && covered(e.path)).map((e) => e.path);
  if (links.length > 0) problems.push(`outputs must be regular files, not symbolic links: ${preview(links)}`);
  for (const output of outputs) {
    const absolute = join(outDir, ...output.path.split('/'));
    let stats: Stats;
    try {
      stats = await lstat(absolute);
    } catch {
      problems.push(
        `the command did not produce declared output "${output.path}${output.directory ? '/' : ''}" (expected at $DISTILL_OUT/${output.path})`,
      );
      continue;
    }
    if (output.directory && !stats.isDirectory())
      problems.push(`declared output "${output.path}/" is a file, not a directory`);
    else if (
      stats.isDirectory() &&
      !entries.some((e) => e.kind !== 'emptydir' && e.path.startsWith(`${output.path}/`))
    ) {
      problems.push(
        `declared output "${output.path}/" is an empty directory (the store keeps files, so it would vanish)`,
      );
    }
  }
  return problems;
}

/** Where a stray write would matter: the working directory, the inputs, and deps outside it. */
function watchRoots(ctx: StageContext<ExecParamsValue>, cwd: string): string[] {
  const roots = new Set<string>([cwd]);
  for (const artifacts of Object.values(ctx.inputs)) for (const artifact of artifacts) roots.add(artifact.path);
  for (const dep of ctx.params.deps) if (!isInside(dep, cwd)) roots.add(dep);
  return [...roots];
}

function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** An exclusive lock on a working directory, kept in the project's .distill (or the temp dir). */
async function lockWorkingDirectory(ctx: StageContext<ExecParamsValue>, cwd: string): Promise<() => Promise<void>> {
  const { default: lockfile } = await import('proper-lockfile');
  const distillDir = dirname(dirname(ctx.stateDir));
  const locks = basename(distillDir) === '.distill' ? join(distillDir, 'locks') : tmpdir();
  await mkdir(locks, { recursive: true });
  const target = join(locks, `exec-cwd-${createHash('sha256').update(cwd).digest('hex').slice(0, 16)}`);
  for (let waited = 0; ; waited++) {
    try {
      return await lockfile.lock(target, { realpath: false, stale: 10_000, update: 2_000 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
      if (waited === 0) ctx.log.info(`waiting for another exec stage working in ${cwd}`);
      ctx.signal.throwIfAborted();
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Paths that other parts of distill write while a stage runs: never counted as stray writes. */
function ignoredPaths(ctx: StageContext<ExecParamsValue>): string[] {
  const ignored = [ctx.outDir, ctx.stateDir];
  // The runner keeps state in <root>/.distill/state/<key> and materialises outputs in <root>/out.
  const distillDir = dirname(dirname(ctx.stateDir));
  if (basename(distillDir) === '.distill') ignored.push(join(dirname(distillDir), 'out'));
  return ignored;
}

type Snapshot = Map<string, string>;

async function snapshots(
  roots: string[],
  ctx: StageContext<ExecParamsValue>,
): Promise<Map<string, Snapshot | undefined>> {
  const ignored = ignoredPaths(ctx);
  const inputRoots = new Set(Object.values(ctx.inputs).flatMap((list) => list.map((a) => a.path)));
  const result = new Map<string, Snapshot | undefined>();
  for (const root of roots) {
    // An input lives under <root>/out, which is otherwise ignored.
    const snapshot = await snapshotTree(
      root,
      inputRoots.has(root) ? ignored.filter((i) => !isInside(root, i)) : ignored,
    );
    if (!snapshot)
      ctx.log.warn(
        `${root} holds more than ${WATCH_LIMIT} files: writes there are not checked (set checkWrites: false or a smaller cwd)`,
      );
    result.set(root, snapshot);
  }
  return result;
}

/** Stat signature of every file below `root` (or of `root` itself when it is a file). */
async function snapshotTree(root: string, ignored: string[]): Promise<Snapshot | undefined> {
  const snapshot: Snapshot = new Map();
  const visit = async (path: string): Promise<boolean> => {
    if (ignored.some((i) => isInside(path, i))) return true;
    let stats: Stats;
    try {
      stats = await lstat(path);
    } catch {
      return true;
    }
    if (!stats.isDirectory()) {
      snapshot.set(path, `${stats.size}:${stats.mtimeMs}:${stats.ino}:${stats.mode}`);
      return snapshot.size <= WATCH_LIMIT;
    }
    for (const entry of await readdir(path, { withFileTypes: true })) {
      if (entry.isDirectory() && UNWATCHED_NAMES.has(entry.name)) continue;
      if (!(await visit(join(path, entry.name)))) return false;
    }
    return true;
  };
  return (await visit(root)) ? snapshot : undefined;
}

async function strayWrites(
  before: Map<string, Snapshot | undefined>,
  after: Map<string, Snapshot | undefined>,
): Promise<string[]> {
  const changes: string[] = [];
  for (const [root, old] of before) {
    const now = after.get(root);
    if (!old || !now) continue;
    for (const [path, signature] of now) {
      if (!old.has(path)) changes.push(`${path} (created)`);
      else if (old.get(path) !== signature) changes.push(`${path} (modified)`);
    }
    for (const path of old.keys()) if (!now.has(path)) changes.push(`${path} (deleted)`);
  }
  const unique = [...new Set(changes)];
  if (unique.length === 0) return [];
  return [
    `the command wrote outside its declared outputs: ${preview(unique)} (write results under $DISTILL_OUT and declare them in outputs:; inputs and deps are read-only)`,
  ];
}

function preview(items: string[], max = 8): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}
