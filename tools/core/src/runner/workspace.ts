/**
 * A project's on-disk state: where the store, logs, run records and materialised outputs live,
 * and how a stage's cache key is computed from its parts.
 *
 *   <root>/.distill/            store, cache entries, hash cache, runs, logs, state, tmp, locks
 *   <root>/out/<pipeline>/<id>/ materialised outputs (read-only reflinks or copies of store objects)
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { HashCache } from '../cache/hash.js';
import { cacheKey, type KeyParts } from '../cache/key.js';
import { LocalStore } from '../cache/store.js';
import type { LoadedPlugin, Pipeline, StageInstance } from '../pipeline/model.js';
import { writeFileAtomicSync } from '../util/fs.js';

/** Per pipeline: which tree each stage's output directory holds, with the stat of each file. */
interface WorkspaceManifest {
  stages: Record<string, { tree: string; files: Record<string, [number, number, number]> }>;
}

/** The project root: the nearest ancestor holding .distill, nx.json or .git; else the start. */
export function findProjectRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (['.distill', 'nx.json', '.git'].some((marker) => existsSync(join(dir, marker)))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return start;
    dir = parent;
  }
}

export class Workspace {
  readonly stateRoot: string;
  readonly store: LocalStore;
  readonly hashes: HashCache;
  private readonly codeHashes = new Map<string, Promise<string>>();

  constructor(readonly root: string) {
    this.stateRoot = join(root, '.distill');
    this.hashes = new HashCache(join(this.stateRoot, 'hashcache.json'));
    this.store = new LocalStore(this.stateRoot, this.hashes);
  }

  outputDir(pipeline: string, stageId: string): string {
    return join(this.root, 'out', pipeline, stageId);
  }

  stateDir(key: string): string {
    return join(this.stateRoot, 'state', key);
  }

  logFile(runId: string, stageId: string): string {
    return join(this.stateRoot, 'logs', runId, `${stageId}.log`);
  }

  runsDir(): string {
    return join(this.stateRoot, 'runs');
  }

  /** Hash of a plugin's code: its package's compiled sources and the workspace modules it imports (plugin/code-closure.ts). */
  codeHash(plugin: LoadedPlugin): Promise<string> {
    let promise = this.codeHashes.get(plugin.modulePath);
    if (!promise) {
      const onlyCode = (rel: string): boolean =>
        !rel.endsWith('.map') && !rel.endsWith('.d.ts') && !rel.endsWith('.tsbuildinfo');
      promise = Promise.all(plugin.codePaths.map((p) => this.hashes.hashPath(p, onlyCode))).then((parts) =>
        parts.join(':'),
      );
      this.codeHashes.set(plugin.modulePath, promise);
    }
    return promise;
  }

  /** Key parts of a stage whose upstream output trees are known. */
  async keyParts(stage: StageInstance, upstreamTree: (id: string) => string): Promise<KeyParts> {
    const paths: Record<string, string> = {};
    for (const ref of stage.pathParams) paths[ref.pointer] = await this.hashes.hashPath(ref.absolute);
    const inputs: Record<string, string[]> = {};
    const named = new Set<string>();
    for (const [name, ids] of Object.entries(stage.inputs)) {
      inputs[name] = ids.map(upstreamTree);
      ids.forEach((id) => named.add(id));
    }
    return {
      plugin: stage.plugin.name,
      version: stage.plugin.definition.version,
      code: await this.codeHash(stage.plugin),
      params: stage.params,
      paths,
      inputs,
      after: stage.upstream.filter((id) => !named.has(id)).map(upstreamTree),
    };
  }

  key(parts: KeyParts): string {
    return cacheKey(parts);
  }

  private manifestFile(pipeline: string): string {
    return join(this.stateRoot, 'workspace', `${pipeline}.json`);
  }

  readManifest(pipeline: string): WorkspaceManifest {
    try {
      return JSON.parse(readFileSync(this.manifestFile(pipeline), 'utf8')) as WorkspaceManifest;
    } catch {
      return { stages: {} };
    }
  }

  writeManifest(pipeline: string, manifest: WorkspaceManifest): void {
    writeFileAtomicSync(this.manifestFile(pipeline), JSON.stringify(manifest));
  }

  /** True when out/<pipeline>/<id> still holds exactly `tree`, judged by stat alone. */
  isMaterialised(manifest: WorkspaceManifest, pipeline: string, stageId: string, tree: string): boolean {
    const record = manifest.stages[stageId];
    if (!record || record.tree !== tree) return false;
    const dir = this.outputDir(pipeline, stageId);
    try {
      for (const [rel, [ino, size, mtimeMs]] of Object.entries(record.files)) {
        const s = statSync(join(dir, rel));
        if (s.ino !== ino || s.size !== size || s.mtimeMs !== mtimeMs) return false;
      }
      return countFiles(dir) === Object.keys(record.files).length;
    } catch {
      return false;
    }
  }

  /** Materialises `tree` into the stage's output directory and records it in `manifest`. */
  async materialise(manifest: WorkspaceManifest, pipeline: string, stageId: string, tree: string): Promise<void> {
    const dir = this.outputDir(pipeline, stageId);
    await this.store.materialise(tree, dir);
    const files: Record<string, [number, number, number]> = {};
    for (const file of this.store.readTree(tree)?.files ?? []) {
      const s = statSync(join(dir, file.path));
      files[file.path] = [s.ino, s.size, s.mtimeMs];
    }
    manifest.stages[stageId] = { tree, files };
  }

  /** Ids of every stage of `pipeline`, for messages. */
  static stageIds(pipeline: Pipeline): string[] {
    return pipeline.stages.map((s) => s.id);
  }
}

function countFiles(dir: string): number {
  let n = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true }))
    n += entry.isDirectory() ? countFiles(join(dir, entry.name)) : 1;
  return n;
}
