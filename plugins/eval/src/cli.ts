/**
 * `distill eval ...` subcommands, usable outside pipelines:
 *   distill eval coco --gt <gt.json> --dets <dets.json> [--json]
 *   distill eval fid <a> <b> [--json]           (a, b: .npy N x D features or .npz with mu, sigma)
 *   distill eval fid-stats <features.npy> <out.npz>
 *   distill compare <a> <b> [--stage <id>] [--json]   (a, b: report.json, an eval stage output
 *                                                       directory, or a run record .distill/runs/<id>.json)
 *   distill compare --seeds <r1> <r2> ... [--pair a:b]... [--metric id]... [--confidence 0.95] [--json]
 *                                                      (one report per seed; more than two imply --seeds)
 * The command bodies are plain functions returning the text to print, so tests call them directly.
 */
import type { Command } from 'commander';

const STAT_LINES: [string, string][] = [
  ['AP', 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]'],
  ['AP50', 'Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]'],
  ['AP75', 'Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]'],
  ['APs', 'Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]'],
  ['APm', 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]'],
  ['APl', 'Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]'],
  ['AR1', 'Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]'],
  ['AR10', 'Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]'],
  ['AR100', 'Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]'],
  ['ARs', 'Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]'],
  ['ARm', 'Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]'],
  ['ARl', 'Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]'],
];

/** `eval coco`: the 12 numbers as JSON (keys AP ... ARl) or as pycocotools prints them. */
export async function cocoCommand(options: { gt: string; dets: string; json?: boolean }): Promise<string> {
  const { loadCocoFiles } = await import('./coco/load.js');
  const { evaluateCoco } = await import('./coco/cocoeval.js');
  const { gt, detections } = await loadCocoFiles(options.gt, options.dets);
  const { stats } = evaluateCoco(gt, detections);
  if (options.json) return JSON.stringify(stats);
  return STAT_LINES.map(([k, label]) => ` ${label} = ${stats[k as keyof typeof stats].toFixed(3)}`).join('\n');
}

/** `eval fid`: FID between two inputs, as {"fid": ...} or a line of text. */
export async function fidCommand(a: string, b: string, options: { json?: boolean } = {}): Promise<string> {
  const { loadFidInput } = await import('./fid/input.js');
  const { frechetDistance } = await import('@distillery/runtime/fid');
  const fid = await frechetDistance(await loadFidInput(a), await loadFidInput(b), {}, [a, b]);
  return options.json ? JSON.stringify({ fid }) : `FID: ${fid}`;
}

/** `eval fid-stats`: saves mu and sigma of a .npy feature matrix as .npz for reuse. */
export async function fidStatsCommand(features: string, out: string): Promise<string> {
  const { loadFidInput } = await import('./fid/input.js');
  const { writeNpzStats } = await import('./fid/npz.js');
  const stats = await loadFidInput(features);
  await writeNpzStats(out, stats);
  return `wrote ${out} (D = ${stats.dim}${stats.count !== undefined ? `, N = ${stats.count}` : ''})`;
}

/** An eval report read from a file, a stage directory or the workspace store. */
export interface LoadedReport {
  report: import('./stage/report.js').EvalReport;
  /** Short name: the stage directory's name, the file, or <run id>:<stage id>. */
  label: string;
  /** The file read. */
  file: string;
}

/**
 * Finds the report an argument names: a report.json file, a directory holding report.json (an
 * eval stage's output, e.g. out/<pipeline>/<stage>), or a run record (.distill/runs/<id>.json)
 * whose eval stage output is read from the workspace store (`stage` picks one of several).
 */
export async function loadReportFrom(arg: string, stage?: string): Promise<LoadedReport> {
  const [one] = await loadReportsFrom(arg, stage, false);
  return one!;
}

/**
 * As loadReportFrom; with `instances`, a run record yields every instance of a fan-out eval stage:
 * `stage` = evaluate picks evaluate@1, evaluate@2, ... (without `stage`, the record's eval stages
 * must all be instances of one stage).
 */
export async function loadReportsFrom(
  arg: string,
  stage: string | undefined,
  instances: boolean,
): Promise<LoadedReport[]> {
  const { existsSync, statSync } = await import('node:fs');
  const { readFile } = await import('node:fs/promises');
  const { basename, dirname, join } = await import('node:path');
  const { checkReport } = await import('./stage/report.js');
  if (!existsSync(arg))
    throw new Error(
      `${arg}: no such file or directory (give a report.json, an eval stage output directory or a run record)`,
    );
  const file = statSync(arg).isDirectory() ? join(arg, 'report.json') : arg;
  if (!existsSync(file)) throw new Error(`${arg}: no report.json in this directory`);
  const text = await readFile(file, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: malformed JSON (${(error as Error).message})`);
  }
  const record = parsed as { runId?: unknown; stages?: unknown };
  if (typeof record.runId === 'string' && Array.isArray(record.stages)) {
    // A run record: .distill/runs/<id>.json; the store is .distill/.
    const stages = (record.stages as { id: string; plugin: string; tree?: string }[]).filter(
      (s) => s.plugin === 'eval' && s.tree,
    );
    const base = (id: string) => id.split('@')[0] ?? id;
    const chosen = stage ? stages.filter((s) => s.id === stage || (instances && base(s.id) === stage)) : stages;
    const bases = new Set(chosen.map((s) => base(s.id)));
    if (chosen.length === 0 || (!instances && chosen.length > 1) || (instances && bases.size > 1)) {
      const what = instances
        ? `eval stage${stage ? ` named ${stage} or ${stage}@<item>` : 's of one fan-out'}`
        : `eval stage${stage ? ` named ${stage}` : 's'}`;
      throw new Error(
        `${file}: run ${record.runId} has ${chosen.length === 0 ? 'no' : 'several'} finished ${what} (${stages.map((s) => s.id).join(', ') || 'none'})${chosen.length > 1 ? '; pick one with --stage' : ''}`,
      );
    }
    const { LocalStore } = await import('@distillery/core');
    const store = new LocalStore(dirname(dirname(file)));
    const loaded: LoadedReport[] = [];
    for (const s of chosen) {
      const tree = store.readTree(s.tree!);
      const entry = tree?.files.find((f) => f.path === 'report.json');
      if (!entry)
        throw new Error(
          `${file}: the output of stage ${s.id} (tree ${s.tree}) is not in the store ${store.dir} or holds no report.json`,
        );
      const reportPath = store.objectPath(entry.hash);
      let reportJson: unknown;
      try {
        reportJson = JSON.parse(await readFile(reportPath, 'utf8'));
      } catch (error) {
        throw new Error(`${reportPath} (report.json of stage ${s.id}): cannot read (${(error as Error).message})`);
      }
      loaded.push({ report: checkReport(reportJson, reportPath), label: `${record.runId}:${s.id}`, file: reportPath });
    }
    return loaded;
  }
  return [
    {
      report: checkReport(parsed, file),
      label: basename(file) === 'report.json' ? basename(dirname(file)) || file : file,
      file,
    },
  ];
}

/** `compare`: two evaluations side by side (Markdown table, or JSON rows with --json). */
export async function compareCommand(
  a: string,
  b: string,
  options: { json?: boolean; stage?: string } = {},
): Promise<string> {
  const { compareReports, renderComparison } = await import('./stage/report.js');
  const ra = await loadReportFrom(a, options.stage);
  const rb = await loadReportFrom(b, options.stage);
  // Reports of different splits still compare as numbers, but the reader should know.
  const da = ra.report.dataset;
  const db = rb.report.dataset;
  const note =
    da.split !== db.split || da.numClasses !== db.numClasses || da.samples !== db.samples
      ? `note: A evaluated split "${da.split}" (${da.samples} samples, ${da.numClasses} classes), B split "${db.split}" (${db.samples} samples, ${db.numClasses} classes)\n\n`
      : '';
  const rows = compareReports(ra.report, rb.report);
  if (options.json) return JSON.stringify({ a: ra.label, b: rb.label, ...(note ? { note: note.trim() } : {}), rows });
  const labelA = ra.label === rb.label ? `A (${a})` : `A: ${ra.label}`;
  const labelB = ra.label === rb.label ? `B (${b})` : `B: ${rb.label}`;
  return note + renderComparison(rows, labelA, labelB);
}

/** Options of `compare --seeds`. */
export interface CompareSeedsOptions {
  json?: boolean;
  /** Run records: the fan-out eval stage whose instances are the seeds. */
  stage?: string;
  /** Comparisons as "a:b" (difference a - b of two roles); default: every role against the first. */
  pair?: string[];
  /** Metric ids (top-<k>, ece, mpvap, agreement, latency-p50-ms); default: all. */
  metric?: string[];
  /** Two-sided confidence level; default 0.95. */
  confidence?: number;
}

/**
 * `compare --seeds` (or more than two reports): one report per seed, aggregated as the eval-seeds
 * stage does (mean ± std per role, paired t-intervals); Markdown, or the seeds report as JSON.
 */
export async function compareSeedsCommand(args: string[], options: CompareSeedsOptions = {}): Promise<string> {
  const { aggregateSeeds, renderSeedsMarkdown } = await import('./stage/seeds.js');
  const reports = [];
  for (const arg of args) reports.push(...(await loadReportsFrom(arg, options.stage, true)));
  const comparisons = options.pair?.map((text) => {
    const parts = text.split(':');
    if (parts.length !== 2 || !parts[0] || !parts[1])
      throw new Error(`--pair ${text}: expected <role a>:<role b>, e.g. student-kd:student-ce`);
    return { a: parts[0], b: parts[1] };
  });
  const aggregate = aggregateSeeds(reports, {
    ...(comparisons ? { comparisons } : {}),
    ...(options.metric ? { metrics: options.metric } : {}),
    ...(options.confidence !== undefined ? { confidence: options.confidence } : {}),
  });
  return options.json ? JSON.stringify(aggregate) : renderSeedsMarkdown(aggregate);
}

/** Commander option parser for repeatable options. */
const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function registerCommands(program: Command): void {
  program
    .command('compare')
    .description(
      'two evaluations side by side, or (--seeds, or more than two) aggregated over seeds with paired t-intervals; arguments: report.json, eval stage output directories or run records',
    )
    .argument('<reports...>', 'evaluations: two to compare side by side, or one per seed')
    .option(
      '--stage <id>',
      'eval stage to read from run records (with --seeds: the fan-out stage, e.g. evaluate for evaluate@1, evaluate@2, ...)',
    )
    .option('--seeds', 'aggregate the reports as seeds of one experiment (automatic with more than two)')
    .option(
      '--pair <a:b>',
      'seeds: comparison a - b of two roles (repeatable); default: every role against the first',
      collect,
    )
    .option(
      '--metric <id>',
      'seeds: metric to aggregate (repeatable): top-<k>, ece, mpvap, agreement, latency-p50-ms; default: all',
      collect,
    )
    .option('--confidence <level>', 'seeds: two-sided confidence level of the intervals', Number, 0.95)
    .option('--json', 'print JSON (rows, or the seeds report)')
    .action(async (reports: string[], opts: CompareSeedsOptions & { seeds?: boolean; confidence: number }) => {
      if (opts.seeds || reports.length > 2) {
        console.log(await compareSeedsCommand(reports, opts));
      } else if (reports.length === 2) {
        console.log(await compareCommand(reports[0]!, reports[1]!, opts));
      } else {
        throw new Error(
          'compare: give two evaluations to compare, or --seeds with one report per seed (or a run record and --stage)',
        );
      }
    });
  const evalCmd = program.command('eval').description('evaluation metrics: COCO mAP, FID');
  evalCmd
    .command('coco')
    .description('COCO bbox evaluation (pycocotools semantics): the 12 standard numbers')
    .requiredOption('--gt <gt.json>', 'COCO-format ground truth')
    .requiredOption('--dets <dets.json>', 'detections: JSON array of {image_id, category_id, bbox, score}')
    .option('--json', 'print the numbers as JSON')
    .action(async (opts: { gt: string; dets: string; json?: boolean }) => {
      console.log(await cocoCommand(opts));
    });
  evalCmd
    .command('fid')
    .description('Frechet distance between two feature sets (.npy N x D) or statistics (.npz with mu, sigma)')
    .argument('<a>', 'first input')
    .argument('<b>', 'second input')
    .option('--json', 'print {"fid": ...}')
    .action(async (a: string, b: string, opts: { json?: boolean }) => {
      console.log(await fidCommand(a, b, opts));
    });
  evalCmd
    .command('fid-stats')
    .description('save mu and sigma of a .npy feature matrix as .npz (reference statistics)')
    .argument('<features>', '.npy feature matrix (N x D)')
    .argument('<out>', 'output .npz')
    .action(async (features: string, out: string) => {
      console.log(await fidStatsCommand(features, out));
    });
}
