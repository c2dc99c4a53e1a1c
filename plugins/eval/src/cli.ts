/**
 * `distill eval ...` subcommands, usable outside pipelines:
 *   distill eval coco --gt <gt.json> --dets <dets.json> [--json]
 *   distill eval fid <a> <b> [--json]           (a, b: .npy N x D features or .npz with mu, sigma)
 *   distill eval fid-stats <features.npy> <out.npz>
 *   distill compare <a> <b> [--stage <id>] [--json]   (a, b: report.json, an eval stage output
 *                                                       directory, or a run record .distill/runs/<id>.json)
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
  const { frechetDistance } = await import('./fid/frechet.js');
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

/**
 * Finds the report an argument names: a report.json file, a directory holding report.json (an
 * eval stage's output, e.g. out/<pipeline>/<stage>), or a run record (.distill/runs/<id>.json)
 * whose eval stage output is read from the workspace store (`stage` picks one of several).
 */
export async function loadReportFrom(arg: string, stage?: string): Promise<{ report: import('./stage/report.js').EvalReport; label: string }> {
  const { existsSync, statSync } = await import('node:fs');
  const { readFile } = await import('node:fs/promises');
  const { basename, dirname, join } = await import('node:path');
  const { checkReport } = await import('./stage/report.js');
  if (!existsSync(arg)) throw new Error(`${arg}: no such file or directory (give a report.json, an eval stage output directory or a run record)`);
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
    const stages = (record.stages as { id: string; plugin: string; tree?: string }[]).filter((s) => s.plugin === 'eval' && s.tree);
    const chosen = stage ? stages.filter((s) => s.id === stage) : stages;
    if (chosen.length !== 1) {
      throw new Error(`${file}: run ${record.runId} has ${chosen.length === 0 ? 'no' : 'several'} finished eval stage${stage ? ` named ${stage}` : 's'} (${stages.map((s) => s.id).join(', ') || 'none'})${chosen.length > 1 ? '; pick one with --stage' : ''}`);
    }
    const { LocalStore } = await import('@distillery/core/cache/store');
    const store = new LocalStore(dirname(dirname(file)));
    const tree = store.readTree(chosen[0]!.tree!);
    const entry = tree?.files.find((f) => f.path === 'report.json');
    if (!entry) throw new Error(`${file}: the output of stage ${chosen[0]!.id} (tree ${chosen[0]!.tree}) is not in the store ${store.dir} or holds no report.json`);
    const reportPath = store.objectPath(entry.hash);
    let reportJson: unknown;
    try {
      reportJson = JSON.parse(await readFile(reportPath, 'utf8'));
    } catch (error) {
      throw new Error(`${reportPath} (report.json of stage ${chosen[0]!.id}): cannot read (${(error as Error).message})`);
    }
    return { report: checkReport(reportJson, reportPath), label: `${record.runId}:${chosen[0]!.id}` };
  }
  return { report: checkReport(parsed, file), label: basename(file) === 'report.json' ? basename(dirname(file)) || file : file };
}

/** `compare`: two evaluations side by side (Markdown table, or JSON rows with --json). */
export async function compareCommand(a: string, b: string, options: { json?: boolean; stage?: string } = {}): Promise<string> {
  const { compareReports, renderComparison } = await import('./stage/report.js');
  const ra = await loadReportFrom(a, options.stage);
  const rb = await loadReportFrom(b, options.stage);
  // Reports of different splits still compare as numbers, but the reader should know.
  const da = ra.report.dataset;
  const db = rb.report.dataset;
  const note = da.split !== db.split || da.numClasses !== db.numClasses || da.samples !== db.samples
    ? `note: A evaluated split "${da.split}" (${da.samples} samples, ${da.numClasses} classes), B split "${db.split}" (${db.samples} samples, ${db.numClasses} classes)\n\n`
    : '';
  const rows = compareReports(ra.report, rb.report);
  if (options.json) return JSON.stringify({ a: ra.label, b: rb.label, ...(note ? { note: note.trim() } : {}), rows });
  const labelA = ra.label === rb.label ? `A (${a})` : `A: ${ra.label}`;
  const labelB = ra.label === rb.label ? `B (${b})` : `B: ${rb.label}`;
  return note + renderComparison(rows, labelA, labelB);
}

export function registerCommands(program: Command): void {
  program
    .command('compare')
    .description('side-by-side table of two evaluations (report.json, eval stage output directories or run records)')
    .argument('<a>', 'first evaluation')
    .argument('<b>', 'second evaluation')
    .option('--stage <id>', 'eval stage to read when a run record has several')
    .option('--json', 'print the rows as JSON')
    .action(async (a: string, b: string, opts: { json?: boolean; stage?: string }) => {
      console.log(await compareCommand(a, b, opts));
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
