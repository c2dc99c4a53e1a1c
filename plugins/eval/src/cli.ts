/**
 * `distill eval ...` subcommands, usable outside pipelines:
 *   distill eval coco --gt <gt.json> --dets <dets.json> [--json]
 *   distill eval fid <a> <b> [--json]           (a, b: .npy N x D features or .npz with mu, sigma)
 *   distill eval fid-stats <features.npy> <out.npz>
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

export function registerCommands(program: Command): void {
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
