/**
 * Hand-written SVG plots of the eval report (no plotting dependency): grouped bar charts
 * (per-vertical AP, latency), line charts (loss curves) and the reliability diagram.
 * Every chart is a fixed 640 x 400 canvas with a plot area, axes, ticks and a legend.
 */

const W = 640;
const H = 400;
const M = { left: 60, right: 150, top: 40, bottom: 60 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;
const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n2 = (v: number): string => (Math.round(v * 100) / 100).toString();
const color = (i: number): string => COLORS[i % COLORS.length]!;

function frame(title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** Axes with y ticks over [y0, y1] and an optional y label. */
function axes(y0: number, y1: number, yLabel: string, xLabel: string): string[] {
  const out = [
    `<line x1="${M.left}" y1="${M.top + PH}" x2="${M.left + PW}" y2="${M.top + PH}" stroke="black"/>`,
    `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + PH}" stroke="black"/>`,
    `<text transform="translate(15 ${M.top + PH / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
    `<text x="${M.left + PW / 2}" y="${H - 10}" text-anchor="middle">${esc(xLabel)}</text>`,
  ];
  for (let t = 0; t <= 5; t++) {
    const v = y0 + ((y1 - y0) * t) / 5;
    const y = M.top + PH - (PH * t) / 5;
    out.push(`<line x1="${M.left - 4}" y1="${n2(y)}" x2="${M.left}" y2="${n2(y)}" stroke="black"/>`);
    out.push(`<text x="${M.left - 6}" y="${n2(y + 4)}" text-anchor="end">${esc(tickLabel(v))}</text>`);
  }
  return out;
}

function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-2)) return v.toExponential(1);
  return String(Math.round(v * 1000) / 1000);
}

function legend(names: string[]): string[] {
  return names.flatMap((name, i) => [
    `<rect x="${M.left + PW + 12}" y="${M.top + i * 18}" width="12" height="12" fill="${color(i)}"/>`,
    `<text x="${M.left + PW + 30}" y="${M.top + i * 18 + 10}">${esc(name)}</text>`,
  ]);
}

/** Grouped bars: `values[s][g]` is series s in group g; null values draw no bar. */
export function groupedBarChart(title: string, groups: string[], series: string[], values: (number | null)[][], yLabel: string, yMax?: number): string {
  const max = yMax ?? Math.max(1e-12, ...values.flat().filter((v): v is number => v !== null && Number.isFinite(v)));
  const gw = PW / Math.max(1, groups.length);
  const bw = (gw * 0.8) / Math.max(1, series.length);
  const body = axes(0, max, yLabel, '');
  groups.forEach((g, gi) => {
    const x0 = M.left + gi * gw + gw * 0.1;
    series.forEach((_, si) => {
      const v = values[si]?.[gi];
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      const h = (PH * Math.max(0, v)) / max;
      body.push(`<rect x="${n2(x0 + si * bw)}" y="${n2(M.top + PH - h)}" width="${n2(bw)}" height="${n2(h)}" fill="${color(si)}"><title>${esc(`${series[si]} ${g}: ${v}`)}</title></rect>`);
    });
    body.push(`<text x="${n2(M.left + gi * gw + gw / 2)}" y="${M.top + PH + 14}" text-anchor="middle">${esc(g)}</text>`);
  });
  body.push(...legend(series));
  return frame(title, body);
}

/** Lines: one series of (x, y) points each. */
export function lineChart(title: string, series: { name: string; points: { x: number; y: number }[] }[], xLabel: string, yLabel: string): string {
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const [x0, x1] = [Math.min(...pts.map((p) => p.x)), Math.max(...pts.map((p) => p.x))];
  const [ya, yb] = [Math.min(0, ...pts.map((p) => p.y)), Math.max(...pts.map((p) => p.y))];
  const y1 = yb > ya ? yb : ya + 1;
  const sx = (x: number) => M.left + (x1 > x0 ? ((x - x0) / (x1 - x0)) * PW : PW / 2);
  const sy = (y: number) => M.top + PH - ((y - ya) / (y1 - ya)) * PH;
  const body = axes(ya, y1, yLabel, xLabel);
  body.push(`<text x="${M.left}" y="${M.top + PH + 14}" text-anchor="middle">${esc(tickLabel(x0))}</text>`);
  body.push(`<text x="${M.left + PW}" y="${M.top + PH + 14}" text-anchor="middle">${esc(tickLabel(x1))}</text>`);
  series.forEach((s, i) => {
    const d = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).map((p) => `${n2(sx(p.x))},${n2(sy(p.y))}`).join(' ');
    body.push(`<polyline points="${d}" fill="none" stroke="${color(i)}" stroke-width="1.5"/>`);
  });
  body.push(...legend(series.map((s) => s.name)));
  return frame(title, body);
}

/** Reliability diagram: accuracy per confidence bin as bars, mean confidence as marks, the diagonal. */
export function reliabilityDiagram(title: string, bins: { lower: number; upper: number; count: number; accuracy: number | null; confidence: number | null }[]): string {
  const sx = (x: number) => M.left + x * PW;
  const sy = (y: number) => M.top + PH - y * PH;
  const body = axes(0, 1, 'accuracy', 'confidence');
  for (const t of [0, 0.5, 1]) body.push(`<text x="${n2(sx(t))}" y="${M.top + PH + 14}" text-anchor="middle">${t}</text>`);
  for (const b of bins) {
    if (!b.count || b.accuracy === null) continue;
    const x = sx(b.lower);
    const w = sx(b.upper) - x;
    body.push(`<rect x="${n2(x)}" y="${n2(sy(b.accuracy))}" width="${n2(w)}" height="${n2(PH * b.accuracy)}" fill="${color(0)}" stroke="white"><title>${esc(`(${b.lower}, ${b.upper}]: ${b.count} samples, accuracy ${b.accuracy}, confidence ${b.confidence}`)}</title></rect>`);
    if (b.confidence !== null) body.push(`<line x1="${n2(x)}" y1="${n2(sy(b.confidence))}" x2="${n2(x + w)}" y2="${n2(sy(b.confidence))}" stroke="${color(3)}" stroke-width="2"/>`);
  }
  body.push(`<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(1)}" y2="${sy(1)}" stroke="gray" stroke-dasharray="4 3"/>`);
  body.push(...legend(['accuracy', 'mean confidence']).map((s) => s.replace(color(1), color(3))));
  return frame(title, body);
}
