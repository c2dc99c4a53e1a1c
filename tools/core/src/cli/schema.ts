/**
 * The published pipeline JSON Schema: the structural schema, with each plugin's parameter schema
 * attached to `with` when `plugin` names it. yaml-language-server picks it up from the modeline
 * `# yaml-language-server: $schema=../schema/pipeline.schema.json` in pipeline files.
 */
import { PipelineSchema } from '../pipeline/schema.js';
import type { PluginRegistry } from '../plugin/registry.js';
import { writeFileAtomic } from '../util/fs.js';

export async function pipelineJsonSchema(registry: PluginRegistry): Promise<Record<string, unknown>> {
  const schema = structuredClone(PipelineSchema) as unknown as Record<string, unknown>;
  const stages = (schema.properties as Record<string, Record<string, unknown>>).stages as Record<string, unknown>;
  const stageSchema = (stages.patternProperties as Record<string, Record<string, unknown>>)[Object.keys(stages.patternProperties as object)[0] as string] as Record<string, unknown>;
  const branches: unknown[] = [];
  for (const name of registry.names()) {
    const plugin = await registry.resolve(name, process.cwd());
    if (!plugin) continue;
    branches.push({
      if: { properties: { plugin: { const: name } }, required: ['plugin'] },
      then: { properties: { with: { ...(structuredClone(plugin.definition.params) as object), description: plugin.definition.description } } },
    });
  }
  stageSchema.allOf = branches;
  (stageSchema.properties as Record<string, Record<string, unknown>>).plugin = {
    type: 'string',
    description: 'Plugin name or a path to a plugin module',
    anyOf: [{ enum: registry.names() }, { pattern: '^[./]' }],
  };
  return { $schema: 'http://json-schema.org/draft-07/schema#', $id: 'https://distillery.dev/pipeline.schema.json', title: 'Distillery pipeline', ...schema };
}

export async function writePipelineSchema(registry: PluginRegistry, file: string): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(await pipelineJsonSchema(registry), null, 2)}\n`);
}
