/**
 * The project's error types. Callers branch on them with `instanceof` (the CLI maps each kind to an
 * exit code); the message always names the file, stage or parameter at fault.
 *
 * - PipelineError (pipeline/diagnostics.ts): an invalid pipeline file, with located diagnostics.
 * - UsageError: an invalid command line or request (exit code 2); RunPlanError: a plan the machine
 *   cannot run; InputError: a malformed input file or record.
 * - StageError: a stage that failed or cannot run (its inputs are missing).
 * - StoreError: the artifact store; IntegrityError: something read back fails its hash check.
 */
export class DistilleryError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An invalid command line or request: exit code 2. */
export class UsageError extends DistilleryError {}

/** A run that cannot start as asked (a stage needs more than the machine has): exit code 2. */
export class RunPlanError extends UsageError {}

/** A malformed input file or record; the message names the file and, where there is one, the record. */
export class InputError extends DistilleryError {}

/** A stage that failed, or cannot run because an input it needs is missing. */
export class StageError extends DistilleryError {}

/** A problem with the artifact store (local or remote). */
export class StoreError extends DistilleryError {}

/** Something read from the store fails its hash check. */
export class IntegrityError extends StoreError {}
