/**
 * The eval report's plots as Vega-Lite specifications (the format DVC and VS Code render), and
 * their rendering to static SVG with vega + vega-lite (no browser, no canvas: vega's SVG renderer
 * in Node). Specs carry their data inline, so each `.vl.json` file stands alone.
 *
 * Plots: a reliability diagram per model (bins with few samples drawn faded and labelled with
 * their count), accuracy against parameters and against latency for every model, per-vertical AP
 * (with verticals), and the training curves (loss and each loss term, learning rate) of models
 * whose training.json holds a history.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { EvalReport, ModelReport } from './report.js';

/** A plot: the file name it is written under (without extension) and its Vega-Lite spec. */
export interface PlotSpec {
  name: string;
  spec: TopLevelSpec;
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const WIDTH = 420;
const HEIGHT = 280;

/**
 * A reliability bin is "few samples" below this many: its accuracy is too noisy to read a
 * calibration gap from. 1% of the evaluated samples, and never fewer than 10.
 */
export function lowCountThreshold(samples: number): number {
  return Math.max(10, Math.ceil(samples * 0.01));
}

/** Stage ids may hold characters file names should not. */
export const safeName = (name: string): string => name.replace(/[^A-Za-z0-9._-]/g, '_');

export function reliabilitySpec(model: ModelReport, samples: number): TopLevelSpec {
  const few = lowCountThreshold(samples);
  const bins = model.metrics.reliability
    .filter((b) => b.count > 0 && b.accuracy !== null)
    .map((b) => ({ ...b, samples: b.count < few ? `few (< ${few})` : `${few} or more` }));
  return {
    $schema: SCHEMA,
    title: `Reliability: ${model.name} (ECE ${model.metrics.ece.toFixed(4)})`,
    width: WIDTH,
    height: HEIGHT,
    layer: [
      {
        data: { values: bins },
        mark: { type: 'rect', stroke: 'white' },
        encoding: {
          x: { field: 'lower', type: 'quantitative', title: 'confidence', scale: { domain: [0, 1] } },
          x2: { field: 'upper' },
          y: { field: 'accuracy', type: 'quantitative', title: 'accuracy', scale: { domain: [0, 1] } },
          y2: { datum: 0 },
          color: {
            field: 'samples',
            type: 'nominal',
            title: 'samples in bin',
            scale: { domain: [`${few} or more`, `few (< ${few})`], range: ['#4e79a7', '#bab0ac'] },
          },
          opacity: { condition: { test: `datum.count < ${few}`, value: 0.45 }, value: 1 },
          tooltip: [
            { field: 'lower' },
            { field: 'upper' },
            { field: 'count' },
            { field: 'accuracy' },
            { field: 'confidence' },
          ],
        },
      },
      {
        data: { values: bins },
        mark: { type: 'rule', color: '#e15759', strokeWidth: 2 },
        encoding: {
          x: { field: 'lower', type: 'quantitative' },
          x2: { field: 'upper' },
          y: { field: 'confidence', type: 'quantitative' },
        },
      },
      {
        // The count over each low-count bin, so a reader sees why it is faded.
        data: { values: bins.filter((b) => b.count < few) },
        transform: [
          { calculate: "'n=' + datum.count", as: 'label' },
          { calculate: '(datum.lower + datum.upper) / 2', as: 'middle' },
        ],
        mark: { type: 'text', dy: -6, fontSize: 10, color: '#555' },
        encoding: {
          x: { field: 'middle', type: 'quantitative' },
          y: { field: 'accuracy', type: 'quantitative' },
          text: { field: 'label' },
        },
      },
      {
        data: {
          values: [
            { x: 0, y: 0 },
            { x: 1, y: 1 },
          ],
        },
        mark: { type: 'line', color: 'gray', strokeDash: [4, 3] },
        encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } },
      },
    ],
  };
}

/** Top-1 against parameters (log scale) and against p50 latency, one point per model. */
export function accuracySpec(report: EvalReport): TopLevelSpec {
  const values = report.models.map((m) => ({
    model: m.name,
    role: m.role,
    top1: m.metrics.top1,
    parameters: m.efficiency.parameters,
    latencyMs: m.efficiency.latencyP50Ms,
  }));
  const scatter = (field: 'parameters' | 'latencyMs', title: string) => ({
    width: WIDTH * 0.75,
    height: HEIGHT,
    layer: [
      {
        mark: { type: 'point' as const, filled: true, size: 80 },
        encoding: {
          x: { field, type: 'quantitative' as const, title, scale: { type: 'log' as const } },
          y: {
            field: 'top1',
            type: 'quantitative' as const,
            title: 'top-1',
            axis: { format: '.1%' },
            scale: { zero: false },
          },
          color: { field: 'role', type: 'nominal' as const },
          tooltip: [
            { field: 'model' },
            { field: 'top1', format: '.2%' },
            { field: 'parameters' },
            { field: 'latencyMs', title: 'p50 ms' },
          ],
        },
      },
      {
        mark: { type: 'text' as const, align: 'left' as const, dx: 7, fontSize: 10 },
        encoding: {
          x: { field, type: 'quantitative' as const },
          y: { field: 'top1', type: 'quantitative' as const },
          text: { field: 'model' },
        },
      },
    ],
  });
  return {
    $schema: SCHEMA,
    title: 'Accuracy against size and latency',
    data: { values },
    hconcat: [
      scatter('parameters', 'parameters (log)'),
      scatter('latencyMs', `latency p50, ms (log; batch ${report.models[0]?.efficiency.batch ?? '-'})`),
    ],
  };
}

export function verticalApSpec(report: EvalReport): TopLevelSpec | undefined {
  if (!report.verticals) return undefined;
  const names = report.verticals.names;
  const values = report.models.flatMap((m) =>
    names
      .map((vertical, i) => ({ model: m.name, vertical, ap: m.metrics.perVerticalAP?.[i] ?? null }))
      .filter((v) => v.ap !== null),
  );
  return {
    $schema: SCHEMA,
    title: 'Per-vertical AP',
    width: WIDTH,
    height: HEIGHT,
    data: { values },
    mark: 'bar',
    encoding: {
      x: { field: 'vertical', type: 'nominal', sort: names, title: null },
      xOffset: { field: 'model', type: 'nominal' },
      y: { field: 'ap', type: 'quantitative', title: 'AP', scale: { domain: [0, 1] } },
      color: { field: 'model', type: 'nominal' },
      tooltip: [{ field: 'model' }, { field: 'vertical' }, { field: 'ap' }],
    },
  };
}

/** One point of a training curve, long format. */
export interface CurvePoint {
  model: string;
  series: string;
  step: number;
  value: number;
}

/** Loss and loss terms (series "loss", "hard", "soft"; not the gradient norm) of every model with a history. */
export function lossCurvePoints(models: ModelReport[]): CurvePoint[] {
  return models.flatMap((m) =>
    (m.lossHistory ?? []).flatMap((p) => [
      { model: m.name, series: 'loss', step: p.step, value: p.loss },
      ...Object.entries(p.terms ?? {})
        .filter(([term]) => term !== 'grad_norm')
        .map(([term, value]) => ({ model: m.name, series: term, step: p.step, value })),
    ]),
  );
}

export function lossCurvesSpec(models: ModelReport[]): TopLevelSpec | undefined {
  const values = lossCurvePoints(models);
  if (values.length === 0) return undefined;
  return {
    $schema: SCHEMA,
    title: 'Training loss (solid) and its terms',
    width: WIDTH,
    height: HEIGHT,
    data: { values },
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative' },
      y: { field: 'value', type: 'quantitative', title: 'loss' },
      color: { field: 'model', type: 'nominal' },
      strokeDash: {
        field: 'series',
        type: 'nominal',
        title: 'term',
        scale: {
          domain: ['loss', 'hard', 'soft'],
          range: [
            [1, 0],
            [6, 3],
            [2, 2],
          ],
        },
      },
      detail: { field: 'series' },
    },
  };
}

export function learningRateSpec(models: ModelReport[]): TopLevelSpec | undefined {
  const values = models.flatMap((m) =>
    (m.lossHistory ?? []).filter((p) => p.lr !== undefined).map((p) => ({ model: m.name, step: p.step, lr: p.lr })),
  );
  if (values.length === 0) return undefined;
  return {
    $schema: SCHEMA,
    title: 'Learning rate',
    width: WIDTH,
    height: HEIGHT * 0.6,
    data: { values },
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative' },
      y: { field: 'lr', type: 'quantitative', title: 'learning rate' },
      color: { field: 'model', type: 'nominal' },
    },
  };
}

/** Every plot of a report, in the order report.md shows them. */
export function reportPlots(report: EvalReport): PlotSpec[] {
  const plots: PlotSpec[] = [{ name: 'accuracy-vs-size', spec: accuracySpec(report) }];
  const withHistory = report.models.filter((m) => m.lossHistory && m.lossHistory.length > 0);
  const loss = lossCurvesSpec(withHistory);
  if (loss) plots.push({ name: 'loss-curves', spec: loss });
  const lr = learningRateSpec(withHistory);
  if (lr) plots.push({ name: 'learning-rate', spec: lr });
  const ap = verticalApSpec(report);
  if (ap) plots.push({ name: 'vertical-ap', spec: ap });
  for (const m of report.models)
    plots.push({ name: `reliability-${safeName(m.name)}`, spec: reliabilitySpec(m, report.dataset.samples) });
  return plots;
}

/** Renders a Vega-Lite spec to SVG with vega's headless view (imported on use: vega is large). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
  // Errors only: vega-lite's warnings (a dropped scale option) are not the user's business here.
  const logger = vega.logger(vega.Error);
  const view = new vega.View(vega.parse(vl.compile(spec, { logger }).spec), { renderer: 'none', logger });
  try {
    return `${await view.toSVG()}\n`;
  } finally {
    view.finalize();
  }
}
