/**
 * The incremental cache: hit, miss and rerun rules judged by what the plugins actually executed
 * (a journal each execution appends to), the run-cache, path params, --force/--from, restoring
 * deleted outputs, the hash cache (no re-read of unchanged files), keys and the store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync, chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HashCache, sha256 } from '../src/cache/hash.js';
import { cacheKey, explainKeyChange, type KeyParts } from '../src/cache/key.js';
import { LocalStore } from '../src/cache/store.js';
import { planPipeline } from '../src/runner/plan.js';
import { Workspace } from '../src/runner/workspace.js';
import {
  CONCAT,
  cacheEntryCount,
  concatStage,
  executed,
  listTree,
  load,
  makeProject,
  output,
  pipelineYaml,
  runApi,
  statuses,
  writeText,
} from './helpers.js';

/** a -> b -> c, and d (independent, reads a path param). Returns paths. */
function chainProject(): { root: string; file: string; journal: string } {
  const root = makeProject('distill-cache-');
  const journal = join(root, 'journal.txt');
  writeText(root, 'input.txt', 'file-v1');
  const file = writeText(
    root,
    'p.yaml',
    pipelineYaml([
      concatStage('a', { text: 'A', journal }),
      concatStage('b', { text: 'B', journal }, { inputs: { x: 'a' } }),
      concatStage('c', { text: 'C', journal }, { inputs: { x: 'b' } }),
      concatStage('d', { text: 'D', journal, file: 'input.txt' }),
    ]),
  );
  return { root, file, journal };
}

const P = chainProject();

test('first run executes every stage once; outputs are materialised under out/<pipeline>/<id>', async () => {
  const record = await runApi(P.root, P.file);
  assert.deepEqual(statuses(record), { a: 'ran', b: 'ran', c: 'ran', d: 'ran' });
  assert.deepEqual(executed(P.journal).sort(), ['a', 'b', 'c', 'd']);
  assert.equal(output(P.root, 'p', 'a'), 'A');
  assert.equal(output(P.root, 'p', 'c'), 'A+B+C');
  assert.equal(output(P.root, 'p', 'd'), 'D+file-v1');
  assert.equal(cacheEntryCount(P.root), 4);
  for (const s of record.stages) assert.match(s.key ?? '', /^[0-9a-f]{64}$/);
  // Published outputs are read-only (reflinks or copies of read-only store objects).
  assert.equal(statSync(join(P.root, 'out', 'p', 'c', 'out.txt')).mode & 0o222, 0);
});

test('nothing changed: a rerun executes no stage', async () => {
  const before = executed(P.journal).length;
  const record = await runApi(P.root, P.file);
  assert.deepEqual(statuses(record), { a: 'cached', b: 'cached', c: 'cached', d: 'cached' });
  assert.equal(executed(P.journal).length, before, 'no plugin ran');
  assert.equal(output(P.root, 'p', 'c'), 'A+B+C');
});

test('one parameter changed: that stage and its dependents rerun, nothing else', async () => {
  const before = executed(P.journal).length;
  const set = ['b.text=B2'];
  const plan = await planPipeline(new Workspace(P.root), await load(P.file, set));
  // Topological order with ties in file order: a and d have no upstream.
  assert.deepEqual(
    plan.map((p) => [p.id, p.state, p.reason]),
    [
      ['a', 'cached', 'up to date'],
      ['d', 'cached', 'up to date'],
      ['b', 'run', 'param text: "B" -> "B2"'],
      ['c', 'run', 'upstream will run: b'],
    ],
  );
  const record = await runApi(P.root, P.file, { set });
  assert.deepEqual(statuses(record), { a: 'cached', b: 'ran', c: 'ran', d: 'cached' });
  assert.deepEqual(executed(P.journal).slice(before), ['b', 'c']);
  assert.equal(output(P.root, 'p', 'c'), 'A+B2+C');
  // c reran because its input changed, and the record says so.
  assert.match(record.stages.find((s) => s.id === 'c')?.reason ?? '', /^input x changed/);
});

test('a parameter switched back: earlier outputs restored without recomputation (run-cache)', async () => {
  const before = executed(P.journal).length;
  const record = await runApi(P.root, P.file);
  assert.deepEqual(statuses(record), { a: 'cached', b: 'cached', c: 'cached', d: 'cached' });
  assert.equal(executed(P.journal).length, before);
  assert.equal(output(P.root, 'p', 'c'), 'A+B+C');
  assert.equal(output(P.root, 'p', 'b'), 'A+B');
});

test('an upstream that reruns but produces identical output leaves its dependents cached', async () => {
  const before = executed(P.journal).length;
  // sleepMs changes a's key but not its output.
  const record = await runApi(P.root, P.file, { set: ['a.sleepMs=5'] });
  assert.deepEqual(statuses(record), { a: 'ran', b: 'cached', c: 'cached', d: 'cached' });
  assert.deepEqual(executed(P.journal).slice(before), ['a']);
});

test('path param: changed file content reruns the stage; same content with a new mtime does not', async () => {
  const before = executed(P.journal).length;
  writeText(P.root, 'input.txt', 'file-v2');
  const r1 = await runApi(P.root, P.file);
  assert.deepEqual(statuses(r1), { a: 'cached', b: 'cached', c: 'cached', d: 'ran' });
  assert.match(r1.stages.find((s) => s.id === 'd')?.reason ?? '', /content of path param file changed/);
  assert.equal(output(P.root, 'p', 'd'), 'D+file-v2');
  // Rewrite identical content one second later: re-hashed (stat changed) but same key.
  writeText(P.root, 'input.txt', 'file-v2');
  const t = Date.now() / 1000 + 1;
  utimesSync(join(P.root, 'input.txt'), t, t);
  const r2 = await runApi(P.root, P.file);
  assert.deepEqual(statuses(r2), { a: 'cached', b: 'cached', c: 'cached', d: 'cached' });
  assert.deepEqual(executed(P.journal).slice(before), ['d']);
});

test('--force runs only the named stage; --from runs it and everything downstream', async () => {
  let before = executed(P.journal).length;
  const forced = await runApi(P.root, P.file, { force: ['b'] });
  // b reran and produced the same output, so c stays cached.
  assert.deepEqual(statuses(forced), { a: 'cached', b: 'ran', c: 'cached', d: 'cached' });
  assert.equal(forced.stages.find((s) => s.id === 'b')?.reason, 'forced');
  assert.deepEqual(executed(P.journal).slice(before), ['b']);
  before = executed(P.journal).length;
  const from = await runApi(P.root, P.file, { from: 'b' });
  assert.deepEqual(statuses(from), { a: 'cached', b: 'ran', c: 'ran', d: 'cached' });
  assert.deepEqual(executed(P.journal).slice(before), ['b', 'c']);
});

test('outputs deleted or replaced in out/ are restored from the store without running', async () => {
  const before = executed(P.journal).length;
  rmSync(join(P.root, 'out', 'p', 'b'), { recursive: true, force: true });
  // Replace (not edit: it is read-only) c's output with other content.
  const cOut = join(P.root, 'out', 'p', 'c', 'out.txt');
  unlinkSync(cOut);
  writeFileSync(cOut, 'tampered');
  writeFileSync(join(P.root, 'out', 'p', 'a', 'extra.txt'), 'stray file');
  const record = await runApi(P.root, P.file);
  assert.deepEqual(statuses(record), { a: 'cached', b: 'cached', c: 'cached', d: 'cached' });
  assert.equal(executed(P.journal).length, before);
  assert.equal(output(P.root, 'p', 'b'), 'A+B');
  assert.equal(output(P.root, 'p', 'c'), 'A+B+C');
  assert.deepEqual(listTree(join(P.root, 'out', 'p', 'a')), ['out.txt']);
});

test('a cache entry whose store object is gone is not trusted: the stage reruns', async () => {
  const ws = new Workspace(P.root);
  const plan = await planPipeline(ws, await load(P.file));
  const b = plan.find((p) => p.id === 'b');
  const tree = ws.store.readTree(b?.tree ?? '');
  assert.ok(tree && tree.files.length === 1);
  const object = ws.store.objectPath(tree.files[0]?.hash ?? '');
  chmodSync(object, 0o644);
  rmSync(object);
  // Also make out/p/b not match so that nothing could be served from it.
  rmSync(join(P.root, 'out', 'p', 'b'), { recursive: true, force: true });
  const before = executed(P.journal).length;
  const record = await runApi(P.root, P.file);
  assert.deepEqual(statuses(record), { a: 'cached', b: 'ran', c: 'cached', d: 'cached' });
  assert.deepEqual(executed(P.journal).slice(before), ['b']);
  assert.equal(output(P.root, 'p', 'b'), 'A+B');
  assert.equal(readFileSync(object, 'utf8'), 'A+B', 'the object is back in the store');
});

test('HashCache: unchanged files are not re-read; a changed mtime, size or inode triggers a re-hash', async () => {
  const root = makeProject('distill-hash-');
  const file = writeText(root, 'big.bin', 'aaaa');
  // Whole seconds, so that restoring a time through utimes gives back the exact same mtimeMs.
  const T = 1_700_000_000;
  utimesSync(file, T, T);
  const cacheFile = join(root, 'hashes.json');
  const cache = new HashCache(cacheFile);
  const h1 = await cache.hashFile(file);
  assert.equal(h1, sha256('aaaa'));
  assert.equal(cache.lookup(file, statSync(file)), h1);
  // Same size, same mtime, same inode, different bytes: the cache answers from stat alone, which
  // proves the file is not re-read (a re-read would see "bbbb").
  writeFileSync(file, 'bbbb');
  utimesSync(file, T, T);
  assert.equal(await cache.hashFile(file), h1);
  // The cache survives a save and a reload.
  cache.save();
  const reloaded = new HashCache(cacheFile);
  assert.equal(reloaded.lookup(file, statSync(file)), h1);
  // A new mtime: re-hashed.
  utimesSync(file, T, T + 5);
  assert.equal(reloaded.lookup(file, statSync(file)), undefined);
  assert.equal(await reloaded.hashFile(file), sha256('bbbb'));
  // A new size: re-hashed even with the old mtime.
  writeFileSync(file, 'ccccc');
  utimesSync(file, T, T);
  assert.equal(await reloaded.hashFile(file), sha256('ccccc'));
  // A new inode (file replaced by rename) with the same size and mtime: re-hashed.
  const other = writeText(root, 'other.bin', 'ddddd');
  utimesSync(other, T, T);
  renameSync(other, file);
  assert.equal(await reloaded.hashFile(file), sha256('ddddd'));
});

test('HashCache in runs: a big path-param file is hashed once, and again only when its mtime changes', async () => {
  const root = makeProject('distill-hash2-');
  const journal = join(root, 'journal.txt');
  const big = writeText(root, 'data/big.bin', 'x'.repeat(3_000_000));
  const file = writeText(
    root,
    'p.yaml',
    pipelineYaml([concatStage('a', { text: 'A', journal, file: 'data/big.bin' })]),
  );
  // Spy on HashCache.remember: it is called exactly when a file's content is (re-)read and hashed.
  const hashed: string[] = [];
  const original = HashCache.prototype.remember;
  HashCache.prototype.remember = function (this: HashCache, ...args: Parameters<HashCache['remember']>) {
    hashed.push(args[0]);
    return original.apply(this, args);
  };
  try {
    await runApi(root, file);
    assert.equal(hashed.filter((p) => p === big).length, 1, 'hashed on the first run');
    hashed.length = 0;
    const again = await runApi(root, file);
    assert.deepEqual(statuses(again), { a: 'cached' });
    assert.deepEqual(hashed, [], 'nothing re-read on a rerun with nothing changed');
    const t = Date.now() / 1000 + 10;
    utimesSync(big, t, t);
    const touched = await runApi(root, file);
    assert.deepEqual(statuses(touched), { a: 'cached' }, 'same content: same key');
    assert.deepEqual(hashed, [big], 'only the touched file is re-read');
    assert.deepEqual(executed(journal), ['a']);
  } finally {
    HashCache.prototype.remember = original;
  }
});

test('cache keys: canonical (key order does not matter), and every part counts', () => {
  const parts: KeyParts = {
    plugin: 'p',
    version: '1',
    code: 'c',
    params: { a: 1, b: { x: [1, 2] } },
    paths: {},
    inputs: { x: ['t1'] },
    after: [],
  };
  const reordered: KeyParts = {
    after: [],
    inputs: { x: ['t1'] },
    paths: {},
    params: { b: { x: [1, 2] }, a: 1 },
    code: 'c',
    version: '1',
    plugin: 'p',
  };
  assert.equal(cacheKey(parts), cacheKey(reordered));
  const variants: Array<Partial<KeyParts>> = [
    { plugin: 'q' },
    { version: '2' },
    { code: 'd' },
    { params: { a: 2, b: { x: [1, 2] } } },
    { params: { a: 1, b: { x: [2, 1] } } },
    { paths: { f: 'h' } },
    { inputs: { x: ['t2'] } },
    { inputs: { y: ['t1'] } },
    { after: ['t1'] },
  ];
  const keys = new Set([cacheKey(parts), ...variants.map((v) => cacheKey({ ...parts, ...v }))]);
  assert.equal(keys.size, variants.length + 1);
  assert.deepEqual(explainKeyChange(parts, { ...parts, version: '2', params: { a: 1, b: { x: [1, 3] } } }), [
    'plugin version changed: 1 -> 2',
    'param b.x: [1,2] -> [1,3]',
  ]);
});

test('store: ingest then materialise round-trips a tree; identical content is stored once', async () => {
  const root = makeProject('distill-store-');
  const store = new LocalStore(join(root, '.distill'));
  const hashes = new HashCache();
  const make = (name: string): string => {
    writeText(root, `${name}/x.txt`, 'same');
    writeText(root, `${name}/sub/y.txt`, `different-${name}`);
    return join(root, name);
  };
  const one = await store.ingest(make('one'), hashes);
  const two = await store.ingest(make('two'), hashes);
  assert.notEqual(one.hash, two.hash);
  assert.deepEqual(
    one.manifest.files.map((f) => [f.path, f.hash, f.size]),
    [
      ['sub/y.txt', sha256('different-one'), 13],
      ['x.txt', sha256('same'), 4],
    ],
  );
  // 3 distinct contents -> 3 objects.
  assert.equal(listTree(store.objectsDir).length, 3);
  const dest = join(root, 'restored');
  writeText(root, 'restored/old.txt', 'replaced wholesale');
  const method = await store.materialise(one.hash, dest);
  assert.ok(['reflink', 'hardlink', 'copy'].includes(method));
  assert.deepEqual(listTree(dest), ['sub/y.txt', 'x.txt']);
  assert.equal(readFileSync(join(dest, 'sub', 'y.txt'), 'utf8'), 'different-one');
  assert.equal(listTree(root).filter((p) => p.includes('.tmp-')).length, 0, 'no staging left behind');
});

test('the plugin code version is part of the key', async () => {
  const root = makeProject('distill-code-');
  const file = writeText(root, 'p.yaml', pipelineYaml([concatStage('a', { text: 'A' })]));
  const ws = new Workspace(root);
  const pipeline = await load(file);
  const stage = pipeline.byId.get('a');
  assert.ok(stage);
  assert.deepEqual(stage.plugin.codePaths[0], CONCAT);
  const parts = await ws.keyParts(stage, () => '');
  assert.equal(parts.version, '1');
  assert.equal(parts.plugin, 'test-concat');
  // The code hash covers the plugin module itself.
  assert.ok(parts.code.startsWith(sha256(readFileSync(CONCAT))), 'code hash starts with the module hash');
});

test('fan-out: instances feed a downstream stage in order; --set on one instance reruns only it and its dependents', async () => {
  const root = makeProject('distill-fan-');
  const journal = join(root, 'journal.txt');
  const file = writeText(
    root,
    'p.yaml',
    `stages:\n  part:\n    plugin: ${CONCAT}\n    foreach: [x, y, z]\n    with: { text: "\${{ item }}", journal: ${JSON.stringify(journal)} }\n` +
      `  merge:\n    plugin: ${CONCAT}\n    inputs: { parts: part }\n    with: { text: M, journal: ${JSON.stringify(journal)} }\n`,
  );
  const first = await runApi(root, file);
  assert.deepEqual(statuses(first), { 'part@x': 'ran', 'part@y': 'ran', 'part@z': 'ran', merge: 'ran' });
  assert.equal(output(root, 'p', 'merge'), 'x+y+z+M');
  const before = executed(journal).length;
  const second = await runApi(root, file, { set: ['part@y.text=Y'] });
  assert.deepEqual(statuses(second), { 'part@x': 'cached', 'part@y': 'ran', 'part@z': 'cached', merge: 'ran' });
  assert.deepEqual(executed(journal).slice(before), ['part@y', 'merge']);
  assert.equal(output(root, 'p', 'merge'), 'x+Y+z+M');
  assert.equal(output(root, 'p', 'part@y'), 'Y');
});
