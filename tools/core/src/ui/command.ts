/** `distill ui [--port N] [--host H]`: serves the web app until interrupted. */
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { Pipeline } from '../pipeline/model.js';
import { findProjectRoot, Workspace } from '../runner/workspace.js';

/** What main.ts lends the command: its cached pipeline loader. */
export interface UiCommandHelpers {
  open(file: string, options: { set: string[]; root?: string }): Promise<{ pipeline: Pipeline; ws: Workspace }>;
}

export function registerUiCommand(program: Command, helpers: UiCommandHelpers): void {
  program
    .command('ui')
    .description(
      'a local web app: the DAG with live stage status, logs, runs, metric curves, eval reports, run diffs (read-only)',
    )
    .addOption(new Option('--port <n>', 'port (0: any free one)').argParser(Number).default(8470))
    .option(
      '--host <host>',
      'address to bind; anything but loopback exposes logs and params to the network',
      '127.0.0.1',
    )
    .option('--root <dir>', 'project root holding .distill/ (default: nearest with .distill, nx.json or .git)')
    .action(async (options: { port: number; host: string; root?: string }) => {
      const root = options.root ? resolve(options.root) : findProjectRoot(process.cwd());
      const ws = new Workspace(root);
      const { startUiServer } = await import('./server.js');
      const ui = await startUiServer({
        ws,
        host: options.host,
        port: options.port,
        load: async (file) => (await helpers.open(file, { set: [], root })).pipeline,
      });
      process.stdout.write(`distill ui: ${ui.url} (project ${root}; Ctrl-C to stop)\n`);
      await new Promise<void>((done) => {
        const stop = (): void => {
          void ui.close().then(done);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
