/**
 * Located errors for pipeline files: every problem found before anything runs is reported as
 * file:line:column with the offending text, all at once.
 */
import { distance } from 'fastest-levenshtein';
import { DistilleryError } from '../errors.js';
import { isMap, isSeq, isScalar, LineCounter, type Document, type Node, type Pair } from 'yaml';

export interface Diagnostic {
  file: string;
  /** 1-based; 0 when the problem has no place in the file (e.g. a --set override). */
  line: number;
  column: number;
  message: string;
  /** The offending source line, with a caret under the column. */
  excerpt?: string;
}

/** An invalid pipeline file: one located diagnostic per problem. */
export class PipelineError extends DistilleryError {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join('\n'));
  }
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.line > 0 ? `${d.file}:${d.line}:${d.column}` : d.file;
  const excerpt = d.excerpt ? `\n${d.excerpt.split('\n').map(escapeControl).join('\n')}` : '';
  return `${escapeControl(where)}: error: ${escapeControl(d.message)}${excerpt}`;
}

/**
 * Control characters shown as escapes (\x1b, \x00, ...), so that echoing a file's text (say, a
 * binary file given as a pipeline) cannot drive the terminal. Tabs stay as they are.
 */
export function escapeControl(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return c === '\n'
      ? '\\n'
      : code > 0xff
        ? `\\u${code.toString(16).padStart(4, '0')}`
        : `\\x${code.toString(16).padStart(2, '0')}`;
  });
}

/** The closest candidate by edit distance, when it is close enough to be a plausible typo. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = distance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const match = closest(word, candidates);
  return match ? ` (did you mean "${match}"?)` : '';
}

export type YamlPath = ReadonlyArray<string | number>;

/** Maps paths in a parsed YAML document back to source positions. */
export class SourceMap {
  readonly lines: string[];
  constructor(
    readonly file: string,
    readonly text: string,
    readonly doc: Document,
    readonly lineCounter: LineCounter,
  ) {
    this.lines = text.split(/\r?\n/);
  }

  /** Diagnostic at `path`; `at: 'key'` points at the mapping key instead of its value. */
  at(path: YamlPath, message: string, at: 'key' | 'value' = 'value'): Diagnostic {
    const offset = this.offsetOf(path, at);
    if (offset === undefined) return { file: this.file, line: 0, column: 0, message };
    return this.atOffset(offset, message);
  }

  atOffset(offset: number, message: string): Diagnostic {
    const { line, col } = this.lineCounter.linePos(offset);
    const source = this.lines[line - 1] ?? '';
    const excerpt = `  ${line} | ${source}\n  ${' '.repeat(String(line).length)} | ${' '.repeat(col - 1)}^`;
    return { file: this.file, line, column: col, message, excerpt };
  }

  /** Offset of the deepest existing node along `path` (a missing tail points at its parent). */
  private offsetOf(path: YamlPath, at: 'key' | 'value'): number | undefined {
    let node: unknown = this.doc.contents;
    let keyOffset: number | undefined;
    let offset = rangeStart(node);
    for (const segment of path) {
      if (isMap(node)) {
        const pair = (node.items as Pair[]).find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
        if (!pair) return offset;
        keyOffset = rangeStart(pair.key);
        node = pair.value;
        offset = rangeStart(node) ?? keyOffset;
      } else if (isSeq(node) && /^\d+$/.test(String(segment))) {
        const item = node.items[Number(segment)];
        if (item === undefined) return offset;
        keyOffset = undefined;
        node = item;
        offset = rangeStart(node) ?? offset;
      } else {
        return offset;
      }
    }
    return at === 'key' && keyOffset !== undefined ? keyOffset : offset;
  }
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range;
  return range ? range[0] : undefined;
}
