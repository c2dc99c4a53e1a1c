/**
 * Builds a taxonomy from a user's class-to-vertical map file, for running the EFT pipeline on
 * one's own embeddings (imported by the `dataset` plugin from Arrow / Parquet / NPY).
 *
 * Map file: CSV or TSV with a header row naming the columns `class`, `vertical` and optionally
 * `group` (any order, other columns ignored); one row per class; `class` is the integer class id
 * used in the dataset's labels (0..numClasses-1, each exactly once). Without a group column every
 * vertical is one group. Verticals are numbered in order of first appearance.
 */
import { readFileSync } from 'node:fs';
import type { Taxonomy } from './taxonomy.js';

export function taxonomyFromMap(path: string, text = readFileSync(path, 'utf8')): Taxonomy {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length < 2) throw new Error(`class map ${path}: needs a header and at least one row`);
  const sep = lines[0]!.includes('\t') ? '\t' : ',';
  const header = lines[0]!.split(sep).map((h) => h.trim().toLowerCase());
  const col = (name: string) => header.indexOf(name);
  const ci = col('class');
  const vi = col('vertical');
  const gi = col('group');
  if (ci < 0 || vi < 0)
    throw new Error(
      `class map ${path}: header must name the columns "class" and "vertical" (got ${header.join(', ')})`,
    );
  const verticalOf = new Map<string, number>();
  const groupOf = new Map<string, number>();
  const groupVertical: number[] = [];
  const entries: { c: number; v: number; g: number }[] = [];
  lines.slice(1).forEach((line, i) => {
    const cells = line.split(sep).map((s) => s.trim());
    const where = `class map ${path} line ${i + 2}`;
    const c = Number(cells[ci]);
    if (!Number.isInteger(c) || c < 0 || cells[ci] === '')
      throw new Error(`${where}: class ${JSON.stringify(cells[ci])} is not a non-negative integer`);
    const vname = cells[vi] ?? '';
    if (!/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(vname))
      throw new Error(
        `${where}: vertical ${JSON.stringify(vname)} must be letters, digits, _ or - (it names files and stages)`,
      );
    if (!verticalOf.has(vname)) verticalOf.set(vname, verticalOf.size);
    const v = verticalOf.get(vname)!;
    const gkey = `${vname}\u0000${gi >= 0 ? (cells[gi] ?? '') : ''}`;
    if (!groupOf.has(gkey)) {
      groupOf.set(gkey, groupVertical.length);
      groupVertical.push(v);
    }
    entries.push({ c, v, g: groupOf.get(gkey)! });
  });
  const n = Math.max(...entries.map((e) => e.c)) + 1;
  const classVertical = new Array<number>(n).fill(-1);
  const classGroup = new Array<number>(n).fill(-1);
  for (const e of entries) {
    if (classVertical[e.c] !== -1) throw new Error(`class map ${path}: class ${e.c} appears twice`);
    classVertical[e.c] = e.v;
    classGroup[e.c] = e.g;
  }
  const missing = classVertical.indexOf(-1);
  if (missing >= 0)
    throw new Error(`class map ${path}: class ${missing} is missing (classes must be 0..${n - 1}, each once)`);
  const verticals = [...verticalOf.keys()].map((name, v) => ({
    name,
    size: classVertical.filter((x) => x === v).length,
    groups: groupVertical.filter((x) => x === v).length,
  }));
  return {
    format: 'distillery-taxonomy',
    version: 1,
    numClasses: n,
    verticals,
    classVertical,
    classGroup,
    groupVertical,
    source: `class map ${path}`,
  };
}
