/** The loaded-pipeline cache is reused only while its sources are unchanged. */
import assert from 'node:assert/strict';
import { readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadPipeline } from '../src/pipeline/load.js';
import { PlanCache } from '../src/pipeline/plan-cache.js';
import { CONCAT, makeProject, testRegistry, writeText } from './helpers.js';

async function loadAndCache(cache: PlanCache, file: string, overrides: string[] = []) {
  const pipeline = await loadPipeline(file, { registry: await testRegistry(), overrides });
  cache.write(pipeline, overrides, pipeline.paramsFile);
  return pipeline;
}

function bump(path: string, text: string): void {
  writeFileSync(path, text);
  const later = new Date(Date.now() + 5_000);
  utimesSync(path, later, later); // mtime resolution must not hide the edit
}

test('plan cache: hit while nothing changed; a changed pipeline, params file, plugin module or --set misses', async () => {
  const root = makeProject('distill-plan-cache-');
  const plugin = join(root, 'plugin.js');
  writeFileSync(plugin, `export { default } from ${JSON.stringify(CONCAT)};\n`);
  writeText(root, 'params.yaml', 'greeting: hi\n');
  const file = writeText(
    root,
    'p.yaml',
    `params: params.yaml\nstages:\n  a:\n    plugin: ${plugin}\n    with: { text: "\${{ params.greeting }}" }\n`,
  );
  const cache = new PlanCache(join(root, '.distill', 'plans'), root);
  assert.equal(cache.read(file, []), undefined, 'empty cache');
  const loaded = await loadAndCache(cache, file);
  const hit = cache.read(file, []);
  assert.ok(hit, 'hit');
  assert.deepEqual(
    hit.stages.map((s) => [s.id, s.params, s.plugin.name, s.plugin.definition.version, s.resources]),
    loaded.stages.map((s) => [s.id, s.params, s.plugin.name, s.plugin.definition.version, s.resources]),
  );
  assert.deepEqual([...hit.groups], [...loaded.groups]);
  assert.equal(cache.read(file, ['a.text=x']), undefined, 'other --set: another entry');

  bump(join(root, 'params.yaml'), 'greeting: hello\n');
  assert.equal(cache.read(file, []), undefined, 'params file changed');
  assert.equal((await loadAndCache(cache, file)).stages[0]?.params.text, 'hello');
  assert.ok(cache.read(file, []));

  bump(plugin, `${readFileSync(plugin, 'utf8')}\n// edited\n`);
  assert.equal(cache.read(file, []), undefined, 'plugin module changed');
  await loadAndCache(cache, file);

  bump(file, readFileSync(file, 'utf8').replace('a:', 'b:'));
  assert.equal(cache.read(file, []), undefined, 'pipeline file changed');
  assert.deepEqual(
    (await loadAndCache(cache, file)).stages.map((s) => s.id),
    ['b'],
  );
  assert.deepEqual(
    cache.read(file, [])?.stages.map((s) => s.id),
    ['b'],
  );
});
