/**
 * Reading vega's SVG output in tests: each mark is a `<g class="mark-<type> role-mark ...">` group
 * holding one `<path>` per item (a line mark: one path per series, "M x,y L x,y ...").
 */

/** The inner SVG of every mark group of a type (rect, line, symbol, text, rule). */
export function markGroups(svg: string, type: string): string[] {
  const groups: string[] = [];
  const open = new RegExp(`<g class="mark-${type} role-mark[^"]*"[^>]*>`, 'g');
  for (const match of svg.matchAll(open)) {
    // Mark groups hold paths or texts only (no nested <g>), so the first </g> closes them.
    const start = (match.index ?? 0) + match[0].length;
    groups.push(svg.slice(start, svg.indexOf('</g>', start)));
  }
  return groups;
}

/** Item elements (path or text) of every mark of a type. */
export function markItems(svg: string, type: string): string[] {
  return markGroups(svg, type).flatMap((g) =>
    [...g.matchAll(/<(path|text)\b[^>]*>(?:[^<]*<\/text>)?/g)].map((m) => m[0]),
  );
}

/** `d` attributes of the line marks' paths: one per drawn series. */
export function lineMarkPaths(svg: string): string[] {
  return markItems(svg, 'line').map((p) => /\sd="([^"]*)"/.exec(p)?.[1] ?? '');
}

/** Vertices of a path made of M/L commands. */
export function pathPoints(d: string): number {
  return (d.match(/[ML]/g) ?? []).length;
}

export const barMarks = (svg: string): number => markItems(svg, 'rect').length;
export const symbolMarks = (svg: string): number => markItems(svg, 'symbol').length;
