/** The exec plugin: params/inputs hand-over, cache rules, undeclared and missing outputs, GPU assignment. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CONCAT, runYaml } from './exec-helpers.js';
import { tempDir } from './remote-helpers.js';

const out = (dir: string, stage: string, file: string): string =>
  readFileSync(join(dir, 'out', 'pipeline', stage, file), 'utf8');

describe('exec plugin', () => {
  test('inputs, params (env, file, args), argv commands and metrics reach the command', async () => {
    const dir = tempDir('exec');
    const yaml = `
stages:
  source:
    plugin: ${CONCAT}
    with: { text: hello }
  shell:
    plugin: exec
    inputs: { src: source }
    with:
      command: 'printf "%s|%s|%s|" "$DISTILL_PARAM_LR" "$DISTILL_PARAM_LAYERS" "$(cat "$DISTILL_INPUT_SRC/out.txt")" > "$DISTILL_OUT/env.txt"; cat "$DISTILL_PARAMS_FILE" > "$DISTILL_OUT/params.json"; printf "%s\\n" "$@" > "$DISTILL_OUT/none.txt"; echo "{\\"score\\": 0.25}" > "$DISTILL_METRICS_FILE"; echo "::distill-metric loss 0.5 3"'
      outputs: [env.txt, params.json, none.txt]
      params: { lr: 0.001, layers: [4, 8] }
  argv:
    plugin: exec
    with:
      command: [/bin/sh, -c, 'printf "%s\\n" "$0" "$@" > "$DISTILL_OUT/args.txt"', first]
      outputs: [args.txt]
      params: { lr: 0.5, name: "two words" }
      paramsAs: [args]
`;
    const { record, stage } = await runYaml(dir, yaml);
    assert.equal(record.status, 'ok', JSON.stringify(record.stages.map((s) => [s.id, s.status, s.error])));
    assert.equal(out(dir, 'shell', 'env.txt'), '0.001|[4,8]|hello|');
    assert.deepEqual(JSON.parse(out(dir, 'shell', 'params.json')), { lr: 0.001, layers: [4, 8] });
    assert.deepEqual(stage('shell').metrics, { score: 0.25, loss: 0.5 });
    assert.deepEqual(stage('shell').series, { loss: [[3, 0.5]] });
    assert.equal(out(dir, 'argv', 'args.txt'), 'first\n--lr=0.5\n--name=two words\n');
  });

  test('cached like built-in stages: command, params and deps content are in the key; downstream built-ins follow', async () => {
    const dir = tempDir('exec-cache');
    mkdirSync(join(dir, 'scripts'));
    writeFileSync(join(dir, 'scripts', 'make.sh'), 'printf "v1:%s" "$DISTILL_PARAM_N" > "$DISTILL_OUT/out.txt"\n');
    const yaml = (command: string, n: number): string => `
stages:
  make:
    plugin: exec
    with:
      command: ${command}
      deps: [scripts/make.sh]
      outputs: [out.txt]
      params: { n: ${n} }
  use:
    plugin: ${CONCAT}
    inputs: { made: make }
    with: { text: tail }
`;
    const first = await runYaml(dir, yaml('sh scripts/make.sh', 1));
    assert.equal(first.record.status, 'ok', JSON.stringify(first.record.stages.map((s) => s.error)));
    assert.equal(first.stage('make').status, 'ran');
    assert.equal(out(dir, 'make', 'out.txt'), 'v1:1');
    assert.equal(out(dir, 'use', 'out.txt'), 'v1:1+tail');
    const again = await runYaml(dir, yaml('sh scripts/make.sh', 1));
    assert.equal(again.stage('make').status, 'cached', 'same command, params and deps: cached');
    assert.equal(again.stage('use').status, 'cached');
    const param = await runYaml(dir, yaml('sh scripts/make.sh', 2));
    assert.equal(param.stage('make').status, 'ran', 'param change reruns');
    assert.equal(out(dir, 'make', 'out.txt'), 'v1:2');
    writeFileSync(join(dir, 'scripts', 'make.sh'), 'printf "v2:%s" "$DISTILL_PARAM_N" > "$DISTILL_OUT/out.txt"\n');
    const dep = await runYaml(dir, yaml('sh scripts/make.sh', 2));
    assert.equal(dep.stage('make').status, 'ran', 'dep content change reruns');
    assert.match(dep.stage('make').reason ?? '', /content of path param deps\.0 changed/);
    assert.equal(out(dir, 'make', 'out.txt'), 'v2:2');
    assert.equal(dep.stage('use').status, 'ran', 'the built-in stage downstream reruns on new exec output');
    assert.equal(out(dir, 'use', 'out.txt'), 'v2:2+tail');
    const command = await runYaml(dir, yaml('sh ./scripts/make.sh', 2));
    assert.equal(command.stage('make').status, 'ran', 'command line change reruns');
    assert.match(command.stage('make').reason ?? '', /param command/);
    assert.equal(command.stage('use').status, 'cached', 'same exec output: the downstream stage stays cached');
    const back = await runYaml(dir, yaml('sh scripts/make.sh', 1));
    assert.equal(back.stage('make').status, 'ran', 'old params with the new script: a new key');
    assert.equal(out(dir, 'make', 'out.txt'), 'v2:1');
  });

  test('undeclared files in $DISTILL_OUT fail the stage, naming them, and nothing is cached', async () => {
    const dir = tempDir('exec-undeclared');
    const { record, stage, ws } = await runYaml(
      dir,
      `
stages:
  bad:
    plugin: exec
    with:
      command: 'echo a > "$DISTILL_OUT/model.bin"; mkdir -p "$DISTILL_OUT/extra"; echo b > "$DISTILL_OUT/extra/debug.log"'
      outputs: [model.bin]
`,
    );
    assert.equal(record.status, 'failed');
    assert.match(
      stage('bad').error ?? '',
      /wrote 1 file\(s\) in \$DISTILL_OUT that are not declared outputs: extra\/debug\.log/,
    );
    assert.equal(ws.store.readEntry(stage('bad').key as string), undefined);
    assert.equal(existsSync(join(dir, 'out', 'pipeline', 'bad')), false);
  });

  test('writes outside the declared outputs (working directory, inputs) fail the stage', async () => {
    const dir = tempDir('exec-stray');
    writeFileSync(join(dir, 'keep.txt'), 'original');
    const { record, stage } = await runYaml(
      dir,
      `
stages:
  src:
    plugin: ${CONCAT}
    with: { text: x }
  stray:
    plugin: exec
    with:
      command: 'echo oops > model.bin; echo ok > "$DISTILL_OUT/model.bin"'
      outputs: [model.bin]
  clobber:
    plugin: exec
    inputs: { src: src }
    with:
      command: 'echo changed > keep.txt; echo ok > "$DISTILL_OUT/a"'
      outputs: [a]
  pycache:
    plugin: exec
    with:
      command: 'mkdir -p __pycache__ && echo c > __pycache__/m.pyc && echo ok > "$DISTILL_OUT/a"'
      outputs: [a]
`,
    );
    assert.equal(record.status, 'failed');
    assert.match(
      stage('stray').error ?? '',
      new RegExp(`wrote outside its declared outputs: ${join(dir, 'model.bin')} \\(created\\)`),
    );
    assert.match(stage('clobber').error ?? '', new RegExp(`${join(dir, 'keep.txt')} \\(modified\\)`));
    assert.equal(stage('pycache').status, 'ran', 'tool caches such as __pycache__ are not stray writes');
  });

  test('a missing declared output, an empty declared directory and a failing command fail the stage', async () => {
    const dir = tempDir('exec-missing');
    const { record, stage } = await runYaml(
      dir,
      `
stages:
  missing:
    plugin: exec
    with:
      command: 'echo a > "$DISTILL_OUT/a.txt"; mkdir "$DISTILL_OUT/ckpt"'
      outputs: [a.txt, model.pt, ckpt/]
  exits:
    plugin: exec
    with:
      command: 'echo boom >&2; exit 3'
`,
    );
    assert.equal(record.status, 'failed');
    const error = stage('missing').error ?? '';
    assert.match(error, /did not produce declared output "model\.pt" \(expected at \$DISTILL_OUT\/model\.pt\)/);
    assert.match(error, /declared output "ckpt\/" is an empty directory/);
    assert.doesNotMatch(error, /a\.txt/);
    assert.match(stage('exits').error ?? '', /the command exited with code 3/);
    assert.match(stage('exits').error ?? '', /boom/, 'stderr tail is shown');
  });

  test('GPUs: each stage sees only its assigned GPUs through CUDA_VISIBLE_DEVICES, never shared while running', async () => {
    const dir = tempDir('exec-gpu');
    const gpuStage = (name: string): string => `
  ${name}:
    plugin: exec
    resources: { gpus: 1 }
    with:
      command: 'a=$(date +%s%N); sleep 0.4; printf "%s %s %s" "$CUDA_VISIBLE_DEVICES" "$a" "$(date +%s%N)" > "$DISTILL_OUT/gpu.txt"'
      outputs: [gpu.txt]
      checkWrites: false  # concurrent exec stages in one working directory: see the exec plugin
      params: { name: ${name} }`;
    const { record, stage } = await runYaml(
      dir,
      `
stages:${gpuStage('g1')}${gpuStage('g2')}${gpuStage('g3')}
  cpu:
    plugin: exec
    with:
      command: 'printf "[%s]" "$CUDA_VISIBLE_DEVICES" > "$DISTILL_OUT/gpu.txt"'
      outputs: [gpu.txt]
  pair:
    plugin: exec
    needs: [g1, g2, g3]
    resources: { gpus: 2 }
    with:
      command: 'printf "%s" "$CUDA_VISIBLE_DEVICES" > "$DISTILL_OUT/gpu.txt"'
      outputs: [gpu.txt]
`,
      { machine: { cpus: 4, gpus: [0, 1], memoryMiB: 16_384 } },
    );
    assert.equal(record.status, 'ok', JSON.stringify(record.stages.map((s) => s.error)));
    const runs = ['g1', 'g2', 'g3'].map((id) => {
      const [gpu, start, end] = out(dir, id, 'gpu.txt').split(' ');
      assert.deepEqual(stage(id).devices?.gpus, [Number(gpu)]);
      return { id, gpu: gpu as string, start: Number(start), end: Number(end) };
    });
    for (const r of runs) assert.ok(['0', '1'].includes(r.gpu), `${r.id} got ${r.gpu}`);
    for (const a of runs)
      for (const b of runs) {
        if (a.id < b.id && a.start < b.end && b.start < a.end)
          assert.notEqual(a.gpu, b.gpu, `${a.id} and ${b.id} ran at once on GPU ${a.gpu}`);
      }
    assert.ok(
      runs.some((a) => runs.some((b) => a.id < b.id && a.start < b.end && b.start < a.end)),
      'two GPU stages overlapped',
    );
    assert.equal(out(dir, 'cpu', 'gpu.txt'), '[]');
    assert.equal(out(dir, 'pair', 'gpu.txt'), '0,1');
    assert.equal(readdirSync(join(dir, 'out', 'pipeline')).length, 5);
  });

  test('secretEnv: the command gets the value; it never enters the key, the cache entry, the run record or the log', async () => {
    const dir = tempDir('exec-secret');
    const secret = `s3cr3t-${process.pid}-value`;
    const yaml = [
      'stages:',
      '  use:',
      '    plugin: exec',
      '    with:',
      `      command: 'echo "token is $DISTILL_TEST_SECRET"; echo "err $DISTILL_TEST_SECRET" >&2; printf %s "$DISTILL_TEST_SECRET" | wc -c > "$DISTILL_OUT/n.txt"'`,
      '      secretEnv: [DISTILL_TEST_SECRET]',
      '      outputs: [n.txt]',
      '',
    ].join('\n');
    process.env.DISTILL_TEST_SECRET = secret;
    try {
      const first = await runYaml(dir, yaml);
      assert.equal(first.stage('use').status, 'ran', first.stage('use').error);
      assert.equal(out(dir, 'use', 'n.txt').trim(), String(secret.length), 'the command saw the value');
      const everything = (d: string): string =>
        readdirSync(d, { recursive: true, withFileTypes: true })
          .filter((e) => e.isFile())
          .map((e) => readFileSync(join(e.parentPath, e.name), 'utf8'))
          .join('\n');
      const state = everything(join(dir, '.distill'));
      assert.ok(!state.includes(secret), 'no trace of the value in .distill (entries, records, logs)');
      assert.match(readFileSync(first.stage('use').log ?? '', 'utf8'), /token is \*\*\*\nerr \*\*\*/);
      // Another value: same key, still cached.
      process.env.DISTILL_TEST_SECRET = `${secret}-rotated`;
      const second = await runYaml(dir, yaml);
      assert.equal(second.stage('use').status, 'cached');
      delete process.env.DISTILL_TEST_SECRET;
      const missing = await runYaml(
        dir,
        yaml.replace('DISTILL_TEST_SECRET]', 'DISTILL_TEST_SECRET, DISTILL_TEST_ABSENT]'),
      );
      assert.equal(missing.stage('use').status, 'failed');
      assert.match(
        missing.stage('use').error ?? '',
        /secretEnv DISTILL_TEST_SECRET, DISTILL_TEST_ABSENT are not set in distill's environment/,
      );
    } finally {
      delete process.env.DISTILL_TEST_SECRET;
    }
  });

  test('bad params are refused when the pipeline loads', async () => {
    const dir = tempDir('exec-bad');
    await assert.rejects(
      runYaml(
        dir,
        `stages:\n  x:\n    plugin: exec\n    with:\n      command: 'true'\n      outputs: [/abs]\n  y:\n    plugin: exec\n    with:\n      command: 'true'\n      deps: [missing.txt]\n`,
      ),
      (error: Error) => {
        assert.match(error.message, /outputs/);
        assert.match(error.message, /missing\.txt/);
        return true;
      },
    );
  });
});

test('pipelines/exec-example.yaml loads: exec stages mixed with built-in plugins, scripts in the key', async () => {
  const { loadPipeline } = await import('../src/pipeline/load.js');
  const { ModuleRegistry, workspaceRoot } = await import('../src/plugin/registry.js');
  const file = join(workspaceRoot(), 'pipelines', 'exec-example.yaml');
  const pipeline = await loadPipeline(file, { registry: await new ModuleRegistry(workspaceRoot()).init() });
  assert.deepEqual(
    pipeline.stages.map((s) => `${s.id}:${s.plugin.name}`),
    ['data:dataset', 'data-summary:exec', 'student:student-train', 'report:exec'],
  );
  assert.deepEqual(
    pipeline.byId.get('data-summary')?.pathParams.map((p) => p.absolute),
    [join(workspaceRoot(), 'pipelines', 'scripts', 'summarise.mjs')],
  );
});
