import { InputError } from '@distillery/core/plugin';

/**
 * Error for bad user input (malformed files, inconsistent records). The message always names the
 * file and, where there is one, the record, so a user can fix the input without reading code.
 */
export class EvalInputError extends InputError {}

/** A JSON value as produced by JSON.parse. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Parses JSON text, turning a syntax error into an EvalInputError that names the file. */
export function parseJsonText(text: string, file: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new EvalInputError(`${file}: malformed JSON: ${(err as Error).message}`);
  }
}
