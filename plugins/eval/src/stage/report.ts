/**
 * The eval stage's report (report.json) and its Markdown rendering (report.md), plus the
 * side-by-side comparison of two reports (`distill compare`). Light module: no heavy imports.
 * Numbers that do not exist (a class without samples, FLOPs of a model with an op the counter
 * does not know) are null in JSON and "-" in tables.
 */
import type { ApScore, ClassificationSummary } from '../classification/streaming.js';

export const REPORT_FORMAT = 'distillery-eval-report';

/** Parameters, FLOPs and timing of one model (latency at `batch` samples per run). */
export interface ModelEfficiency {
  parameters: number;
  /** FLOPs for one batch of `batch` samples; null when the graph holds an op the counter does not know. */
  flops: number | null;
  flopsNote?: string;
  latencyP50Ms: number;
  latencyP95Ms: number;
  /** Samples per second. */
  throughput: number;
  batch: number;
  iterations: number;
  threads: number;
  /** Execution provider of the latency runs: 'cuda' when the stage was given a GPU and its provider loaded. */
  provider: 'cuda' | 'cpu';
}

/** One training step: total loss, learning rate and loss terms (student-train writes all three). */
export interface LossPoint {
  step: number;
  loss: number;
  lr?: number;
  terms?: Record<string, number>;
}

/** One evaluated model. */
export interface ModelReport {
  /** Stage id of the upstream stage that produced the model. */
  name: string;
  role: 'teacher' | 'student';
  modelSha256: string;
  metrics: ClassificationSummary;
  efficiency: ModelEfficiency;
  /** Loss history from the model directory's training.json, when it has one. */
  lossHistory?: LossPoint[];
  /** MSD bundles (router + K students, one composite model; top1 is end-to-end accuracy). */
  composite?: CompositeReport;
}

/** Routing figures of an MSD bundle; `efficiency.parameters` is its total. */
export interface CompositeReport {
  students: number;
  /** Share of samples the router sends to the student that owns their label. */
  routingAccuracy: number;
  /** Top-1 when the partition is known (each sample answered by its true partition's student). */
  knownPartitionTop1: number;
  /** Share of samples routed to each student. */
  routedShare: number[];
  totalParameters: number;
  /** Router + the largest student: what one query runs. */
  activeParameters: number;
  routerParameters: number;
}

/** MedDet-style row: a student against the reference teacher (ratios are teacher / student). */
export interface EfficiencyComparison {
  teacher: string;
  student: string;
  speedup: number;
  parameterReduction: number;
  flopReduction: number | null;
}

export interface EvalReport {
  format: typeof REPORT_FORMAT;
  version: 1;
  dataset: { split: string; samples: number; skippedUnlabelled: number; numClasses: number; classNames?: string[] };
  topk: number[];
  eceBins: number;
  verticals?: { names: string[]; classToVertical: number[] };
  /** The score mean per-vertical AP ranked (absent in reports written before it was a choice: softmax). */
  apScore?: ApScore;
  /** The first teacher: agreement and efficiency ratios are against it. */
  referenceTeacher?: string;
  models: ModelReport[];
  efficiency: EfficiencyComparison[];
  /** Plot files written next to the report. */
  plots: string[];
}

const fmt = (v: number | null | undefined, digits = 4): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
const pct = (v: number | null | undefined): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '-' : `${(v * 100).toFixed(2)}%`;
const big = (v: number | null | undefined): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  const abs = Math.abs(v);
  if (abs >= 1e9) return `${(v / 1e9).toFixed(2)}G`;
  if (abs >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (abs >= 1e3) return `${(v / 1e3).toFixed(2)}k`;
  return String(v);
};
const ratio = (v: number | null | undefined): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '-' : `${v.toFixed(2)}x`;

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The accuracy table: one row per model (models side by side). */
function modelTable(report: EvalReport): string {
  const hasAgreement = report.models.some((m) => m.metrics.agreement !== undefined);
  const hasVerticals = report.verticals !== undefined;
  const header = ['model', 'role', ...report.topk.map((k) => `top-${k}`), 'ECE'];
  if (hasVerticals) header.push(`mean per-vertical AP (${report.apScore ?? 'softmax'} scores)`);
  if (hasAgreement) header.push(`agreement with ${report.referenceTeacher}`);
  header.push('params', 'FLOPs', 'p50 ms', 'p95 ms', 'samples/s');
  const rows = report.models.map((m) => {
    const row = [m.name, m.role, ...report.topk.map((k) => pct(m.metrics.topk[String(k)])), fmt(m.metrics.ece)];
    if (hasVerticals) row.push(fmt(m.metrics.meanPerVerticalAP));
    if (hasAgreement) row.push(pct(m.metrics.agreement));
    const e = m.efficiency;
    row.push(big(e.parameters), big(e.flops), fmt(e.latencyP50Ms, 3), fmt(e.latencyP95Ms, 3), fmt(e.throughput, 1));
    return row;
  });
  return table(header, rows);
}

/** report.md: summary table, efficiency table, per-vertical and per-class accuracy, plots. */
export function renderMarkdown(report: EvalReport): string {
  const out: string[] = [];
  const d = report.dataset;
  out.push('# Evaluation report', '');
  out.push(
    `Split \`${d.split}\`: ${d.samples} samples, ${d.numClasses} classes${d.skippedUnlabelled ? ` (${d.skippedUnlabelled} unlabelled samples skipped)` : ''}. ECE with ${report.eceBins} equal-width bins; latency at batch ${report.models[0]?.efficiency.batch ?? '-'} with ${report.models[0]?.efficiency.threads ?? '-'} threads on ${report.models[0]?.efficiency.provider ?? '-'}, same session options for every model.`,
    '',
  );
  out.push('## Models', '', modelTable(report), '');
  if (report.efficiency.length > 0) {
    out.push('## Teacher vs student efficiency', '');
    const rows = report.efficiency.map((e) => [
      e.teacher,
      e.student,
      ratio(e.speedup),
      ratio(e.parameterReduction),
      ratio(e.flopReduction),
    ]);
    out.push(table(['teacher', 'student', 'speed-up (p50)', 'parameter reduction', 'FLOP reduction'], rows), '');
  }
  if (report.verticals) {
    const v = report.verticals;
    out.push('## Per-vertical accuracy and AP', '');
    const header = ['vertical', ...report.models.flatMap((m) => [`${m.name} acc`, `${m.name} AP`])];
    const rows = v.names.map((name, i) => [
      name,
      ...report.models.flatMap((m) => [pct(m.metrics.perVerticalAccuracy?.[i]), fmt(m.metrics.perVerticalAP?.[i])]),
    ]);
    out.push(table(header, rows), '');
  }
  const bundles = report.models.filter((m) => m.composite);
  if (bundles.length > 0) {
    out.push(
      '## Multi-student bundles',
      '',
      'End-to-end top-1 routes each sample through the router to one student; "known partition" answers it with the student owning its label. Latency = router + one student.',
      '',
    );
    out.push(
      table(
        [
          'bundle',
          'students',
          'routing accuracy',
          'end-to-end top-1',
          'known-partition top-1',
          'parameters (total)',
          'parameters (active)',
          'p50 ms',
        ],
        bundles.map((m) => {
          const c = m.composite!;
          return [
            m.name,
            String(c.students),
            pct(c.routingAccuracy),
            pct(m.metrics.top1),
            pct(c.knownPartitionTop1),
            big(c.totalParameters),
            big(c.activeParameters),
            fmt(m.efficiency.latencyP50Ms, 3),
          ];
        }),
      ),
      '',
    );
  }
  out.push('## Per-class top-1 accuracy', '');
  const names = d.classNames ?? Array.from({ length: d.numClasses }, (_, c) => String(c));
  const counts = report.models[0]?.metrics.classCounts ?? [];
  out.push(
    table(
      ['class', 'samples', ...report.models.map((m) => m.name)],
      names.map((name, c) => [
        name,
        String(counts[c] ?? 0),
        ...report.models.map((m) => pct(m.metrics.perClassAccuracy[c])),
      ]),
    ),
    '',
  );
  if (report.plots.length > 0) {
    out.push('## Plots', '');
    for (const p of report.plots) out.push(`![${p}](${p})`);
    out.push('');
  }
  return out.join('\n');
}

/** Checks that parsed JSON is an eval report; errors name the file. */
export function checkReport(value: unknown, file: string): EvalReport {
  const r = value as Partial<EvalReport> | null;
  if (!r || typeof r !== 'object' || r.format !== REPORT_FORMAT || !Array.isArray(r.models)) {
    throw new Error(`${file}: not an eval report (expected "format": "${REPORT_FORMAT}" and a models list)`);
  }
  if (r.version !== 1)
    throw new Error(`${file}: eval report version ${String(r.version)} is not supported (this build reads version 1)`);
  return r as EvalReport;
}

/** One line of the comparison: a quantity for a model in report A and report B. */
export interface ComparisonRow {
  model: string;
  metric: string;
  a: number | null;
  b: number | null;
  /** b - a; null when either side is missing. */
  delta: number | null;
}

/** Compared quantities, in table order. */
const COMPARED: { metric: string; get: (m: ModelReport) => number | null | undefined }[] = [
  { metric: 'top-1', get: (m) => m.metrics.top1 },
  { metric: 'top-5', get: (m) => m.metrics.topk['5'] },
  { metric: 'ECE', get: (m) => m.metrics.ece },
  { metric: 'mean per-vertical AP', get: (m) => m.metrics.meanPerVerticalAP },
  { metric: 'agreement', get: (m) => m.metrics.agreement },
  { metric: 'parameters', get: (m) => m.efficiency.parameters },
  { metric: 'FLOPs', get: (m) => m.efficiency.flops },
  { metric: 'latency p50 ms', get: (m) => m.efficiency.latencyP50Ms },
  { metric: 'samples/s', get: (m) => m.efficiency.throughput },
];

/**
 * Rows for every model name in either report (models matched by name, A's order first) and every
 * quantity either side has.
 */
export function compareReports(a: EvalReport, b: EvalReport): ComparisonRow[] {
  const names = [
    ...a.models.map((m) => m.name),
    ...b.models.map((m) => m.name).filter((n) => !a.models.some((m) => m.name === n)),
  ];
  const rows: ComparisonRow[] = [];
  for (const name of names) {
    const ma = a.models.find((m) => m.name === name);
    const mb = b.models.find((m) => m.name === name);
    for (const q of COMPARED) {
      const va = ma ? (q.get(ma) ?? null) : null;
      const vb = mb ? (q.get(mb) ?? null) : null;
      if (va === null && vb === null) continue;
      rows.push({ model: name, metric: q.metric, a: va, b: vb, delta: va !== null && vb !== null ? vb - va : null });
    }
  }
  return rows;
}

/** The comparison as a Markdown table. */
export function renderComparison(rows: ComparisonRow[], labelA: string, labelB: string): string {
  const num = (v: number | null) => (v === null ? '-' : Math.abs(v) >= 1000 ? big(v) : fmt(v));
  const delta = (v: number | null) =>
    v === null ? '-' : `${v >= 0 ? '+' : ''}${Math.abs(v) >= 1000 ? big(v) : v.toFixed(4)}`;
  return table(
    ['model', 'metric', labelA, labelB, 'delta (B - A)'],
    rows.map((r) => [r.model, r.metric, num(r.a), num(r.b), delta(r.delta)]),
  );
}
