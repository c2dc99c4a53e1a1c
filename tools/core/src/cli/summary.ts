/** The last line of a run's summary: where its results are. */
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { RunRecord } from '../runner/record.js';
import type { Workspace } from '../runner/workspace.js';

/** Files a stage writes for people to read, in the order they are named. */
const REPORT_FILES = ['report.md', 'report.json'];

/**
 * "results: <paths>": the reports (an eval stage's report.md) of the stages that ran or were cached,
 * else the pipeline's output folder. Paths are relative to `cwd` when under it.
 */
export function resultsLine(ws: Workspace, record: RunRecord, cwd = process.cwd()): string {
  const show = (path: string): string => {
    const rel = relative(cwd, path);
    return rel.startsWith('..') ? path : rel;
  };
  const reports: string[] = [];
  for (const stage of record.stages) {
    if (stage.status !== 'ran' && stage.status !== 'cached') continue;
    const dir = ws.outputDir(record.pipeline, stage.id);
    const report = REPORT_FILES.map((name) => join(dir, name)).find((path) => existsSync(path));
    if (report) reports.push(show(report));
  }
  const outputs = show(ws.outputDir(record.pipeline, ''));
  return reports.length > 0 ? `results: ${reports.join(', ')}` : `results: ${outputs.replace(/\/?$/, '/')}`;
}
