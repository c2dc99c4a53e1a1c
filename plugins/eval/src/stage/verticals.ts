/**
 * The class -> vertical map of per-vertical metrics, read from a JSON file in the same format the
 * `partition` stage reads: an array with the vertical id of each class, or
 * {"classToVertical": [...], "names": ["bird", "car", ...]} (names optional; default the ids).
 * Vertical ids are integers in [0, V), V = names.length or max id + 1.
 */
import { readFile } from 'node:fs/promises';
import type { VerticalMap } from '../classification/streaming.js';

export async function loadVerticalMap(file: string): Promise<VerticalMap> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`vertical map ${file}: cannot read (${(error as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`vertical map ${file}: malformed JSON (${(error as Error).message})`);
  }
  const object =
    !Array.isArray(raw) && raw !== null && typeof raw === 'object'
      ? (raw as { classToVertical?: unknown; names?: unknown })
      : undefined;
  const map = Array.isArray(raw) ? raw : object?.classToVertical;
  if (!Array.isArray(map) || map.length === 0)
    throw new Error(
      `vertical map ${file}: expected an array of vertical ids, or {"classToVertical": [...], "names": [...]}`,
    );
  const bad = map.findIndex((v) => !Number.isInteger(v) || (v as number) < 0);
  if (bad >= 0)
    throw new Error(
      `vertical map ${file}: class ${bad} has vertical ${JSON.stringify(map[bad])}, expected an integer >= 0`,
    );
  const ids = map as number[];
  let names: string[];
  if (object?.names !== undefined) {
    if (!Array.isArray(object.names) || !object.names.every((n) => typeof n === 'string'))
      throw new Error(`vertical map ${file}: names must be an array of strings`);
    names = object.names as string[];
    const outside = ids.findIndex((v) => v >= names.length);
    if (outside >= 0)
      throw new Error(
        `vertical map ${file}: class ${outside} has vertical ${ids[outside]} but only ${names.length} names are given`,
      );
  } else {
    names = Array.from({ length: Math.max(...ids) + 1 }, (_, v) => String(v));
  }
  return { classToVertical: Int32Array.from(ids), names };
}
