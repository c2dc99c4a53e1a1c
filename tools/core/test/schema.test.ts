/** The published pipeline JSON Schema is current, and it judges pipelines as the loader does. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { pipelineJsonSchema } from '../src/cli/schema.js';
import { ModuleRegistry, workspaceRoot } from '../src/index.js';

const root = workspaceRoot();

test('schema/pipeline.schema.json is what `distill schema` generates (run it after changing plugin params)', async () => {
  const registry = await new ModuleRegistry().init();
  const generated = await pipelineJsonSchema(registry);
  assert.deepEqual(registry.broken, [], 'every workspace plugin module loads');
  const published = JSON.parse(readFileSync(join(root, 'schema', 'pipeline.schema.json'), 'utf8')) as unknown;
  assert.deepEqual(published, JSON.parse(JSON.stringify(generated)));
});

test('the published schema accepts every pipelines/*.yaml and rejects a typo in plugin params', async () => {
  const schema = JSON.parse(readFileSync(join(root, 'schema', 'pipeline.schema.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  delete schema.$schema;
  const ajv = new Ajv({ strict: false, allErrors: true });
  const validate = ajv.compile(schema);
  const files = readdirSync(join(root, 'pipelines')).filter(
    (f) => f.endsWith('.yaml') && /^stages:/m.test(readFileSync(join(root, 'pipelines', f), 'utf8')),
  );
  assert.ok(files.length > 0);
  for (const file of files) {
    const doc = parse(readFileSync(join(root, 'pipelines', file), 'utf8')) as Record<string, unknown>;
    assert.ok(validate(doc), `${file}: ${ajv.errorsText(validate.errors)}`);
  }
  const names = new ModuleRegistry();
  await names.init();
  const plugin = names.names().find((n) => n !== 'exec') ?? 'exec';
  const bad = { stages: { s: { plugin, with: { definitelyNotAParameter: 1 } } } };
  assert.equal(validate(bad), false, `a parameter unknown to ${plugin} is rejected`);
});
