/**
 * Loads a pipeline file: YAML with source positions, structural validation, params file and
 * --set overrides, fan-out expansion, ${{ }} substitution, plugin parameter validation, reference
 * and cycle checks. Every problem is collected and thrown together as a PipelineError.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, resolve } from 'node:path';
import { LineCounter, parse as parseYaml, parseDocument } from 'yaml';
import { Type, type TSchema } from '@sinclair/typebox';
import type { ResourceRequest } from '../plugin/contract.js';
import { findPathParams } from '../plugin/path-params.js';
import type { PluginRegistry } from '../plugin/registry.js';
import { didYouMean, PipelineError, SourceMap, type Diagnostic, type YamlPath } from './diagnostics.js';
import type { LoadedPlugin, PathParamRef, Pipeline, StageInstance } from './model.js';
import { PipelineTopSchema, StageSchema, type PipelineFile, type StageFile } from './schema.js';
import { compileSchema, validateValue } from './validate.js';
import { parseDurationMs } from './duration.js';

export interface LoadOptions {
  registry: PluginRegistry;
  /** `--set` overrides: `stage.param.path=value` or `params.path=value`; values are YAML scalars. */
  overrides?: string[];
}

type Scalar = string | number | boolean;
type Item = Scalar | Record<string, Scalar> | undefined;

export async function loadPipeline(file: string, options: LoadOptions): Promise<Pipeline> {
  const absolute = resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    throw new PipelineError([
      { file, line: 0, column: 0, message: `cannot read pipeline file: ${(error as Error).message}` },
    ]);
  }
  if (text.includes('\u0000') || text.includes('\ufffd')) {
    // NUL bytes or invalid UTF-8: not a YAML file; the YAML parser's errors would only echo bytes.
    throw new PipelineError([
      {
        file,
        line: 0,
        column: 0,
        message: 'not a text file (it holds NUL bytes or invalid UTF-8); a pipeline is a YAML file',
      },
    ]);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const map = new SourceMap(file, text, doc, lineCounter);
  if (doc.errors.length > 0) {
    throw new PipelineError(doc.errors.map((e) => map.atOffset(e.pos[0], `YAML syntax: ${e.message.split('\n')[0]}`)));
  }
  const raw = doc.toJS() as unknown;
  // Every problem is reported at once: the file's top level first (stages unchecked), then each
  // stage on its own; a bad part of a stage is set aside and the rest of it is still checked
  // (parameters, references, cycles). Only a file without a mapping of stages stops here.
  const dir = dirname(absolute);
  const context = new LoadContext(map, dir, options.registry);
  context.diagnostics.push(...validateValue(PipelineTopSchema, raw, { map, base: [] }, 'the pipeline'));
  const top = raw as Partial<PipelineFile> | null;
  if (!top || typeof top !== 'object' || !top.stages || typeof top.stages !== 'object' || Array.isArray(top.stages))
    context.throwIfAny();
  const spec = raw as PipelineFile;
  if (typeof spec.params !== 'string') delete spec.params;
  for (const [name, stage] of Object.entries(spec.stages)) {
    const problems = validateValue(StageSchema, stage, { map, base: ['stages', name] }, `stage "${name}"`);
    if (problems.length === 0) continue;
    context.diagnostics.push(...problems);
    const usable = setAsideInvalidParts(stage);
    if (usable && 'with' in (stage as object) && !('with' in usable)) context.withInvalid.add(name);
    if (usable) spec.stages[name] = usable;
    else {
      context.unusable.add(name);
      delete spec.stages[name];
    }
  }

  const params = context.loadParams(spec.params);
  const stageOverrides = context.applyOverrides(options.overrides ?? [], params, spec);

  // Expand each stage into instances and substitute expressions.
  const drafts: Draft[] = [];
  const groups = new Map<string, string[]>();
  for (const [name, stage] of Object.entries(spec.stages)) {
    const expanded = await context.expandStage(name, stage, params, stageOverrides);
    groups.set(
      name,
      expanded.map((d) => d.id),
    );
    drafts.push(...expanded);
  }
  // A stage too broken to expand still answers references to its name (no second, spurious error).
  for (const name of context.unusable) groups.set(name, []);
  const byId = new Map<string, StageInstance>();
  for (const draft of drafts) {
    const instance = context.resolveReferences(draft, groups);
    if (instance) byId.set(instance.id, instance);
  }
  context.throwIfAny();
  const stages = context.topologicalOrder(
    drafts.map((d) => d.id).filter((id) => byId.has(id)),
    byId,
  );
  context.throwIfAny();
  return {
    name: spec.name ?? basename(absolute, extname(absolute)),
    file: absolute,
    dir,
    stages,
    byId,
    groups,
    settings: spec.settings ?? {},
    ...(spec.params ? { paramsFile: resolve(dir, spec.params) } : {}),
  };
}

/** A stage instance before references are resolved. */
interface Draft {
  id: string;
  base: string;
  plugin: LoadedPlugin;
  params: Record<string, unknown>;
  pathParams: PathParamRef[];
  inputs: Record<string, string[]>;
  needs: string[];
  resources: ResourceRequest;
  timeoutMs?: number;
  retries: number;
}

/**
 * A copy of a stage that failed StageSchema without the keys that were wrong (so its other parts
 * can still be checked), or undefined when it has no usable plugin name.
 */
function setAsideInvalidParts(stage: unknown): StageFile | undefined {
  if (!stage || typeof stage !== 'object' || Array.isArray(stage)) return undefined;
  const known = new Set(Object.keys(StageSchema.properties));
  const copy: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(stage)) {
    if (!known.has(key)) continue;
    const single = Type.Object({ [key]: (StageSchema.properties as Record<string, TSchema>)[key] as TSchema });
    if (compileSchema(single)({ [key]: value })) copy[key] = value;
  }
  return typeof copy.plugin === 'string' ? (copy as StageFile) : undefined;
}

const EXPRESSION = /\$\{\{\s*([^}]*?)\s*\}\}/g;

class LoadContext {
  readonly diagnostics: Diagnostic[] = [];
  /** Stages whose entry is too broken to expand (no plugin name): known by name only. */
  readonly unusable = new Set<string>();
  /** Stages whose `with:` is not a mapping (reported): their parameters are not checked further. */
  readonly withInvalid = new Set<string>();
  constructor(
    readonly map: SourceMap,
    readonly dir: string,
    readonly registry: PluginRegistry,
  ) {}

  throwIfAny(): void {
    if (this.diagnostics.length > 0) throw new PipelineError(this.diagnostics);
  }

  loadParams(paramsFile: string | undefined): Record<string, unknown> {
    if (!paramsFile) return {};
    const path = resolve(this.dir, paramsFile);
    try {
      const value = parseYaml(readFileSync(path, 'utf8')) as unknown;
      if (value === null || value === undefined) return {};
      if (typeof value !== 'object' || Array.isArray(value)) throw new Error('the params file must hold a mapping');
      return value as Record<string, unknown>;
    } catch (error) {
      this.diagnostics.push(this.map.at(['params'], `params file ${paramsFile}: ${(error as Error).message}`));
      this.paramsBroken = true;
      return {};
    }
  }

  /** Set when the params file could not be read (its own error is reported; overrides of it are not). */
  paramsBroken = false;

  /** Applies `params.*` overrides to the params, and returns the stage overrides by stage name. */
  applyOverrides(
    overrides: string[],
    params: Record<string, unknown>,
    spec: PipelineFile,
  ): Map<string, Map<string, { value: unknown; text: string }>> {
    const byStage = new Map<string, Map<string, { value: unknown; text: string }>>();
    for (const text of overrides) {
      const match = /^([^=.]+)\.([^=]+)=(.*)$/s.exec(text);
      if (!match) {
        this.diagnostics.push({
          file: '--set',
          line: 0,
          column: 0,
          message: `--set ${text}: expected <stage>.<param>=<value> or params.<name>=<value>`,
        });
        continue;
      }
      const [, target = '', path = '', valueText = ''] = match;
      const value = parseYaml(valueText) as unknown;
      if (target === 'params') {
        const problem =
          spec.params === undefined
            ? 'the pipeline has no params file (add `params: params.yaml` to it)'
            : this.paramsBroken
              ? undefined
              : missingParam(params, path.split('.'));
        if (problem) this.diagnostics.push({ file: '--set', line: 0, column: 0, message: `--set ${text}: ${problem}` });
        else setPath(params, path.split('.'), value);
        continue;
      }
      const stageName = target.split('@')[0] ?? target;
      if (!(stageName in spec.stages)) {
        this.diagnostics.push({
          file: '--set',
          line: 0,
          column: 0,
          message: `--set ${text}: unknown stage "${stageName}"${didYouMean(stageName, Object.keys(spec.stages))}`,
        });
        continue;
      }
      let forStage = byStage.get(target);
      if (!forStage) byStage.set(target, (forStage = new Map()));
      forStage.set(path, { value, text });
    }
    return byStage;
  }

  async expandStage(
    name: string,
    stage: StageFile,
    params: Record<string, unknown>,
    overrides: Map<string, Map<string, { value: unknown; text: string }>>,
  ): Promise<Draft[]> {
    const stagePath: YamlPath = ['stages', name];
    const plugin = await this.registry.resolve(stage.plugin, this.dir);
    if (!plugin) {
      this.diagnostics.push(
        this.map.at(
          [...stagePath, 'plugin'],
          `unknown plugin "${stage.plugin}" in stage "${name}"${didYouMean(stage.plugin, this.registry.names())}; available: ${this.registry.names().join(', ') || 'none'}` +
            (this.registry.broken.length > 0
              ? `; plugin modules that failed to load: ${this.registry.broken.join('; ')}`
              : ''),
        ),
      );
      return [];
    }
    if (stage.foreach && stage.matrix) {
      this.diagnostics.push(
        this.map.at([...stagePath, 'matrix'], `stage "${name}" has both foreach and matrix; use one`, 'key'),
      );
      return [];
    }
    const items: Array<{ suffix: string; item: Item }> = [];
    if (stage.foreach) {
      for (const item of stage.foreach) items.push({ suffix: String(item), item });
    } else if (stage.matrix) {
      for (const combo of product(stage.matrix)) {
        items.push({
          suffix: Object.entries(combo)
            .map(([k, v]) => `${k}=${v}`)
            .join(','),
          item: combo,
        });
      }
    } else {
      items.push({ suffix: '', item: undefined });
    }
    const seen = new Set<string>();
    const drafts: Draft[] = [];
    for (const { suffix, item } of items) {
      const id = suffix ? `${name}@${suffix}` : name;
      if (seen.has(id)) {
        this.diagnostics.push(
          this.map.at(
            [...stagePath, stage.foreach ? 'foreach' : 'matrix'],
            `stage "${name}" fans out to "${id}" twice`,
          ),
        );
        continue;
      }
      seen.add(id);
      const scope = { item, params };
      const withValue = this.substitute(stage.with ?? {}, [...stagePath, 'with'], scope) as Record<string, unknown>;
      const stageOverrides = new Map<string, string>();
      for (const key of new Set([name, id])) {
        for (const [path, { value, text }] of overrides.get(key) ?? []) {
          setPath(withValue, path.split('.'), value);
          stageOverrides.set(path, text);
        }
      }
      const before = this.diagnostics.length;
      // A `with:` that is not a mapping is already reported; its parameters are not checked.
      if (!this.withInvalid.has(name))
        this.diagnostics.push(
          ...validateValue(
            plugin.definition.params,
            withValue,
            { map: this.map, base: [...stagePath, 'with'], overrides: stageOverrides },
            `parameters of stage "${id}" (plugin ${plugin.name})`,
          ),
        );
      // Parameter errors are reported, and the instance is still built so that references to it
      // and cycles through it are checked too (nothing runs: the load throws at the end).
      const paramsValid = this.diagnostics.length === before && !this.withInvalid.has(name);
      const inputs: Record<string, string[]> = {};
      for (const [inputName, ref] of Object.entries(stage.inputs ?? {})) {
        const refs = Array.isArray(ref) ? ref : [ref];
        inputs[inputName] = refs.map((r, i) =>
          String(this.substitute(r, [...stagePath, 'inputs', inputName, ...(Array.isArray(ref) ? [i] : [])], scope)),
        );
      }
      const needs = (stage.needs ?? []).map((n, i) => String(this.substitute(n, [...stagePath, 'needs', i], scope)));
      drafts.push({
        id,
        base: name,
        plugin,
        params: withValue,
        pathParams: paramsValid ? this.pathParams(plugin.definition.params, withValue, [...stagePath, 'with']) : [],
        inputs,
        needs,
        resources: this.resources(plugin, paramsValid ? withValue : undefined, stage, stagePath),
        ...this.limits(stage, stagePath),
      });
    }
    return drafts;
  }

  /** Replaces ${{ item }}, ${{ item.k }} and ${{ params.a.b }} in every string below `value`. */
  substitute(value: unknown, path: YamlPath, scope: { item: Item; params: Record<string, unknown> }): unknown {
    if (typeof value === 'string') {
      const whole = /^\$\{\{\s*([^}]*?)\s*\}\}$/.exec(value);
      if (whole) return this.evaluate(whole[1] ?? '', path, scope) ?? value;
      return value.replace(EXPRESSION, (text, expression: string) => {
        const result = this.evaluate(expression, path, scope);
        return result === undefined ? text : typeof result === 'object' ? JSON.stringify(result) : String(result);
      });
    }
    if (Array.isArray(value)) return value.map((v, i) => this.substitute(v, [...path, i], scope));
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.substitute(v, [...path, k], scope)]));
    }
    return value;
  }

  private evaluate(
    expression: string,
    path: YamlPath,
    scope: { item: Item; params: Record<string, unknown> },
  ): unknown {
    const [head, ...rest] = expression.split('.');
    let value: unknown;
    if (head === 'item') {
      if (scope.item === undefined) {
        this.diagnostics.push(this.map.at(path, `\${{ ${expression} }} used in a stage without foreach or matrix`));
        return undefined;
      }
      value = scope.item;
    } else if (head === 'params') {
      value = scope.params;
    } else {
      this.diagnostics.push(
        this.map.at(
          path,
          `unknown expression \${{ ${expression} }}: expressions start with item or params${didYouMean(head ?? '', ['item', 'params'])}`,
        ),
      );
      return undefined;
    }
    for (const key of rest) {
      if (value === null || typeof value !== 'object' || !(key in value)) {
        const available = value && typeof value === 'object' ? Object.keys(value) : [];
        this.diagnostics.push(
          this.map.at(path, `\${{ ${expression} }}: no "${key}" in ${head}${didYouMean(key, available)}`),
        );
        return undefined;
      }
      value = (value as Record<string, unknown>)[key];
    }
    return value;
  }

  /** Finds path-typed params, resolves them against the pipeline directory and checks they exist. */
  private pathParams(schema: TSchema, params: Record<string, unknown>, base: YamlPath): PathParamRef[] {
    return findPathParams(schema, params, this.dir).map(({ pointer, segments, value, absolute }) => {
      if (!existsSync(absolute))
        this.diagnostics.push(
          this.map.at([...base, ...segments], `path "${value}" (parameter ${pointer}) does not exist: ${absolute}`),
        );
      return { pointer, absolute };
    });
  }

  /** `timeout` and `retries` of a stage. */
  private limits(stage: StageFile, stagePath: YamlPath): { timeoutMs?: number; retries: number } {
    const retries = stage.retries ?? 0;
    if (stage.timeout === undefined) return { retries };
    const timeoutMs = parseDurationMs(stage.timeout);
    if (timeoutMs === undefined) {
      this.diagnostics.push(
        this.map.at(
          [...stagePath, 'timeout'],
          `cannot read duration "${stage.timeout}" (seconds, or e.g. 90s, 10m, 1h30m)`,
        ),
      );
      return { retries };
    }
    return { timeoutMs, retries };
  }

  private resources(
    plugin: LoadedPlugin,
    params: Record<string, unknown> | undefined,
    stage: StageFile,
    stagePath: YamlPath,
  ): ResourceRequest {
    // Defaults computed from invalid params could throw: those get the static defaults only.
    const defaults =
      typeof plugin.definition.resources === 'function'
        ? params
          ? plugin.definition.resources(params)
          : {}
        : (plugin.definition.resources ?? {});
    const declared = stage.resources ?? {};
    let memoryMiB = defaults.memoryMiB ?? 0;
    if (declared.memory !== undefined) {
      const parsed = parseMemoryMiB(declared.memory);
      if (parsed === undefined)
        this.diagnostics.push(
          this.map.at([...stagePath, 'resources', 'memory'], `cannot read memory size "${declared.memory}"`),
        );
      else memoryMiB = parsed;
    }
    const minCpus = declared.minCpus ?? defaults.minCpus;
    return {
      cpus: declared.cpus ?? defaults.cpus ?? 1,
      gpus: declared.gpus ?? defaults.gpus ?? 0,
      memoryMiB,
      ...(minCpus ? { minCpus } : {}),
    };
  }

  resolveReferences(draft: Draft, groups: Map<string, string[]>): StageInstance | undefined {
    const stagePath: YamlPath = ['stages', draft.base];
    const resolveRef = (ref: string, path: YamlPath): string[] => {
      const group = groups.get(ref);
      if (group) return group;
      const baseName = ref.split('@')[0] ?? ref;
      const baseGroup = groups.get(baseName);
      if (baseGroup && baseGroup.includes(ref)) return [ref];
      const message = baseGroup
        ? `stage "${draft.id}" refers to "${ref}", which is not an instance of "${baseName}" (instances: ${baseGroup.join(', ')})`
        : `stage "${draft.id}" refers to unknown stage "${ref}"${didYouMean(baseName, groups.keys())}`;
      this.diagnostics.push(this.map.at(path, message));
      return [];
    };
    const inputs: Record<string, string[]> = {};
    const upstream = new Set<string>();
    for (const [name, refs] of Object.entries(draft.inputs)) {
      inputs[name] = refs.flatMap((ref, i) =>
        resolveRef(ref, [...stagePath, 'inputs', name, ...(refs.length > 1 ? [i] : [])]),
      );
      inputs[name].forEach((id) => upstream.add(id));
    }
    draft.needs.forEach((ref, i) => resolveRef(ref, [...stagePath, 'needs', i]).forEach((id) => upstream.add(id)));
    if (upstream.has(draft.id)) {
      this.diagnostics.push(this.map.at(stagePath, `stage "${draft.id}" depends on itself`, 'key'));
      return undefined;
    }
    return {
      id: draft.id,
      base: draft.base,
      plugin: draft.plugin,
      params: draft.params,
      pathParams: draft.pathParams,
      inputs,
      upstream: [...upstream].sort(),
      resources: draft.resources,
      ...(draft.timeoutMs !== undefined ? { timeoutMs: draft.timeoutMs } : {}),
      retries: draft.retries,
      yamlPath: stagePath,
    };
  }

  /** Kahn's algorithm in file order; on a cycle, names it. */
  topologicalOrder(fileOrder: string[], byId: Map<string, StageInstance>): StageInstance[] {
    const indegree = new Map<string, number>();
    const dependents = new Map<string, string[]>();
    for (const id of fileOrder) {
      const stage = byId.get(id);
      if (!stage) continue;
      // Upstream ids that failed to resolve are reported elsewhere; they do not block the order.
      const known = stage.upstream.filter((up) => byId.has(up));
      indegree.set(id, known.length);
      for (const up of known) dependents.set(up, [...(dependents.get(up) ?? []), id]);
    }
    const ready = fileOrder.filter((id) => indegree.get(id) === 0);
    const order: StageInstance[] = [];
    while (ready.length > 0) {
      const id = ready.shift() as string;
      order.push(byId.get(id) as StageInstance);
      for (const next of dependents.get(id) ?? []) {
        const left = (indegree.get(next) ?? 0) - 1;
        indegree.set(next, left);
        if (left === 0) ready.push(next);
      }
    }
    if (order.length < byId.size) {
      const cycle = findCycle(
        [...byId.keys()].filter((id) => (indegree.get(id) ?? 0) > 0),
        byId,
      );
      const first = byId.get(cycle[0] ?? '');
      this.diagnostics.push(this.map.at(first?.yamlPath ?? [], `dependency cycle: ${cycle.join(' -> ')}`, 'key'));
    }
    return order;
  }
}

function findCycle(candidates: string[], byId: Map<string, StageInstance>): string[] {
  const inCandidates = new Set(candidates);
  const start = candidates[0];
  if (start === undefined) return [];
  // Walk upstream edges inside the unresolved set until a node repeats.
  const path: string[] = [];
  const position = new Map<string, number>();
  let current: string | undefined = start;
  while (current !== undefined && !position.has(current)) {
    position.set(current, path.length);
    path.push(current);
    current = byId.get(current)?.upstream.find((u) => inCandidates.has(u));
  }
  if (current === undefined) return path;
  const cycle = path.slice(position.get(current)).reverse();
  return [...cycle, cycle[0] as string];
}

function product(matrix: Record<string, Array<string | number | boolean>>): Array<Record<string, Scalar>> {
  let combos: Array<Record<string, Scalar>> = [{}];
  for (const [key, values] of Object.entries(matrix)) {
    combos = combos.flatMap((combo) => values.map((v) => ({ ...combo, [key]: v })));
  }
  return combos;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  path.forEach((key, i) => {
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    if (node[key] === null || typeof node[key] !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  });
}

/** Why `--set params.<path>` names nothing in the params, or undefined when the path exists. */
function missingParam(params: Record<string, unknown>, path: string[]): string | undefined {
  let node: unknown = params;
  for (const [i, key] of path.entries()) {
    if (node === null || typeof node !== 'object' || Array.isArray(node) || !(key in node)) {
      const available = node && typeof node === 'object' && !Array.isArray(node) ? Object.keys(node) : [];
      const where = i === 0 ? 'the params file' : `params.${path.slice(0, i).join('.')}`;
      return `no "${key}" in ${where}${didYouMean(key, available)}${available.length > 0 ? `; it has: ${available.join(', ')}` : ''}`;
    }
    node = (node as Record<string, unknown>)[key];
  }
  return undefined;
}

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 1024,
  MIB: 1024 ** 2,
  GIB: 1024 ** 3,
  TIB: 1024 ** 4,
};

/** `4GiB`, `512 MB`, or a number of bytes, in MiB. */
export function parseMemoryMiB(value: string | number): number | undefined {
  if (typeof value === 'number') return value / 1024 ** 2;
  const match = /^([0-9.]+)\s*([A-Za-z]*)$/.exec(value.trim());
  if (!match) return undefined;
  const unit = UNITS[(match[2] || 'B').toUpperCase()];
  const amount = Number(match[1]);
  return unit === undefined || !Number.isFinite(amount) ? undefined : (amount * unit) / 1024 ** 2;
}
