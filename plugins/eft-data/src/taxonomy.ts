/**
 * The taxonomy file of a hierarchical label space (vertical -> group -> class): what every EFT
 * stage reads to know which classes a specialist covers and how to score per vertical.
 *
 * On disk (a stage output directory):
 *   taxonomy.json                 the Taxonomy below (JSON)
 *   verticals/<name>.json         per vertical: JSON int array, the global class id of each local
 *                                 class of that vertical (ascending) = a specialist's class map
 *   verticals.json                {"classToVertical": [...], "names": [...]}: the class -> vertical
 *                                 map the eval stage reads (input `taxonomy`)
 *
 * taxonomy.json:
 *   { "format": "distillery-taxonomy", "version": 1, "numClasses": 100000,
 *     "verticals": [{ "name": "plant", "size": 27717, "groups": 555 }, ...],
 *     "classVertical": [0, 0, ...],      // vertical index of each global class
 *     "classGroup": [0, 0, ...],         // global group index of each class
 *     "groupVertical": [0, 0, ...],      // vertical index of each group
 *     "source": "eft-generate seed=0 ..." }
 * Generated taxonomies give each vertical a contiguous range of class ids (vertical 0 first), so a
 * model's per-vertical blocks concatenate into global order; imported ones may interleave.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '@distillery/core/plugin';

export const TAXONOMY_FILE = 'taxonomy.json';
export const VERTICALS_DIR = 'verticals';
/** The class -> vertical map in the eval stage's format. */
export const EVAL_VERTICALS_FILE = 'verticals.json';

/** One vertical: a coherent subset of classes taught by one specialist. */
export interface VerticalInfo {
  /** Unique name, also the fan-out item and the file name of its class map (letters, digits, _ and -). */
  name: string;
  /** Number of classes. */
  size: number;
  /** Number of groups. */
  groups: number;
}

/** A label space of numClasses classes in verticals and groups (see the module comment). */
export interface Taxonomy {
  format: 'distillery-taxonomy';
  version: 1;
  numClasses: number;
  verticals: VerticalInfo[];
  classVertical: number[];
  classGroup: number[];
  groupVertical: number[];
  source?: string;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

/** Checks every invariant; errors name the file and the offending class / group / vertical. */
export function validateTaxonomy(t: Taxonomy, where: string): void {
  if (t.format !== 'distillery-taxonomy' || t.version !== 1)
    throw new Error(`${where}: not a distillery-taxonomy version 1 file`);
  const n = t.numClasses;
  if (!Number.isInteger(n) || n < 1) throw new Error(`${where}: numClasses must be a positive integer, got ${n}`);
  if (t.classVertical.length !== n || t.classGroup.length !== n) {
    throw new Error(
      `${where}: classVertical (${t.classVertical.length}) and classGroup (${t.classGroup.length}) must both have numClasses = ${n} entries`,
    );
  }
  const m = t.verticals.length;
  const names = new Set<string>();
  for (const v of t.verticals) {
    if (!NAME.test(v.name))
      throw new Error(`${where}: vertical name ${JSON.stringify(v.name)} must match ${NAME.source}`);
    if (names.has(v.name)) throw new Error(`${where}: vertical name ${JSON.stringify(v.name)} appears twice`);
    names.add(v.name);
  }
  const sizes = new Array<number>(m).fill(0);
  const groupSeen = new Array<number>(t.groupVertical.length).fill(0);
  for (let c = 0; c < n; c++) {
    const v = t.classVertical[c]!;
    const g = t.classGroup[c]!;
    if (!Number.isInteger(v) || v < 0 || v >= m)
      throw new Error(`${where}: class ${c} has vertical ${v}, outside [0, ${m})`);
    if (!Number.isInteger(g) || g < 0 || g >= t.groupVertical.length)
      throw new Error(`${where}: class ${c} has group ${g}, outside [0, ${t.groupVertical.length})`);
    if (t.groupVertical[g] !== v)
      throw new Error(
        `${where}: class ${c} is in vertical ${v} but its group ${g} belongs to vertical ${t.groupVertical[g]}`,
      );
    sizes[v]!++;
    groupSeen[g]!++;
  }
  t.verticals.forEach((info, v) => {
    if (sizes[v] !== info.size)
      throw new Error(`${where}: vertical "${info.name}" declares ${info.size} classes, ${sizes[v]} classes name it`);
    if (info.size === 0) throw new Error(`${where}: vertical "${info.name}" has no classes`);
  });
  const emptyGroup = groupSeen.indexOf(0);
  if (emptyGroup >= 0) throw new Error(`${where}: group ${emptyGroup} has no classes`);
  t.verticals.forEach((info, v) => {
    const groups = t.groupVertical.filter((gv) => gv === v).length;
    if (groups !== info.groups)
      throw new Error(`${where}: vertical "${info.name}" declares ${info.groups} groups, ${groups} groups name it`);
  });
}

/** Global class ids of each vertical, ascending. */
export function verticalClasses(t: Taxonomy): number[][] {
  const out = t.verticals.map(() => [] as number[]);
  t.classVertical.forEach((v, c) => out[v]!.push(c));
  return out;
}

/** Index of the vertical called `name`; the error lists the valid names. */
export function verticalIndex(t: Taxonomy, name: string, where: string): number {
  const i = t.verticals.findIndex((v) => v.name === name);
  if (i < 0)
    throw new Error(`${where}: no vertical named "${name}" (verticals: ${t.verticals.map((v) => v.name).join(', ')})`);
  return i;
}

/** Reads and validates `<dir>/taxonomy.json` (or a taxonomy.json path). */
export function readTaxonomy(dirOrFile: string): Taxonomy {
  const path = dirOrFile.endsWith('.json') ? dirOrFile : join(dirOrFile, TAXONOMY_FILE);
  let t: Taxonomy;
  try {
    t = JSON.parse(readFileSync(path, 'utf8')) as Taxonomy;
  } catch (error) {
    throw new Error(`taxonomy ${path}: cannot read (${(error as Error).message})`);
  }
  validateTaxonomy(t, `taxonomy ${path}`);
  return t;
}

/**
 * Writes taxonomy.json and verticals/<name>.json into `dir` (temp files renamed into place; the
 * taxonomy file goes last, so a directory holding it is complete).
 */
export function writeTaxonomy(dir: string, t: Taxonomy): void {
  validateTaxonomy(t, `taxonomy for ${dir}`);
  const vdir = join(dir, VERTICALS_DIR);
  mkdirSync(vdir, { recursive: true });
  const classes = verticalClasses(t);
  const written: string[] = [];
  try {
    t.verticals.forEach((v, i) => {
      const path = join(vdir, `${v.name}.json`);
      writeFileAtomicSync(path, JSON.stringify(classes[i]));
      written.push(path);
    });
    const evalMap = join(dir, EVAL_VERTICALS_FILE);
    writeFileAtomicSync(
      evalMap,
      JSON.stringify({ classToVertical: t.classVertical, names: t.verticals.map((v) => v.name) }),
    );
    written.push(evalMap);
    const path = join(dir, TAXONOMY_FILE);
    writeFileAtomicSync(path, JSON.stringify(t));
  } catch (error) {
    for (const p of written) rmSync(p, { force: true });
    throw error;
  }
}
