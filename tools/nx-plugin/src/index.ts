/**
 * Nx inference plugin: every pipelines/*.yaml becomes a target of the Nx project `pipeline`, so
 * `npx nx run pipeline:<name>` runs it with `distill run`. Nx's own cache is off for these
 * targets: distill's content-addressed cache decides what reruns, and artifacts are never copied
 * into Nx's cache.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';

/** The subset of Nx's CreateNodesV2 types this plugin uses (kept local: no deep imports from nx). */
interface TargetConfiguration {
  command: string;
  options: { cwd: string };
  cache: boolean;
  metadata: { description: string; technologies: string[] };
}
interface CreateNodesResult {
  projects: Record<string, { name: string; root: string; targets: Record<string, TargetConfiguration> }>;
}
type CreateNodesFunction = (
  files: readonly string[],
  options: unknown,
  context: { workspaceRoot: string },
) => Promise<Array<readonly [string, CreateNodesResult]>>;

export const PIPELINE_PROJECT = 'pipeline';

export function pipelineTarget(file: string): [string, TargetConfiguration] {
  const name = basename(file, extname(file));
  return [
    name,
    {
      command: `node tools/core/bin/distill.js run ${file}`,
      options: { cwd: '{workspaceRoot}' },
      cache: false,
      metadata: {
        description: `Run ${file} with distill (incremental: only stale stages execute)`,
        technologies: ['distillery'],
      },
    },
  ];
}

/** A pipeline file has a top-level `stages:` mapping; params files next to pipelines do not. */
export function isPipelineFile(path: string): boolean {
  return /^stages:/m.test(readFileSync(path, 'utf8'));
}

export const createNodesV2: readonly [string, CreateNodesFunction] = [
  'pipelines/*.{yaml,yml}',
  async (files, _options, context) =>
    files
      .filter((file) => isPipelineFile(join(context.workspaceRoot, file)))
      .map((file) => {
        const [name, target] = pipelineTarget(file);
        return [
          file,
          {
            projects: { [dirname(file)]: { name: PIPELINE_PROJECT, root: dirname(file), targets: { [name]: target } } },
          },
        ] as const;
      }),
];
