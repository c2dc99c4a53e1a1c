/**
 * Aligned text tables for the terminal. Columns are as wide as their widest cell, whatever the
 * length of ids; colour (ANSI) only when writing to a TTY and NO_COLOR is unset (no-color.org).
 */
/** A cell: its text, and optionally how to colour it. */
export type Cell = string | { text: string; style: CellStyle };
export type CellStyle = 'green' | 'red' | 'yellow' | 'dim' | 'bold';

/** Whether to colour output written to `stream` (a TTY, NO_COLOR unset or empty). */
export function colorEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) && !env.NO_COLOR;
}

/** SGR codes: start, end. */
const ANSI: Record<CellStyle, [number, number]> = {
  green: [32, 39],
  red: [31, 39],
  yellow: [33, 39],
  dim: [2, 22],
  bold: [1, 22],
};
const styleText = (style: CellStyle, text: string): string =>
  `\u001b[${ANSI[style][0]}m${text}\u001b[${ANSI[style][1]}m`;

const textOf = (cell: Cell): string => (typeof cell === 'string' ? cell : cell.text);

/** Display width: code points (the tables hold ids, numbers and ASCII-range symbols). */
const width = (s: string): number => [...s].length;

/** Right-aligns columns whose every body cell is a number (or "-"); left-aligns the rest. */
export function formatTable(header: string[], rows: Cell[][], options: { color?: boolean } = {}): string {
  const widths = header.map((h, c) => Math.max(width(h), ...rows.map((r) => width(textOf(r[c] ?? '')))));
  const numeric = header.map(
    (_, c) => rows.length > 0 && rows.every((r) => /^([+-]?[\d.,]+(e[+-]?\d+)?[%x]?|-|)$/i.test(textOf(r[c] ?? ''))),
  );
  const paint = (cell: Cell, text: string): string =>
    options.color && typeof cell !== 'string' ? styleText(cell.style, text) : text;
  const line = (cells: Cell[]): string =>
    cells
      .map((cell, c) => {
        const text = textOf(cell);
        const pad = ' '.repeat((widths[c] ?? 0) - width(text));
        return numeric[c] ? `${pad}${paint(cell, text)}` : `${paint(cell, text)}${pad}`;
      })
      .join('  ')
      .trimEnd();
  const head = line(header.map((h) => ({ text: h, style: 'bold' as const })));
  return `${[head, ...rows.map(line)].join('\n')}\n`;
}
