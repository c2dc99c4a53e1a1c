/** The stage graph as Mermaid, Graphviz DOT, or SVG (DOT laid out by Graphviz compiled to WebAssembly). */
import type { Pipeline } from '../pipeline/model.js';

export type DagFormat = 'mermaid' | 'dot' | 'svg';

export function renderDag(pipeline: Pipeline, format: 'mermaid' | 'dot'): string {
  const ids = new Map(pipeline.stages.map((s, i) => [s.id, `s${i}`]));
  const lines: string[] = [];
  if (format === 'mermaid') {
    lines.push('graph TD');
    for (const stage of pipeline.stages)
      lines.push(`  ${ids.get(stage.id)}["${stage.id}<br/><small>${stage.plugin.name}</small>"]`);
    for (const stage of pipeline.stages)
      for (const up of stage.upstream) lines.push(`  ${ids.get(up)} --> ${ids.get(stage.id)}`);
  } else {
    lines.push(`digraph "${pipeline.name}" {`, '  rankdir=TB;', '  node [shape=box];');
    for (const stage of pipeline.stages)
      lines.push(`  ${ids.get(stage.id)} [label="${stage.id}\\n(${stage.plugin.name})"];`);
    for (const stage of pipeline.stages)
      for (const up of stage.upstream) lines.push(`  ${ids.get(up)} -> ${ids.get(stage.id)};`);
    lines.push('}');
  }
  return `${lines.join('\n')}\n`;
}

/**
 * SVG of the DOT graph, laid out by @viz-js/viz (Graphviz as WebAssembly, embedded in the package:
 * no system graphviz, nothing fetched). Imported on use: the module is 1.2 MB.
 */
export async function renderDagSvg(pipeline: Pipeline): Promise<string> {
  const { instance } = await import('@viz-js/viz');
  const viz = await instance();
  return viz.renderString(renderDag(pipeline, 'dot'), { format: 'svg', engine: 'dot' });
}
