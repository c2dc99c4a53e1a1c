/**
 * JSON Schema validation (ajv) with errors mapped back to YAML source positions. One mechanism for
 * the pipeline structure and for every plugin's parameters.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { TSchema } from '@sinclair/typebox';
import { PATH_KEYWORD } from '../plugin/contract.js';
import { didYouMean, type Diagnostic, type SourceMap, type YamlPath } from './diagnostics.js';

const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true, verbose: true });
ajv.addKeyword(PATH_KEYWORD);
const compiled = new WeakMap<object, ValidateFunction>();

export function compileSchema(schema: TSchema): ValidateFunction {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  return validate;
}

/** Where a value came from: a path in the YAML file, or a command-line override. */
export interface ValueOrigin {
  map: SourceMap;
  /** Path of the validated value inside the YAML document. */
  base: YamlPath;
  /** Overridden sub-paths (dotted, relative to base) mapped to the --set text that set them. */
  overrides?: ReadonlyMap<string, string>;
}

/** Validates `value` in place (defaults are filled in) and returns located diagnostics. */
export function validateValue(schema: TSchema, value: unknown, origin: ValueOrigin, what: string): Diagnostic[] {
  const validate = compileSchema(schema);
  if (validate(value)) return [];
  return simplify(validate.errors ?? []).map((error) => toDiagnostic(error, origin, what));
}

/** Drops "missing key X" where an unknown key next to it is a typo of X (one mistake, one error). */
function dropExplainedMissing(errors: ErrorObject[]): ErrorObject[] {
  return errors.filter((e) => {
    if (e.keyword !== 'required') return true;
    const missing = String((e.params as { missingProperty: string }).missingProperty);
    return !errors.some(
      (other) =>
        other.keyword === 'additionalProperties' &&
        other.instancePath === e.instancePath &&
        didYouMean(String((other.params as { additionalProperty: string }).additionalProperty), [missing]) !== '',
    );
  });
}

/** Drops the per-branch noise of a failed anyOf, keeping the anyOf error itself. */
function simplify(errors: ErrorObject[]): ErrorObject[] {
  const unions = errors.filter((e) => e.keyword === 'anyOf');
  return dropExplainedMissing(errors).filter(
    (e) =>
      e.keyword === 'anyOf' ||
      !unions.some(
        (u) => e.instancePath === u.instancePath && e.schemaPath.startsWith(u.schemaPath.replace(/anyOf$/, 'anyOf/')),
      ),
  );
}

function pointerSegments(pointer: string): string[] {
  return pointer === ''
    ? []
    : pointer
        .slice(1)
        .split('/')
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function toDiagnostic(error: ErrorObject, origin: ValueOrigin, what: string): Diagnostic {
  const segments = pointerSegments(error.instancePath);
  const dotted = segments.join('.');
  const name = dotted ? `"${dotted}"` : 'value';
  // The value's own path; for an unknown key, the path of that key (it may come from --set).
  const extra =
    error.keyword === 'additionalProperties'
      ? String((error.params as { additionalProperty: string }).additionalProperty)
      : undefined;
  const blamed = extra === undefined ? dotted : [...segments, extra].join('.');
  const override =
    origin.overrides && [...origin.overrides].find(([key]) => blamed === key || blamed.startsWith(`${key}.`));
  let message: string;
  let path: YamlPath = [...origin.base, ...segments];
  let at: 'key' | 'value' = 'value';
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String((error.params as { additionalProperty: string }).additionalProperty);
      const allowed = Object.keys((error.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      message = `unknown key "${key}" in ${what}${dotted ? ` at ${dotted}` : ''}${didYouMean(key, allowed)}`;
      if (allowed.length > 0 && !didYouMean(key, allowed)) message += `; valid keys: ${allowed.join(', ')}`;
      path = [...path, key];
      at = 'key';
      break;
    }
    case 'required': {
      const key = String((error.params as { missingProperty: string }).missingProperty);
      message = `missing required key "${key}" in ${what}${dotted ? ` at ${dotted}` : ''}`;
      break;
    }
    case 'type':
      message = `${name} in ${what} must be ${(error.params as { type: string }).type}, got ${describe(error.data)}`;
      break;
    case 'enum':
      message = `${name} in ${what} must be one of ${((error.params as { allowedValues: unknown[] }).allowedValues ?? []).map((v) => JSON.stringify(v)).join(', ')}, got ${describe(error.data)}`;
      break;
    case 'anyOf':
      message = `${name} in ${what} has the wrong type or form (got ${describe(error.data)})`;
      break;
    default:
      message = `${name} in ${what} ${error.message ?? 'is invalid'} (got ${describe(error.data)})`;
  }
  if (override) return { file: override[1], line: 0, column: 0, message: `${message} (set by --set ${override[1]})` };
  return origin.map.at(path, message, at);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}
