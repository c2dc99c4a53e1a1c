/**
 * `distill export argo`: manifests validated against Argo's published JSON Schema (vendored: test/vendor/argo-workflows)
 * plus the reference checks the schema lacks, cached stages left out, fan-out kept, names sanitised,
 * and snapshots of generated manifests.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { checkWorkflow } from '../src/argo/check.js';
import { buildArgoWorkflow, type Workflow } from '../src/argo/export.js';
import { ARGO_NAME, argoName } from '../src/argo/names.js';
import { readArgoSettings } from '../src/argo/settings.js';
import { loadPipeline } from '../src/pipeline/load.js';
import { ModuleRegistry, workspaceRoot } from '../src/plugin/registry.js';
import { openContentStore } from '../src/remote/index.js';
import { planPipeline } from '../src/runner/plan.js';
import { Workspace } from '../src/runner/workspace.js';
import { CONCAT, load, runYaml } from './exec-helpers.js';
import { tempDir } from './remote-helpers.js';

const here = dirname(fileURLToPath(import.meta.url)); // tools/core/dist/test
const repoRoot = join(here, '..', '..', '..', '..');
const SNAPSHOTS = join(repoRoot, 'tools', 'core', 'test', 'argo-snapshots');
const SCHEMA = join(repoRoot, 'tools', 'core', 'test', 'vendor', 'argo-workflows', 'schema.json');
const DISTILL = join(repoRoot, 'tools', 'core', 'bin', 'distill.js');

let validateSchema: (((value: unknown) => boolean) & { errors?: unknown }) | undefined;
/** Argo's JSON Schema, compiled as its README says: without `$schema`, strict mode off. */
function schemaErrors(workflow: unknown): string[] {
  if (!validateSchema) {
    assert.ok(existsSync(SCHEMA), `Argo's JSON Schema is expected at ${SCHEMA}`);
    const schema = JSON.parse(readFileSync(SCHEMA, 'utf8')) as Record<string, unknown>;
    delete schema.$schema;
    validateSchema = new Ajv2020({ strict: false, allErrors: true, logger: false }).compile(schema);
  }
  const ok = validateSchema(JSON.parse(JSON.stringify(workflow)));
  if (ok) return [];
  return ((validateSchema.errors ?? []) as Array<{ instancePath: string; message?: string }>).map(
    (e) => `${e.instancePath} ${e.message ?? ''}`,
  );
}

function assertValid(workflow: Workflow): void {
  assert.deepEqual(schemaErrors(workflow).slice(0, 10), []);
  assert.deepEqual(checkWorkflow(workflow), []);
}

/** Compares with (or, with UPDATE_SNAPSHOTS=1, writes) test/argo-snapshots/<name>. */
function matchSnapshot(name: string, text: string): void {
  const file = join(SNAPSHOTS, name);
  if (process.env.UPDATE_SNAPSHOTS === '1') {
    mkdirSync(SNAPSHOTS, { recursive: true });
    writeFileSync(file, text);
    return;
  }
  assert.ok(existsSync(file), `snapshot ${file} is missing; run the test with UPDATE_SNAPSHOTS=1 and review it`);
  assert.equal(
    text,
    readFileSync(file, 'utf8'),
    `manifest differs from ${file} (UPDATE_SNAPSHOTS=1 rewrites it after review)`,
  );
}

const STORE = 's3://distill-artifacts/eft?endpoint=http://minio.storage:9000&forcePathStyle=true';

/** A pipeline with a plain stage, a GPU fan-out, a matrix, and names that need sanitising. */
function samplePipeline(): string {
  return `
name: sample_Pipeline
settings:
  argo:
    image: registry.example/distill:1.0
    serviceAccountName: distill
    parallelism: 8
    nodeSelector: { pool: batch }
    tolerations: [{ key: spot, operator: Exists, effect: NoSchedule }]
    gpu:
      nodeSelector: { accelerator: h100 }
      tolerations: [{ key: nvidia.com/gpu, operator: Exists, effect: NoSchedule }]
    retryStrategy: { limit: 5, retryPolicy: OnError, backoff: { duration: 1m, factor: 2 } }
    stages:
      report: { nodeSelector: { pool: small } }
stages:
  prepare_data:
    plugin: ${CONCAT}
    resources: { cpus: 2, memory: 4GiB }
    with: { text: data }
  teach:
    plugin: ${CONCAT}
    foreach: [bird, cat, dog.x]
    inputs: { data: prepare_data }
    resources: { gpus: 1, cpus: 4, memory: 16GiB }
    with: { text: "\${{ item }}" }
  student:
    plugin: ${CONCAT}
    matrix: { k: [1, 2], t: [hi] }
    inputs: { teachers: teach }
    resources: { gpus: 1 }
    with: { text: "k\${{ item.k }}" }
  report:
    plugin: exec
    inputs: { students: student }
    with:
      command: 'echo ok > "$DISTILL_OUT/r.txt"'
      outputs: [r.txt]
`;
}

describe('argo names', () => {
  test('stage ids become valid, distinct Kubernetes names', () => {
    const used = new Set<string>();
    assert.equal(argoName('infer@bird', used), 'infer-bird');
    assert.equal(argoName('train@k=1,t=x', used), 'train-k-1-t-x');
    assert.equal(argoName('Prepare_Data.v2', used), 'prepare-data-v2');
    assert.equal(argoName('1st', used), 's-1st');
    const collided = argoName('infer-bird', used);
    assert.notEqual(collided, 'infer-bird');
    assert.match(collided, /^infer-bird-[0-9a-f]{8}$/);
    const long = argoName(`teacher@${'x'.repeat(100)}`, used);
    assert.ok(long.length <= 63 && ARGO_NAME.test(long), long);
    for (const name of used) assert.match(name, ARGO_NAME);
  });
});

describe('argo export', () => {
  test('one task per stale stage, fan-out as withItems, resources, placement, store; schema-valid', async () => {
    const dir = tempDir('argo');
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(file, samplePipeline());
    const pipeline = await load(file);
    const ws = new Workspace(dir);
    const plan = await planPipeline(ws, pipeline);
    const workflow = buildArgoWorkflow(pipeline, plan, {
      image: 'registry.example/distill:1.0',
      store: STORE,
      pipelinePath: 'pipelines/sample.yaml',
      settings: readArgoSettings(pipeline.settings, file),
      overrides: ['params.seed=3'],
    });
    assertValid(workflow);
    const dag = workflow.spec.templates.find((t) => t.name === workflow.spec.entrypoint)?.dag;
    assert.ok(dag);
    const tasks = new Map(dag.tasks.map((t) => [t.name, t]));
    assert.deepEqual([...tasks.keys()], ['prepare-data', 'teach', 'student', 'report']);
    assert.deepEqual(tasks.get('teach')?.withItems, ['teach@bird', 'teach@cat', 'teach@dog.x']);
    assert.deepEqual(tasks.get('teach')?.arguments.parameters, [{ name: 'stage', value: '{{item}}' }]);
    assert.deepEqual(tasks.get('student')?.withItems, ['student@k=1,t=hi', 'student@k=2,t=hi']);
    assert.deepEqual(tasks.get('prepare-data')?.arguments.parameters, [{ name: 'stage', value: 'prepare_data' }]);
    assert.equal(tasks.get('prepare-data')?.dependencies, undefined);
    assert.deepEqual(tasks.get('teach')?.dependencies, ['prepare-data']);
    assert.deepEqual(tasks.get('student')?.dependencies, ['teach']);
    assert.deepEqual(tasks.get('report')?.dependencies, ['student']);
    const template = (name: string) =>
      workflow.spec.templates.find((t) => t.name === name) as Workflow['spec']['templates'][number];
    const teach = template('teach');
    const container = teach.container as {
      args: string[];
      env: Array<{ name: string; value: string }>;
      resources: { limits: Record<string, string>; requests: Record<string, string> };
      envFrom: unknown;
      image: string;
    };
    assert.deepEqual(container.resources.limits, { cpu: '4', memory: '16384Mi', 'nvidia.com/gpu': '1' });
    assert.deepEqual(container.resources.requests, { cpu: '4', memory: '16384Mi' });
    assert.deepEqual(container.args, [
      'stage',
      'run',
      'pipelines/sample.yaml',
      '{{inputs.parameters.stage}}',
      '--store',
      STORE,
      '--set',
      'params.seed=3',
    ]);
    assert.deepEqual(container.env, [{ name: 'DISTILL_STORE', value: STORE }]);
    assert.deepEqual(container.envFrom, [{ secretRef: { name: 'distill-store-credentials' } }]);
    assert.deepEqual(teach.nodeSelector, { pool: 'batch', accelerator: 'h100' });
    assert.equal(teach.tolerations?.length, 2);
    assert.deepEqual(
      teach.retryStrategy,
      { limit: '5', retryPolicy: 'OnError', backoff: { duration: '1m', factor: '2' } },
      'IntOrString fields written as strings',
    );
    assert.deepEqual(template('prepare-data').nodeSelector, { pool: 'batch' }, 'CPU stages get no GPU placement');
    assert.deepEqual((template('prepare-data').container as { resources: unknown }).resources, {
      requests: { cpu: '2', memory: '4096Mi' },
      limits: { cpu: '2', memory: '4096Mi' },
    });
    assert.deepEqual(template('report').nodeSelector, { pool: 'small' }, 'per-stage settings override');
    assert.equal(workflow.metadata.generateName, 'sample-pipeline-');
    assert.equal(workflow.spec.parallelism, 8);
    matchSnapshot('sample.yaml', toYaml(workflow, { lineWidth: 0, aliasDuplicateObjects: false }));
  });

  test('cached stages are left out, with no dependency on them; the CLI publishes what tasks read', async () => {
    const dir = tempDir('argo-cached');
    const yaml = (reportText: string): string => `
settings: { argo: { image: img:1 } }
stages:
  a:
    plugin: ${CONCAT}
    foreach: [x, y]
    with: { text: "\${{ item }}" }
  b:
    plugin: ${CONCAT}
    inputs: { a: a@x }
    with: { text: b }
  c:
    plugin: ${CONCAT}
    inputs: { b: b, a: a }
    with: { text: ${reportText} }
`;
    const first = await runYaml(dir, yaml('one'));
    assert.equal(first.record.status, 'ok');
    writeFileSync(join(dir, 'pipeline.yaml'), yaml('two'));
    const storeDir = tempDir('argo-store');
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [
        DISTILL,
        'export',
        'argo',
        join(dir, 'pipeline.yaml'),
        '--root',
        dir,
        '--store',
        storeDir,
        '--pipeline-path',
        'p.yaml',
      ],
      { env: { ...process.env, DISTILL_STORE: '' } },
    );
    const workflow = parseYaml(stdout) as Workflow;
    assertValid(workflow);
    const tasks = workflow.spec.templates.find((t) => t.dag)?.dag?.tasks ?? [];
    assert.deepEqual(
      tasks.map((t) => [t.name, t.dependencies, t.arguments.parameters[0]?.value]),
      [['c', undefined, 'c']],
    );
    assert.match(stderr, /published 3 cached stage output\(s\)/);
    const store = openContentStore(storeDir);
    for (const id of ['a@x', 'a@y', 'b']) {
      const key = first.stage(id).key as string;
      assert.equal(await store.has(key), true, `${id} is in the store for the task that reads it`);
    }
    const none = await promisify(execFile)(
      process.execPath,
      [DISTILL, 'export', 'argo', join(dir, 'pipeline.yaml'), '--root', dir, '--store', storeDir, '--no-push'],
      {},
    );
    assert.notEqual(none.stdout, '');
    await runYaml(dir, yaml('two'));
    const nothing = await promisify(execFile)(process.execPath, [
      DISTILL,
      'export',
      'argo',
      join(dir, 'pipeline.yaml'),
      '--root',
      dir,
      '--store',
      storeDir,
    ]);
    assert.equal(nothing.stdout, '');
    assert.match(nothing.stderr, /all 4 stages are cached; nothing to export/);
  });

  test('the reference checks catch what the schema does not; the schema catches numeric quantities', async () => {
    const dir = tempDir('argo-bad');
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(file, samplePipeline());
    const pipeline = await load(file);
    const plan = await planPipeline(new Workspace(dir), pipeline);
    const good = buildArgoWorkflow(pipeline, plan, { image: 'i', store: STORE, pipelinePath: 'p.yaml', settings: {} });
    const broken = structuredClone(good);
    const dag = broken.spec.templates[0]?.dag;
    assert.ok(dag);
    (dag.tasks[1] as { dependencies?: string[] }).dependencies = ['no-such-task'];
    (dag.tasks[2] as { template: string }).template = 'no-such-template';
    assert.deepEqual(schemaErrors(broken), [], 'the schema alone accepts these');
    const problems = checkWorkflow(broken);
    assert.ok(
      problems.some((p) => /depends on "no-such-task", which is not a task/.test(p)),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((p) => /uses template "no-such-template", which does not exist/.test(p)),
      problems.join('\n'),
    );
    const cyclic = structuredClone(good);
    const tasks = cyclic.spec.templates[0]?.dag?.tasks ?? [];
    (tasks[0] as { dependencies?: string[] }).dependencies = [tasks[3]?.name as string];
    assert.ok(checkWorkflow(cyclic).some((p) => /dependency cycle/.test(p)));
    const numeric = structuredClone(good) as unknown as {
      spec: { templates: Array<{ container?: { resources?: { limits: Record<string, unknown> } } }> };
    };
    const limits = numeric.spec.templates.find((t) => t.container?.resources?.limits['nvidia.com/gpu'])?.container
      ?.resources?.limits;
    assert.ok(limits);
    limits['nvidia.com/gpu'] = 1;
    assert.ok(
      schemaErrors(numeric).some((e) => e.includes('nvidia.com~1gpu') && e.includes('string')),
      'a number is not a quantity',
    );
  });

  test('bad settings.argo keys are named', async () => {
    assert.throws(
      () => readArgoSettings({ argo: { nodeselector: {}, parallelism: 0 } }, 'p.yaml'),
      (error: Error) => {
        assert.match(error.message, /settings\.argo: must NOT have additional properties "nodeselector"/);
        assert.match(error.message, /settings\.argo\.parallelism: must be >= 1/);
        return true;
      },
    );
  });

  for (const name of ['tiny', 'eft-100k']) {
    const file = join(repoRoot, 'pipelines', `${name}.yaml`);
    test(`snapshot of pipelines/${name}.yaml`, {
      skip: existsSync(file) ? false : `pipelines/${name}.yaml does not exist yet`,
    }, async (t) => {
      const registry = await new ModuleRegistry(workspaceRoot()).init();
      const pipeline = await loadPipeline(file, { registry });
      // A fresh root: every stage is stale, so the snapshot does not depend on this checkout's cache.
      const plan = await planPipeline(new Workspace(tempDir(`argo-${name}`)), pipeline);
      const settings = readArgoSettings(pipeline.settings, file);
      const workflow = buildArgoWorkflow(pipeline, plan, {
        image: settings.image ?? 'ghcr.io/example/distillery:latest',
        store: settings.store ?? 's3://distill-artifacts/cache?endpoint=http://minio.storage:9000&forcePathStyle=true',
        pipelinePath: `pipelines/${name}.yaml`,
        settings,
      });
      assertValid(workflow);
      const dag = workflow.spec.templates.find((t) => t.name === workflow.spec.entrypoint)?.dag?.tasks ?? [];
      const instances = dag.reduce((n, t) => n + (t.withItems?.length ?? 1), 0);
      assert.equal(instances, pipeline.stages.length, 'every stage instance is in exactly one task');
      const snapshot = `${name}.yaml`;
      if (!existsSync(join(SNAPSHOTS, snapshot)) && process.env.UPDATE_SNAPSHOTS !== '1') {
        t.skip(`manifest is valid; no snapshot yet for ${name} (run with UPDATE_SNAPSHOTS=1 and review it)`);
        return;
      }
      matchSnapshot(snapshot, toYaml(workflow, { lineWidth: 0, aliasDuplicateObjects: false }));
    });
  }
});

describe('argo export of stage limits', () => {
  test('a stage timeout becomes activeDeadlineSeconds and retries the retryStrategy limit (retryPolicy Always), like a local run', async () => {
    const dir = tempDir('argo-limits');
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(
      file,
      `settings: { argo: { image: img:1, activeDeadlineSeconds: 7200 } }\nstages:\n  slow:\n    plugin: ${CONCAT}\n    timeout: 10m\n    retries: 2\n    with: { text: s }\n  plain:\n    plugin: ${CONCAT}\n    with: { text: p }\n`,
    );
    const pipeline = await load(file);
    const plan = await planPipeline(new Workspace(dir), pipeline);
    const workflow = buildArgoWorkflow(pipeline, plan, {
      image: 'img:1',
      store: STORE,
      pipelinePath: 'p.yaml',
      settings: readArgoSettings(pipeline.settings, file),
    });
    assertValid(workflow);
    const template = (name: string) =>
      workflow.spec.templates.find((t) => t.name === name) as Workflow['spec']['templates'][number] & {
        activeDeadlineSeconds?: string;
      };
    assert.equal(template('slow').activeDeadlineSeconds, '600');
    assert.deepEqual(template('slow').retryStrategy, {
      limit: '2',
      retryPolicy: 'Always',
      backoff: { duration: '30s', factor: '2', maxDuration: '30m' },
    });
    assert.equal(
      template('plain').activeDeadlineSeconds,
      '7200',
      'without a stage timeout the workflow setting applies',
    );
    assert.deepEqual(template('plain').retryStrategy, {
      limit: '3',
      retryPolicy: 'OnError',
      backoff: { duration: '30s', factor: '2', maxDuration: '30m' },
    });
  });
});
