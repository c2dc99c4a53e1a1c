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
  const stageSchema = (stages.patternProperties as Record<string, Record<string, unknown>>)[
    Object.keys(stages.patternProperties as object)[0] as string
  ] as Record<string, unknown>;
  const branches: unknown[] = [];
  for (const name of registry.names()) {
    const plugin = await registry.resolve(name, process.cwd());
    if (!plugin) continue;
    branches.push({
      if: { properties: { plugin: { const: name } }, required: ['plugin'] },
      then: {
        properties: {
          with: {
            ...(forEditors(structuredClone(plugin.definition.params)) as object),
            description: plugin.definition.description,
          },
        },
      },
    });
  }
  stageSchema.allOf = branches;
  (stageSchema.properties as Record<string, Record<string, unknown>>).plugin = {
    type: 'string',
    description: 'Plugin name or a path to a plugin module',
    anyOf: [{ enum: registry.names() }, { pattern: '^[./]' }],
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://distillery.dev/pipeline.schema.json',
    title: 'Distillery pipeline',
    ...schema,
  };
}

export async function writePipelineSchema(registry: PluginRegistry, file: string): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(await pipelineJsonSchema(registry), null, 2)}\n`);
}

const EXPRESSION = {
  type: 'string',
  pattern: '^\\$\\{\\{.*\\}\\}$',
  description: 'a ${{ item }} or ${{ params.name }} expression',
};

/**
 * A parameter schema as an editor should see it: keys with a default are not required (the
 * loader fills them in), and any value may instead be a ${{ }} expression, substituted before
 * validation.
 */
function forEditors(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(forEditors);
  if (schema === null || typeof schema !== 'object') return schema;
  const node = Object.fromEntries(
    Object.entries(schema).map(([k, v]) => [k, k === 'default' || k === 'const' || k === 'enum' ? v : forEditors(v)]),
  ) as Record<string, unknown>;
  const properties = node.properties as Record<string, Record<string, unknown>> | undefined;
  if (properties && Array.isArray(node.required)) {
    const hasDefault = (p: Record<string, unknown> | undefined): boolean =>
      p !== undefined &&
      ('default' in p ||
        (Array.isArray(p.anyOf) && typeof p.anyOf[0] === 'object' && 'default' in (p.anyOf[0] as object)));
    node.required = (node.required as string[]).filter((key) => !hasDefault(properties[key]));
    if ((node.required as string[]).length === 0) delete node.required;
  }
  const isLeafOrContainer = 'type' in node || 'anyOf' in node || 'const' in node || 'enum' in node;
  if (!isLeafOrContainer || node.type === 'string') return node;
  const { description, default: fallback, ...rest } = node;
  return {
    anyOf: [rest, EXPRESSION],
    ...(description !== undefined ? { description } : {}),
    ...(fallback !== undefined ? { default: fallback } : {}),
  };
}
