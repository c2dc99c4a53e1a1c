/**
 * Aggregation of eval reports over a seed fan-out (the `eval-seeds` stage and
 * `distill compare --seeds`): models are paired across reports by role (the model name up to
 * "@": student-kd@2 -> student-kd), each metric gets mean ± sample std per role, and named
 * comparisons a - b get a paired t-interval over seeds with a "within noise" mark when it
 * contains 0. Light module: no heavy imports.
 */
import type { EvalReport, ModelReport } from './report.js';
import { pairedTInterval, summarize, type PairedInterval } from '../stats/paired.js';

export const SEEDS_REPORT_FORMAT = 'distillery-eval-seeds-report';

/** One seed's evaluation: its report and where it came from (for error messages). */
export interface SeedReport {
  /** Short name: the eval stage id (evaluate@2) or the argument's label. */
  label: string;
  /** The report.json read. */
  file: string;
  report: EvalReport;
}

/** A named comparison: the difference a - b of two roles. */
export interface RolePair {
  a: string;
  b: string;
}

export interface SeedAggregationOptions {
  /** Comparisons a - b; default: every role against the first role (of the first report). */
  comparisons?: RolePair[];
  /** Two-sided confidence level of the intervals; default 0.95. */
  confidence?: number;
  /** Metric ids to aggregate (see metricIds); default: every metric some role has. */
  metrics?: string[];
}

/** Mean ± std of one metric of one role over the seeds. */
export interface RoleSummary {
  role: string;
  n: number;
  mean: number;
  std: number;
  /** One value per seed, in seed order. */
  values: number[];
}

/** A paired comparison a - b of one metric. */
export interface RoleComparison extends PairedInterval {
  a: string;
  b: string;
  /** a_i - b_i per seed, in seed order. */
  differences: number[];
}

export interface MetricAggregate {
  /** Metric id: top-<k>, ece, mpvap, agreement, latency-p50-ms. */
  metric: string;
  label: string;
  /** fraction: shown as percent, differences in percentage points. */
  unit: 'fraction' | 'plain' | 'ms';
  roles: RoleSummary[];
  comparisons: RoleComparison[];
}

export interface SeedsReport {
  format: typeof SEEDS_REPORT_FORMAT;
  version: 1;
  /** The method in words, as printed in report.md. */
  method: string;
  confidence: number;
  dataset: { split: string; samples: number; numClasses: number };
  /** Seed labels, in pairing order. */
  seeds: string[];
  /** Each role and its model name in every seed. */
  roles: { role: string; models: string[] }[];
  metrics: MetricAggregate[];
  /** Things the reader should know (e.g. a report whose models carry different seed suffixes). */
  notes: string[];
}

/** A metric read from one model of an eval report. */
interface MetricDef {
  id: string;
  label: string;
  unit: MetricAggregate['unit'];
  get: (m: ModelReport) => number | null | undefined;
}

function metricDefs(reports: readonly SeedReport[]): MetricDef[] {
  const ks = [...new Set(reports.flatMap((r) => r.report.topk ?? []))].sort((x, y) => x - y);
  return [
    ...ks.map(
      (k): MetricDef => ({
        id: `top-${k}`,
        label: `top-${k}`,
        unit: 'fraction',
        get: (m) => m.metrics.topk?.[String(k)],
      }),
    ),
    { id: 'ece', label: 'ECE', unit: 'plain', get: (m) => m.metrics.ece },
    { id: 'mpvap', label: 'mean per-vertical AP', unit: 'plain', get: (m) => m.metrics.meanPerVerticalAP },
    {
      id: 'agreement',
      label: 'agreement with the reference teacher',
      unit: 'fraction',
      get: (m) => m.metrics.agreement,
    },
    { id: 'latency-p50-ms', label: 'latency p50 (ms)', unit: 'ms', get: (m) => m.efficiency?.latencyP50Ms },
  ];
}

/** The role of a model: its name up to the first "@" (the fan-out suffix). */
export function roleOf(modelName: string): string {
  const at = modelName.indexOf('@');
  return at < 0 ? modelName : modelName.slice(0, at);
}

/** The fan-out suffix of a model name (the part after the first "@", e.g. the seed), if it has one. */
export function suffixOf(modelName: string): string | undefined {
  const at = modelName.indexOf('@');
  return at < 0 ? undefined : modelName.slice(at + 1);
}

const where = (r: SeedReport) => `report ${r.label} (${r.file})`;

export const SEEDS_METHOD = (confidence: number) =>
  `Models are paired across seeds by role (the model name up to "@": student-kd@2 -> student-kd); each seed's report gives one value per role. ` +
  `Per role: mean and sample standard deviation (divisor n - 1) over the n seeds. ` +
  `Comparison a - b: the per-seed differences d_i = a_i - b_i (same seed's report), their mean and sample standard deviation s_d, ` +
  `and the ${fmtLevel(confidence)} paired t-interval mean(d) ± t(${(1 + confidence) / 2}, n - 1) · s_d / sqrt(n) (Student t quantile, n - 1 degrees of freedom). ` +
  `"within noise" when the interval contains 0, else a > b or a < b by value (whether higher is better depends on the metric: lower ECE and latency are better). ` +
  `The interval treats seeds as independent replicates on one fixed test set: it measures seed-to-seed variation, not the test set's sampling error.`;

function fmtLevel(confidence: number): string {
  return `${Number((confidence * 100).toFixed(6))}%`;
}

/**
 * Aggregates the reports of a seed fan-out (one report per seed). Errors name the report file
 * and the model: fewer than 2 reports, reports of different splits, two models of one role in a
 * report, a role or a metric missing in some reports, comparisons of unknown roles.
 */
export function aggregateSeeds(reports: readonly SeedReport[], options: SeedAggregationOptions = {}): SeedsReport {
  const confidence = options.confidence ?? 0.95;
  if (!(confidence > 0 && confidence < 1)) throw new Error(`confidence must lie in (0, 1) (got ${confidence})`);
  if (reports.length < 2) {
    throw new Error(
      `seed aggregation needs at least 2 reports (one per seed) to estimate a spread; got ${reports.length}${reports.length ? `: ${reports.map(where).join(', ')}` : ''}`,
    );
  }
  const first = reports[0]!;
  const d0 = first.report.dataset;
  for (const r of reports.slice(1)) {
    const d = r.report.dataset;
    if (d.split !== d0.split || d.samples !== d0.samples || d.numClasses !== d0.numClasses) {
      throw new Error(
        `${where(r)} evaluated split "${d.split}" (${d.samples} samples, ${d.numClasses} classes) but ${where(first)} split "${d0.split}" (${d0.samples} samples, ${d0.numClasses} classes); seeds must be scored on the same test set`,
      );
    }
  }
  const notes: string[] = [];

  // Each report: role -> model, one model per role.
  const byRole = reports.map((r) => {
    const map = new Map<string, ModelReport>();
    for (const m of r.report.models) {
      const role = roleOf(m.name);
      const other = map.get(role);
      if (other)
        throw new Error(
          `${where(r)} holds two models of role "${role}": ${other.name} and ${m.name}; evaluate one model per role per seed (roles are model names up to "@")`,
        );
      map.set(role, m);
    }
    const suffixes = [
      ...new Set(r.report.models.map((m) => suffixOf(m.name)).filter((s): s is string => s !== undefined)),
    ];
    if (suffixes.length > 1)
      notes.push(
        `${r.label} holds models of different fan-out suffixes (${r.report.models.map((m) => m.name).join(', ')}); they are paired as one seed`,
      );
    return map;
  });
  for (let i = 1; i < reports.length; i++) {
    for (let j = 0; j < i; j++) {
      const hashes = (k: number) =>
        reports[k]!.report.models.map((m) => `${roleOf(m.name)}:${m.modelSha256}`)
          .sort()
          .join();
      if (hashes(i) === hashes(j))
        throw new Error(
          `${where(reports[i]!)} and ${where(reports[j]!)} evaluate the same models (identical model hashes): the same seed given twice?`,
        );
    }
  }

  // Roles in the first report's order, then roles only later reports have (which then fail below).
  const roles = [...new Set(reports.flatMap((r) => r.report.models.map((m) => roleOf(m.name))))];
  for (const role of roles) {
    const having = reports.filter((_, i) => byRole[i]!.has(role)).map((r) => r.label);
    reports.forEach((r, i) => {
      if (!byRole[i]!.has(role)) {
        throw new Error(
          `${where(r)} has no model of role "${role}" (it holds ${r.report.models.map((m) => m.name).join(', ') || 'no models'}; ${having.join(', ')} ${having.length === 1 ? 'has' : 'have'} one): a seed is missing for "${role}"`,
        );
      }
    });
  }

  const comparisons = options.comparisons ?? roles.slice(1).map((role) => ({ a: role, b: roles[0]! }));
  comparisons.forEach((c, i) => {
    for (const side of ['a', 'b'] as const) {
      if (!roles.includes(c[side]))
        throw new Error(`comparisons[${i}].${side}: no role "${c[side]}" in the reports (roles: ${roles.join(', ')})`);
    }
    if (c.a === c.b) throw new Error(`comparisons[${i}]: a and b are both "${c.a}"`);
  });

  const defs = metricDefs(reports);
  let chosen = defs;
  if (options.metrics) {
    chosen = options.metrics.map((id, i) => {
      const def = defs.find((d) => d.id === id);
      if (!def) throw new Error(`metrics[${i}]: unknown metric "${id}" (known: ${defs.map((d) => d.id).join(', ')})`);
      return def;
    });
  }

  const metrics: MetricAggregate[] = [];
  for (const def of chosen) {
    const values = new Map<string, number[]>();
    for (const role of roles) {
      const perSeed = reports.map((r, i) => {
        const v = def.get(byRole[i]!.get(role)!);
        return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
      });
      const present = perSeed.filter((v) => v !== undefined).length;
      if (present === 0) continue; // the role has no such metric (a teacher's agreement with itself)
      if (present < reports.length) {
        const i = perSeed.findIndex((v) => v === undefined);
        const r = reports[i]!;
        throw new Error(
          `${where(r)}: model ${byRole[i]!.get(role)!.name} has no ${def.label} value, while other seeds of role "${role}" do`,
        );
      }
      values.set(role, perSeed as number[]);
    }
    if (values.size === 0) continue;
    const summaries = [...values].map(([role, vs]) => ({
      role,
      ...summarize(vs, `${def.label} of ${role}`),
      values: vs,
    }));
    const pairs: RoleComparison[] = [];
    for (const c of comparisons) {
      const a = values.get(c.a);
      const b = values.get(c.b);
      if (!a || !b) continue;
      const interval = pairedTInterval(a, b, confidence, `${def.label}: ${c.a} - ${c.b}`);
      pairs.push({ a: c.a, b: c.b, ...interval, differences: a.map((v, i) => v - b[i]!) });
    }
    metrics.push({ metric: def.id, label: def.label, unit: def.unit, roles: summaries, comparisons: pairs });
  }

  return {
    format: SEEDS_REPORT_FORMAT,
    version: 1,
    method: SEEDS_METHOD(confidence),
    confidence,
    dataset: { split: d0.split, samples: d0.samples, numClasses: d0.numClasses },
    seeds: reports.map((r) => r.label),
    roles: roles.map((role) => ({ role, models: byRole.map((m) => m.get(role)!.name) })),
    metrics,
    notes,
  };
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** A value in the metric's unit: fractions as percent (2 decimals), others with 4 decimals. */
function value(v: number, unit: MetricAggregate['unit']): string {
  return unit === 'fraction' ? `${(v * 100).toFixed(2)}%` : unit === 'ms' ? v.toFixed(3) : v.toFixed(4);
}

/** A difference in the metric's unit: fractions in percentage points. */
function difference(v: number, unit: MetricAggregate['unit']): string {
  const abs = Math.abs(v);
  const digits = unit === 'fraction' ? (abs * 100).toFixed(2) : unit === 'ms' ? abs.toFixed(3) : abs.toFixed(4);
  // A difference that rounds to zero prints as +0.00, never -0.00.
  const sign = v < 0 && /[1-9]/.test(digits) ? '-' : '+';
  return unit === 'fraction' ? `${sign}${digits} pp` : `${sign}${digits}`;
}

function spread(v: number, unit: MetricAggregate['unit']): string {
  return unit === 'fraction' ? `${(v * 100).toFixed(2)} pp` : unit === 'ms' ? v.toFixed(3) : v.toFixed(4);
}

/** The verdict with role names: "within noise", "student-kd > student-ce". */
export function verdictText(c: RoleComparison): string {
  return c.verdict === 'within noise' ? 'within noise' : c.verdict === 'a > b' ? `${c.a} > ${c.b}` : `${c.a} < ${c.b}`;
}

/** report.md of the aggregation: method, then per metric a role table and a comparison table. */
export function renderSeedsMarkdown(report: SeedsReport): string {
  const level = fmtLevel(report.confidence);
  const out: string[] = [];
  const d = report.dataset;
  out.push(`# Evaluation over ${report.seeds.length} seeds`, '');
  out.push(
    `Reports: ${report.seeds.join(', ')}; split \`${d.split}\`, ${d.samples} samples, ${d.numClasses} classes.`,
    '',
  );
  out.push(`Method (paired t-interval over seeds): ${report.method}`, '');
  out.push(
    table(
      ['role', 'models'],
      report.roles.map((r) => [r.role, r.models.join(', ')]),
    ),
    '',
  );
  for (const note of report.notes) out.push(`Note: ${note}`, '');
  for (const m of report.metrics) {
    out.push(`## ${m.label}`, '');
    out.push(
      table(
        ['role', 'mean ± std', 'n', 'per seed'],
        m.roles.map((r) => [
          r.role,
          `${value(r.mean, m.unit)} ± ${spread(r.std, m.unit)}`,
          String(r.n),
          r.values.map((v) => value(v, m.unit)).join(', '),
        ]),
      ),
      '',
    );
    if (m.comparisons.length > 0) {
      out.push(
        table(
          ['a - b', 'mean difference', 'std of differences', 'n', `${level} interval`, 'verdict'],
          m.comparisons.map((c) => [
            `${c.a} - ${c.b}`,
            difference(c.meanDifference, m.unit),
            spread(c.stdDifference, m.unit),
            String(c.n),
            `[${difference(c.low, m.unit)}, ${difference(c.high, m.unit)}]`,
            verdictText(c),
          ]),
        ),
        '',
      );
    }
  }
  return out.join('\n');
}
