/**
 * `distill runs` (the run history as a table), `distill metrics diff` and `distill params diff`
 * (two runs, or a run and a commit's lock file).
 */
import { existsSync } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import type { Command } from 'commander';
import {
  changedParams,
  diffMaps,
  diffPair,
  flattenMetrics,
  flattenParams,
  snapshotOfRun,
  type DiffRow,
} from '../runner/history.js';
import { formatDuration } from '../runner/progress.js';
import { readRunRecords, type RunRecord } from '../runner/record.js';
import { findProjectRoot, Workspace } from '../runner/workspace.js';
import { colorEnabled, formatTable, type Cell } from './table.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function workspaceAt(root: string | undefined): Workspace {
  return new Workspace(root ? resolve(root) : findProjectRoot(process.cwd()));
}

/** A pipeline given by name or by file: run records carry the name; a file's name is its base name unless the records say otherwise. */
function pipelineName(ws: Workspace, given: string | undefined): string | undefined {
  if (given === undefined) return undefined;
  const looksLikeFile = /\.ya?ml$/.test(given) || given.includes('/');
  if (!looksLikeFile) return given;
  const file = resolve(given);
  const record = readRunRecords(ws.runsDir()).find((r) => r.file === file);
  if (record) return record.pipeline;
  if (!existsSync(file)) throw new Error(`${given}: no such pipeline file`);
  return basename(file, extname(file));
}

/** One row of `distill runs`. */
export interface RunRow {
  runId: string;
  startedAt: string;
  pipeline: string;
  status: RunRecord['status'];
  durationMs: number | null;
  ran: number;
  cached: number;
  failed: number;
  /** "stage.param=value" changed since the pipeline's previous run. */
  changedParams: string[];
  /** Requested metric -> value (null: not measured in that run). */
  metrics: Record<string, number | null>;
}

/**
 * Metric columns when none are asked for: the last stage with metrics (usually the evaluation),
 * its accuracy-like metrics first, at most four.
 */
export function defaultMetricNames(records: RunRecord[]): string[] {
  for (const record of records) {
    const stage = [...record.stages].reverse().find((s) => Object.keys(s.metrics).length > 0);
    if (!stage) continue;
    const names = Object.keys(stage.metrics);
    const preferred = names.filter((n) => /top-?1|acc|\bap\b|fid|ece/i.test(n));
    return (preferred.length > 0 ? preferred : names).slice(0, 4).map((n) => `${stage.id}.${n}`);
  }
  return [];
}

/** The value of "stage.metric" (or a bare metric name, taken from the last stage that has it). */
function metricValue(record: RunRecord, name: string): number | null {
  for (const stage of [...record.stages].reverse()) {
    if (name.startsWith(`${stage.id}.`) && name.slice(stage.id.length + 1) in stage.metrics)
      return stage.metrics[name.slice(stage.id.length + 1)] ?? null;
  }
  for (const stage of [...record.stages].reverse()) if (name in stage.metrics) return stage.metrics[name] ?? null;
  return null;
}

/** Rows of the run history, newest first; params compared with the same pipeline's previous run. */
export function runRows(ws: Workspace, records: RunRecord[], metricNames: string[]): RunRow[] {
  return records.map((record) => {
    const previous = records.slice(records.indexOf(record) + 1).find((r) => r.pipeline === record.pipeline);
    const count = (status: string) => record.stages.filter((s) => s.status === status).length;
    return {
      runId: record.runId,
      startedAt: record.startedAt,
      pipeline: record.pipeline,
      status: record.status,
      durationMs: record.finishedAt ? Date.parse(record.finishedAt) - Date.parse(record.startedAt) : null,
      ran: count('ran'),
      cached: count('cached'),
      failed: count('failed'),
      changedParams: previous ? changedParams(snapshotOfRun(ws, previous), snapshotOfRun(ws, record)) : [],
      metrics: Object.fromEntries(metricNames.map((n) => [n, metricValue(record, n)])),
    };
  });
}

/** Numbers for tables: 4 significant decimals for fractions, integers as they are. */
export function formatNumber(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  if (Number.isInteger(v)) return String(v);
  const abs = Math.abs(v);
  return abs !== 0 && (abs >= 1e6 || abs < 1e-3) ? v.toExponential(3) : v.toFixed(4);
}

const statusStyle = { ok: 'green', failed: 'red', interrupted: 'yellow', running: 'yellow' } as const;

export function renderRuns(rows: RunRow[], metricNames: string[], color: boolean): string {
  const header = [
    'run',
    'date (UTC)',
    'pipeline',
    'status',
    'duration',
    'ran',
    'cached',
    'failed',
    ...metricNames,
    'changed params',
  ];
  const body: Cell[][] = rows.map((r) => [
    r.runId,
    r.startedAt.replace('T', ' ').slice(0, 19),
    r.pipeline,
    { text: r.status, style: statusStyle[r.status] },
    r.durationMs === null ? '-' : formatDuration(r.durationMs),
    String(r.ran),
    String(r.cached),
    r.failed > 0 ? { text: String(r.failed), style: 'red' } : '0',
    ...metricNames.map((n) => formatNumber(r.metrics[n])),
    r.changedParams.length > 0 ? { text: r.changedParams.join(' '), style: 'yellow' } : '',
  ]);
  return formatTable(header, body, { color });
}

/** A diff table: name, A, B and, for numbers, the change. */
function renderDiff<T extends number | string>(
  rows: DiffRow<T>[],
  labelA: string,
  labelB: string,
  color: boolean,
): string {
  const show = (v: T | undefined): string => (v === undefined ? '-' : typeof v === 'number' ? formatNumber(v) : v);
  const header = [
    'name',
    labelA,
    labelB,
    ...(rows.some((r) => typeof r.a === 'number' || typeof r.b === 'number') ? ['change'] : []),
  ];
  const body: Cell[][] = rows.map((r) => {
    const cells: Cell[] = [r.name, show(r.a), show(r.b)];
    if (header.length === 4) {
      const delta = typeof r.a === 'number' && typeof r.b === 'number' ? r.b - r.a : undefined;
      cells.push(
        delta === undefined
          ? '-'
          : delta === 0
            ? '0'
            : { text: `${delta > 0 ? '+' : ''}${formatNumber(delta)}`, style: delta > 0 ? 'green' : 'red' },
      );
    }
    return cells;
  });
  return formatTable(header, body, { color });
}

interface DiffOptions {
  root?: string;
  pipeline?: string;
  all?: boolean;
  json?: boolean;
}

export function registerHistoryCommands(program: Command): void {
  program
    .command('runs [pipeline]')
    .description('the run history: params changed since the previous run, duration, stages ran/cached/failed, metrics')
    .option(
      '--metric <stage.metric>',
      "a metric column (repeatable; default: the last stage's accuracy-like metrics)",
      collect,
      [],
    )
    .option('-n, --limit <n>', 'newest n runs', (v) => Number(v))
    .option('--root <dir>', 'project root holding .distill/')
    .option('--json', 'print JSON')
    .action(
      (
        pipelineArg: string | undefined,
        options: { metric: string[]; limit?: number; root?: string; json?: boolean },
      ) => {
        const ws = workspaceAt(options.root);
        const records = readRunRecords(ws.runsDir(), pipelineName(ws, pipelineArg));
        const metricNames = options.metric.length > 0 ? options.metric : defaultMetricNames(records);
        const rows = runRows(ws, records, metricNames).slice(0, options.limit ?? Infinity);
        if (options.json) printJson({ runs: rows });
        else if (rows.length === 0) process.stdout.write(`no runs recorded in ${ws.runsDir()}\n`);
        else process.stdout.write(renderRuns(rows, metricNames, colorEnabled(process.stdout)));
      },
    );

  const diffCommand = (parent: Command, what: 'metrics' | 'params'): void => {
    parent
      .command('diff [refs...]')
      .description(
        `${what} of two runs (run ids or unique prefixes), or of a git revision's locks/<pipeline>.lock.json ("lock": the working copy's); default: the last run against the one before`,
      )
      .option('--pipeline <name>', "pipeline whose runs and lock file to use (default: the last run's)")
      .option('--all', `also ${what} that did not change`)
      .option('--root <dir>', 'project root holding .distill/')
      .option('--json', 'print JSON')
      .action((refs: string[], options: DiffOptions) => {
        const ws = workspaceAt(options.root);
        const [a, b] = diffPair(ws, refs, pipelineName(ws, options.pipeline));
        const rows: DiffRow<number | string>[] =
          what === 'metrics'
            ? diffMaps(flattenMetrics(a), flattenMetrics(b), options.all)
            : diffMaps(flattenParams(a), flattenParams(b), options.all);
        if (options.json)
          printJson({
            a: a.label,
            b: b.label,
            [what]: rows.map((r) => ({ name: r.name, a: r.a ?? null, b: r.b ?? null })),
          });
        else if (rows.length === 0) process.stdout.write(`no ${what} differ between ${a.label} and ${b.label}\n`);
        else process.stdout.write(renderDiff(rows, a.label, b.label, colorEnabled(process.stdout)));
      });
  };
  diffCommand(program.command('metrics').description('compare the metrics of runs'), 'metrics');
  diffCommand(program.command('params').description('compare the params of runs'), 'params');
}
