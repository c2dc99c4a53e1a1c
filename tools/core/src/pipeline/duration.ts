/** Durations as written in pipelines and on the command line. */
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `90s`, `10m`, `1h30m`, `500ms`, or a number of seconds, in milliseconds. */
export function parseDurationMs(value: string | number): number | undefined {
  if (typeof value === 'number') return value > 0 && Number.isFinite(value) ? value * 1000 : undefined;
  const parts = [...value.matchAll(/([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)/g)];
  if (parts.length === 0 || value.replace(/([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)/g, '').trim() !== '') return undefined;
  const ms = parts.reduce((sum, m) => sum + Number(m[1]) * (DURATION_UNITS[m[2] as string] ?? NaN), 0);
  return ms > 0 && Number.isFinite(ms) ? ms : undefined;
}
