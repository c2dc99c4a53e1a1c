/** Kubernetes/Argo names for stage ids such as `infer@bird` or `train@k=1,t=x`. */
import { createHash } from 'node:crypto';

/** What every generated task and template name matches: a DNS-1123 label that starts with a letter. */
export const ARGO_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * Lower-cases, turns every run of characters outside [a-z0-9] (`@`, `=`, `,`, `_`, `.`) into one
 * `-`, and prefixes a letter when needed. A name that was truncated or that collides with one in
 * `used` gets a hash of the original text as a suffix, so distinct ids stay distinct.
 */
export function argoName(text: string, used: Set<string>, maxLength = 63): string {
  let name = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  if (!/^[a-z]/.test(name)) name = `s-${name}`.replace(/-+$/, '');
  if (name.length > maxLength || used.has(name)) {
    const suffix = createHash('sha256').update(text).digest('hex').slice(0, 8);
    name = `${name.slice(0, maxLength - suffix.length - 1).replace(/-+$/, '')}-${suffix}`;
  }
  let unique = name;
  for (let i = 2; used.has(unique); i++) unique = `${name.slice(0, maxLength - String(i).length - 1)}-${i}`;
  used.add(unique);
  return unique;
}
