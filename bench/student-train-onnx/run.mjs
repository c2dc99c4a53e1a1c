// Training step time of an imported ONNX student (student: { arch: onnx }) against the same
// architecture built by student-train, with the same weights: each built-in model is exported with
// exportOnnx and imported back. Adam, softmax cross-entropy, batch 128 on 28x28x1 inputs, wasm.
// Rounds alternate built-in and imported (A B A B ...); each round times --steps steps after one
// warm-up step. Prints the median ms/step per model and architecture; the last line is
// `ratio N`: imported / built-in median ms/step, the larger of the two architectures' ratios. Each
// architecture also gets the paired 95% t-interval of imported - built-in ms/step over rounds (a
// round's two timings are adjacent, so machine drift cancels in the difference).
// Usage: npx tsc -b && node bench/student-train-onnx/run.mjs [--threads 1] [--rounds 6] [--steps 8]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { selectBackend } from '@distillery/runtime/tfjs/backend';
const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '6' },
    steps: { type: 'string', default: '8' },
  },
});
const { tf } = await selectBackend({ cpus: Number(args.threads), gpus: [], prefer: 'wasm' });
const { createStudent } = await import('@distillery/plugin-student-train');
const { exportOnnx } = await import('@distillery/plugin-student-train');
const { Optimizer, DEFAULT_OPTIMIZER } = await import('@distillery/runtime/optim');
const { crossEntropy } = await import('@distillery/plugin-student-train');
const { pairedTInterval } = await import('@distillery/plugin-eval');

const dir = mkdtempSync(join(tmpdir(), 'bench-onnx-student-'));
const shape = [28, 28, 1];
const architectures = {
  'mlp 784-256-10': { arch: 'mlp', hidden: [256] },
  'cnn same [16,32] batch norm, fc 64': {
    arch: 'cnn',
    channels: [16, 32],
    kernel: 3,
    padding: 'same',
    batchNorm: true,
    hidden: [64],
  },
};
const x = tf.randomUniform([128, ...shape], 0, 1, 'float32', 1);
const labels = tf.tensor1d(
  Int32Array.from({ length: 128 }, (_, i) => (i * 7) % 10),
  'int32',
);

/** A training step closure for `student` (its own Adam state). */
function stepper(student) {
  const optimizer = new Optimizer({ ...DEFAULT_OPTIMIZER, name: 'adam', lr: 1e-3 }, student.params);
  const vars = student.params.map((p) => p.variable);
  let i = 0;
  return () => {
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => crossEntropy(student.apply(x, true, i), labels), vars);
      const named = {};
      student.params.forEach((p) => (named[p.name] = grads[p.variable.name]));
      optimizer.apply(named, 1e-3);
      value.dataSync();
    });
    i++;
  };
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const ratios = [];
for (const [name, config] of Object.entries(architectures)) {
  const builtin = createStudent(config, shape, 10, 0);
  const path = join(dir, `${config.arch}.onnx`);
  exportOnnx(builtin, path);
  const imported = createStudent({ arch: 'onnx', model: path, reinit: false }, shape, 10, 0);
  const models = { 'built-in': stepper(builtin), imported: stepper(imported) };
  const times = { 'built-in': [], imported: [] };
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const which of ['built-in', 'imported']) {
      const step = models[which];
      step();
      const t0 = performance.now();
      for (let s = 0; s < Number(args.steps); s++) step();
      times[which].push((performance.now() - t0) / Number(args.steps));
    }
  }
  const a = median(times['built-in']);
  const b = median(times.imported);
  console.log(
    `${name}: built-in ${a.toFixed(1)} ms/step, imported ${b.toFixed(1)} ms/step (medians of ${args.rounds} rounds x ${args.steps} steps, ${args.threads} thread(s)); imported / built-in ${(b / a).toFixed(3)}`,
  );
  console.log(
    `  rounds built-in [${times['built-in'].map((t) => t.toFixed(1)).join(', ')}], imported [${times.imported.map((t) => t.toFixed(1)).join(', ')}]`,
  );
  const paired = pairedTInterval(times.imported, times['built-in'], 0.95, name);
  const signed = (v) => `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;
  console.log(
    `  imported - built-in: ${signed(paired.meanDifference)} ms/step, 95% paired t-interval over rounds [${signed(paired.low)}, ${signed(paired.high)}]: ${paired.verdict === 'within noise' ? 'within noise' : paired.verdict === 'a > b' ? 'imported slower' : 'imported faster'}`,
  );
  ratios.push(b / a);
}
rmSync(dir, { recursive: true, force: true });
console.log(`ratio ${Math.max(...ratios).toFixed(3)}`);
process.exit(0);
