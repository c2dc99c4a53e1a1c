/**
 * Path-typed parameters (PATH_KEYWORD): finding them in params by their schema, and the params a
 * plugin sees, with those paths made absolute against the pipeline's directory. One walk, used by
 * the loader (existence checks, cache-key hashing), the runner and makeTestContext.
 */
import { isAbsolute, resolve } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { PATH_KEYWORD } from './contract.js';

/** A path param's place in params (dotted; array items by index), its value and the path it names. */
export interface FoundPathParam {
  pointer: string;
  segments: string[];
  value: string;
  absolute: string;
}

export function findPathParams(schema: TSchema, params: unknown, baseDir: string): FoundPathParam[] {
  const found: FoundPathParam[] = [];
  const visit = (s: TSchema | undefined, value: unknown, at: string[]): void => {
    if (!s || value === undefined) return;
    if ((s as Record<string, unknown>)[PATH_KEYWORD] === true && typeof value === 'string') {
      found.push({
        pointer: at.join('.'),
        segments: at,
        value,
        absolute: isAbsolute(value) ? value : resolve(baseDir, value),
      });
      return;
    }
    const properties = (s as { properties?: Record<string, TSchema> }).properties;
    if (properties && value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [key, sub] of Object.entries(properties))
        visit(sub, (value as Record<string, unknown>)[key], [...at, key]);
    }
    const itemsSchema = (s as { items?: TSchema }).items;
    if (itemsSchema && Array.isArray(value)) value.forEach((v, i) => visit(itemsSchema, v, [...at, String(i)]));
  };
  visit(schema, params, []);
  return found;
}

/** A copy of params with the given path params replaced by their absolute paths. */
export function withAbsolutePaths<P>(params: P, found: ReadonlyArray<{ pointer: string; absolute: string }>): P {
  const copy = structuredClone(params) as Record<string, unknown>;
  for (const ref of found) {
    const keys = ref.pointer.split('.');
    let node = copy;
    keys.slice(0, -1).forEach((k) => (node = node[k] as Record<string, unknown>));
    node[keys[keys.length - 1] as string] = ref.absolute;
  }
  return copy as P;
}
