import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Rng } from '@distillery/runtime/rng';
import { randomPartition, routingTable } from '../src/partition.js';
import maskedPlugin from '../src/masked-plugin.js';
import { MsdBundle } from '../src/bundle-runner.js';
import { argmax, linearRow, makeCtx, writeLinear } from './helpers.js';

const dim = 6,
  C = 10,
  K = 3;

test('masked-bundle: the single student told the partition answers argmax of its logits over that partition', async () => {
  const root = mkdtempSync(join(tmpdir(), 'msd-masked-'));
  try {
    const rng = new Rng(21);
    const table = routingTable(C, randomPartition(C, K, 4), 'random', 4);
    const w = Float32Array.from({ length: dim * C }, () => rng.normal());
    const b = Float32Array.from({ length: C }, () => rng.normal());
    const rw = Float32Array.from({ length: dim * K }, () => rng.normal());
    const rb = Float32Array.from({ length: K }, () => rng.normal());
    for (const d of ['part', 'single', 'router']) mkdirSync(join(root, d));
    writeFileSync(join(root, 'part', 'routing.json'), JSON.stringify(table));
    writeLinear(join(root, 'single', 'model.onnx'), w, b, dim, C);
    writeLinear(join(root, 'router', 'model.onnx'), rw, rb, dim, K);
    const inputs = {
      routing: [['part', join(root, 'part')]] as [string, string][],
      router: [['router', join(root, 'router')]] as [string, string][],
      model: [['single', join(root, 'single')]] as [string, string][],
    };
    const out = join(root, 'bundle');
    mkdirSync(out);
    await maskedPlugin.run(makeCtx(maskedPlugin, {}, out, inputs));
    assert.ok(!readdirSync(out).some((f) => f.startsWith('.masked-')), 'staging directory removed');

    const n = 64;
    const x = Float32Array.from({ length: n * dim }, () => rng.normal());
    const truth = Int32Array.from({ length: n }, () => rng.int(C));
    const known = Int32Array.from(truth, (y) => table.classToStudent[y]!);
    const bundle = await MsdBundle.open(out);
    let told: Awaited<ReturnType<MsdBundle['predict']>>;
    let routed: Awaited<ReturnType<MsdBundle['predict']>>;
    try {
      told = await bundle.predict(x, n, known);
      routed = await bundle.predict(x, n);
    } finally {
      await bundle.release();
    }
    let differs = 0;
    for (let i = 0; i < n; i++) {
      const logits = linearRow(x, i, w, b, dim, C);
      // Known partition: the masked argmax, computed in float64 over the true partition's classes.
      const part = table.partitions[known[i]!]!;
      const masked = part[argmax(part.map((c) => logits[c]!))]!;
      assert.equal(told.label[i], masked, `sample ${i}: masked to partition ${known[i]}`);
      for (const c of part)
        assert.ok(
          Math.abs(told.scores[i * C + c]! - logits[c]!) < 1e-4,
          `sample ${i} class ${c}: the single student's own logit`,
        );
      if (masked !== argmax(logits)) differs++;
      // Routed: the router's argmax partition, then the masked argmax there.
      const k = argmax(linearRow(x, i, rw, rb, dim, K));
      assert.equal(routed.partition[i], k);
      const rpart = table.partitions[k]!;
      assert.equal(routed.label[i], rpart[argmax(rpart.map((c) => logits[c]!))]);
    }
    assert.ok(
      differs > 0,
      'the fixture has samples where masking changes the answer (else the test could not tell masked from unmasked)',
    );

    // A model that does not cover every class is refused, and no manifest is written.
    mkdirSync(join(root, 'narrow'));
    writeLinear(join(root, 'narrow', 'model.onnx'), w.subarray(0, dim * 4), b.subarray(0, 4), dim, 4);
    const bad = join(root, 'bad');
    mkdirSync(bad);
    await assert.rejects(
      maskedPlugin.run(makeCtx(maskedPlugin, {}, bad, { ...inputs, model: [['narrow', join(root, 'narrow')]] })),
      /model narrow .* outputs 4 classes, the routing table has 10/,
    );
    assert.ok(!existsSync(join(bad, 'manifest.json')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
