/**
 * `distill stage run` (one stage from the artifact store, the unit a remote worker runs) and
 * `distill export argo` (an Argo Workflow of the stale stages). See tools/core/REMOTE.md.
 */
import { watchInterrupts } from '../runner/interrupt.js';
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { Pipeline } from '../pipeline/model.js';
import { openContentStore } from '../remote/index.js';
import { detectResources } from '../runner/devices.js';
import { planPipeline, selectStages } from '../runner/plan.js';
import { formatDuration, ProgressView } from '../runner/progress.js';
import { runPipeline } from '../runner/run.js';
import type { Workspace } from '../runner/workspace.js';
import { writeFileAtomic } from '../util/fs.js';

/** What main.ts lends these commands. */
export interface CliHelpers {
  open(file: string, options: { set: string[]; root?: string }): Promise<{ pipeline: Pipeline; ws: Workspace }>;
  printJson(value: unknown): void;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

interface StageRunOptions {
  set: string[];
  root?: string;
  store?: string;
  cpus?: number;
  gpus?: number;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

interface ExportArgoOptions {
  set: string[];
  root?: string;
  store?: string;
  out?: string;
  image?: string;
  pipelinePath?: string;
  namespace?: string;
  push: boolean;
}

export function registerRemoteCommands(program: Command, helpers: CliHelpers): void {
  const stage = program.command('stage').description('commands on single stages');
  stage
    .command('run <pipeline> <stage>')
    .description(
      'execute exactly one stage (an instance id such as infer@bird, or a stage name: all its instances) from inputs found in the artifact store, and publish its outputs there',
    )
    .option(
      '--set <stage.param=value>',
      'override a parameter (repeatable); must match the planning run, since params are in the cache key',
      collect,
      [],
    )
    .option('--root <dir>', 'project root holding .distill/ and out/')
    .addOption(
      new Option('--store <url>', 'artifact store: a directory, file:///path or s3://bucket/prefix?endpoint=...').env(
        'DISTILL_STORE',
      ),
    )
    .addOption(new Option('--cpus <n>', 'CPU slots (default: core count)').argParser(Number))
    .addOption(new Option('--gpus <n>', 'pretend the machine has n GPUs (default: nvidia-smi)').argParser(Number))
    .option('--json', 'print one JSON document describing the run on stdout')
    .option('--quiet', 'no progress output')
    .option('--verbose', 'echo stage log lines')
    .action(async (file: string, stageName: string, options: StageRunOptions) => {
      const { pipeline, ws } = await helpers.open(file, options);
      const only = selectStages(pipeline, [stageName]);
      const remote = options.store ? openContentStore(options.store) : undefined;
      const machine = await detectResources({ cpus: options.cpus, gpus: options.gpus });
      const interrupt = watchInterrupts();
      const started = Date.now();
      const record = await runPipeline(ws, pipeline, {
        machine,
        only,
        signal: interrupt.signal,
        forceSignal: interrupt.force,
        verbose: options.verbose,
        progress: new ProgressView(process.stderr, Boolean(options.quiet)),
        ...(remote ? { remote } : {}),
      });
      // A stage served from the local cache was not published by the runner: make sure the store has it.
      if (remote) {
        for (const s of record.stages)
          if (only.has(s.id) && s.status === 'cached' && s.key) await remote.push(s.key, ws.store);
      }
      const selected = record.stages.filter((s) => only.has(s.id));
      const count = (status: string): number => selected.filter((s) => s.status === status).length;
      if (!options.quiet) {
        process.stderr.write(
          `${pipeline.name} ${stageName}: ${count('ran')} ran, ${count('cached')} cached, ${count('failed')} failed${remote ? `; store ${remote.describe()}` : ''} in ${formatDuration(Date.now() - started)}\n`,
        );
        for (const s of selected)
          if (s.status === 'failed') process.stderr.write(`✗ ${s.id}: ${s.error ?? s.reason ?? 'failed'}\n`);
      }
      if (options.json) {
        helpers.printJson({
          runId: record.runId,
          pipeline: record.pipeline,
          status: record.status,
          store: remote?.describe() ?? null,
          stages: selected.map((s) => ({
            id: s.id,
            status: s.status,
            durationMs: s.durationMs,
            key: s.key ?? null,
            ...(s.reason ? { reason: s.reason } : {}),
            ...(s.error ? { error: s.error } : {}),
            metrics: s.metrics,
          })),
        });
      }
      process.exitCode = record.status === 'interrupted' ? 130 : record.status === 'failed' ? 1 : 0;
    });

  const exporter = program.command('export').description('export a pipeline to other orchestrators');
  exporter
    .command('argo <pipeline>')
    .description('write an Argo Workflow manifest with one task per stale stage (cached stages are left out)')
    .option('--set <stage.param=value>', 'override a parameter (repeatable); passed on to every task', collect, [])
    .option('--root <dir>', 'project root whose cache decides what is stale')
    .option('--out <file>', 'write the manifest here (default: stdout)')
    .option('--image <image>', 'container image holding this repository and distill (default: settings.argo.image)')
    .addOption(
      new Option('--store <url>', 'artifact store every task uses (default: settings.argo.store)').env('DISTILL_STORE'),
    )
    .option(
      '--pipeline-path <path>',
      'the pipeline file inside the image (default: its path relative to the project root)',
    )
    .option('--namespace <ns>', 'Kubernetes namespace (default: settings.argo.namespace)')
    .option('--no-push', 'do not publish the cached outputs that stale stages read to the store')
    .action(async (file: string, options: ExportArgoOptions) => {
      const { pipeline, ws } = await helpers.open(file, options);
      // Loaded here: the exporter (yaml, typebox, ajv) is not needed by any other command.
      const { stringify: toYaml } = await import('yaml');
      const { buildArgoWorkflow, defaultPipelinePath } = await import('../argo/export.js');
      const { checkWorkflow } = await import('../argo/check.js');
      const { readArgoSettings } = await import('../argo/settings.js');
      const settings = readArgoSettings(pipeline.settings, pipeline.file);
      const image = options.image ?? settings.image;
      if (!image) throw new Error('no container image: pass --image or set settings.argo.image');
      const store = options.store ?? settings.store;
      if (!store)
        throw new Error(
          'no artifact store: tasks on different pods share outputs through it; pass --store, set DISTILL_STORE or settings.argo.store',
        );
      const plan = await planPipeline(ws, pipeline);
      const stale = plan.filter((p) => p.state === 'run');
      if (options.push) {
        // Cached outputs that a stale stage reads must be in the store the tasks pull from.
        const remote = openContentStore(store);
        const byId = new Map(plan.map((p) => [p.id, p]));
        const needed = new Set(
          stale
            .flatMap((p) => pipeline.byId.get(p.id)?.upstream ?? [])
            .filter((id) => byId.get(id)?.state === 'cached'),
        );
        for (const id of needed) await remote.push(byId.get(id)?.key as string, ws.store);
        if (needed.size > 0)
          process.stderr.write(`published ${needed.size} cached stage output(s) to ${remote.describe()}\n`);
      }
      if (stale.length === 0) {
        process.stderr.write(`${pipeline.name}: all ${plan.length} stages are cached; nothing to export\n`);
        return;
      }
      const workflow = buildArgoWorkflow(pipeline, plan, {
        image,
        store,
        pipelinePath: options.pipelinePath ?? settings.pipelinePath ?? defaultPipelinePath(ws.root, pipeline.file),
        settings,
        overrides: options.set,
        ...(options.namespace ? { namespace: options.namespace } : {}),
      });
      const problems = checkWorkflow(workflow);
      if (problems.length > 0)
        throw new Error(`internal: the generated workflow is invalid:\n  ${problems.join('\n  ')}`);
      const text = toYaml(workflow, { lineWidth: 0, aliasDuplicateObjects: false });
      if (options.out) {
        await writeFileAtomic(resolve(options.out), text);
        process.stderr.write(
          `wrote ${options.out}: ${stale.length} of ${plan.length} stages in ${workflow.spec.templates.length - 1} task(s)\n`,
        );
      } else {
        process.stdout.write(text);
      }
    });
}
