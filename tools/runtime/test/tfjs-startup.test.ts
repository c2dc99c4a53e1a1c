/**
 * Threaded wasm start-up in fresh processes (issue 16, item 3). The worker script used to be
 * rewritten for each of the 8 pool workers while earlier ones were already reading it; a worker
 * that read it truncated exited without reporting "loaded" and the backend never became ready
 * (seen in 2 of 55 fresh processes). Several processes starting at once (CPU contention widened
 * the race) must all become ready; a hang would end at the 60 s limit per process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const backendModule = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'tfjs', 'backend.js');

test('threaded wasm: 6 fresh processes starting at once all become ready and compute', async () => {
  const script = `
    const { selectBackend } = await import(${JSON.stringify(backendModule)});
    const b = await selectBackend({ cpus: 2, gpus: [], prefer: 'wasm' });
    const x = b.tf.tensor2d([[1, 2], [3, 4]]);
    console.log(b.name, b.threads, b.tf.sum(b.tf.matMul(x, x)).dataSync()[0]);
    process.exit(0);`;
  const run = (): Promise<{ stdout: string }> =>
    promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 });
  const results = await Promise.allSettled(Array.from({ length: 6 }, run));
  for (const r of results) {
    assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String((r.reason as Error).message) : '');
    // [[1,2],[3,4]]^2 = [[7,10],[15,22]]: sum 54.
    if (r.status === 'fulfilled') assert.equal(r.value.stdout.trim(), 'wasm 2 54');
  }
});
