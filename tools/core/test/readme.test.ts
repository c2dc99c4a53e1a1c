/**
 * Every YAML snippet of the repository README loads with the real loader and the workspace's
 * plugins, so the documentation cannot drift from the format. A snippet whose first line is
 * `# <file>.yaml` is a companion file (a params file) written under that name next to the others.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadPipeline } from '../src/pipeline/load.js';
import { PipelineError } from '../src/pipeline/diagnostics.js';
import { ModuleRegistry, workspaceRoot } from '../src/plugin/registry.js';

/** A fenced ```yaml block of a Markdown file and the line its text starts on. */
interface YamlSnippet {
  line: number;
  text: string;
}

function yamlSnippets(markdown: string): YamlSnippet[] {
  const snippets: YamlSnippet[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ya?ml\s*$/.test(lines[i]!)) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !lines[end]!.startsWith('```')) end++;
    snippets.push({ line: start + 1, text: `${lines.slice(start, end).join('\n')}\n` });
    i = end;
  }
  return snippets;
}

const README = join(workspaceRoot(), 'README.md');

test('every YAML snippet in README.md is a valid pipeline (or a companion file it names)', async () => {
  const snippets = yamlSnippets(readFileSync(README, 'utf8'));
  assert.ok(snippets.length > 0, 'README.md has no yaml snippets');
  const dir = mkdtempSync(join(tmpdir(), 'distill-readme-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const pipelines: { file: string; line: number }[] = [];
  for (const s of snippets) {
    const companion = /^# ([\w.-]+\.ya?ml)\s*$/.exec(s.text.split('\n')[0]!)?.[1];
    const file = join(dir, companion ?? `readme-line-${s.line}.yaml`);
    writeFileSync(file, s.text);
    if (!companion) pipelines.push({ file, line: s.line });
  }
  assert.ok(pipelines.length > 0, 'README.md has no pipeline snippet');
  const registry = await new ModuleRegistry().init();
  for (const p of pipelines) {
    try {
      const pipeline = await loadPipeline(p.file, { registry });
      assert.ok(pipeline.stages.length > 0);
    } catch (error) {
      const detail = error instanceof PipelineError ? error.message : String(error);
      assert.fail(`README.md snippet at line ${p.line} does not load:\n${detail}`);
    }
  }
});
