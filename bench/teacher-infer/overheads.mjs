#!/usr/bin/env node
// Where extraction loses against bare inference for a small teacher (run after `npx tsc -b`; ~2 min):
//   node bench/teacher-infer/overheads.mjs [pairs=5]
// 1. Handoff ceiling: bare onnxruntime-node on the main thread vs the same batches passed to the
//    ThreadedSession worker and back (four in flight, nothing read, converted or written), alternating.
// 2. Pixel transform in the model vs on the JS thread: steady-state extraction rate, alternating runs
//    (`verifyInput: size`, so the shard hash does not add noise).
// 3. Shard verification: sha256 (hashed in slices between batches) vs size only, alternating runs.
// Uses Fashion-MNIST from /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist), 5 x 70,000 rows.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const { GraphBuilder, writeModelFile } = await import('@distillery/runtime/onnx');
const { ThreadedSession } = await import('@distillery/runtime/onnx/session-thread');
const { importDataset } = await import('@distillery/plugin-dataset');
const { extractTeacherOutputs } = await import('@distillery/plugin-teacher-infer');
const ort = await import('onnxruntime-node');

const pairs = Number(process.argv[2] ?? 5);
const work = mkdtempSync(join(tmpdir(), 'bench-overheads-'));
const BATCH = 256,
  D = 784,
  BATCHES = 1200;
const fm = '/usr/share/datasets/fashion-mnist';

const { Rng } = await import('@distillery/runtime/rng');
/** Raw mulberry32 stream from state `a` (no seed mixing). */
function mulberry32(a) {
  const rng = Rng.fromState(a);
  return () => rng.next();
}
const model = join(work, 'mlp.onnx');
{
  const r = mulberry32(1);
  const w = (n, s) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);
  writeModelFile(
    model,
    new GraphBuilder('mlp')
      .input('x', 'float32', ['N', D])
      .initializer('W1', w(D * 512, 2 / Math.sqrt(D)), [D, 512])
      .initializer('b1', new Float32Array(512), [512])
      .initializer('W2', w(512 * 10, 2 / Math.sqrt(512)), [512, 10])
      .initializer('b2', new Float32Array(10), [10])
      .node('Gemm', ['x', 'W1', 'b1'], ['h'])
      .node('Relu', ['h'], ['a'])
      .node('Gemm', ['a', 'W2', 'b2'], ['logits'])
      .output('logits', 'float32', ['N', 10])
      .build(),
  );
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => `median ${Math.round(median(xs))} (${xs.map((x) => Math.round(x / 1000) + 'k').join(', ')})`;

// ---- 1. handoff ceiling
const inputs = Array.from({ length: 4 }, () => {
  const r = mulberry32(7);
  return Float32Array.from({ length: BATCH * D }, () => r());
});
async function bareMain() {
  const s = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
  });
  const t = performance.now();
  for (let i = 0; i < BATCHES; i++)
    (await s.run({ x: new ort.Tensor('float32', inputs[i % 4], [BATCH, D]) }, ['logits'])).logits.dispose();
  const rate = (BATCHES * BATCH) / ((performance.now() - t) / 1000);
  await s.release();
  return rate;
}
async function handoff() {
  const s = await ThreadedSession.open(model, { threads: 1 });
  const queue = inputs.map((x) => s.run({ x: { type: 'float32', data: x.slice(), dims: [BATCH, D] } }, ['logits']));
  const t = performance.now();
  for (let i = 0; i < BATCHES; i++) {
    const back = (await queue.shift()).inputs.x.data;
    if (i + 4 < BATCHES)
      queue.push(s.run({ x: { type: 'float32', data: new Float32Array(back.buffer), dims: [BATCH, D] } }, ['logits']));
  }
  const rate = (BATCHES * BATCH) / ((performance.now() - t) / 1000);
  await s.release();
  return rate;
}
const bareRates = [],
  handoffRates = [];
for (let k = 0; k < pairs; k++) {
  bareRates.push(await bareMain());
  handoffRates.push(await handoff());
}
console.log(
  `handoff ceiling, MLP 784-512-10, batch ${BATCH}, 1 thread, ${BATCHES} batches, ${pairs} alternating pairs:`,
);
console.log(`  bare onnxruntime on the main thread:        ${fmt(bareRates)} samples/s`);
console.log(
  `  batches through the worker and back only:   ${fmt(handoffRates)} samples/s = ${((100 * median(handoffRates)) / median(bareRates)).toFixed(1)}% of bare`,
);

// ---- 2. pixel transform in the model vs on the JS thread
const data = join(work, 'fmnist-x5');
await importDataset({
  format: 'idx',
  numClasses: 10,
  rowsPerShard: 8192,
  outDir: data,
  sources: Array.from({ length: 5 }, (_, k) => [
    { split: `train${k}`, path: `${fm}/train-images-idx3-ubyte.gz`, labels: `${fm}/train-labels-idx1-ubyte.gz` },
    { split: `test${k}`, path: `${fm}/t10k-images-idx3-ubyte.gz`, labels: `${fm}/t10k-labels-idx1-ubyte.gz` },
  ]).flat(),
});
async function steady(pixelTransformIn, verifyInput = 'size') {
  let first;
  const out = join(work, 'out');
  const r = await extractTeacherOutputs({
    teacherId: 'bench',
    modelPath: model,
    datasetDir: data,
    outDir: out,
    activation: 'softmax',
    temperature: 1,
    dense: true,
    batchSize: BATCH,
    rowsPerShard: 8192,
    threads: 1,
    gpus: [],
    scale: 1 / 255,
    mean: [],
    std: [],
    inputLayout: 'as-is',
    verifyInput,
    pixelTransformIn,
    progress: (done) => {
      first ??= [performance.now(), done];
    },
  });
  const rate = (r.samples - first[1]) / ((performance.now() - first[0]) / 1000);
  rmSync(out, { recursive: true, force: true });
  return rate;
}
const inModel = [],
  onJs = [];
for (let k = 0; k < pairs; k++) {
  inModel.push(await steady('model'));
  onJs.push(await steady('js'));
}
const ahead = inModel.filter((x, k) => x > onJs[k]).length;
console.log(
  `pixel transform, extraction steady state, dense, 5 x 70,000 Fashion-MNIST rows, ${pairs} alternating pairs:`,
);
console.log(`  in the model:     ${fmt(inModel)} samples/s`);
console.log(`  on the JS thread: ${fmt(onJs)} samples/s (in the model ahead in ${ahead} of ${pairs} pairs)`);

const hashed = [],
  sizeOnly = [];
for (let k = 0; k < pairs; k++) {
  hashed.push(await steady('model', 'sha256'));
  sizeOnly.push(await steady('model', 'size'));
}
console.log(
  `shard verification, extraction steady state, dense, pixel transform in the model, ${pairs} alternating pairs:`,
);
console.log(`  sha256:    ${fmt(hashed)} samples/s`);
console.log(
  `  size only: ${fmt(sizeOnly)} samples/s (sha256 = ${((100 * median(hashed)) / median(sizeOnly)).toFixed(1)}% of size only)`,
);
rmSync(work, { recursive: true, force: true });
