/**
 * A plugin's code version covers the workspace code it imports: an edit to a runtime module changes
 * the code hash of the plugins that import it and of no other (plugin/code-closure.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { importSpecifiers, pluginCodePaths } from '../src/plugin/code-closure.js';
import { ModuleRegistry, workspaceRoot } from '../src/plugin/registry.js';
import { Workspace } from '../src/runner/workspace.js';

function put(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** A plugin module that imports `imports` (module specifiers). */
function pluginModule(name: string, imports: string[]): string {
  const lines = imports.map((spec, i) => `import * as m${i} from '${spec}';`);
  return `${lines.join('\n')}\nexport default { name: '${name}', version: '1', params: {}, run() { return {}; } };\n`;
}

/**
 * A workspace: @distillery/runtime (rng.js; tfjs.js importing helper.js and, as a worker, worker.js),
 * plugin "uses-tfjs" importing the runtime's tfjs, plugin "uses-rng" importing its rng.
 */
function makeWorkspace(): string {
  const root = mkdtempSync(join(tmpdir(), 'distill-closure-'));
  const scope = join(root, 'node_modules', '@distillery');
  const runtime = join(scope, 'runtime');
  put(
    join(runtime, 'package.json'),
    JSON.stringify({
      name: '@distillery/runtime',
      type: 'module',
      exports: { './rng': './dist/src/rng.js', './tfjs': './dist/src/tfjs.js' },
    }),
  );
  put(join(runtime, 'dist/src/rng.js'), 'export const rng = 1;\n');
  put(join(runtime, 'dist/src/helper.js'), 'export const helper = 1;\n');
  put(join(runtime, 'dist/src/worker.js'), '// worker\n');
  put(
    join(runtime, 'dist/src/tfjs.js'),
    "import { helper } from './helper.js';\nexport const worker = new URL('./worker.js', import.meta.url);\nexport const tfjs = helper;\n",
  );
  put(join(runtime, 'dist/src/unused.js'), 'export const unused = 1;\n');
  for (const [pkg, name, spec] of [
    ['plugin-a', 'uses-tfjs', '@distillery/runtime/tfjs'],
    ['plugin-b', 'uses-rng', '@distillery/runtime/rng'],
  ] as const) {
    const dir = join(scope, pkg);
    put(
      join(dir, 'package.json'),
      JSON.stringify({
        name: `@distillery/${pkg}`,
        type: 'module',
        distillery: { plugins: { [name]: './dist/src/plugin.js' } },
      }),
    );
    put(join(dir, 'dist/src/plugin.js'), pluginModule(name, [spec]));
  }
  return root;
}

async function codeHashes(root: string): Promise<Record<string, string>> {
  const registry = await new ModuleRegistry(root).init();
  const ws = new Workspace(root);
  const out: Record<string, string> = {};
  for (const name of ['uses-tfjs', 'uses-rng']) {
    const plugin = await registry.resolve(name, root);
    assert.ok(plugin, `plugin ${name} resolves`);
    out[name] = await ws.codeHash(plugin);
  }
  return out;
}

test('import specifiers: static, re-export, dynamic, side-effect and worker URLs', () => {
  const text =
    "import a from './a.js';\nexport { b } from \"@distillery/x/b\";\nconst c = await import('./c.js');\nimport './d.js';\nnew Worker(new URL('./e.js', import.meta.url));\n";
  assert.deepEqual(importSpecifiers(text).sort(), ['./a.js', './c.js', './d.js', './e.js', '@distillery/x/b']);
});

test('code paths: the plugin package plus the workspace modules it imports, transitively', () => {
  const root = makeWorkspace();
  const scope = join(root, 'node_modules', '@distillery');
  const paths = pluginCodePaths(join(scope, 'plugin-a', 'dist', 'src', 'plugin.js')).map((p) =>
    p.slice(p.indexOf('@distillery')),
  );
  assert.deepEqual(paths, [
    '@distillery/plugin-a/dist/src',
    '@distillery/runtime/dist/src/helper.js',
    '@distillery/runtime/dist/src/tfjs.js',
    '@distillery/runtime/dist/src/worker.js',
  ]);
});

test('editing a runtime module changes the code version of the plugins importing it, and only theirs', async () => {
  const root = makeWorkspace();
  const runtimeSrc = join(root, 'node_modules', '@distillery', 'runtime', 'dist', 'src');
  const before = await codeHashes(root);
  assert.notEqual(before['uses-tfjs'], before['uses-rng']);

  writeFileSync(join(runtimeSrc, 'helper.js'), 'export const helper = 2; // edited\n');
  const afterHelper = await codeHashes(root);
  assert.notEqual(afterHelper['uses-tfjs'], before['uses-tfjs'], 'a module tfjs.js imports changed');
  assert.equal(afterHelper['uses-rng'], before['uses-rng'], 'uses-rng does not import helper.js');

  writeFileSync(join(runtimeSrc, 'rng.js'), 'export const rng = 2; // edited\n');
  const afterRng = await codeHashes(root);
  assert.notEqual(afterRng['uses-rng'], afterHelper['uses-rng']);
  assert.equal(afterRng['uses-tfjs'], afterHelper['uses-tfjs'], 'uses-tfjs does not import rng.js');

  writeFileSync(join(runtimeSrc, 'unused.js'), 'export const unused = 2;\n');
  assert.deepEqual(await codeHashes(root), afterRng, 'a module nobody imports is in no code version');
});

test('this workspace: eft-data runs the runtime RNG but no tfjs or onnx code; student-train runs tfjs', async () => {
  const root = workspaceRoot();
  const registry = await new ModuleRegistry(root).init();
  const runtimeFiles = async (name: string): Promise<string[]> => {
    const plugin = await registry.resolve(name, root);
    assert.ok(plugin, `plugin ${name}`);
    return plugin.codePaths
      .filter((p) => p.includes(`${join('tools', 'runtime')}`))
      .map((p) => p.slice(p.indexOf('dist')));
  };
  const eft = await runtimeFiles('eft-generate');
  assert.ok(eft.includes(join('dist', 'src', 'rng.js')), `eft-generate imports the runtime RNG: ${eft.join(', ')}`);
  assert.ok(
    !eft.some((p) => p.includes('tfjs') || p.includes('onnx')),
    `eft-generate runs no tfjs/onnx code: ${eft.join(', ')}`,
  );
  const student = await runtimeFiles('student-train');
  assert.ok(
    student.some((p) => p.includes('tfjs')),
    'student-train runs the runtime tfjs helpers',
  );
});
