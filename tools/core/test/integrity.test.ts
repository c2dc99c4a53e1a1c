/**
 * Store integrity: an edit of out/ cannot change what the cache serves; a damaged store object is
 * never served as cached (the stage reruns and the bytes are restored); --force repairs the store;
 * `distill verify` finds and quarantines bad objects.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../src/cache/hash.js';
import { LocalStore, linkTypesFromEnv } from '../src/cache/store.js';
import { Workspace } from '../src/runner/workspace.js';
import {
  concatStage,
  executed,
  makeProject,
  output,
  pipelineYaml,
  runApi,
  runCli,
  statuses,
  writeText,
} from './helpers.js';

function project(): { root: string; file: string; journal: string } {
  const root = makeProject('distill-integrity-');
  const journal = join(root, 'journal.txt');
  const file = writeText(
    root,
    'p.yaml',
    pipelineYaml([
      concatStage('a', { text: 'A', journal, bytes: 4096 }),
      concatStage('b', { text: 'B', journal }, { inputs: { x: 'a' } }),
    ]),
  );
  return { root, file, journal };
}

/** The store object holding out/p/<stage>/<name>. */
function objectOf(root: string, stage: string, name: string): string {
  const hash = sha256(readFileSync(join(root, 'out', 'p', stage, name)));
  return new Workspace(root).store.objectPath(hash);
}

/** Overwrites a read-only file in place (as root or after chmod can), keeping its inode. */
function scribble(path: string, text: string): void {
  chmodSync(path, 0o644);
  writeFileSync(path, text, { flag: 'r+' });
}

test('materialisation: reflink, else copy by default; DISTILL_CACHE_TYPE chooses, and rejects unknown methods', () => {
  assert.deepEqual(linkTypesFromEnv(undefined), ['reflink', 'copy']);
  assert.deepEqual(linkTypesFromEnv('hardlink,copy'), ['hardlink', 'copy']);
  assert.throws(() => linkTypesFromEnv('symlink'), /DISTILL_CACHE_TYPE=symlink/);
});

test('an in-place edit of an out/ file (default copy/reflink) leaves the store intact; the next run restores out/', async () => {
  const P = project();
  assert.equal((await runApi(P.root, P.file)).status, 'ok');
  const blob = join(P.root, 'out', 'p', 'a', 'blob.bin');
  const original = readFileSync(blob);
  const object = objectOf(P.root, 'a', 'blob.bin');
  assert.notEqual(statSync(blob).ino, statSync(object).ino, 'out/ is not a hardlink into the store');
  scribble(blob, 'garbage');
  assert.deepEqual(readFileSync(object), original, 'the store object is untouched');
  const before = executed(P.journal).length;
  const record = await runApi(P.root, P.file);
  assert.deepEqual(statuses(record), { a: 'cached', b: 'cached' });
  assert.equal(executed(P.journal).length, before);
  assert.deepEqual(readFileSync(blob), original, 'out/ restored from the store');
});

test('hardlinks (opt-in): an in-place edit reaches the store object; it is detected, quarantined, and the stage reruns', async () => {
  const P = project();
  const hardlinks = { DISTILL_CACHE_TYPE: 'hardlink,copy' };
  const first = await runCli(['run', 'p.yaml', '--quiet'], { cwd: P.root, env: hardlinks });
  assert.equal(first.code, 0, first.stderr);
  const blob = join(P.root, 'out', 'p', 'a', 'blob.bin');
  const original = readFileSync(blob);
  const object = objectOf(P.root, 'a', 'blob.bin');
  assert.equal(statSync(blob).ino, statSync(object).ino, 'hardlinked');
  // Same size, new bytes: only the hash-cache identity (mtime) and a re-hash can tell.
  const damaged = Buffer.from(original);
  damaged[100] = (damaged[100] ?? 0) ^ 0xff;
  chmodSync(blob, 0o644);
  writeFileSync(blob, damaged, { flag: 'r+' });
  const before = executed(P.journal).length;
  const second = await runCli(['run', 'p.yaml', '--json'], { cwd: P.root, env: hardlinks });
  assert.equal(second.code, 0, second.stderr);
  const doc = JSON.parse(second.stdout) as { stages: Array<{ id: string; status: string }> };
  assert.equal(doc.stages.find((s) => s.id === 'a')?.status, 'ran', 'a corrupt object is never reported as cached');
  assert.match(second.stderr, /store: a: object [0-9a-f]{12} \(blob\.bin\) content changed/);
  assert.deepEqual(executed(P.journal).slice(before), ['a']);
  assert.deepEqual(readFileSync(blob), original);
  assert.deepEqual(readFileSync(object), original, 'the store holds the right bytes again');
  assert.equal(readdirSync(join(P.root, '.distill', 'store', 'quarantine')).length, 1);
});

test('a truncated or deleted store object: the stage reruns (never "cached") and the object is restored', async () => {
  const P = project();
  await runApi(P.root, P.file);
  const object = objectOf(P.root, 'a', 'blob.bin');
  const original = readFileSync(object);
  chmodSync(object, 0o644);
  truncateSync(object, 10);
  let record = await runApi(P.root, P.file);
  assert.equal(statuses(record).a, 'ran');
  assert.match(record.stages[0]?.reason ?? '', /failed verification/);
  assert.deepEqual(readFileSync(object), original);
  unlinkSync(object);
  record = await runApi(P.root, P.file);
  assert.equal(statuses(record).a, 'ran');
  assert.deepEqual(readFileSync(object), original);
  assert.equal(statuses(record).b, 'cached', 'identical output: downstream stays cached');
});

test('--force replaces a corrupt object with the fresh bytes', async () => {
  const P = project();
  await runApi(P.root, P.file);
  const object = objectOf(P.root, 'a', 'blob.bin');
  const original = readFileSync(object);
  const ws = new Workspace(P.root);
  chmodSync(object, 0o644);
  writeFileSync(object, Buffer.alloc(original.length, 7), { flag: 'r+' });
  utimesSync(object, new Date(), new Date(Date.now() + 5000));
  const record = await runApi(P.root, P.file, { force: ['a'] });
  assert.equal(statuses(record).a, 'ran');
  assert.deepEqual(readFileSync(ws.store.objectPath(sha256(original))), original);
  assert.deepEqual(readFileSync(join(P.root, 'out', 'p', 'a', 'blob.bin')), original);
});

test('distill verify reports a corrupt object and a broken entry (exit 1); --quarantine moves it; a run then repairs', async () => {
  const P = project();
  await runApi(P.root, P.file);
  const clean = await runCli(['verify', '--root', P.root, '--json'], { cwd: P.root });
  assert.equal(clean.code, 0, clean.stdout + clean.stderr);
  assert.equal((JSON.parse(clean.stdout) as { corrupt: unknown[] }).corrupt.length, 0);
  const object = objectOf(P.root, 'a', 'out.txt');
  chmodSync(object, 0o644);
  writeFileSync(object, 'Z', { flag: 'r+' });
  const found = await runCli(['verify', '--root', P.root], { cwd: P.root });
  assert.equal(found.code, 1);
  assert.match(found.stdout, /corrupt object [0-9a-f]{64}/);
  assert.match(found.stdout, /cache entry [0-9a-f]{12} \(a\): out\.txt: object [0-9a-f]{12} is corrupt/);
  assert.ok(existsSync(object), 'verify alone moves nothing');
  const moved = await runCli(['verify', '--root', P.root, '--quarantine'], { cwd: P.root });
  assert.equal(moved.code, 1);
  assert.ok(!existsSync(object));
  const record = await runApi(P.root, P.file);
  assert.equal(statuses(record).a, 'ran');
  assert.equal(output(P.root, 'p', 'a'), 'A');
  assert.equal((await runCli(['verify', '--root', P.root], { cwd: P.root })).code, 0);
});

test('a store without a hash cache still checks sizes', async () => {
  const dir = makeProject('distill-store-');
  const store = new LocalStore(join(dir, '.distill'));
  writeText(dir, 'o/x.txt', 'hello');
  const { hash, manifest } = await store.ingest(join(dir, 'o'), new (await import('../src/cache/hash.js')).HashCache());
  await store.writeEntry({
    key: 'k'.repeat(64),
    stage: 's',
    plugin: 'p',
    tree: hash,
    parts: { plugin: 'p', version: '1', code: '', params: {}, paths: {}, inputs: {}, after: [] },
    metrics: {},
    durationMs: 0,
    createdAt: '',
  });
  assert.ok(store.readEntry('k'.repeat(64)));
  const object = store.objectPath(manifest.files[0]?.hash ?? '');
  chmodSync(object, 0o644);
  writeFileSync(object, 'hello!');
  assert.equal(store.readEntry('k'.repeat(64)), undefined);
  assert.match(store.takeProblems().join('\n'), /has 6 bytes, expected 5/);
});
