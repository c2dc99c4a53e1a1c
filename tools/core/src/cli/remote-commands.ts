/** `distill stage run` and `distill export argo` (issue 9). */
import type { Command } from 'commander';
import type { Pipeline } from '../pipeline/model.js';
import type { ModuleRegistry } from '../plugin/registry.js';
import type { Workspace } from '../runner/workspace.js';

/** What main.ts lends these commands. */
export interface CliHelpers {
  open(file: string, options: { set: string[]; root?: string }): Promise<{ pipeline: Pipeline; ws: Workspace; registry: ModuleRegistry }>;
  printJson(value: unknown): void;
}

export function registerRemoteCommands(program: Command, helpers: CliHelpers): void {
  void helpers;
  program
    .command('stage')
    .description('commands on single stages')
    .command('run <pipeline> <stage>')
    .description('execute exactly one stage from inputs found in the artifact store, and publish its outputs there')
    .action(() => {
      throw new Error('distill stage run: not implemented');
    });
  program
    .command('export')
    .description('export a pipeline to other orchestrators')
    .command('argo <pipeline>')
    .description('write an Argo Workflow manifest with one task per stale stage')
    .action(() => {
      throw new Error('distill export argo: not implemented');
    });
}
