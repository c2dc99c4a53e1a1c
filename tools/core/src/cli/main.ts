/**
 * `distill`: the command line over the loader, planner and runner.
 * Exit codes: 0 success, 1 a stage failed or a system error (ENOSPC, EIO, ...), 2 the pipeline or
 * the command is invalid, 130 interrupted.
 */
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { escapeControl, PipelineError } from '../pipeline/diagnostics.js';
import { UsageError } from '../errors.js';
import { parseDurationMs } from '../pipeline/duration.js';
import { PlanCache } from '../pipeline/plan-cache.js';
import type { Pipeline } from '../pipeline/model.js';
import type { RegisterCommands } from '../plugin/contract.js';
import { distilleryPackages, ModuleRegistry, workspaceRoot } from '../plugin/registry.js';
import { detectResources } from '../runner/devices.js';
import { planPipeline, selectStages, type PlannedStage } from '../runner/plan.js';
import { formatDuration, ProgressView } from '../runner/progress.js';
import { readRunRecords } from '../runner/record.js';
import { runPipeline } from '../runner/run.js';
import { watchInterrupts } from '../runner/interrupt.js';
import { findProjectRoot, Workspace } from '../runner/workspace.js';
import { collectGarbage } from './gc.js';
import { renderDag, renderDagSvg, type DagFormat } from './dag.js';
import { resultsLine } from './summary.js';
import { registerHistoryCommands } from './history-commands.js';
import { writeLockFile } from '../runner/lock.js';
import { ProgressFile, teeProgress } from '../ui/progress-file.js';
import { registerUiCommand } from '../ui/command.js';
import { registerRemoteCommands } from './remote-commands.js';
import { openRemoteStore } from '../remote/index.js';

/** An error whose message is the whole story: printed without a stack. */

function parseDuration(text: string, option: string): number {
  const ms = parseDurationMs(/^[0-9.]+$/.test(text) ? Number(text) : text);
  if (ms === undefined) throw new UsageError(`${option} ${text}: expected seconds or a duration such as 90s, 10m, 1h`);
  return ms;
}

/** Errors of the operating system (ENOSPC, EIO, EACCES, ...): a failure of the run, exit 1. */
function isSystemError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code);
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

interface CommonOptions {
  set: string[];
  root?: string;
  json?: boolean;
}

/**
 * Loads a pipeline and its workspace. The loaded pipeline is cached (.distill/plans): while
 * nothing it was made from changed, no plugin is imported and no YAML parsed.
 */
export async function open(file: string, options: CommonOptions): Promise<{ pipeline: Pipeline; ws: Workspace }> {
  const absolute = resolve(file);
  const ws = new Workspace(options.root ? resolve(options.root) : findProjectRoot(dirname(absolute)));
  const cache = new PlanCache(join(ws.stateRoot, 'plans'), workspaceRoot());
  const cached = cache.read(absolute, options.set);
  if (cached) return { pipeline: cached, ws };
  const { loadPipeline } = await import('../pipeline/load.js');
  const registry = await new ModuleRegistry().init();
  const pipeline = await loadPipeline(file, { registry, overrides: options.set });
  cache.write(pipeline, options.set, pipeline.paramsFile);
  return { pipeline, ws };
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function withCommon(command: Command): Command {
  return command
    .option(
      '--set <stage.param=value>',
      'override a parameter (repeatable); params.<name>=value overrides the params file',
      collect,
      [],
    )
    .option(
      '--root <dir>',
      'project root holding .distill/ and out/ (default: nearest with .distill, nx.json or .git)',
    );
}

export function buildProgram(): Command {
  const program = new Command('distill')
    .description('Pipeline-as-code for knowledge distillation: run, plan and inspect pipelines of stage plugins')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    // Usage errors exit 2 (1 means a stage failed); inherited by every subcommand defined below.
    .exitOverride();

  withCommon(
    program
      .command('run <pipeline> [stages...]')
      .description(
        'run the pipeline; only stages whose inputs, params or code changed execute. With stages: only those and the stale stages they need',
      ),
  )
    .option('--force <stage>', 'run this stage even if cached (repeatable)', collect, [])
    .option('--from <stage>', 'run this stage and everything downstream, even if cached')
    .option('--json', 'print one JSON document describing the run on stdout')
    .option('--quiet', 'no progress output')
    .option('--verbose', 'echo stage log lines')
    .addOption(new Option('--cpus <n>', 'CPU slots (default: core count)').argParser(Number))
    .addOption(new Option('--gpus <n>', 'pretend the machine has n GPUs (default: nvidia-smi)').argParser(Number))
    .addOption(
      new Option('--pin-cpus', 'bind each stage to cores of its own, as many as its cpus (Linux taskset)').env(
        'DISTILL_PIN_CPUS',
      ),
    )
    .addOption(
      new Option('--store <url>', 'shared artifact store consulted on cache misses and published to').env(
        'DISTILL_STORE',
      ),
    )
    .addOption(
      new Option(
        '--stall-after <duration>',
        'warn when a running stage reports no progress and writes no log for this long (0: never)',
      )
        .env('DISTILL_STALL_AFTER')
        .default('2m'),
    )
    .action(
      async (
        file: string,
        targetNames: string[],
        options: CommonOptions & {
          force: string[];
          from?: string;
          quiet?: boolean;
          verbose?: boolean;
          cpus?: number;
          gpus?: number;
          pinCpus?: boolean;
          store?: string;
          stallAfter: string;
        },
      ) => {
        const stallAfterMs = options.stallAfter === '0' ? 0 : parseDuration(options.stallAfter, '--stall-after');
        if (options.cpus !== undefined && !(Number.isInteger(options.cpus) && options.cpus >= 1))
          throw new UsageError(`--cpus ${options.cpus}: expected a whole number of at least 1`);
        const { pipeline, ws } = await open(file, options);
        // nvidia-smi is asked only when some stage wants a GPU.
        const wantsGpus = pipeline.stages.some((s) => s.resources.gpus > 0);
        const machine = await detectResources({
          cpus: options.cpus,
          gpus: options.gpus,
          ...(wantsGpus ? {} : { detectGpus: async () => [] }),
        });
        const interrupt = watchInterrupts();
        const started = Date.now();
        validateSelection(pipeline, [...options.force, ...(options.from ? [options.from] : []), ...targetNames]);
        const record = await runPipeline(ws, pipeline, {
          machine,
          force: options.force,
          from: options.from,
          ...(targetNames.length > 0 ? { targets: selectStages(pipeline, targetNames) } : {}),
          stallAfterMs,
          overrides: options.set,
          signal: interrupt.signal,
          forceSignal: interrupt.force,
          verbose: options.verbose,
          pinCpus: Boolean(options.pinCpus),
          // Also to .distill/progress/<pipeline>.json, for `distill ui`.
          progress: teeProgress(
            new ProgressView(process.stderr, Boolean(options.quiet)),
            new ProgressFile(join(ws.stateRoot, 'progress', `${pipeline.name}.json`)),
          ),
          ...(options.store ? { remote: openRemoteStore(options.store) } : {}),
        });
        writeLockFile(ws.root, pipeline, record);
        const count = (status: string): number => record.stages.filter((s) => s.status === status).length;
        if (!options.quiet) {
          process.stderr.write(
            `${pipeline.name}: ${count('ran')} ran, ${count('cached')} cached, ${count('failed')} failed, ${count('skipped')} skipped in ${formatDuration(Date.now() - started)} (run ${record.runId})\n`,
          );
          for (const s of record.stages.filter((r) => r.status === 'failed')) {
            process.stderr.write(
              `  ✗ ${s.id}${s.timedOut ? ' TIMED OUT' : ''}: ${escapeControl((s.error ?? 'failed').split('\n')[0] ?? '')}${s.attempts ? ` (${s.attempts} attempts)` : ''}\n`,
            );
          }
          process.stderr.write(`${resultsLine(ws, record)}\n`);
        }
        if (options.json) {
          printJson({
            runId: record.runId,
            pipeline: record.pipeline,
            status: record.status,
            stages: record.stages.map((s) => ({
              id: s.id,
              status: s.status,
              durationMs: s.durationMs,
              key: s.key ?? null,
              ...(s.reason ? { reason: s.reason } : {}),
              ...(s.error ? { error: s.error } : {}),
              ...(s.timedOut ? { timedOut: true } : {}),
              ...(s.attempts ? { attempts: s.attempts } : {}),
              metrics: s.metrics,
            })),
          });
        }
        process.exitCode = record.status === 'interrupted' ? 130 : record.status === 'failed' ? 1 : 0;
      },
    );

  withCommon(program.command('plan <pipeline>').description('show what a run would execute and why; runs nothing'))
    .option('--force <stage>', 'as for run', collect, [])
    .option('--from <stage>', 'as for run')
    .option('--json', 'print JSON')
    .action(async (file: string, options: CommonOptions & { force: string[]; from?: string }) => {
      const { pipeline, ws } = await open(file, options);
      validateSelection(pipeline, [...options.force, ...(options.from ? [options.from] : [])]);
      const plan = await planPipeline(ws, pipeline, options);
      if (options.json) printJson({ pipeline: pipeline.name, stages: plan.map(planJson) });
      else printPlan(plan);
    });

  withCommon(
    program.command('status <pipeline>').description('last run of each stage, and whether it is up to date now'),
  )
    .option('--json', 'print JSON')
    .action(async (file: string, options: CommonOptions) => {
      const { pipeline, ws } = await open(file, options);
      const plan = await planPipeline(ws, pipeline);
      const records = readRunRecords(ws.runsDir(), pipeline.name);
      const rows = plan.map((p) => {
        const last = records.map((r) => r.stages.find((s) => s.id === p.id && s.status !== 'skipped')).find(Boolean);
        return {
          id: p.id,
          status: last?.status ?? 'never-run',
          durationMs: last?.durationMs ?? 0,
          key: p.key ?? last?.key ?? null,
          upToDate: p.state === 'cached',
          ...(p.state === 'run' ? { reason: p.reason } : {}),
        };
      });
      if (options.json) printJson({ pipeline: pipeline.name, lastRun: records[0]?.runId ?? null, stages: rows });
      else
        for (const r of rows)
          process.stdout.write(
            `${r.upToDate ? '✓' : '✗'} ${r.id.padEnd(32)} last: ${String(r.status).padEnd(9)} ${r.upToDate ? 'up to date' : `stale: ${r.reason}`}\n`,
          );
    });

  withCommon(
    program
      .command('why <pipeline> <stage>')
      .description('explain what change (input, parameter, code) makes a stage stale'),
  ).action(async (file: string, stageName: string, options: CommonOptions) => {
    const { pipeline, ws } = await open(file, options);
    const ids = selectStages(pipeline, [stageName]);
    const plan = new Map((await planPipeline(ws, pipeline)).map((p) => [p.id, p]));
    // A stage reached by several paths is explained once, where it is first met.
    const explained = new Set<string>();
    const explain = (id: string, depth: number): void => {
      if (explained.has(id)) return;
      explained.add(id);
      const p = plan.get(id) as PlannedStage;
      const pad = '  '.repeat(depth);
      if (p.state === 'cached') {
        process.stdout.write(`${pad}${id}: up to date (key ${p.key?.slice(0, 12)})\n`);
        return;
      }
      process.stdout.write(`${pad}${id}: will run: ${p.reason}\n`);
      const stage = pipeline.byId.get(id);
      for (const up of stage?.upstream ?? []) if (plan.get(up)?.state === 'run') explain(up, depth + 1);
    };
    for (const id of ids) explain(id, 0);
  });

  withCommon(program.command('dag <pipeline>').description('print the stage graph as Mermaid, DOT or SVG'))
    .addOption(
      new Option('--format <format>', 'output format (svg: laid out by Graphviz built to WebAssembly)')
        .choices(['mermaid', 'dot', 'svg'])
        .default('mermaid'),
    )
    .action(async (file: string, options: CommonOptions & { format: DagFormat }) => {
      const { pipeline } = await open(file, options);
      process.stdout.write(
        options.format === 'svg' ? await renderDagSvg(pipeline) : renderDag(pipeline, options.format),
      );
    });

  program
    .command('gc')
    .description('remove temporary files and store objects that no cache entry references')
    .option('--root <dir>', 'project root', process.cwd())
    .option(
      '--workspace',
      'also drop cache entries that neither the latest run of each pipeline nor its latest run without --set used (loses the run-cache for the rest)',
    )
    .option('--dry-run', 'only report what would be removed')
    .option('--json', 'print JSON')
    .action(async (options: { root: string; workspace?: boolean; dryRun?: boolean; json?: boolean }) => {
      const ws = new Workspace(findProjectRoot(resolve(options.root)));
      const result = await collectGarbage(ws, {
        workspaceOnly: Boolean(options.workspace),
        dryRun: Boolean(options.dryRun),
      });
      if (options.json) printJson(result);
      else {
        process.stdout.write(
          `${options.dryRun ? 'would remove' : 'removed'} ${result.objects} objects, ${result.trees} trees, ${result.entries} cache entries, ${result.tmp} temporary dirs: ${(result.bytes / 1024 ** 2).toFixed(1)} MiB\n`,
        );
        for (const line of result.kept) process.stdout.write(`kept: ${line}\n`);
      }
    });

  program
    .command('verify')
    .description('re-hash every store object and check every cache entry; exit 1 when something is damaged')
    .option('--root <dir>', 'project root', process.cwd())
    .option('--quarantine', 'move corrupt objects to .distill/store/quarantine/ (their stages then rerun)')
    .option('--json', 'print JSON')
    .action(async (options: { root: string; quarantine?: boolean; json?: boolean }) => {
      const ws = new Workspace(findProjectRoot(resolve(options.root)));
      const { verifyStore } = await import('./verify.js');
      const result = await verifyStore(ws, { quarantine: Boolean(options.quarantine) });
      if (options.json) printJson(result);
      else {
        for (const c of result.corrupt)
          process.stdout.write(
            `corrupt object ${c.hash} (content hashes to ${c.actual})${c.quarantinedTo ? `; moved to ${c.quarantinedTo}` : ''}\n`,
          );
        for (const e of result.brokenEntries)
          process.stdout.write(`cache entry ${e.key.slice(0, 12)} (${e.stage}): ${e.problem}\n`);
        process.stdout.write(
          `verified ${result.objects} objects (${(result.bytes / 1024 ** 2).toFixed(1)} MiB): ${result.corrupt.length} corrupt, ${result.brokenEntries.length} cache entries damaged` +
            (result.corrupt.length > 0 && !options.quarantine
              ? ' (rerun with --quarantine to move corrupt objects aside)'
              : '') +
            '\n',
        );
      }
      process.exitCode = result.corrupt.length > 0 || result.brokenEntries.length > 0 ? 1 : 0;
    });

  program
    .command('schema')
    .description("write the pipeline JSON Schema (with every plugin's parameters) for editors")
    .option('--out <file>', 'where to write it', resolve(workspaceRoot(), 'schema', 'pipeline.schema.json'))
    .action(async (options: { out: string }) => {
      const registry = await new ModuleRegistry().init();
      const { writePipelineSchema } = await import('./schema.js');
      await writePipelineSchema(registry, options.out);
      process.stdout.write(`wrote ${options.out}\n`);
    });

  registerRemoteCommands(program, { open, printJson });
  registerHistoryCommands(program);
  registerUiCommand(program, { open });
  return program;
}

function validateSelection(pipeline: Pipeline, names: string[]): void {
  try {
    selectStages(pipeline, names);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function planJson(p: PlannedStage): Record<string, unknown> {
  return { id: p.id, plugin: p.plugin, status: p.state, reason: p.reason, key: p.key ?? null };
}

function printPlan(plan: PlannedStage[]): void {
  for (const p of plan)
    process.stdout.write(
      `${p.state === 'cached' ? '  cached' : '→ run   '} ${p.id.padEnd(32)} ${p.state === 'run' ? p.reason : ''}\n`,
    );
  const runs = plan.filter((p) => p.state === 'run').length;
  process.stdout.write(`${runs} of ${plan.length} stages would run\n`);
}

/** Adds the subcommands of packages that declare `distillery.cli`. */
async function registerExtensions(program: Command): Promise<void> {
  for (const [pkgDir, fields] of distilleryPackages(workspaceRoot())) {
    if (!fields.cli) continue;
    const module = (await import(pathToFileURL(resolve(pkgDir, fields.cli)).href)) as {
      registerCommands?: RegisterCommands;
    };
    module.registerCommands?.(program);
  }
}

const CORE_COMMANDS = new Set([
  'run',
  'plan',
  'status',
  'why',
  'dag',
  'gc',
  'verify',
  'schema',
  'stage',
  'export',
  'runs',
  'metrics',
  'params',
  'ui',
  'help',
  '--help',
  '-h',
  '--version',
]);

/**
 * A closed stdout or stderr (`distill status | head -1`, `dag | dot` without dot) ends the command
 * quietly instead of with an EPIPE stack trace.
 */
function quietOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    throw error;
  });
}

export async function main(argv: string[]): Promise<void> {
  quietOnClosedPipe(process.stdout);
  quietOnClosedPipe(process.stderr);
  const program = buildProgram();
  const command = argv[2];
  if (command === undefined || !CORE_COMMANDS.has(command) || command === 'help' || command.startsWith('-'))
    await registerExtensions(program);
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander has already printed its message.
      process.exitCode =
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.code === 'commander.help'
          ? 0
          : 2;
    } else if (error instanceof PipelineError) {
      process.stderr.write(`${error.message}\n`);
      process.stderr.write(`${error.diagnostics.length} error(s); nothing was run\n`);
      process.exitCode = 2;
    } else if (error instanceof UsageError) {
      process.stderr.write(`error: ${escapeControl(error.message).replace(/\\n/g, '\n')}\n`);
      process.exitCode = 2;
    } else {
      // A system error (a full disk, an I/O error) is a failed run, 1; anything else here is a
      // problem with what was asked (a bad store URL, an unreadable setting), 2.
      process.stderr.write(`error: ${escapeControl((error as Error).message).replace(/\\n/g, '\n')}\n`);
      if (process.env.DISTILL_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
      process.exitCode = isSystemError(error) ? 1 : 2;
    }
  }
}
