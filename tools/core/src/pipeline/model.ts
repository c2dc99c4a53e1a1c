/** The validated, expanded pipeline: what the planner, runner and exporters work on. */
import type { PluginDefinition, ResourceRequest } from '../plugin/contract.js';
import type { YamlPath } from './diagnostics.js';

/** A plugin the registry found, with where its code lives (hashed into cache keys). */
export interface LoadedPlugin {
  name: string;
  definition: PluginDefinition;
  /** Absolute path of the module whose default export is the plugin. */
  modulePath: string;
  /** Files and directories whose content is the plugin's code version. */
  codePaths: string[];
}

/** A path-typed parameter (see PATH_KEYWORD): its place in params and the absolute path it names. */
export interface PathParamRef {
  /** Dotted path inside `with`. */
  pointer: string;
  absolute: string;
}

/** One runnable stage: a plain stage, or one instance of a fan-out. */
export interface StageInstance {
  /** `name`, or `name@item` / `name@k=v,k2=v2` for fan-out instances. */
  id: string;
  /** The stage's key in the YAML file. */
  base: string;
  plugin: LoadedPlugin;
  /** Validated params with defaults, as written (paths relative): this goes into the cache key. */
  params: Record<string, unknown>;
  pathParams: PathParamRef[];
  /** Input name -> upstream instance ids, in declaration order. */
  inputs: Record<string, string[]>;
  /** Every upstream instance id (inputs and needs), sorted. */
  upstream: string[];
  resources: ResourceRequest;
  /** Time limit of one attempt (`timeout:`), in ms; none when absent. */
  timeoutMs?: number;
  /** Further attempts after a failure (`retries:`); 0 when absent. */
  retries: number;
  /** Where the stage is defined in the YAML file, for messages. */
  yamlPath: YamlPath;
}

export interface Pipeline {
  name: string;
  /** Absolute path of the pipeline file. */
  file: string;
  /** Directory of the pipeline file. */
  dir: string;
  /** Stage instances in a topological order (ties broken by file order). */
  stages: StageInstance[];
  byId: ReadonlyMap<string, StageInstance>;
  /** Fan-out stage name -> its instance ids (plain stages map to themselves). */
  groups: ReadonlyMap<string, string[]>;
  settings: Record<string, unknown>;
  /** Absolute path of the params file, when the pipeline names one. */
  paramsFile?: string;
}
