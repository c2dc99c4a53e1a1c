// Device check for issue 23: teacher-infer on onnxruntime's CUDA execution provider vs CPU.
//
// Runs two teachers built with the project's ONNX writer (an MLP 784-2048-2048-10 and a small CNN:
// conv 32 -> pool -> conv 64 -> pool -> fc 128 -> fc 10) over a seeded 28x28 uint8 pixel dataset
// through teacher-infer's extractTeacherOutputs (the stage's code path: worker-thread session,
// shard reading, Arrow writing), once with no GPU (CPU) and once with GPU 0 assigned (CUDA).
// Checks that the soft labels agree (max |log-softmax difference| <= 1e-3 over every sample and
// class) and prints samples/s for both (whole call, and steady state from the first finished batch),
// then `ratio N` (CUDA over CPU whole-call throughput, both teachers' samples over both teachers'
// seconds) as the last line.
//
// Normally started by bench/gpu/run.sh, which sets up node, the carried packages and the CUDA
// libraries; it is copied next to those packages so that its imports resolve there.
//   node run.mjs [--samples N] [--batch B] [--threads T] [--second-on-cpu]
// --second-on-cpu runs the second half on CPU as well, to check this script's comparison and
// reporting where no GPU is (the ratio is then CPU over CPU).
// Exit: 0 CUDA ran and agreed; 1 error; 2 CUDA unavailable (CPU half only); 4 soft labels disagree
// (run.sh then runs it again with TF32 off: NVIDIA_TF32_OVERRIDE=0, which cuBLAS and cuDNN obey).
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GraphBuilder, writeModelFile } from '@distillery/runtime/onnx';
import { ShardWriter, datasetSchema, openShardSet } from '@distillery/runtime/shards';
import { ThreadedSession } from '@distillery/runtime/onnx/session-thread';
import { describeProvider, onnxruntimeNodeInstall } from '@distillery/runtime/onnx/execution-provider';
import { Rng } from '@distillery/runtime/rng';
import { extractTeacherOutputs } from '@distillery/plugin-teacher-infer';

const { values: args } = parseArgs({
  options: {
    samples: { type: 'string', default: '60000' },
    batch: { type: 'string', default: '256' },
    threads: { type: 'string' },
    'second-on-cpu': { type: 'boolean', default: false },
  },
});
const SAMPLES = Number(args.samples);
const BATCH = Number(args.batch);
const THREADS = Number(args.threads ?? availableParallelism());
const TOLERANCE = 1e-3;

const rng = new Rng(23);
/** Weights ~ U(-a, a) with a = sqrt(6 / fanIn) (He-uniform), so activations stay O(1) through the layers. */
const weights = (n, fanIn) => {
  const a = Math.sqrt(6 / fanIn);
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * a);
};
const biases = (n) => Float32Array.from({ length: n }, () => (rng.next() - 0.5) * 0.1);

function mlp(path) {
  const g = new GraphBuilder('mlp-784-2048-2048-10', { opset: 13 }).input('x', 'float32', ['batch', 784]);
  const dims = [784, 2048, 2048, 10];
  let prev = 'x';
  for (let l = 0; l < 3; l++) {
    g.initializer(`W${l}`, weights(dims[l] * dims[l + 1], dims[l]), [dims[l], dims[l + 1]]).initializer(
      `b${l}`,
      biases(dims[l + 1]),
      [dims[l + 1]],
    );
    g.node('Gemm', [prev, `W${l}`, `b${l}`], [`h${l}`]);
    prev = `h${l}`;
    if (l < 2) g.node('Relu', [prev], [`r${l}`]), (prev = `r${l}`);
  }
  writeModelFile(path, g.output(prev, 'float32', ['batch', 10]).build());
}

function cnn(path) {
  const g = new GraphBuilder('cnn-small', { opset: 13 })
    .input('x', 'float32', ['batch', 1, 28, 28])
    .initializer('c1w', weights(32 * 9, 9), [32, 1, 3, 3])
    .initializer('c1b', biases(32), [32])
    .initializer('c2w', weights(64 * 32 * 9, 32 * 9), [64, 32, 3, 3])
    .initializer('c2b', biases(64), [64])
    .initializer('f1w', weights(3136 * 128, 3136), [3136, 128])
    .initializer('f1b', biases(128), [128])
    .initializer('f2w', weights(128 * 10, 128), [128, 10])
    .initializer('f2b', biases(10), [10])
    .node('Conv', ['x', 'c1w', 'c1b'], ['c1'], { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } })
    .node('Relu', ['c1'], ['r1'])
    .node('MaxPool', ['r1'], ['p1'], { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } })
    .node('Conv', ['p1', 'c2w', 'c2b'], ['c2'], { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } })
    .node('Relu', ['c2'], ['r2'])
    .node('MaxPool', ['r2'], ['p2'], { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } })
    .node('Flatten', ['p2'], ['f'])
    .node('Gemm', ['f', 'f1w', 'f1b'], ['h'])
    .node('Relu', ['h'], ['hr'])
    .node('Gemm', ['hr', 'f2w', 'f2b'], ['logits']);
  writeModelFile(path, g.output('logits', 'float32', ['batch', 10]).build());
}

async function writeDataset(dir) {
  const writer = await ShardWriter.create({
    dir,
    schema: datasetSchema({ shape: [28, 28, 1], input: 'pixels', labels: 'single', numClasses: 10 }),
    rowsPerShard: 10000,
  });
  for (let start = 0; start < SAMPLES; start += 10000) {
    const n = Math.min(10000, SAMPLES - start);
    const pixels = Uint8Array.from({ length: n * 784 }, () => Math.floor(rng.next() * 256));
    const ids = Array.from({ length: n }, (_, i) => `s${start + i}`);
    writer.append(
      { id: ids, split: ids.map(() => 'train'), label: Int32Array.from(ids, (_, i) => (start + i) % 10), pixels },
      n,
    );
  }
  await writer.close();
}

/** Dense logits of an extraction, in dataset order. */
async function readLogits(dir) {
  const set = await openShardSet(dir);
  const out = new Float32Array(set.totalRows * 10);
  let row = 0;
  for await (const batch of set.batches()) {
    out.set(batch.numeric('logits'), row * 10);
    row += batch.numRows;
  }
  return out;
}

/** max over rows and classes of |log_softmax(a) - log_softmax(b)|. */
function maxLogProbDiff(a, b, classes) {
  let worst = 0;
  const lse = (z, o) => {
    let m = -Infinity;
    for (let c = 0; c < classes; c++) m = Math.max(m, z[o + c]);
    let s = 0;
    for (let c = 0; c < classes; c++) s += Math.exp(z[o + c] - m);
    return m + Math.log(s);
  };
  for (let o = 0; o < a.length; o += classes) {
    const la = lse(a, o),
      lb = lse(b, o);
    for (let c = 0; c < classes; c++) worst = Math.max(worst, Math.abs(a[o + c] - la - (b[o + c] - lb)));
  }
  return worst;
}

const root = mkdtempSync(join(tmpdir(), 'gpu-check-'));
let exitCode = 0;
try {
  const ortInstall = onnxruntimeNodeInstall();
  console.log(
    `${new Date().toISOString()} node ${process.version}, onnxruntime-node ${ortInstall.version}, ${THREADS} threads, ${SAMPLES} samples, batch ${BATCH}${process.env.NVIDIA_TF32_OVERRIDE !== undefined ? `, NVIDIA_TF32_OVERRIDE=${process.env.NVIDIA_TF32_OVERRIDE}` : ''}`,
  );
  const dataset = join(root, 'data');
  await writeDataset(dataset);
  const teachers = [
    { name: 'mlp-784-2048-2048-10', path: join(root, 'mlp.onnx'), build: mlp, params: {} },
    { name: 'cnn-small', path: join(root, 'cnn.onnx'), build: cnn, params: { inputLayout: 'CHW' } },
  ];
  for (const t of teachers) t.build(t.path);

  // Does CUDA load at all? A short session open says, without a full CPU-speed run under a CUDA label.
  const warnings = [];
  const probe = await ThreadedSession.open(teachers[0].path, { threads: 1, gpus: [0], warn: (m) => warnings.push(m) });
  await probe.release();
  const SECOND = args['second-on-cpu'] ? { gpus: [], provider: 'cpu' } : { gpus: [0], provider: 'cuda' };
  const cudaProvider = args['second-on-cpu'] ? { name: 'cuda' } : probe.executionProvider;
  console.log(
    args['second-on-cpu']
      ? 'second half on CPU (--second-on-cpu): checks this script, not CUDA'
      : `CUDA probe: ${describeProvider(cudaProvider)}`,
  );

  /**
   * One extraction; besides the whole call (worker start, model load, CUDA initialisation,
   * reading, writing) it times the steady state: from the first finished batch to the end.
   */
  const extract = async (t, gpus, outDir) => {
    let first;
    const result = await extractTeacherOutputs({
      modelPath: t.path,
      datasetDir: dataset,
      outDir,
      teacherId: t.name,
      activation: 'softmax',
      temperature: 1,
      dense: true,
      batchSize: BATCH,
      rowsPerShard: 20000,
      threads: THREADS,
      gpus,
      scale: 1 / 255,
      mean: [],
      std: [],
      inputLayout: 'as-is',
      verifyInput: 'size',
      warn: (m) => console.log(`  warning: ${m}`),
      ...t.params,
      progress: (done) => {
        first ??= { done, at: performance.now() };
      },
    });
    const end = performance.now();
    const steady = first && end > first.at ? (result.samples - first.done) / ((end - first.at) / 1000) : NaN;
    return { ...result, steady };
  };
  const line = (t, label, r) =>
    console.log(
      `${t.name} ${label}: ${r.samples} samples in ${r.seconds.toFixed(2)} s = ${(r.samples / r.seconds).toFixed(0)} samples/s whole call, ${r.steady.toFixed(0)} samples/s steady state (${describeProvider(r.executionProvider)})`,
    );
  const totals = { cpu: { samples: 0, seconds: 0 }, cuda: { samples: 0, seconds: 0 } };
  for (const t of teachers) {
    const cpu = await extract(t, [], join(root, `${t.name}-cpu`));
    totals.cpu.samples += cpu.samples;
    totals.cpu.seconds += cpu.seconds;
    line(t, 'cpu', cpu);
    if (cudaProvider.name !== 'cuda') continue;
    const cuda = await extract(t, SECOND.gpus, join(root, `${t.name}-cuda`));
    if (cuda.executionProvider.name !== SECOND.provider)
      throw new Error(`${t.name}: the CUDA run fell back to ${describeProvider(cuda.executionProvider)}`);
    totals.cuda.samples += cuda.samples;
    totals.cuda.seconds += cuda.seconds;
    line(t, 'cuda', cuda);
    const diff = maxLogProbDiff(
      await readLogits(join(root, `${t.name}-cpu`)),
      await readLogits(join(root, `${t.name}-cuda`)),
      10,
    );
    const agree = diff <= TOLERANCE;
    console.log(
      `${t.name} soft labels: max |log p_cuda - log p_cpu| = ${diff.toExponential(2)} (${agree ? 'agree' : 'DISAGREE'}, tolerance ${TOLERANCE})`,
    );
    console.log(
      `${t.name} ratio ${(cuda.samples / cuda.seconds / (cpu.samples / cpu.seconds)).toFixed(2)} whole call, ${(cuda.steady / cpu.steady).toFixed(2)} steady state`,
    );
    if (!agree) exitCode = 4;
  }
  const cpuRate = totals.cpu.samples / totals.cpu.seconds;
  console.log(`cpu total: ${cpuRate.toFixed(0)} samples/s`);
  if (cudaProvider.name !== 'cuda') {
    console.log(`cuda: unavailable (${cudaProvider.fallback ?? 'not asked for'})`);
    console.log('ratio unavailable (CUDA half not run)');
    exitCode = exitCode || 2;
  } else {
    const cudaRate = totals.cuda.samples / totals.cuda.seconds;
    console.log(`cuda total: ${cudaRate.toFixed(0)} samples/s`);
    console.log(`ratio ${(cudaRate / cpuRate).toFixed(2)}`);
  }
} catch (error) {
  console.log(`device check failed: ${error instanceof Error ? error.stack : String(error)}`);
  console.log('ratio unavailable (error)');
  exitCode = 1;
} finally {
  rmSync(root, { recursive: true, force: true });
}
process.exit(exitCode);
