#!/usr/bin/env node
// teacher-infer benchmark (run after `npx tsc -b`): node bench/teacher-infer/run.mjs [--quick]
// 1. Fashion-MNIST import (real data, if /usr/share/datasets/fashion-mnist exists).
// 2. Extraction throughput vs bare onnxruntime-node on the same model, batch size and threads
//    (whole call and steady state; sha256 or size-only input verification; pixel transform in the
//    model or on the JS thread).
// 3. Bytes per sample per storage mode at 1,000 and 100,000 classes.
// 4. Peak RSS of extraction at 1x / 10x / 100x data (each in a fresh child process).
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const { GraphBuilder, writeModelFile } = await import('@distillery/runtime/onnx');
const { openShardSet } = await import('@distillery/runtime/shards');
const { importDataset } = await import('@distillery/plugin-dataset');
const { extractTeacherOutputs } = await import('@distillery/plugin-teacher-infer');
const ort = await import('onnxruntime-node');

const quick = process.argv.includes('--quick');
const work = mkdtempSync(join(tmpdir(), 'bench-teacher-'));
const THREADS = 1,
  BATCH = 256;

const { Rng } = await import('@distillery/runtime/rng');
/** Raw mulberry32 stream from state `a` (no seed mixing). */
function mulberry32(a) {
  const rng = Rng.fromState(a);
  return () => rng.next();
}
function mlp(path, inDim, hidden, classes, seed) {
  const r = mulberry32(seed);
  const w = (n, s) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);
  writeModelFile(
    path,
    new GraphBuilder('mlp')
      .input('x', 'float32', ['N', inDim])
      .initializer('W1', w(inDim * hidden, 1 / Math.sqrt(inDim)), [inDim, hidden])
      .initializer('b1', w(hidden, 0.1), [hidden])
      .initializer('W2', w(hidden * classes, 3 / Math.sqrt(hidden)), [hidden, classes])
      .initializer('b2', w(classes, 0.1), [classes])
      .node('Gemm', ['x', 'W1', 'b1'], ['h'])
      .node('Relu', ['h'], ['feat'])
      .node('Gemm', ['feat', 'W2', 'b2'], ['logits'])
      .output('logits', 'float32', ['N', classes])
      .output('feat', 'float32', ['N', hidden])
      .build(),
  );
}
const dirBytes = (d) =>
  readdirSync(d)
    .filter((f) => f.endsWith('.arrow'))
    .reduce((s, f) => s + statSync(join(d, f)).size, 0);
const base = (o) => ({
  teacherId: 'bench',
  activation: 'softmax',
  temperature: 1,
  dense: false,
  batchSize: BATCH,
  rowsPerShard: 8192,
  threads: THREADS,
  gpus: [],
  scale: 1 / 255,
  mean: [],
  std: [],
  inputLayout: 'as-is',
  ...o,
});

// ---- 1. real data: Fashion-MNIST
const fm = '/usr/share/datasets/fashion-mnist';
let dataset;
if (existsSync(fm)) {
  const t = performance.now();
  const m = await importDataset({
    format: 'idx',
    numClasses: 10,
    rowsPerShard: 8192,
    outDir: join(work, 'fmnist'),
    sources: [
      { split: 'train', path: `${fm}/train-images-idx3-ubyte.gz`, labels: `${fm}/train-labels-idx1-ubyte.gz` },
      { split: 'test', path: `${fm}/t10k-images-idx3-ubyte.gz`, labels: `${fm}/t10k-labels-idx1-ubyte.gz` },
    ],
  });
  const s = (performance.now() - t) / 1000;
  console.log(
    `import Fashion-MNIST (IDX.gz): ${m.totalRows} samples, ${m.shards.length} shards, ${(dirBytes(join(work, 'fmnist')) / 2 ** 20).toFixed(1)} MiB, ${s.toFixed(2)} s (${Math.round(m.totalRows / s)} samples/s)`,
  );
  dataset = join(work, 'fmnist');
} else {
  await importDataset({
    format: 'synthetic',
    dim: 784,
    classes: 10,
    sources: [{ split: 'train', samples: 20000 }],
    rowsPerShard: 8192,
    outDir: join(work, 'syn784'),
  });
  dataset = join(work, 'syn784');
  console.log('Fashion-MNIST not found: synthetic 20000 x 784 instead');
}

// ---- 2. throughput vs bare onnxruntime, a small and a larger teacher
// Steady-state throughput needs more than 70K rows at ~200K samples/s (worker start, model load and
// the first shard read are one-off costs, printed separately): the real images are imported REPEAT
// times under distinct split names (ids stay unique) for the extraction runs.
const REPEAT = quick ? 2 : 5;
let throughputData = dataset;
if (dataset.endsWith('fmnist')) {
  throughputData = join(work, 'fmnist-x');
  await importDataset({
    format: 'idx',
    numClasses: 10,
    rowsPerShard: 8192,
    outDir: throughputData,
    sources: Array.from({ length: REPEAT }, (_, k) => [
      { split: `train${k}`, path: `${fm}/train-images-idx3-ubyte.gz`, labels: `${fm}/train-labels-idx1-ubyte.gz` },
      { split: `test${k}`, path: `${fm}/t10k-images-idx3-ubyte.gz`, labels: `${fm}/t10k-labels-idx1-ubyte.gz` },
    ]).flat(),
  });
}
function deepMlp(path, dims, seed) {
  const r = mulberry32(seed);
  const g = new GraphBuilder('mlp').input('x', 'float32', ['N', dims[0]]);
  let prev = 'x';
  for (let l = 1; l < dims.length; l++) {
    const [i, o] = [dims[l - 1], dims[l]];
    g.initializer(
      `W${l}`,
      Float32Array.from({ length: i * o }, () => ((r() * 2 - 1) * 2) / Math.sqrt(i)),
      [i, o],
    ).initializer(`b${l}`, new Float32Array(o), [o]);
    const out = l === dims.length - 1 ? 'logits' : `a${l}`;
    g.node('Gemm', [prev, `W${l}`, `b${l}`], [l === dims.length - 1 ? out : `h${l}`]);
    if (l < dims.length - 1) g.node('Relu', [`h${l}`], [out]);
    prev = out;
  }
  writeModelFile(path, g.output('logits', 'float32', ['N', dims.at(-1)]).build());
}
const model = join(work, 'mlp.onnx');
// Bare inputs: every Fashion-MNIST row once, converted to float up front (not timed); bare
// inference runs them `repeat` times, the same rows the extraction reads.
const bareBatches = [];
{
  const buf = new Float32Array(BATCH * 784);
  let fill = 0;
  for await (const b of (await openShardSet(dataset)).batches()) {
    const px = b.numeric('pixels');
    for (let r = 0; r < b.numRows; r++) {
      for (let i = 0; i < 784; i++) buf[fill * 784 + i] = px[r * 784 + i] / 255;
      if (++fill === BATCH) {
        bareBatches.push(buf.slice());
        fill = 0;
      }
    }
  }
  if (fill) bareBatches.push(buf.slice(0, fill * 784));
}
async function bare(modelPath, repeat) {
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
  });
  const t = performance.now();
  let n = 0;
  for (let k = 0; k < repeat; k++) {
    for (const x of bareBatches) {
      const out = await session.run({ x: new ort.Tensor('float32', x, [x.length / 784, 784]) }, ['logits']);
      n += x.length / 784;
      out.logits.dispose();
    }
  }
  const s = (performance.now() - t) / 1000;
  await session.release();
  return n / s;
}
/**
 * One extraction, timed as the whole call (worker and model start, reading + verifying shards,
 * input conversion, Arrow writing) and in steady state: from the first finished batch (first
 * progress report) to the end, i.e. without the one-off start-up that bare inference never pays.
 */
async function extract(modelPath, datasetDir, modes) {
  let first;
  const out = join(work, 'x-out');
  const t = performance.now();
  const r = await extractTeacherOutputs(
    base({
      modelPath,
      datasetDir,
      outDir: out,
      ...modes,
      progress: (done) => {
        first ??= [performance.now(), done];
      },
    }),
  );
  const end = performance.now();
  rmSync(out, { recursive: true, force: true });
  return {
    rate: r.samples / ((end - t) / 1000),
    steady: (r.samples - first[1]) / ((end - first[0]) / 1000),
    startup: (end - t) / 1000 - (end - first[0]) / 1000,
    transform: r.pixelTransform,
  };
}
// This machine's speed drifts by 10-20% within minutes (other tenants), so every extraction run is
// paired with a bare run just before it, ROUNDS times per variant, and the pairs' ratios are reported.
const ROUNDS = quick ? 1 : 3;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const kilo = (x) => `${Math.round(x / 100) / 10}k`;
const percents = (xs) => `${(100 * median(xs)).toFixed(1)}% (${xs.map((x) => (100 * x).toFixed(0)).join(', ')})`;
const variants = [
  ['dense', { dense: true }],
  ['dense, verifyInput size', { dense: true, verifyInput: 'size' }],
  ['top-5', { dense: false, topk: { k: 5 } }],
  ['dense, pixel transform on the JS thread', { dense: true, pixelTransformIn: 'js' }],
];
// The large model runs over the 70,000 rows once (~5 s per run), the small one over REPEAT copies.
for (const [dims, datasetDir, repeat] of quick
  ? [[[784, 512, 10], throughputData, REPEAT]]
  : [
      [[784, 512, 10], throughputData, REPEAT],
      [[784, 2048, 2048, 10], dataset, 1],
    ]) {
  deepMlp(model, dims, 1);
  console.log(
    `throughput, MLP ${dims.join('-')}, batch ${BATCH}, ${THREADS} intra-op thread, ${repeat} x 70,000 Fashion-MNIST rows; extraction / bare of ${ROUNDS} pairs, median (each pair):`,
  );
  for (const [name, modes] of variants) {
    const bares = [],
      xs = [];
    for (let round = 0; round < ROUNDS; round++) {
      bares.push(await bare(model, repeat));
      xs.push(await extract(model, datasetDir, modes));
    }
    const t = xs[0].transform;
    console.log(
      `  ${name}: whole call ${percents(xs.map((x, i) => x.rate / bares[i]))}, steady state ${percents(xs.map((x, i) => x.steady / bares[i]))}; ` +
        `bare ${kilo(median(bares))}, whole ${kilo(median(xs.map((x) => x.rate)))}, steady ${kilo(median(xs.map((x) => x.steady)))} samples/s; start-up ${Math.round(1000 * median(xs.map((x) => x.startup)))} ms` +
        (t ? `; pixel transform ${t.applied ? 'in the model' : `on the JS thread (${t.reason})`}` : ''),
    );
  }
}

// ---- 3. bytes per sample
const synth = join(work, 'syn64');
await importDataset({
  format: 'synthetic',
  dim: 64,
  classes: 10,
  sources: [{ split: 'train', samples: 2000 }],
  rowsPerShard: 4096,
  outDir: synth,
});
for (const classes of [1000, 100000]) {
  const m = join(work, `m${classes}.onnx`);
  mlp(m, 64, 64, classes, 2);
  const rows = [];
  for (const [name, modes] of [
    ['dense', { dense: true }],
    ['top-20', { topk: { k: 20 } }],
    ['sampled N=50', { sampled: { draws: 50, tau: 1, seed: 0 } }],
    ['features (64)', { featuresOutput: 'feat', dense: false }],
  ]) {
    const out = join(work, `b-${classes}-${name.replace(/\W/g, '')}`);
    const r = await extractTeacherOutputs(
      base({ modelPath: m, datasetDir: synth, outDir: out, temperature: 2, ...modes }),
    );
    const idBytes = 0; // ids are included in the total (~10 bytes each)
    rows.push(`${name} ${(dirBytes(out) / r.samples + idBytes).toFixed(0)} B`);
    if (name.startsWith('sampled')) {
      let distinct = 0;
      for await (const b of (await openShardSet(out)).batches()) distinct += b.list('sample_ids').values.length;
      rows[rows.length - 1] += ` (${(distinct / r.samples).toFixed(1)} distinct ids)`;
    }
    rmSync(out, { recursive: true, force: true });
  }
  console.log(`bytes/sample at ${classes} classes (T=2, random MLP): ${rows.join(', ')}`);
}

// ---- 4. RSS at 1x / 10x / 100x
const child = `
const [entry, dataset, model, out] = process.argv.slice(2);
const { extractTeacherOutputs } = await import(entry);
await extractTeacherOutputs({ teacherId: 'rss', modelPath: model, datasetDir: dataset, outDir: out, activation: 'softmax', temperature: 1, dense: true, topk: { k: 20 }, batchSize: 256, rowsPerShard: 8192, threads: 1, gpus: [], scale: 1, mean: [], std: [], inputLayout: 'as-is' });
// VmHWM, not resourceUsage().maxRSS: Linux carries the parent's peak across fork + exec into maxRSS.
const status = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8');
console.log(JSON.stringify({ maxRssMiB: Number(/VmHWM:\\s+(\\d+) kB/.exec(status)[1]) / 1024 }));`;
const m1k = join(work, 'm1000.onnx');
const rss = [];
for (const n of quick ? [1000, 10000] : [1000, 10000, 100000]) {
  const d = join(work, `rss-${n}`);
  await importDataset({
    format: 'synthetic',
    dim: 64,
    classes: 10,
    sources: [{ split: 'train', samples: n }],
    rowsPerShard: 8192,
    outDir: d,
  });
  const t = performance.now();
  const script = join(work, 'rss-child.mjs');
  writeFileSync(script, child);
  const res = spawnSync(
    process.execPath,
    [script, import.meta.resolve('@distillery/plugin-teacher-infer'), d, m1k, join(work, `rss-out-${n}`)],
    { encoding: 'utf8' },
  );
  if (res.status !== 0) throw new Error(res.stderr);
  rss.push(
    `${n}: ${JSON.parse(res.stdout.trim()).maxRssMiB.toFixed(0)} MiB (${((performance.now() - t) / 1000).toFixed(1)} s)`,
  );
  rmSync(d, { recursive: true, force: true });
  rmSync(join(work, `rss-out-${n}`), { recursive: true, force: true });
}
console.log(`peak RSS, dense+top-20 at 1000 classes, 64-dim inputs: ${rss.join(', ')}`);
rmSync(work, { recursive: true, force: true });
