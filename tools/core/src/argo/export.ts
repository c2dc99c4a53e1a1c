/**
 * `distill export argo`: an Argo Workflow with one DAG task per stale stage, each running
 * `distill stage run <pipeline> <instance> --store <url>` in a container.
 *
 * - Stages the planner finds cached are left out; their outputs must be in the store (the command
 *   publishes those that stale stages read, unless --no-push).
 * - A fan-out stage stays a fan-out: one task with `withItems` over its stale instance ids. Argo
 *   waits for all items of an upstream task, so a downstream instance that reads one upstream
 *   instance still waits for the whole upstream fan-out. Instances whose resources differ, or that
 *   depend on each other, become separate tasks.
 * - `resources` become container limits (cpu, memory in Mi, nvidia.com/gpu), as strings.
 * - nodeSelector, tolerations, affinity, retryStrategy and more come from `settings.argo`
 *   (settings.ts), with `gpu:` additions for GPU tasks and per-stage overrides.
 */
import { relative } from 'node:path';
import type { Pipeline, StageInstance } from '../pipeline/model.js';
import type { PlannedStage } from '../runner/plan.js';
import { argoName } from './names.js';
import { DEFAULT_RETRY, type ArgoSettings } from './settings.js';

/** The parts of an Argo Workflow this exporter writes (see Argo's JSON Schema for the rest). */
export interface Workflow {
  apiVersion: 'argoproj.io/v1alpha1';
  kind: 'Workflow';
  metadata: {
    generateName: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: {
    entrypoint: string;
    serviceAccountName?: string;
    parallelism?: number;
    volumes?: Array<Record<string, unknown>>;
    templates: WorkflowTemplate[];
  };
}

export interface DagTask {
  name: string;
  template: string;
  dependencies?: string[];
  arguments: { parameters: Array<{ name: string; value: string }> };
  withItems?: string[];
}

export interface WorkflowTemplate {
  name: string;
  dag?: { tasks: DagTask[] };
  inputs?: { parameters: Array<{ name: string }> };
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  container?: Record<string, unknown>;
  retryStrategy?: Record<string, unknown>;
  nodeSelector?: Record<string, string>;
  tolerations?: Array<Record<string, unknown>>;
  affinity?: Record<string, unknown>;
  activeDeadlineSeconds?: string;
}

export interface ArgoExportOptions {
  image: string;
  store: string;
  /** The pipeline file as the container sees it. */
  pipelinePath: string;
  settings: ArgoSettings;
  /** `--set` overrides the export was given: every task gets them too, so keys match. */
  overrides?: string[];
  namespace?: string;
}

/** One task: instances of one stage that share resources. */
interface TaskGroup {
  name: string;
  base: string;
  stages: StageInstance[];
  fanOut: boolean;
}

const DAG_TEMPLATE = 'main';

export function buildArgoWorkflow(pipeline: Pipeline, plan: PlannedStage[], options: ArgoExportOptions): Workflow {
  const stale = new Set(plan.filter((p) => p.state === 'run').map((p) => p.id));
  const groups = groupTasks(pipeline, stale);
  const taskOf = new Map<string, string>();
  for (const group of groups) for (const stage of group.stages) taskOf.set(stage.id, group.name);
  const settings = options.settings;
  const tasks: DagTask[] = groups.map((group) => {
    const dependencies = [
      ...new Set(
        group.stages
          .flatMap((s) => s.upstream)
          .filter((id) => stale.has(id))
          .map((id) => taskOf.get(id) as string),
      ),
    ].filter((t) => t !== group.name);
    const value = group.fanOut ? '{{item}}' : (group.stages[0] as StageInstance).id;
    return {
      name: group.name,
      template: group.name,
      ...(dependencies.length > 0 ? { dependencies: dependencies.sort() } : {}),
      arguments: { parameters: [{ name: 'stage', value }] },
      ...(group.fanOut ? { withItems: group.stages.map((s) => s.id) } : {}),
    };
  });
  const templates: WorkflowTemplate[] = [
    { name: DAG_TEMPLATE, dag: { tasks } },
    ...groups.map((group) => stageTemplate(group, options)),
  ];
  const namespace = options.namespace ?? settings.namespace;
  return {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Workflow',
    metadata: {
      generateName: settings.generateName ?? `${argoName(pipeline.name, new Set(), 50)}-`,
      ...(namespace ? { namespace } : {}),
      labels: { 'app.kubernetes.io/managed-by': 'distill' },
      annotations: { 'distill/pipeline': options.pipelinePath, 'distill/stale-stages': String(stale.size) },
    },
    spec: {
      entrypoint: DAG_TEMPLATE,
      ...(settings.serviceAccountName ? { serviceAccountName: settings.serviceAccountName } : {}),
      ...(settings.parallelism ? { parallelism: settings.parallelism } : {}),
      ...(settings.volumes ? { volumes: settings.volumes } : {}),
      templates,
    },
  };
}

function groupTasks(pipeline: Pipeline, stale: Set<string>): TaskGroup[] {
  const used = new Set([DAG_TEMPLATE]);
  const byBase = new Map<string, StageInstance[]>();
  for (const stage of pipeline.stages)
    if (stale.has(stage.id)) byBase.set(stage.base, [...(byBase.get(stage.base) ?? []), stage]);
  const groups: TaskGroup[] = [];
  for (const [base, stages] of byBase) {
    const fanOutStage = (pipeline.groups.get(base) ?? []).length > 1 || stages.some((s) => s.id !== s.base);
    const ids = new Set(stages.map((s) => s.id));
    const chained = stages.some((s) => s.upstream.some((u) => ids.has(u)));
    if (!fanOutStage || chained) {
      for (const stage of stages) groups.push({ name: argoName(stage.id, used), base, stages: [stage], fanOut: false });
      continue;
    }
    const byResources = new Map<string, StageInstance[]>();
    for (const stage of stages) {
      const key = JSON.stringify(stage.resources);
      byResources.set(key, [...(byResources.get(key) ?? []), stage]);
    }
    let n = 0;
    for (const members of byResources.values()) {
      groups.push({
        name: argoName(byResources.size > 1 ? `${base}-r${++n}` : base, used),
        base,
        stages: members,
        fanOut: true,
      });
    }
  }
  return groups;
}

/** Kubernetes quantities for a stage's resources (strings, as the API requires). */
export function resourceLimits(stage: StageInstance): Record<string, string> {
  const limits: Record<string, string> = {};
  if (stage.resources.cpus > 0) limits.cpu = String(stage.resources.cpus);
  if (stage.resources.memoryMiB > 0) limits.memory = `${Math.ceil(stage.resources.memoryMiB)}Mi`;
  if (stage.resources.gpus > 0) limits['nvidia.com/gpu'] = String(stage.resources.gpus);
  return limits;
}

function stageTemplate(group: TaskGroup, options: ArgoExportOptions): WorkflowTemplate {
  const settings = options.settings;
  const perStage = settings.stages?.[group.base] ?? {};
  const first = group.stages[0] as StageInstance;
  const gpu = first.resources.gpus > 0 ? (settings.gpu ?? {}) : {};
  const limits = resourceLimits(first);
  const nodeSelector = { ...settings.nodeSelector, ...gpu.nodeSelector, ...perStage.nodeSelector };
  const tolerations = [...(settings.tolerations ?? []), ...(gpu.tolerations ?? []), ...(perStage.tolerations ?? [])];
  const affinity = perStage.affinity ?? gpu.affinity ?? settings.affinity;
  const args = ['stage', 'run', options.pipelinePath, '{{inputs.parameters.stage}}', '--store', options.store];
  for (const override of options.overrides ?? []) args.push('--set', override);
  const env = [
    { name: 'DISTILL_STORE', value: options.store },
    ...Object.entries(settings.env ?? {}).map(([name, value]) => ({ name, value })),
  ];
  const secret =
    settings.credentialsSecret === undefined
      ? options.store.startsWith('s3://')
        ? 'distill-store-credentials'
        : null
      : settings.credentialsSecret;
  const container: Record<string, unknown> = {
    image: perStage.image ?? options.image,
    ...(settings.imagePullPolicy ? { imagePullPolicy: settings.imagePullPolicy } : {}),
    command: settings.command ?? ['distill'],
    args,
    ...(settings.workingDir ? { workingDir: settings.workingDir } : {}),
    env,
    ...(secret ? { envFrom: [{ secretRef: { name: secret } }] } : {}),
    ...(Object.keys(limits).length > 0 ? { resources: { requests: withoutGpu(limits), limits } } : {}),
    ...(settings.volumeMounts ? { volumeMounts: settings.volumeMounts } : {}),
  };
  return {
    name: group.name,
    inputs: { parameters: [{ name: 'stage' }] },
    metadata: { labels: { 'distill/stage': argoName(group.base, new Set()) } },
    retryStrategy: intOrStrings(
      withStageRetries(perStage.retryStrategy ?? settings.retryStrategy ?? DEFAULT_RETRY, first),
    ),
    ...(Object.keys(nodeSelector).length > 0 ? { nodeSelector } : {}),
    ...(tolerations.length > 0 ? { tolerations } : {}),
    ...(affinity ? { affinity } : {}),
    // The stage's own `timeout` (per attempt, like a local run) wins over the workflow-wide setting.
    // IntOrString in Argo's schema: written as a string, like retryStrategy.limit.
    ...(first.timeoutMs !== undefined
      ? { activeDeadlineSeconds: String(Math.ceil(first.timeoutMs / 1000)) }
      : settings.activeDeadlineSeconds
        ? { activeDeadlineSeconds: String(settings.activeDeadlineSeconds) }
        : {}),
    container,
  };
}

/**
 * A stage's `retries: n` (local runs attempt a failed stage n more times) becomes `limit: n` with
 * retryPolicy Always, so a failed pod is retried as a failed local attempt would be.
 */
function withStageRetries(retry: Record<string, unknown>, stage: StageInstance): Record<string, unknown> {
  return stage.retries > 0 ? { ...retry, limit: stage.retries, retryPolicy: 'Always' } : retry;
}

/** Argo's IntOrString fields (limit, backoff.factor) must be strings in the manifest; YAML users write numbers. */
function intOrStrings(retry: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(retry);
  if (typeof out.limit === 'number') out.limit = String(out.limit);
  const backoff = out.backoff as Record<string, unknown> | undefined;
  if (backoff && typeof backoff.factor === 'number') backoff.factor = String(backoff.factor);
  return out;
}

function withoutGpu(limits: Record<string, string>): Record<string, string> {
  const { ['nvidia.com/gpu']: _gpu, ...rest } = limits;
  return rest;
}

/** Default path of the pipeline file inside the image: relative to the project root. */
export function defaultPipelinePath(root: string, file: string): string {
  const rel = relative(root, file);
  if (rel.startsWith('..'))
    throw new Error(`${file} is outside the project root ${root}; pass --pipeline-path (its path inside the image)`);
  return rel.split('\\').join('/');
}
