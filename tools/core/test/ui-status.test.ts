/** The UI's stage status: running while the runner lives, and "killed" once its process is gone. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { UiApp } from '../src/ui/server.js';
import { Workspace } from '../src/runner/workspace.js';
import {
  concatStage,
  load,
  MARKER,
  makeProject,
  pipelineYaml,
  readJournal,
  startCli,
  waitFor,
  writeText,
} from './helpers.js';

test('a run killed mid-stage shows as killed, its stage no longer running', async () => {
  const root = makeProject('distill-ui-status-');
  const journal = join(root, 'journal.txt');
  writeText(
    root,
    'pipelines/k.yaml',
    pipelineYaml([
      concatStage('a', { text: 'A', journal, waitFile: join(root, 'never') }, { plugin: MARKER }),
      concatStage('b', { text: 'B' }, { inputs: { x: 'a' } }),
    ]),
  );
  const app = new UiApp({ ws: new Workspace(root), load: (f) => load(f) });
  const before = await app.status('pipelines/k.yaml');
  assert.equal(before.runId, null);
  assert.deepEqual(
    before.stages.map((s) => s.status),
    ['never-run', 'never-run'],
  );

  const run = startCli(['run', join(root, 'pipelines', 'k.yaml'), '--quiet'], { cwd: root });
  await waitFor(
    () => readJournal(journal).some((l) => l.event === 'start' && l.stage === 'a'),
    30_000,
    'stage a to start',
  );
  const during = await app.status('pipelines/k.yaml');
  assert.equal(during.runStatus, 'running');
  assert.deepEqual(
    during.stages.map((s) => [s.id, s.status]),
    [
      ['a', 'running'],
      ['b', 'pending'],
    ],
  );

  process.kill(-(run.pid as number), 'SIGKILL');
  await run.result;
  const after = await app.status('pipelines/k.yaml');
  assert.equal(after.runStatus, 'killed');
  assert.deepEqual(
    after.stages.map((s) => [s.id, s.status]),
    [
      ['a', 'skipped'],
      ['b', 'skipped'],
    ],
  );
});
