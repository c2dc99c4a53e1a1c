/**
 * The stage-plugin contract: the one interface between the runner and every stage plugin.
 *
 * A plugin is an ES module whose default export is the value returned by `definePlugin`. The
 * runner imports it in its own process to read `params` (validation, cache keys, the published
 * JSON Schema) and `resources`, then runs `run(ctx)` in a child process per stage instance.
 *
 * Rules a plugin follows:
 * - The module's top level imports only light modules (this contract, typebox). Heavy libraries
 *   (tfjs, onnxruntime, apache-arrow) are imported dynamically inside `run`, so planning a
 *   200-stage pipeline never loads them.
 * - Everything the stage produces is written below `ctx.outDir`. The runner publishes that
 *   directory to the content-addressed store only when `run` resolves; a throw or a kill leaves
 *   nothing a later run trusts.
 * - Inputs (`ctx.inputs`, path params) are read-only.
 * - Output must be a function of (plugin code, params, input contents): that is the cache key.
 *   Randomness comes from a seed parameter.
 * - Long work calls `ctx.progress` and checks `ctx.signal`.
 */
import { Type, type Static, type TSchema, type TString } from '@sinclair/typebox';
import type { Command } from 'commander';

/** What a stage needs from the machine. Memory is in MiB. */
export interface ResourceRequest {
  /** CPU slots wanted; clamped (with a warning) to the machine's count when it has fewer. */
  cpus: number;
  gpus: number;
  memoryMiB: number;
  /** Hard minimum of CPUs: a machine with fewer fails the plan. */
  minCpus?: number;
}

/**
 * One upstream artifact: the stage that produced it and the directory holding it. The directory is
 * the exact output the stage's cache key names, materialised for this run (not out/<pipeline>/<stage>,
 * which another run may replace meanwhile); it is removed when the run ends, so do not keep its path.
 */
export interface InputArtifact {
  stage: string;
  path: string;
}

export interface StageLogger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

/** What the runner hands to `run`. */
export interface StageContext<P> {
  /** Stage instance id, e.g. `infer@bird` for a fan-out instance. */
  readonly stageId: string;
  readonly pipeline: string;
  /** Parameters after params-file substitution, `--set` overrides and schema validation (defaults applied). */
  readonly params: P;
  /**
   * Upstream artifacts by input name (the keys of the stage's `inputs:` map, plus one entry per
   * `needs:` stage under its own id). A name bound to a fan-out stage lists every instance.
   */
  readonly inputs: Readonly<Record<string, readonly InputArtifact[]>>;
  /** The single artifact bound to `name`; throws a clear error when there is none or several. */
  input(name: string): string;
  /** Empty directory; its content becomes the stage's output once `run` resolves. */
  readonly outDir: string;
  /**
   * Directory that survives a killed or failed attempt of this same stage (same cache key) and is
   * deleted after success: the place for checkpoints that a rerun resumes from.
   */
  readonly stateDir: string;
  /** Directory of the pipeline file: relative paths in params are resolved against it. */
  readonly pipelineDir: string;
  /** Devices the runner assigned. `gpus` are physical indices; CUDA_VISIBLE_DEVICES is set to them. */
  readonly devices: { readonly cpus: number; readonly gpus: readonly number[] };
  readonly log: StageLogger;
  /** Reports progress; the runner derives rate and ETA. `unit` is e.g. "samples" or "steps". */
  progress(done: number, total?: number, unit?: string): void;
  /** Records a metric value (optionally per step) into the run record. */
  metric(name: string, value: number, step?: number): void;
  /** Aborted when the run is cancelled (Ctrl-C, SIGTERM). */
  readonly signal: AbortSignal;
}

export interface StageResult {
  /** Summary metrics copied into the run record. */
  metrics?: Record<string, number>;
}

export interface PluginDefinition<S extends TSchema = TSchema> {
  /** Name used in pipeline YAML (`plugin: <name>`). */
  name: string;
  /** Bump on any change of meaning: part of every cache key (with a hash of the plugin's code). */
  version: string;
  description: string;
  /** JSON Schema of `with:`, written with typebox. Unknown keys are rejected. */
  params: S;
  /** Default resources; a stage's `resources:` overrides them. */
  resources?: Partial<ResourceRequest> | ((params: Static<S>) => Partial<ResourceRequest>);
  run(ctx: StageContext<Static<S>>): Promise<StageResult | void>;
}

/** Identity function that gives `run` its typed params. */
export function definePlugin<S extends TSchema>(definition: PluginDefinition<S>): PluginDefinition<S> {
  return definition;
}

/**
 * Schema keyword marking a string parameter as a filesystem path (relative to the pipeline file).
 * The runner hashes the file or directory it names into the cache key, so editing the file
 * reruns the stage.
 */
export const PATH_KEYWORD = 'x-distill-path';

/**
 * A package that adds subcommands to `distill` (e.g. `distill eval coco`) names a module in its
 * package.json under `distillery.cli`; that module exports `registerCommands`.
 */
export type RegisterCommands = (program: Command) => void;

/** A string parameter that names a file or directory (see PATH_KEYWORD). */
export function PathParam(options: { description?: string; default?: string } = {}): TString {
  return Type.String({ ...options, [PATH_KEYWORD]: true });
}
