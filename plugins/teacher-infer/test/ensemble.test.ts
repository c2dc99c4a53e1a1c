import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel, GraphBuilder, readModelFile, writeModelFile, type OnnxModel } from '@distillery/runtime/onnx';
import { ensembleModels } from '../src/ensemble.js';
import plugin from '../src/ensemble-plugin.js';
import { makeCtx, rng } from './helpers.js';

const dim = 5,
  classes = 4;

/** A two-layer classifier x -> relu(x W1 + b1) W2 + b2 with seeded weights (same value names in every member). */
function member(seed: number, opset = 17, inputDim = dim): OnnxModel {
  const r = rng(seed);
  const fill = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  return new GraphBuilder('member', { opset })
    .input('input', 'float32', ['batch', inputDim])
    .initializer('W1', fill(inputDim * 6), [inputDim, 6])
    .initializer('b1', fill(6), [6])
    .initializer('W2', fill(6 * classes), [6, classes])
    .initializer('b2', fill(classes), [classes])
    .node('Gemm', ['input', 'W1', 'b1'], ['h'])
    .node('Relu', ['h'], ['a'])
    .node('Gemm', ['a', 'W2', 'b2'], ['logits'])
    .output('logits', 'float32', ['batch', classes])
    .output('a', 'float32', ['batch', 6])
    .build();
}

async function logitsOf(model: OnnxModel, x: Float32Array, n: number): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(encodeModel(model));
  const out = await session.run({ input: new ort.Tensor('float32', x, [n, dim]) });
  return out.logits!.data as Float32Array;
}

test("ensemble output = weighted mean of the members' logits (onnxruntime), for equal and given weights", async () => {
  const n = 7;
  const r = rng(99);
  const x = Float32Array.from({ length: n * dim }, () => r() * 4 - 2);
  const members = [member(1), member(2), member(3)];
  const each = await Promise.all(members.map((m) => logitsOf(m, x, n)));
  for (const weights of [undefined, [1, 3, 0]]) {
    const w = weights ?? [1, 1, 1];
    const total = w.reduce((a, b) => a + b, 0);
    const merged = ensembleModels(
      members.map((model, i) => ({ label: `t${i}`, model })),
      weights ? { weights } : {},
    );
    const got = await logitsOf(merged, x, n);
    for (let j = 0; j < n * classes; j++) {
      const want = each.reduce((s, z, i) => s + (w[i]! / total) * z[j]!, 0);
      assert.ok(Math.abs(got[j]! - want) < 1e-5, `logit ${j}: ${got[j]} vs ${want}`);
    }
    // Members' own outputs are not exposed; the ensemble keeps one output with the first member's name.
    assert.deepEqual(
      merged.graph.outputs.map((o) => o.name),
      ['logits'],
    );
    assert.equal(merged.metadata['distillery.ensemble.members'], '["t0","t1","t2"]');
  }
  // passThrough: the first member's hidden activations, unchanged.
  const withFeatures = ensembleModels(
    members.map((model, i) => ({ label: `t${i}`, model })),
    { passThrough: ['a'] },
  );
  assert.deepEqual(
    withFeatures.graph.outputs.map((o) => o.name),
    ['logits', 'a'],
  );
  const session = await ort.InferenceSession.create(encodeModel(withFeatures));
  const hidden = (await session.run({ input: new ort.Tensor('float32', x, [n, dim]) })).a!.data as Float32Array;
  const own = (
    await (
      await ort.InferenceSession.create(encodeModel(members[0]!))
    ).run({ input: new ort.Tensor('float32', x, [n, dim]) })
  ).a!.data as Float32Array;
  assert.deepEqual(Array.from(hidden), Array.from(own));
  assert.throws(
    () =>
      ensembleModels(
        members.map((model, i) => ({ label: `t${i}`, model })),
        { passThrough: ['h'] },
      ),
    /t0: passThrough output "h" is not one of its outputs \(logits, a\)/,
  );
  // The members themselves are not modified.
  assert.equal(members[0]!.graph.nodes[0]!.name.startsWith('m0/'), false);
});

test('ensemble refuses members that cannot be averaged, naming the member', () => {
  const ok = { label: 'teacher@1', model: member(1) };
  assert.throws(() => ensembleModels([ok]), /at least 2 models/);
  assert.throws(
    () => ensembleModels([ok, { label: 'teacher@2', model: member(2, 17, dim + 1) }]),
    /teacher@2: input input float32\[batch,6\] differs/,
  );
  assert.throws(
    () => ensembleModels([ok, { label: 'teacher@3', model: member(3, 13) }]),
    /teacher@3: opset 13 differs/,
  );
  assert.throws(
    () => ensembleModels([ok, { label: 'b', model: member(2) }], { weights: [1] }),
    /weights has 1 entries for 2 models/,
  );
  assert.throws(() => ensembleModels([ok, { label: 'b', model: member(2) }], { weights: [0, 0] }), /sum to 0/);
  assert.throws(
    () => ensembleModels([ok, { label: 'b', model: member(2) }], { output: 'probs' }),
    /teacher@1: no output named "probs"/,
  );
});

test('teacher-ensemble stage: model.onnx from the bound model stages; fewer than 2 fails with no artifact', async () => {
  const root = mkdtempSync(join(tmpdir(), 'ensemble-'));
  try {
    for (const seed of [1, 2]) {
      mkdirSync(join(root, `teacher@${seed}`));
      writeModelFile(join(root, `teacher@${seed}`, 'model.onnx'), member(seed));
    }
    const outDir = join(root, 'out');
    mkdirSync(outDir);
    const { ctx } = makeCtx(plugin, {}, { outDir, pipelineDir: root, inputs: {} });
    const bound = {
      ...ctx,
      inputs: { models: [1, 2].map((s) => ({ stage: `teacher@${s}`, path: join(root, `teacher@${s}`) })) },
    };
    const result = await plugin.run(bound as typeof ctx);
    assert.equal(result?.metrics?.members, 2);
    const merged = await readModelFile(join(outDir, 'model.onnx'));
    assert.equal(merged.graph.nodes.filter((nd) => nd.opType === 'Gemm').length, 4);
    const one = { ...ctx, inputs: { models: [{ stage: 'teacher@1', path: join(root, 'teacher@1') }] } };
    const outDir2 = join(root, 'out2');
    mkdirSync(outDir2);
    await assert.rejects(
      plugin.run({ ...one, outDir: outDir2 } as typeof ctx),
      /bind the input "models" to at least 2 model stages/,
    );
    assert.deepEqual(readdirSync(outDir2), []);
    assert.ok(existsSync(join(outDir, 'model.onnx')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
