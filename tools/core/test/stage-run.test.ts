/**
 * `distill stage run`: each stage in its own process and project directory, sharing only an S3 store
 * (s3rver on loopback); then the planning project's `distill run --store` finds everything cached.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { CONCAT } from './exec-helpers.js';
import { startS3, tempDir, type S3Fixture } from './remote-helpers.js';

const DISTILL = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'distill.js');

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in a child process without blocking this one (the S3 server lives here). */
function distill(args: string[], cwd: string): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DISTILL, ...args],
      { cwd, env: { ...process.env, DISTILL_STORE: '' } },
      (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

const PIPELINE = `
name: remote
stages:
  gen:
    plugin: ${CONCAT}
    foreach: [x, y]
    with: { text: "\${{ item }}" }
  shout:
    plugin: exec
    inputs: { parts: gen }
    with:
      command: 'for d in $(echo "$DISTILL_INPUT_PARTS" | tr ":" " "); do cat "$d/out.txt"; done | tr a-z A-Z > "$DISTILL_OUT/out.txt"'
      outputs: [out.txt]
  final:
    plugin: ${CONCAT}
    inputs: { s: shout, g: gen@x }
    with: { text: end }
`;

describe('distill stage run', () => {
  let s3: S3Fixture;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3?.close();
  });

  test('stages run one by one in separate processes and directories sharing only the store; a local run finds them all cached', async () => {
    const store = s3.url('stage-run');
    const planner = tempDir('planner');
    writeFileSync(join(planner, 'pipeline.yaml'), PIPELINE);
    const plan = await distill(['plan', join(planner, 'pipeline.yaml'), '--root', planner, '--json'], planner);
    assert.equal(plan.code, 0, plan.stderr);
    const planned = (JSON.parse(plan.stdout) as { stages: Array<{ id: string; status: string }> }).stages;
    assert.deepEqual(
      planned.map((s) => [s.id, s.status]),
      [
        ['gen@x', 'run'],
        ['gen@y', 'run'],
        ['shout', 'run'],
        ['final', 'run'],
      ],
    );

    const worker = (): string => {
      const dir = tempDir('worker');
      mkdirSync(join(dir, '.distill'));
      copyFileSync(join(planner, 'pipeline.yaml'), join(dir, 'pipeline.yaml'));
      return dir;
    };
    // Out of order: the upstream outputs are not in the store yet.
    const early = worker();
    const refused = await distill(
      ['stage', 'run', join(early, 'pipeline.yaml'), 'final', '--store', store, '--json'],
      early,
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /stage (gen@x|shout) has no output in the store \(s3:\/\/distill-test\/stage-run/);

    for (const id of ['gen@x', 'gen@y', 'shout', 'final']) {
      const dir = worker();
      const result = await distill(
        ['stage', 'run', join(dir, 'pipeline.yaml'), id, '--store', store, '--json', '--quiet'],
        dir,
      );
      assert.equal(result.code, 0, `${id}: ${result.stderr}`);
      const report = JSON.parse(result.stdout) as { stages: Array<{ id: string; status: string }> };
      assert.deepEqual(
        report.stages.map((s) => [s.id, s.status]),
        [[id, 'ran']],
        `${id} ran exactly once, in its own directory`,
      );
      if (id === 'final')
        assert.equal(readFileSync(join(dir, 'out', 'remote', 'final', 'out.txt'), 'utf8'), 'x+XY+end');
    }
    // Running a published stage again elsewhere is a cache hit from the store.
    const again = worker();
    const hit = await distill(
      ['stage', 'run', join(again, 'pipeline.yaml'), 'shout', '--store', store, '--json', '--quiet'],
      again,
    );
    assert.equal(hit.code, 0, hit.stderr);
    assert.deepEqual(
      (JSON.parse(hit.stdout) as { stages: Array<{ status: string }> }).stages.map((s) => s.status),
      ['cached'],
    );

    const local = await distill(
      ['run', join(planner, 'pipeline.yaml'), '--root', planner, '--store', store, '--json', '--quiet'],
      planner,
    );
    assert.equal(local.code, 0, local.stderr);
    const run = JSON.parse(local.stdout) as { stages: Array<{ id: string; status: string }> };
    assert.deepEqual(
      run.stages.map((s) => s.status),
      ['cached', 'cached', 'cached', 'cached'],
      '0 ran',
    );
    assert.equal(readFileSync(join(planner, 'out', 'remote', 'final', 'out.txt'), 'utf8'), 'x+XY+end');
    assert.equal(readFileSync(join(planner, 'out', 'remote', 'shout', 'out.txt'), 'utf8'), 'XY');
    const after = await distill(['plan', join(planner, 'pipeline.yaml'), '--root', planner, '--json'], planner);
    assert.deepEqual(
      (JSON.parse(after.stdout) as { stages: Array<{ status: string }> }).stages.map((s) => s.status),
      ['cached', 'cached', 'cached', 'cached'],
    );
  });
});
