/** The stage graph as Mermaid or Graphviz DOT text. */
import type { Pipeline } from '../pipeline/model.js';

export function renderDag(pipeline: Pipeline, format: 'mermaid' | 'dot'): string {
  const ids = new Map(pipeline.stages.map((s, i) => [s.id, `s${i}`]));
  const lines: string[] = [];
  if (format === 'mermaid') {
    lines.push('graph TD');
    for (const stage of pipeline.stages) lines.push(`  ${ids.get(stage.id)}["${stage.id}<br/><small>${stage.plugin.name}</small>"]`);
    for (const stage of pipeline.stages) for (const up of stage.upstream) lines.push(`  ${ids.get(up)} --> ${ids.get(stage.id)}`);
  } else {
    lines.push(`digraph "${pipeline.name}" {`, '  rankdir=TB;', '  node [shape=box];');
    for (const stage of pipeline.stages) lines.push(`  ${ids.get(stage.id)} [label="${stage.id}\\n(${stage.plugin.name})"];`);
    for (const stage of pipeline.stages) for (const up of stage.upstream) lines.push(`  ${ids.get(up)} -> ${ids.get(stage.id)};`);
    lines.push('}');
  }
  return `${lines.join('\n')}\n`;
}
