/**
 * Finds stage plugins: the built-in ones in core, the packages of the workspace that list plugin
 * modules in package.json (`"distillery": { "plugins": [...] }`), and plugin modules named by
 * path in a pipeline (`plugin: ./my-plugin.js`).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pluginCodePaths } from './code-closure.js';
import type { PluginDefinition } from './contract.js';
import type { LoadedPlugin } from '../pipeline/model.js';

export interface PluginRegistry {
  /** Names of the plugins that can be named in `plugin:`. */
  names(): string[];
  /** Plugin modules that could not be loaded, with the reason. */
  readonly broken: readonly string[];
  /** The plugin for a name or a module path (relative to `pipelineDir`); undefined if unknown. */
  resolve(spec: string, pipelineDir: string): Promise<LoadedPlugin | undefined>;
}

/**
 * The package.json fields a plugin package uses: `plugins` maps each plugin name to its module
 * (so the runner imports only the plugins a pipeline names), `cli` names a module exporting
 * `registerCommands`.
 */
export interface DistilleryPackageFields {
  plugins?: Record<string, string>;
  cli?: string;
}

const coreDist = dirname(dirname(fileURLToPath(import.meta.url)));
const BUILTIN_MODULES = [join(coreDist, 'builtin', 'exec.js')];

/** Workspace packages under `root` that declare distillery fields: [package dir, fields]. */
export function distilleryPackages(root: string): Array<[string, DistilleryPackageFields]> {
  const found: Array<[string, DistilleryPackageFields]> = [];
  const scopeDir = join(root, 'node_modules', '@distillery');
  if (!existsSync(scopeDir)) return found;
  for (const entry of readdirSync(scopeDir).sort()) {
    const pkgDir = join(scopeDir, entry);
    try {
      const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
        distillery?: DistilleryPackageFields;
      };
      if (pkg.distillery) found.push([pkgDir, pkg.distillery]);
    } catch {
      // not a package
    }
  }
  return found;
}

/** Directory holding node_modules/@distillery: the workspace this core belongs to. */
export function workspaceRoot(): string {
  let dir = coreDist;
  while (dirname(dir) !== dir) {
    if (existsSync(join(dir, 'node_modules', '@distillery'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

export class ModuleRegistry implements PluginRegistry {
  private readonly modules = new Map<string, string>();
  private readonly loaded = new Map<string, Promise<LoadedPlugin>>();
  private namesLoaded = false;
  /** Plugin modules that failed to import, with the reason (shown when a plugin is not found). */
  readonly broken: string[] = [];

  /** @param extraModules plugin modules to register besides the workspace's (tests use this). */
  constructor(
    private readonly root: string = workspaceRoot(),
    private readonly extraModules: string[] = [],
  ) {}

  names(): string[] {
    return [...this.modules.keys()].sort();
  }

  /** Reads the plugin names (package.json and built-ins); imports only the built-in and extra modules. */
  async init(): Promise<this> {
    if (this.namesLoaded) return this;
    this.namesLoaded = true;
    const eager = [...BUILTIN_MODULES.filter((m) => existsSync(m)), ...this.extraModules];
    // DISTILL_NO_WORKSPACE_PLUGINS=1 keeps to built-in and path plugins (isolated tests).
    const packages = process.env.DISTILL_NO_WORKSPACE_PLUGINS === '1' ? [] : distilleryPackages(this.root);
    for (const [pkgDir, fields] of packages) {
      for (const [name, rel] of Object.entries(fields.plugins ?? {})) this.register(name, resolve(pkgDir, rel));
    }
    for (const modulePath of eager) {
      try {
        const plugin = await this.load(modulePath);
        this.register(plugin.name, modulePath);
      } catch (error) {
        // One broken plugin module must not stop pipelines that do not use it.
        this.broken.push(`${modulePath}: ${(error as Error).message.split('\n')[0]}`);
      }
    }
    return this;
  }

  private register(name: string, modulePath: string): void {
    const existing = this.modules.get(name);
    if (existing && existing !== modulePath)
      throw new Error(`two plugins are named "${name}": ${existing} and ${modulePath}`);
    this.modules.set(name, modulePath);
  }

  async resolve(spec: string, pipelineDir: string): Promise<LoadedPlugin | undefined> {
    await this.init();
    const known = this.modules.get(spec);
    if (known) {
      let plugin: LoadedPlugin;
      try {
        plugin = await this.load(known);
      } catch (error) {
        this.broken.push(`${known}: ${(error as Error).message.split('\n')[0]}`);
        return undefined;
      }
      if (plugin.name !== spec)
        throw new Error(`${known} is registered as plugin "${spec}" but defines "${plugin.name}"`);
      return plugin;
    }
    if (spec.startsWith('.') || isAbsolute(spec)) {
      const path = isAbsolute(spec) ? spec : resolve(pipelineDir, spec);
      return existsSync(path) ? this.load(path) : undefined;
    }
    return undefined;
  }

  private load(modulePath: string): Promise<LoadedPlugin> {
    let promise = this.loaded.get(modulePath);
    if (!promise) {
      promise = importPlugin(modulePath);
      this.loaded.set(modulePath, promise);
    }
    return promise;
  }
}

async function importPlugin(modulePath: string): Promise<LoadedPlugin> {
  const module = (await import(pathToFileURL(modulePath).href)) as { default?: PluginDefinition };
  const definition = module.default;
  if (
    !definition ||
    typeof definition.run !== 'function' ||
    typeof definition.name !== 'string' ||
    !definition.params
  ) {
    throw new Error(
      `${modulePath} does not export a plugin (expected: export default definePlugin({ name, version, params, run }))`,
    );
  }
  // A workspace plugin's code is its package's compiled sources, a lone module is itself; both
  // with the workspace modules they import (plugin/code-closure.ts).
  return { name: definition.name, definition, modulePath, codePaths: pluginCodePaths(modulePath) };
}
