import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openShardSet, parseTeacherSchema, ShardWriter, datasetSchema } from '@distillery/runtime/shards';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';
import plugin from '../src/plugin.js';
import { linearLogits, makeCtx, rng, writeFeatureDataset, writeLinearTeacher } from './helpers.js';

const dim = 4,
  classes = 6;

function setup(n: number, seed: number) {
  const root = mkdtempSync(join(tmpdir(), 'teacher-'));
  const r = rng(seed);
  const x = Float32Array.from({ length: n * dim }, () => r() * 4 - 2);
  const w = Float32Array.from({ length: dim * classes }, () => r() * 2 - 1);
  const b = Float32Array.from({ length: classes }, () => r() - 0.5);
  writeLinearTeacher(join(root, 'teacher.onnx'), w, b, dim, classes);
  return { root, x, w, b, ref: linearLogits(x, w, b, dim, classes) };
}

async function readAll(dir: string) {
  const set = await openShardSet(dir);
  const rows = [];
  for await (const row of set.rows()) rows.push(row);
  return { set, rows };
}

test('dense + top-k + features: golden values from the model, top-k consistent with dense, metadata', async () => {
  const n = 150;
  const { root, x, ref } = setup(n, 1);
  try {
    await writeFeatureDataset(join(root, 'data'), x, dim, classes, 64);
    const T = 2;
    const { ctx, record } = makeCtx(
      plugin,
      {
        model: 'teacher.onnx',
        storage: ['dense', 'topk'],
        k: 3,
        temperature: T,
        featuresOutput: 'feat',
        batchSize: 32,
        rowsPerShard: 100,
      },
      { outDir: join(root, 'out'), pipelineDir: root, inputs: { dataset: join(root, 'data') } },
    );
    const result = await plugin.run(ctx);
    assert.equal(result?.metrics?.samples, n);
    assert.deepEqual(record.progress.at(-1), [n, n]);
    const { set, rows } = await readAll(join(root, 'out'));
    assert.deepEqual(
      set.manifest.shards.map((s) => s.rows),
      [100, 50],
    );
    const meta = parseTeacherSchema(set.schema);
    assert.equal(meta.teacherId, 'test-stage');
    assert.equal(meta.temperature, 2);
    assert.equal(
      meta.modelSha256,
      createHash('sha256')
        .update(readFileSync(join(root, 'teacher.onnx')))
        .digest('hex'),
    );
    assert.deepEqual(meta.storage, { dense: true, topk: { k: 3 }, features: { dim, output: 'feat', shape: [dim] } });
    assert.equal(rows.length, n);
    rows.forEach((row, i) => {
      assert.equal(row.id, `s${i}`);
      const z = Array.from({ length: classes }, (_, c) => ref[i * classes + c]!);
      const logits = row.logits as Float32Array;
      z.forEach((v, c) => assert.ok(Math.abs(logits[c]! - v) < 1e-5, `sample ${i} class ${c}`));
      // top-k from the dense values: order, log-probs at T, missing mass.
      const m = Math.max(...z.map((v) => v / T));
      const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v / T - m), 0));
      const order = z
        .map((v, c) => [v, c] as const)
        .sort((a, b) => b[0] - a[0] || a[1] - b[1])
        .map((e) => e[1]);
      assert.deepEqual(Array.from(row.topk_ids as Int32Array), order.slice(0, 3));
      const lp = row.topk_logprobs as Float32Array;
      order.slice(0, 3).forEach((c, j) => assert.ok(Math.abs(lp[j]! - (z[c]! / T - lse)) < 1e-5));
      const tail = order.slice(3).reduce((s, c) => s + Math.exp(z[c]! / T - lse), 0);
      assert.ok(Math.abs((row.topk_missing_mass as number) - tail) < 1e-6);
      const feat = row.features as Float32Array;
      for (let k = 0; k < dim; k++) assert.equal(feat[k], Math.max(0, x[i * dim + k]!));
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a GPU assigned on a machine without the CUDA provider: CPU fallback, warned with the missing library, logged, same outputs', async () => {
  const n = 40;
  const { root, x, ref } = setup(n, 5);
  const saved = process.env.CUDA_VISIBLE_DEVICES;
  try {
    await writeFeatureDataset(join(root, 'data'), x, dim, classes, 64);
    process.env.CUDA_VISIBLE_DEVICES = '1';
    const { ctx, record } = makeCtx(
      plugin,
      { model: 'teacher.onnx', storage: ['dense'] },
      { outDir: join(root, 'out'), pipelineDir: root, inputs: { dataset: join(root, 'data') }, gpus: [1] },
    );
    const result = await plugin.run(ctx);
    assert.equal(result?.metrics?.on_gpu, 0);
    assert.ok(
      record.warnings.some((w) =>
        /CUDA execution provider unavailable on GPU 1 .*libonnxruntime_providers_shared\.so is not installed/.test(w),
      ),
      record.warnings.join('\n'),
    );
    assert.ok(
      record.infos.some((m) =>
        /^execution provider: cpu \(CUDA unavailable: libonnxruntime_providers_shared\.so/.test(m),
      ),
      record.infos.join('\n'),
    );
    const { rows } = await readAll(join(root, 'out'));
    rows.forEach((row, i) => {
      const logits = row.logits as Float32Array;
      for (let c = 0; c < classes; c++)
        assert.ok(Math.abs(logits[c]! - ref[i * classes + c]!) < 1e-5, `sample ${i} class ${c}`);
    });
  } finally {
    if (saved === undefined) delete process.env.CUDA_VISIBLE_DEVICES;
    else process.env.CUDA_VISIBLE_DEVICES = saved;
    rmSync(root, { recursive: true, force: true });
  }
});

test('sampled soft labels: counts sum to N, mean of count/N approaches the dense distribution (tau=1 and tau=0.5)', async () => {
  // One input repeated M times under different ids: each row draws from its own seeded stream.
  const M = 3000,
    N = 20;
  const { root, w, b } = setup(1, 2);
  try {
    const one = Float32Array.from([0.3, -1.2, 0.8, 0.1]);
    const x = new Float32Array(M * dim);
    for (let i = 0; i < M; i++) x.set(one, i * dim);
    await writeFeatureDataset(join(root, 'data'), x, dim, classes, 1000);
    const z = Array.from(linearLogits(one, w, b, dim, classes));
    const p = z.map((v) => Math.exp(v));
    const total = p.reduce((s, v) => s + v, 0);
    for (let c = 0; c < classes; c++) p[c]! /= total;
    for (const tau of [1, 0.5]) {
      const out = join(root, `out-${tau}`);
      const { ctx } = makeCtx(
        plugin,
        { model: 'teacher.onnx', storage: ['sampled'], draws: N, tau, seed: 11, dataset: 'data' },
        { outDir: out, pipelineDir: root },
      );
      await plugin.run(ctx);
      const { rows } = await readAll(out);
      const est = new Float64Array(classes);
      for (const row of rows) {
        const ids = row.sample_ids as Int32Array,
          counts = row.sample_counts as Uint16Array;
        assert.equal(
          counts.reduce((s, v) => s + v, 0),
          N,
        );
        for (let j = 1; j < ids.length; j++) assert.ok(ids[j]! > ids[j - 1]!, 'ids ascending and distinct');
        const weights = tau === 1 ? undefined : (row.sample_weights as Float32Array);
        ids.forEach((id, j) => {
          est[id]! += (counts[j]! / N) * (weights ? weights[j]! : 1);
        });
      }
      for (let c = 0; c < classes; c++) {
        const mean = est[c]! / M;
        // Standard error of the mean for tau=1 is sqrt(p(1-p)/(M N)); weights inflate it for tau<1.
        const se = Math.sqrt((p[c]! * (1 - p[c]!)) / (M * N)) * (tau === 1 ? 1 : 3);
        assert.ok(Math.abs(mean - p[c]!) < 5 * se + 1e-4, `tau ${tau} class ${c}: mean ${mean} vs p ${p[c]}`);
      }
      // Same seed, same ids -> same draws (deterministic, independent of batching).
      if (tau === 1) {
        const again = join(root, 'again');
        const { ctx: ctx2 } = makeCtx(
          plugin,
          { model: 'teacher.onnx', storage: ['sampled'], draws: N, seed: 11, dataset: 'data', batchSize: 7 },
          { outDir: again, pipelineDir: root },
        );
        await plugin.run(ctx2);
        const { rows: rows2 } = await readAll(again);
        assert.deepEqual(
          Array.from(rows2[17]!.sample_counts as Uint16Array),
          Array.from(rows[17]!.sample_counts as Uint16Array),
        );
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('class map from the "classMap" input (class_map.json of e.g. eft-vertical); bad files and double binding are errors', async () => {
  const n = 10;
  const { root, x } = setup(n, 3);
  try {
    await writeFeatureDataset(join(root, 'data'), x, dim, 100);
    const classMap = [90, 12, 40, 7, 55, 3];
    mkdirSync(join(root, 'vert'), { recursive: true });
    writeFileSync(join(root, 'vert', 'class_map.json'), JSON.stringify(classMap));
    const base = {
      model: 'teacher.onnx',
      dataset: 'data',
      activation: 'sigmoid',
      numClasses: 100,
      storage: ['topk'],
      k: 2,
    };
    const { ctx } = makeCtx(plugin, base, {
      outDir: join(root, 'out'),
      pipelineDir: root,
      inputs: { classMap: join(root, 'vert') },
    });
    await plugin.run(ctx);
    const { set, rows } = await readAll(join(root, 'out'));
    assert.deepEqual(parseTeacherSchema(set.schema).classMap, classMap);
    for (const row of rows) for (const id of row.topk_ids as Int32Array) assert.ok(classMap.includes(id));
    const both = makeCtx(
      plugin,
      { ...base, classMap },
      { outDir: join(root, 'out2'), pipelineDir: root, inputs: { classMap: join(root, 'vert') } },
    );
    await assert.rejects(plugin.run(both.ctx), /both the classMap parameter and a "classMap" input/);
    writeFileSync(join(root, 'vert', 'class_map.json'), '[1, -2]');
    const bad = makeCtx(plugin, base, {
      outDir: join(root, 'out3'),
      pipelineDir: root,
      inputs: { classMap: join(root, 'vert') },
    });
    await assert.rejects(
      plugin.run(bad.ctx),
      /class map .*vert\/class_map\.json must be a non-empty JSON array of non-negative integers/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('specialist sigmoid teacher: class map to global ids, log-sigmoid top-k, split filter', async () => {
  const n = 40;
  const { root, x, ref } = setup(n, 3);
  try {
    await writeFeatureDataset(join(root, 'data'), x, dim, 100);
    const classMap = [90, 12, 40, 7, 55, 3];
    const { ctx } = makeCtx(
      plugin,
      {
        model: 'teacher.onnx',
        dataset: 'data',
        activation: 'sigmoid',
        classMap,
        numClasses: 100,
        storage: ['dense', 'topk'],
        k: 2,
        split: 'test',
      },
      { outDir: join(root, 'out'), pipelineDir: root },
    );
    await plugin.run(ctx);
    const { set, rows } = await readAll(join(root, 'out'));
    assert.deepEqual(parseTeacherSchema(set.schema).classMap, classMap);
    assert.equal(rows.length, n / 2);
    rows.forEach((row) => {
      const i = Number((row.id as string).slice(1));
      assert.equal(i % 2, 1, 'only the test split');
      const z = Array.from({ length: classes }, (_, c) => ref[i * classes + c]!);
      const order = z
        .map((v, c) => [v, c] as const)
        .sort((a, b) => b[0] - a[0] || a[1] - b[1])
        .map((e) => e[1]);
      assert.deepEqual(
        Array.from(row.topk_ids as Int32Array),
        order.slice(0, 2).map((c) => classMap[c]),
      );
      const sig = (v: number) => 1 / (1 + Math.exp(-v));
      order
        .slice(0, 2)
        .forEach((c, j) => assert.ok(Math.abs((row.topk_logprobs as Float32Array)[j]! - Math.log(sig(z[c]!))) < 1e-5));
      const tail = order.slice(2).reduce((s, c) => s + sig(z[c]!), 0);
      assert.ok(Math.abs((row.topk_missing_mass as number) - tail) < 1e-5);
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('pixels: scale, mean/std and HWC -> CHW transpose reach the model as computed here, in the model or on the JS thread; uint8 models get the raw pixels transposed', async () => {
  const root = mkdtempSync(join(tmpdir(), 'teacher-'));
  try {
    const [H, W, C] = [2, 3, 3];
    const D = H * W * C;
    const n = 5;
    const pixels = Uint8Array.from({ length: n * D }, (_, i) => (i * 37) % 256);
    const writer = await ShardWriter.create({
      dir: join(root, 'data'),
      schema: datasetSchema({ shape: [H, W, C], input: 'pixels', labels: 'single', numClasses: D }),
      rowsPerShard: 10,
    });
    writer.append(
      { id: ['a', 'b', 'c', 'd', 'e'], split: Array(n).fill('train'), label: new Int32Array(n), pixels },
      n,
    );
    await writer.close();
    // The "teacher" flattens its CHW input: its logits are exactly what it was fed.
    writeModelFile(
      join(root, 'flat.onnx'),
      new GraphBuilder('flat')
        .input('x', 'float32', ['N', C, H, W])
        .node('Flatten', ['x'], ['y'])
        .output('y', 'float32', ['N', D])
        .build(),
    );
    const mean = [0.5, 0.25, 0],
      std = [0.5, 2, 1];
    // Both places for the transform: the model's first nodes (default) and the JS thread.
    for (const [pixelTransform, where] of [
      ['model', /pixel transform: in the model \(its input is now uint8 x__uint8\)/],
      ['js', /pixel transform: on the JS thread/],
    ] as const) {
      const out = join(root, `out-${pixelTransform}`);
      const { ctx, record } = makeCtx(
        plugin,
        { model: 'flat.onnx', dataset: 'data', inputLayout: 'CHW', mean, std, numClasses: D, pixelTransform },
        { outDir: out, pipelineDir: root },
      );
      await plugin.run(ctx);
      assert.ok(
        record.infos.some((m) => where.test(m)),
        record.infos.join('\n'),
      );
      const { rows } = await readAll(out);
      assert.equal(rows.length, n);
      rows.forEach((row, s) => {
        const got = row.logits as Float32Array;
        for (let h = 0; h < H; h++)
          for (let w = 0; w < W; w++)
            for (let c = 0; c < C; c++) {
              const v = (pixels[s * D + (h * W + w) * C + c]! / 255 - mean[c]!) / std[c]!;
              assert.ok(
                Math.abs(got[c * H * W + h * W + w]! - v) < 1e-6,
                `${pixelTransform}: sample ${s} (${c}, ${h}, ${w})`,
              );
            }
      });
    }
    // A uint8-input model gets the raw pixels, transposed, with no scaling or mean/std.
    writeModelFile(
      join(root, 'flat-u8.onnx'),
      new GraphBuilder('flat-u8')
        .input('x', 'uint8', ['N', C, H, W])
        .node('Cast', ['x'], ['xf'], { to: { i: 1 } })
        .node('Flatten', ['xf'], ['y'])
        .output('y', 'float32', ['N', D])
        .build(),
    );
    const u8 = makeCtx(
      plugin,
      { model: 'flat-u8.onnx', dataset: 'data', inputLayout: 'CHW', mean, std, numClasses: D },
      { outDir: join(root, 'out-u8'), pipelineDir: root },
    );
    await plugin.run(u8.ctx);
    assert.ok(
      u8.record.infos.some((m) => /on the JS thread \(input x is not float32\)/.test(m)),
      u8.record.infos.join('\n'),
    );
    (await readAll(join(root, 'out-u8'))).rows.forEach((row, s) => {
      const got = row.logits as Float32Array;
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++)
          for (let c = 0; c < C; c++) {
            assert.equal(
              got[c * H * W + h * W + w],
              pixels[s * D + (h * W + w) * C + c],
              `sample ${s} (${c}, ${h}, ${w})`,
            );
          }
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('bad input: clear errors and no partial shard', async () => {
  const n = 300;
  const { root, x } = setup(n, 4);
  try {
    x[250 * dim + 1] = Number.NaN; // sample s250 makes the teacher output NaN
    await writeFeatureDataset(join(root, 'data'), x, dim, classes, 100);
    const run = async (params: Record<string, unknown>, out: string) => {
      const { ctx } = makeCtx(plugin, { dataset: 'data', ...params }, { outDir: join(root, out), pipelineDir: root });
      return plugin.run(ctx);
    };
    const empty = (out: string) => assert.deepEqual(readdirSync(join(root, out)), []);

    await assert.rejects(
      run({ model: 'teacher.onnx', batchSize: 16, rowsPerShard: 50 }, 'nan'),
      /non-finite output \(NaN or Inf\) for sample s250/,
    );
    empty('nan'); // shards 0..4 were complete before the error: they are gone too

    await assert.rejects(run({ model: 'missing.onnx' }, 'missing'), /missing\.onnx: cannot read/);
    empty('missing');

    writeFileSync(join(root, 'corrupt.onnx'), readFileSync(join(root, 'teacher.onnx')).subarray(0, 60));
    await assert.rejects(
      run({ model: 'corrupt.onnx' }, 'corrupt'),
      (e: Error) => e.message.includes(join(root, 'corrupt.onnx')) && /cannot load/.test(e.message),
    );
    empty('corrupt');

    writeModelFile(
      join(root, 'wide.onnx'),
      new GraphBuilder('w')
        .input('x', 'float32', ['N', 7])
        .node('Relu', ['x'], ['y'])
        .output('y', 'float32', ['N', 7])
        .build(),
    );
    await assert.rejects(
      run({ model: 'wide.onnx' }, 'shape'),
      /expects shape \[N, 7\] \(7 values per sample\) but the dataset's samples have shape \[4\] \(4 values\)/,
    );
    empty('shape');

    writeModelFile(
      join(root, 'int.onnx'),
      new GraphBuilder('i')
        .input('x', 'int32', ['N', 4])
        .node('Cast', ['x'], ['y'], { to: { i: 1 } })
        .output('y', 'float32', ['N', 4])
        .build(),
    );
    await assert.rejects(run({ model: 'int.onnx' }, 'dtype'), /input x has dtype int32/);
    empty('dtype');

    await assert.rejects(
      run({ model: 'teacher.onnx', classMap: [0, 1, 2, 3, 4, 10], numClasses: 10 }, 'map'),
      /classMap\[5\] = 10 is out of range of the global label space \[0, 10\)/,
    );
    await assert.rejects(
      run({ model: 'teacher.onnx', classMap: [0, 1, 2] }, 'map2'),
      /classMap has 3 entries but the teacher outputs 6 classes/,
    );
    await assert.rejects(
      run({ model: 'teacher.onnx', activation: 'sigmoid', storage: ['sampled'] }, 'sig'),
      /sampled storage needs a softmax teacher/,
    );

    const shard = join(root, 'data', 'part-00001.arrow');
    truncateSync(shard, statSync(shard).size - 100);
    await assert.rejects(
      run({ model: 'teacher.onnx' }, 'trunc'),
      (e: Error) => e.message.includes(shard) && /truncated/.test(e.message),
    );
    empty('trunc');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('restrictTo (from the "restrictTo" input): gathered logit columns, top-k renormalised over them, local ids, metadata', async () => {
  const n = 40;
  const { root, x, ref } = setup(n, 5);
  try {
    await writeFeatureDataset(join(root, 'data'), x, dim, classes, 16);
    const keep = [4, 1, 5]; // one partition's classes in local order (order matters)
    mkdirSync(join(root, 'part'));
    writeFileSync(join(root, 'part', 'class_map.json'), JSON.stringify(keep));
    const T = 1.5;
    const { ctx } = makeCtx(
      plugin,
      { model: 'teacher.onnx', storage: ['dense', 'topk'], k: 2, temperature: T, batchSize: 8 },
      {
        outDir: join(root, 'out'),
        pipelineDir: root,
        inputs: { dataset: join(root, 'data'), restrictTo: join(root, 'part') },
      },
    );
    await plugin.run(ctx);
    const { set, rows } = await readAll(join(root, 'out'));
    const meta = parseTeacherSchema(set.schema);
    assert.equal(meta.numClasses, 3, 'the restricted label space');
    assert.equal(meta.classMap, undefined, 'identity within the restricted space');
    assert.equal(set.schema.metadata['distillery.restricted_to'], JSON.stringify(keep));
    assert.equal(set.schema.columns.find((c) => c.name === 'logits')?.width, 3);
    rows.forEach((row, i) => {
      const z = keep.map((g) => ref[i * classes + g]! / T);
      const logits = row.logits as Float32Array;
      keep.forEach((g, j) => assert.ok(Math.abs(logits[j]! - ref[i * classes + g]!) < 1e-5, `sample ${i} local ${j}`));
      const m = Math.max(...z);
      const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
      const order = [0, 1, 2].sort((a, b) => z[b]! - z[a]! || a - b);
      assert.deepEqual(Array.from(row.topk_ids as Int32Array), order.slice(0, 2));
      const lp = row.topk_logprobs as Float32Array;
      order.slice(0, 2).forEach((c, j) => assert.ok(Math.abs(lp[j]! - (z[c]! - lse)) < 1e-5));
      assert.ok(Math.abs((row.topk_missing_mass as number) - Math.exp(z[order[2]!]! - lse)) < 1e-6);
    });
    // Errors: out-of-range column, duplicate, combined with classMap, param and input both bound.
    const bad = async (raw: Record<string, unknown>, inputs: Record<string, string>, re: RegExp) => {
      const out = join(root, `bad-${Math.random().toString(36).slice(2)}`);
      const { ctx: c } = makeCtx(
        plugin,
        { model: 'teacher.onnx', ...raw },
        { outDir: out, pipelineDir: root, inputs: { dataset: join(root, 'data'), ...inputs } },
      );
      await assert.rejects(plugin.run(c), re);
      assert.deepEqual(readdirSync(out), [], 'no partial output');
    };
    await bad({ restrictTo: [0, 6] }, {}, /restrictTo\[1\] = 6 is not an output column of the teacher \(it has 6\)/);
    await bad({ restrictTo: [2, 2] }, {}, /restrictTo\[1\] = 2 is a duplicate/);
    await bad({ restrictTo: [0, 1], classMap: [0, 1, 2, 3, 4, 5] }, {}, /restrictTo and classMap cannot be combined/);
    await bad(
      { restrictTo: [0, 1] },
      { restrictTo: join(root, 'part') },
      /both the restrictTo parameter and a "restrictTo" input/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("rows: classMap keeps only rows whose label is in the class map, in dataset order, with the model's values", async () => {
  const n = 60;
  const { root, x, ref } = setup(n, 5);
  try {
    // Labels are i % 10; the vertical holds global classes 3 and 7 (+ 4 classes no row has).
    await writeFeatureDataset(join(root, 'data'), x, dim, 10);
    const base = {
      model: 'teacher.onnx',
      dataset: 'data',
      activation: 'sigmoid',
      classMap: [3, 7, 8, 9, 5, 6],
      numClasses: 10,
      storage: ['dense'],
      rows: 'classMap',
      split: 'train',
    };
    const { ctx, record } = makeCtx(plugin, base, { outDir: join(root, 'out'), pipelineDir: root });
    const result = await plugin.run(ctx);
    const { rows } = await readAll(join(root, 'out'));
    // Expected: train rows (even i) with label i % 10 in {3,7,8,9,5,6}, in dataset order.
    const expected = Array.from({ length: n }, (_, i) => i).filter(
      (i) => i % 2 === 0 && [3, 7, 8, 9, 5, 6].includes(i % 10),
    );
    assert.deepEqual(
      rows.map((r) => r.id),
      expected.map((i) => `s${i}`),
    );
    assert.equal(result?.metrics?.samples, expected.length);
    assert.equal(record.progress.at(-1)?.[0], expected.length);
    rows.forEach((row, j) => {
      const i = expected[j]!;
      const logits = row.logits as Float32Array;
      for (let c = 0; c < classes; c++) assert.ok(Math.abs(logits[c]! - ref[i * classes + c]!) < 1e-5);
    });
    const noMap = makeCtx(
      plugin,
      { ...base, classMap: undefined, numClasses: undefined },
      { outDir: join(root, 'out2'), pipelineDir: root },
    );
    await assert.rejects(plugin.run(noMap.ctx), /onlyClassMapRows needs a classMap/);
    assert.deepEqual(
      readdirSync(root).filter((d) => d === 'out2' && readdirSync(join(root, d)).length > 0),
      [],
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
