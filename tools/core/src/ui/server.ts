/**
 * `distill ui`: a local, read-only web app over a project's pipelines, run records, logs, lock
 * files and eval reports. node:http serves one static page (tools/core/ui/) and JSON endpoints;
 * the page polls /api/status for live stage status while a run is in progress. Curves are drawn
 * in the browser with the same vega + vega-lite the eval report renders with (served from
 * node_modules); the DAG is laid out by Graphviz as WebAssembly (@viz-js/viz) on the server.
 *
 * Binds to 127.0.0.1 unless told otherwise: it shows logs and parameters and has no auth.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pipeline } from '../pipeline/model.js';
import { defaultMetricNames, runRows } from '../cli/history-commands.js';
import { diffMaps, diffPair, flattenMetrics, flattenParams } from '../runner/history.js';
import { readRunRecords, type RunRecord } from '../runner/record.js';
import type { Workspace } from '../runner/workspace.js';
import type { ProgressSnapshot } from './progress-file.js';

/** Static files of the page: tools/core/ui (this file is tools/core/dist/src/ui/server.js). */
const STATIC_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'ui');

export interface UiOptions {
  ws: Workspace;
  /** Loads a pipeline file (the CLI's cached loader). */
  load(file: string): Promise<Pipeline>;
  host?: string;
  /** 0: any free port. */
  port?: number;
}

export interface UiServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** A stage as the page shows it: the latest run's account, live. */
export interface StageView {
  id: string;
  plugin: string;
  upstream: string[];
  /** skipped: not run (upstream failed, or its run was interrupted or killed before it). */
  status: 'ran' | 'cached' | 'failed' | 'skipped' | 'running' | 'pending' | 'never-run';
  progress?: { done: number; total?: number; unit?: string };
  durationMs?: number;
  key?: string;
  reason?: string;
  error?: string;
  params: Record<string, unknown>;
  /** Whether the latest run kept a log for it (GET /api/log). */
  hasLog: boolean;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
};

/** The directory of an installed package (its exports may hide package.json and build/). */
function packageDir(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.resolve(name)));
  while (
    !existsSync(join(dir, 'package.json')) ||
    (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name !== name
  ) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the directory of package ${name}`);
    dir = parent;
  }
  return dir;
}

/** Browser builds of vega and vega-lite, by the name the page asks for. */
const ASSETS: Record<string, () => string> = {
  'vega.min.js': () => join(packageDir('vega'), 'build', 'vega.min.js'),
  'vega-lite.min.js': () => join(packageDir('vega-lite'), 'build', 'vega-lite.min.js'),
};

export class UiApp {
  private readonly ws: Workspace;
  private readonly svgCache = new Map<string, string>();

  constructor(private readonly options: UiOptions) {
    this.ws = options.ws;
  }

  /** Pipeline files: pipelines/*.yaml (params files left out) and any file a run record names. */
  pipelines(): { name: string; file: string }[] {
    const found = new Map<string, string>();
    const records = readRunRecords(this.ws.runsDir());
    for (const r of records) if (existsSync(r.file)) found.set(r.file, r.pipeline);
    const dir = join(this.ws.root, 'pipelines');
    if (existsSync(dir)) {
      for (const name of readdirSync(dir).sort()) {
        if (!/\.ya?ml$/.test(name) || /\.params\.ya?ml$/.test(name)) continue;
        const file = join(dir, name);
        if (!found.has(file)) found.set(file, basename(name, extname(name)));
      }
    }
    return [...found]
      .map(([file, name]) => ({ name, file: relative(this.ws.root, file) }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  private pipelineFile(file: string | null): string {
    if (!file) throw new HttpError(400, 'missing ?file=<pipeline file>');
    const known = this.pipelines().find((p) => p.file === file);
    if (!known) throw new HttpError(404, `unknown pipeline file ${file}`);
    return resolve(this.ws.root, known.file);
  }

  /** The DAG as SVG, each stage node with id "stage-<index>" (the page colours them by status). */
  private async dagSvg(pipeline: Pipeline): Promise<string> {
    const dot = [
      `digraph "${pipeline.name}" {`,
      '  rankdir=TB; nodesep=0.15; ranksep=0.35; node [shape=box, style="rounded,filled", fillcolor=white, fontname="sans-serif", fontsize=11];',
    ];
    // Third line: room for the status the page writes there ("running 12345/12345 steps").
    pipeline.stages.forEach((s, i) =>
      dot.push(`  s${i} [id="stage-${i}", label="${s.id}\\n${s.plugin.name}\\n${'\u2007'.repeat(22)}"];`),
    );
    const index = new Map(pipeline.stages.map((s, i) => [s.id, i]));
    for (const s of pipeline.stages)
      for (const up of s.upstream) dot.push(`  s${index.get(up)} -> s${index.get(s.id)};`);
    dot.push('}');
    const text = dot.join('\n');
    const cached = this.svgCache.get(text);
    if (cached) return cached;
    const { instance } = await import('@viz-js/viz');
    const svg = (await instance()).renderString(text, { format: 'svg', engine: 'dot' });
    this.svgCache.set(text, svg);
    return svg;
  }

  async pipeline(file: string | null): Promise<{ name: string; file: string; svg: string; stages: string[] }> {
    const path = this.pipelineFile(file);
    const pipeline = await this.options.load(path);
    return {
      name: pipeline.name,
      file: relative(this.ws.root, path),
      svg: await this.dagSvg(pipeline),
      stages: pipeline.stages.map((s) => s.id),
    };
  }

  /** Each stage's status in the pipeline's latest run, with live progress while it runs. */
  async status(
    file: string | null,
  ): Promise<{ pipeline: string; runId: string | null; runStatus: string | null; stages: StageView[] }> {
    const path = this.pipelineFile(file);
    const pipeline = await this.options.load(path);
    const record = readRunRecords(this.ws.runsDir(), pipeline.name)[0];
    // A record left "running" by a process that is gone (killed): nothing runs any more.
    const killed = record?.status === 'running' && !runnerAlive(record);
    const live = record?.status === 'running' && !killed ? this.progress(pipeline.name) : undefined;
    const stages = pipeline.stages.map((stage): StageView => {
      const s = record?.stages.find((x) => x.id === stage.id);
      const base = {
        id: stage.id,
        plugin: stage.plugin.name,
        upstream: stage.upstream,
        params: stage.params,
        hasLog: Boolean(s?.log),
      };
      if (!record || !s) return { ...base, status: 'never-run' };
      let status: StageView['status'] = s.status;
      if (record.status === 'running' && s.status === 'skipped' && !killed) status = s.log ? 'running' : 'pending';
      const progress = status === 'running' ? live?.stages[stage.id] : undefined;
      return {
        ...base,
        status,
        ...(progress ? { progress } : {}),
        durationMs: s.durationMs,
        ...(s.key ? { key: s.key } : {}),
        ...(s.reason ? { reason: s.reason } : {}),
        ...(s.error ? { error: s.error } : {}),
      };
    });
    return {
      pipeline: pipeline.name,
      runId: record?.runId ?? null,
      runStatus: killed ? 'killed' : (record?.status ?? null),
      stages,
    };
  }

  private progress(pipelineName: string): ProgressSnapshot | undefined {
    try {
      return JSON.parse(
        readFileSync(join(this.ws.stateRoot, 'progress', `${pipelineName}.json`), 'utf8'),
      ) as ProgressSnapshot;
    } catch {
      return undefined;
    }
  }

  private record(runId: string | null): RunRecord {
    const record = readRunRecords(this.ws.runsDir()).find((r) => r.runId === runId);
    if (!record) throw new HttpError(404, `unknown run ${runId ?? '(none given)'}`);
    return record;
  }

  /** The last 256 KiB of a stage's log in a run. */
  log(runId: string | null, stageId: string | null): string {
    const stage = this.record(runId).stages.find((s) => s.id === stageId);
    if (!stage?.log) throw new HttpError(404, `run ${runId} kept no log for stage ${stageId ?? '(none given)'}`);
    const logs = join(this.ws.stateRoot, 'logs');
    if (!resolve(stage.log).startsWith(logs + sep) || !existsSync(stage.log))
      throw new HttpError(404, `log ${stage.log} is gone`);
    const text = readFileSync(stage.log, 'utf8');
    return text.length > 262_144
      ? `… (first ${text.length - 262_144} characters left out)\n${text.slice(-262_144)}`
      : text;
  }

  runs(pipelineName: string | null): { metricNames: string[]; runs: ReturnType<typeof runRows> } {
    const records = readRunRecords(this.ws.runsDir(), pipelineName ?? undefined);
    const metricNames = defaultMetricNames(records);
    return { metricNames, runs: runRows(this.ws, records, metricNames) };
  }

  /**
   * A stage's per-step metrics in a run: its own when it executed there; when it was served from
   * the cache, those of the run that produced that cache key.
   */
  private stageSeries(runId: string, stageId: string): Record<string, Array<[number, number]>> {
    const stage = this.record(runId).stages.find((s) => s.id === stageId);
    if (!stage) return {};
    if (stage.series || stage.status !== 'cached' || !stage.key) return stage.series ?? {};
    for (const r of readRunRecords(this.ws.runsDir())) {
      const producer = r.stages.find((s) => s.key === stage.key && s.status === 'ran' && s.series);
      if (producer?.series) return producer.series;
    }
    return {};
  }

  /** Per-step metric names each stage of these runs recorded ("stage" -> names). */
  seriesNames(runIds: string[]): Record<string, string[]> {
    const names: Record<string, Set<string>> = {};
    for (const id of runIds) {
      for (const s of this.record(id).stages)
        for (const n of Object.keys(this.stageSeries(id, s.id))) (names[s.id] ??= new Set()).add(n);
    }
    return Object.fromEntries(Object.entries(names).map(([k, v]) => [k, [...v].sort()]));
  }

  /** One metric's per-step values of a stage in several runs. */
  series(
    runIds: string[],
    stageId: string | null,
    metric: string | null,
  ): { run: string; points: Array<[number, number]> }[] {
    if (!stageId || !metric) throw new HttpError(400, 'missing ?stage= or ?metric=');
    return runIds.map((id) => ({ run: id, points: this.stageSeries(id, stageId)[metric] ?? [] }));
  }

  diff(
    pipelineName: string | null,
    a: string | null,
    b: string | null,
  ): { a: string; b: string; metrics: unknown[]; params: unknown[] } {
    const refs = [a, b].filter((r): r is string => Boolean(r));
    const [sa, sb] = diffPair(this.ws, refs, pipelineName ?? undefined);
    const rows = <T>(list: { name: string; a: T | undefined; b: T | undefined }[]) =>
      list.map((r) => ({ name: r.name, a: r.a ?? null, b: r.b ?? null }));
    return {
      a: sa.label,
      b: sb.label,
      metrics: rows(diffMaps(flattenMetrics(sa), flattenMetrics(sb))),
      params: rows(diffMaps(flattenParams(sa), flattenParams(sb))),
    };
  }

  /** Stages of the pipeline's latest run whose output holds an eval report, with its plots. */
  reports(pipelineName: string | null): { stage: string; report: string; markdown: string | null; plots: string[] }[] {
    if (!pipelineName) throw new HttpError(400, 'missing ?pipeline=');
    const record = readRunRecords(this.ws.runsDir(), pipelineName)[0];
    const out: { stage: string; report: string; markdown: string | null; plots: string[] }[] = [];
    for (const s of record?.stages ?? []) {
      const dir = this.ws.outputDir(pipelineName, s.id);
      const json = join(dir, 'report.json');
      if (!existsSync(json)) continue;
      const report = JSON.parse(readFileSync(json, 'utf8')) as { plots?: string[] };
      const url = (f: string) =>
        `/out/${encodeURIComponent(pipelineName)}/${encodeURIComponent(s.id)}/${encodeURIComponent(f)}`;
      out.push({
        stage: s.id,
        report: url('report.json'),
        markdown: existsSync(join(dir, 'report.md')) ? url('report.md') : null,
        plots: (report.plots ?? []).map(url),
      });
    }
    return out;
  }

  /** A file under out/<pipeline>/<stage>/, never outside it (links resolved). */
  outputFile(parts: string[]): string {
    if (parts.length !== 3 || parts.some((p) => p === '..' || p.includes('/') || p === ''))
      throw new HttpError(404, 'not found');
    const [pipeline, stage, file] = parts as [string, string, string];
    const dir = this.ws.outputDir(pipeline, stage);
    const path = join(dir, file);
    if (!TYPES[extname(file)] || !existsSync(path)) throw new HttpError(404, `no ${file} in out/${pipeline}/${stage}`);
    const real = realpathSync(path);
    const storeRoot = realpathSync(this.ws.stateRoot);
    const outRoot = realpathSync(join(this.ws.root, 'out'));
    // Outputs are links into the store, so the real file lives under .distill/ or out/.
    if (!real.startsWith(storeRoot + sep) && !real.startsWith(outRoot + sep)) throw new HttpError(404, 'not found');
    if (!statSync(real).isFile()) throw new HttpError(404, 'not found');
    return real;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const q = (name: string): string | null => url.searchParams.get(name);
    const list = (name: string): string[] => (q(name) ?? '').split(',').filter(Boolean);
    const json = (value: unknown) => send(res, 200, TYPES['.json'] as string, JSON.stringify(value));
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'read-only: GET only');
    const path = url.pathname;
    if (path === '/' || path === '/index.html') return sendFile(res, join(STATIC_DIR, 'index.html'));
    if (path === '/app.js' || path === '/app.css') return sendFile(res, join(STATIC_DIR, path.slice(1)));
    if (path === '/favicon.ico') return send(res, 204, 'image/x-icon', '');
    if (path.startsWith('/assets/')) {
      const asset = ASSETS[path.slice('/assets/'.length)];
      if (!asset) throw new HttpError(404, 'not found');
      return sendFile(res, asset());
    }
    if (path.startsWith('/out/'))
      return sendFile(res, this.outputFile(path.slice('/out/'.length).split('/').map(decodeURIComponent)));
    switch (path) {
      case '/api/pipelines':
        return json(this.pipelines());
      case '/api/pipeline':
        return json(await this.pipeline(q('file')));
      case '/api/status':
        return json(await this.status(q('file')));
      case '/api/log':
        return send(res, 200, TYPES['.txt'] as string, this.log(q('run'), q('stage')));
      case '/api/runs':
        return json(this.runs(q('pipeline')));
      case '/api/series-names':
        return json(this.seriesNames(list('runs')));
      case '/api/series':
        return json(this.series(list('runs'), q('stage'), q('metric')));
      case '/api/diff':
        return json(this.diff(q('pipeline'), q('a'), q('b')));
      case '/api/reports':
        return json(this.reports(q('pipeline')));
      default:
        throw new HttpError(404, `no such page: ${path}`);
    }
  }
}

/**
 * Whether the process that wrote a run record still exists (run ids are "<time>-<pid>-<random>";
 * records come from this machine's runs, the UI reading its own project's .distill).
 */
function runnerAlive(record: RunRecord): boolean {
  const pid = Number(record.runId.split('-')[1]);
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(body);
}

function sendFile(res: ServerResponse, path: string): void {
  if (!existsSync(path)) throw new HttpError(404, 'not found');
  send(res, 200, TYPES[extname(path)] ?? 'application/octet-stream', readFileSync(path));
}

/** Starts the server; resolves once it listens (port 0: a free port, see `url`). */
export async function startUiServer(options: UiOptions): Promise<UiServer> {
  const app = new UiApp(options);
  const server = createServer((req, res) => {
    app.handle(req, res).catch((error: unknown) => {
      const status = error instanceof HttpError ? error.status : 500;
      if (!res.headersSent) send(res, status, TYPES['.txt'] as string, `${(error as Error).message}\n`);
      else res.end();
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolveListen());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}
