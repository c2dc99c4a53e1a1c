/**
 * `eval-seeds` stage: aggregates the eval reports of a seed fan-out (input `reports`: the eval
 * stages, e.g. `evaluate` for every instance evaluate@1, evaluate@2, ...). Models are paired
 * across seeds by role (name up to "@"); report.json / report.md give mean ± sample std per
 * metric and role, and paired t-intervals of named differences a - b with "within noise" when
 * the interval contains 0. The work is in ./stage/seeds.js.
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '@distillery/core/plugin';

const params = Type.Object(
  {
    comparisons: Type.Optional(
      Type.Array(
        Type.Object(
          {
            a: Type.String({ minLength: 1, description: 'Role (model name up to "@"), e.g. student-kd' }),
            b: Type.String({ minLength: 1, description: 'Role subtracted from a, e.g. student-ce' }),
          },
          { additionalProperties: false },
        ),
        {
          description:
            "Paired differences a - b to test; default: every role against the first (the first report's first model, a teacher when there is one)",
        },
      ),
    ),
    confidence: Type.Number({
      default: 0.95,
      exclusiveMinimum: 0,
      exclusiveMaximum: 1,
      description: 'Two-sided confidence level of the paired t-intervals',
    }),
    metrics: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description:
          'Metrics to aggregate: top-<k>, ece, mpvap, agreement, latency-p50-ms; default: every metric the reports hold',
      }),
    ),
  },
  { additionalProperties: false },
);

export default definePlugin({
  name: 'eval-seeds',
  version: '1',
  description:
    'Aggregate eval reports over seeds: mean ± std per metric and model role, paired t-intervals of named differences with a "within noise" mark',
  params,
  resources: { cpus: 1, gpus: 0, memoryMiB: 256 },
  async run(ctx) {
    const { join } = await import('node:path');
    const { writeFileAtomic } = await import('@distillery/core/plugin');
    const { loadReportFrom } = await import('./cli.js');
    const { aggregateSeeds, renderSeedsMarkdown, verdictText } = await import('./stage/seeds.js');
    const inputs = ctx.inputs.reports ?? [];
    if (inputs.length === 0)
      throw new Error(
        `stage ${ctx.stageId}: bind the input "reports" to the eval stages of the seeds (e.g. reports: evaluate, for every evaluate@<seed>)`,
      );
    const reports = [];
    for (const input of inputs) {
      const file = join(input.path, 'report.json');
      try {
        reports.push({ label: input.stage, file, report: (await loadReportFrom(input.path)).report });
      } catch (error) {
        throw new Error(`stage ${ctx.stageId}, input reports from stage ${input.stage}: ${(error as Error).message}`);
      }
    }
    let aggregate: ReturnType<typeof aggregateSeeds>;
    try {
      aggregate = aggregateSeeds(reports, {
        confidence: ctx.params.confidence,
        comparisons: ctx.params.comparisons,
        metrics: ctx.params.metrics,
      });
    } catch (error) {
      throw new Error(`stage ${ctx.stageId}: ${(error as Error).message}`);
    }
    // Both files are computed before either is written; each write is atomic.
    const markdown = renderSeedsMarkdown(aggregate);
    await writeFileAtomic(join(ctx.outDir, 'report.json'), `${JSON.stringify(aggregate, null, 2)}\n`);
    await writeFileAtomic(join(ctx.outDir, 'report.md'), markdown);
    for (const note of aggregate.notes) ctx.log.warn(note);
    const metrics: Record<string, number> = { seeds: aggregate.seeds.length };
    for (const m of aggregate.metrics) {
      for (const r of m.roles) {
        metrics[`${r.role}/${m.metric}/mean`] = r.mean;
        metrics[`${r.role}/${m.metric}/std`] = r.std;
      }
      for (const c of m.comparisons) {
        metrics[`${c.a}-vs-${c.b}/${m.metric}/difference`] = c.meanDifference;
        metrics[`${c.a}-vs-${c.b}/${m.metric}/low`] = c.low;
        metrics[`${c.a}-vs-${c.b}/${m.metric}/high`] = c.high;
        if (m.metric === 'top-1')
          ctx.log.info(
            `top-1 ${c.a} - ${c.b}: ${(c.meanDifference * 100).toFixed(2)} pp, ${aggregate.confidence * 100}% interval [${(c.low * 100).toFixed(2)}, ${(c.high * 100).toFixed(2)}] pp: ${verdictText(c)}`,
          );
      }
    }
    return { metrics };
  },
});
