/**
 * The stage cache key: sha256 of the canonical JSON of KeyParts. A stage reruns exactly when one of
 * these parts changes; `distill why` explains a rerun by diffing them.
 */
import { canonicalJson, sha256 } from './hash.js';

export interface KeyParts {
  plugin: string;
  /** The plugin's declared version. */
  version: string;
  /** Hash of the plugin's compiled code (and the shared core libraries it builds on). */
  code: string;
  /** Validated params as written in the pipeline (relative paths, defaults filled in). */
  params: unknown;
  /** Path params (dotted pointer) -> content hash of the file or directory named. */
  paths: Record<string, string>;
  /** Input name -> output tree hashes of the upstream instances bound to it. */
  inputs: Record<string, string[]>;
  /** Upstream instances named only in `needs`: their output tree hashes. */
  after: string[];
}

export function cacheKey(parts: KeyParts): string {
  return sha256(canonicalJson(parts));
}

/** Human-readable differences between two sets of key parts, most specific first. */
export function explainKeyChange(before: KeyParts, after: KeyParts, upstreamNames?: Map<string, string>): string[] {
  const reasons: string[] = [];
  if (before.plugin !== after.plugin) reasons.push(`plugin changed: ${before.plugin} -> ${after.plugin}`);
  if (before.version !== after.version) reasons.push(`plugin version changed: ${before.version} -> ${after.version}`);
  if (before.code !== after.code)
    reasons.push(`plugin code changed (${before.code.slice(0, 12)} -> ${after.code.slice(0, 12)})`);
  for (const line of diffValues(before.params, after.params, '')) reasons.push(`param ${line}`);
  for (const name of new Set([...Object.keys(before.paths), ...Object.keys(after.paths)])) {
    if (before.paths[name] !== after.paths[name]) reasons.push(`content of path param ${name} changed`);
  }
  for (const name of new Set([...Object.keys(before.inputs), ...Object.keys(after.inputs)])) {
    if (canonicalJson(before.inputs[name]) !== canonicalJson(after.inputs[name])) {
      const changed = (after.inputs[name] ?? []).filter((h) => !(before.inputs[name] ?? []).includes(h));
      const who = changed.map((h) => upstreamNames?.get(h)).filter(Boolean);
      reasons.push(`input ${name} changed${who.length ? ` (new output of ${who.join(', ')})` : ''}`);
    }
  }
  if (canonicalJson(before.after) !== canonicalJson(after.after))
    reasons.push('an upstream stage in needs produced different output');
  return reasons;
}

function diffValues(a: unknown, b: unknown, path: string): string[] {
  if (canonicalJson(a) === canonicalJson(b)) return [];
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .sort()
      .flatMap((k) => diffValues(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return [`${path || '(all)'}: ${JSON.stringify(a) ?? 'unset'} -> ${JSON.stringify(b) ?? 'unset'}`];
}
