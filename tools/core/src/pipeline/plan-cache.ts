/**
 * The loaded-pipeline cache (like Nx's project-graph cache): the expanded, validated pipeline of
 * the last load, reused while none of its sources changed. A no-change rerun then imports no
 * plugin and parses no YAML. Sources are judged by (size, mtime): the pipeline and params files,
 * every file of the plugins' code, the path params, the workspace's plugin registrations and the
 * loader itself. Anything else (a different --set) is part of the cache file's name.
 */
import { existsSync, readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalJson, sha256 } from '../cache/hash.js';
import type { PluginDefinition } from '../plugin/contract.js';
import { distilleryPackages } from '../plugin/registry.js';
import { writeFileAtomicSync } from '../util/fs.js';
import type { LoadedPlugin, Pipeline, StageInstance } from './model.js';

const FORMAT = 2;
const coreDist = dirname(dirname(fileURLToPath(import.meta.url)));
/** The loader's own code: a change to it must not reuse pipelines it loaded. */
const LOADER_CODE = [join(coreDist, 'pipeline'), join(coreDist, 'plugin')];

type Stamp = [path: string, size: number, mtimeMs: number];

interface CachedPlugin {
  name: string;
  version: string;
  modulePath: string;
  codePaths: string[];
}

interface CachedPipeline {
  format: number;
  sources: Stamp[];
  pipeline: Omit<Pipeline, 'stages' | 'byId' | 'groups'> & {
    stages: Array<Omit<StageInstance, 'plugin'> & { plugin: CachedPlugin }>;
    groups: Array<[string, string[]]>;
  };
}

function files(path: string): string[] {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch {
    return [path]; // stamped as missing
  }
  if (!stats.isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => files(join(path, e.name)));
}

function stamp(path: string): Stamp {
  try {
    const s = statSync(path);
    return [path, s.size, s.mtimeMs];
  } catch {
    return [path, -1, -1];
  }
}

function sourcePaths(pipeline: Pipeline, paramsFile: string | undefined, root: string): string[] {
  const paths = new Set<string>([pipeline.file, ...(paramsFile ? [paramsFile] : [])]);
  for (const stage of pipeline.stages) {
    for (const code of stage.plugin.codePaths) files(code).forEach((f) => paths.add(f));
    paths.add(stage.plugin.modulePath);
    for (const ref of stage.pathParams) paths.add(ref.absolute);
  }
  for (const [pkgDir] of distilleryPackages(root)) paths.add(join(pkgDir, 'package.json'));
  LOADER_CODE.flatMap(files).forEach((f) => paths.add(f));
  return [...paths];
}

export class PlanCache {
  constructor(
    private readonly dir: string,
    /** Workspace whose plugin registrations count as a source. */
    private readonly registryRoot: string,
  ) {}

  private file(pipelineFile: string, overrides: string[]): string {
    const env = process.env.DISTILL_NO_WORKSPACE_PLUGINS ?? '';
    return join(this.dir, `${sha256(canonicalJson([resolve(pipelineFile), overrides, env])).slice(0, 32)}.json`);
  }

  /** The cached pipeline, when every source is unchanged. */
  read(pipelineFile: string, overrides: string[]): Pipeline | undefined {
    let cached: CachedPipeline;
    try {
      cached = JSON.parse(readFileSync(this.file(pipelineFile, overrides), 'utf8')) as CachedPipeline;
    } catch {
      return undefined;
    }
    if (cached.format !== FORMAT) return undefined;
    for (const [path, size, mtimeMs] of cached.sources) {
      const [, s, m] = stamp(path);
      if (s !== size || m !== mtimeMs) return undefined;
    }
    const plugins = new Map<string, LoadedPlugin>();
    const stages = cached.pipeline.stages.map((stage) => {
      let plugin = plugins.get(stage.plugin.modulePath);
      if (!plugin) {
        plugin = { ...stage.plugin, definition: stubDefinition(stage.plugin) };
        plugins.set(stage.plugin.modulePath, plugin);
      }
      return { ...stage, plugin };
    });
    return {
      ...cached.pipeline,
      stages,
      byId: new Map(stages.map((s) => [s.id, s])),
      groups: new Map(cached.pipeline.groups),
    };
  }

  write(pipeline: Pipeline, overrides: string[], paramsFile: string | undefined): void {
    const cached: CachedPipeline = {
      format: FORMAT,
      sources: sourcePaths(pipeline, paramsFile, this.registryRoot).map(stamp),
      pipeline: {
        name: pipeline.name,
        file: pipeline.file,
        dir: pipeline.dir,
        settings: pipeline.settings,
        paramsFile: pipeline.paramsFile,
        groups: [...pipeline.groups],
        stages: pipeline.stages.map((s) => ({
          ...s,
          plugin: {
            name: s.plugin.name,
            version: s.plugin.definition.version,
            modulePath: s.plugin.modulePath,
            codePaths: s.plugin.codePaths,
          },
        })),
      },
    };
    if (!existsSync(pipeline.file)) return;
    writeFileAtomicSync(this.file(pipeline.file, overrides), JSON.stringify(cached));
  }
}

/**
 * Stands in for a plugin that was not imported: enough for planning and cache keys. The stage
 * itself always runs in a worker process, which imports the real module.
 */
function stubDefinition(plugin: CachedPlugin): PluginDefinition {
  return {
    name: plugin.name,
    version: plugin.version,
    description: '',
    params: {} as PluginDefinition['params'],
    run: () => Promise.reject(new Error(`internal: plugin ${plugin.name} was not imported in this process`)),
  };
}
