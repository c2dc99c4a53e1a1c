#!/usr/bin/env node
// The Knowledge Concentration ablation on the EFT stand-in: generalist (hard labels), +distillation
// (plain MLP head on KC targets), +SC head, +self-paced scales (the pipeline's kc stage), and the
// 20 specialists together; mean per-vertical AP and top-1 on the test split, over several seeds
// (params.seed: data, specialists and students all change). Variants are --set overrides of the kc
// stage on the same project root, so data, specialists and teachers are reused from the cache.
// Usage: npx tsc -b && node bench/eft-100k/ablation.mjs [--classes 1000] [--spc 8] [--seeds 0,1,2] [--set k=v ...]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { openShardSet } from '@distillery/runtime/shards';
import { meanPerVerticalAP, topKAccuracy } from '@distillery/plugin-eval';

const { values: args } = parseArgs({
  options: {
    classes: { type: 'string', default: '1000' },
    spc: { type: 'string', default: '8' },
    seeds: { type: 'string', default: '0,1,2' },
    set: { type: 'string', multiple: true, default: [] },
  },
});
const repo = new URL('../..', import.meta.url).pathname;
const pipeline = join(repo, 'pipelines', 'eft-100k.yaml');
const distill = join(repo, 'tools', 'core', 'bin', 'distill.js');

function run(root, sets) {
  const r = spawnSync(
    process.execPath,
    [distill, 'run', pipeline, '--quiet', '--root', root, ...sets.flatMap((s) => ['--set', s])],
    { cwd: repo, encoding: 'utf8' },
  );
  if (r.status !== 0)
    throw new Error(`distill run failed (${sets.join(' ')}):\n${r.stderr.slice(-3000)}\n${r.stdout.slice(-2000)}`);
}

async function testSet(dataDir) {
  const set = await openShardSet(dataDir);
  const xs = [];
  const ys = [];
  for await (const b of set.batches()) {
    const sp = b.strings('split');
    const f = b.numeric('features');
    const l = b.numeric('label');
    for (let r = 0; r < b.numRows; r++)
      if (sp[r] === 'test') {
        xs.push(f.slice(r * 256, (r + 1) * 256));
        ys.push(l[r]);
      }
  }
  const x = new Float32Array(xs.length * 256);
  xs.forEach((v, i) => x.set(v, i * 256));
  return { x, y: Int32Array.from(ys), n: ys.length };
}

async function logits(modelPath, x, n) {
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 2 });
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [n, 256]) });
  return out[session.outputNames[0]].data;
}

function softmaxRows(z, n, c) {
  const out = new Float32Array(z.length);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, z[i * c + j]);
    let s = 0;
    for (let j = 0; j < c; j++) s += out[i * c + j] = Math.exp(z[i * c + j] - m);
    for (let j = 0; j < c; j++) out[i * c + j] /= s;
  }
  return out;
}

/**
 * Every student is a per-class sigmoid model: mpvap from its raw logits (the same ranking as its
 * sigmoid outputs) and, as the eval stage computes it, from the softmax of each row.
 */
function score(data, test, taxonomy, logits = true) {
  const m = { rows: test.n, cols: taxonomy.numClasses, data };
  const soft = logits ? { ...m, data: softmaxRows(data, test.n, taxonomy.numClasses) } : undefined;
  return {
    mpvap: meanPerVerticalAP(m, test.y, taxonomy.classVertical, taxonomy.verticals.length).mpvap,
    mpvapSoftmax: soft ? meanPerVerticalAP(soft, test.y, taxonomy.classVertical, taxonomy.verticals.length).mpvap : NaN,
    top1: topKAccuracy(m, test.y, 1),
  };
}

const variants = {
  generalist: [],
  distillation: ['kc.student.arch=mlp', 'kc.student.hidden=[256, 64]'],
  sc: ['kc.student.selfPaced=false'],
  selfpaced: [],
};
const table = {};
for (const seed of args.seeds.split(',').map(Number)) {
  const root = mkdtempSync(join(tmpdir(), 'eft-ablation-'));
  writeFileSync(join(root, 'nx.json'), '{}');
  const out = (stage) => join(root, 'out', 'eft-100k', stage);
  const base = [
    `params.seed=${seed}`,
    `params.data.classes=${args.classes}`,
    `params.data.samplesPerClass=${args.spc}`,
    ...args.set,
  ];
  try {
    const t0 = performance.now();
    run(root, base);
    const taxonomy = JSON.parse(readFileSync(join(out('data'), 'taxonomy.json'), 'utf8'));
    const test = await testSet(out('data'));
    const C = taxonomy.numClasses;
    const add = (name, s) => (table[name] ??= []).push(s);
    add('generalist', score(await logits(join(out('generalist'), 'model.onnx'), test.x, test.n), test, taxonomy));
    add('+distill+SC+self-paced', score(await logits(join(out('kc'), 'model.onnx'), test.x, test.n), test, taxonomy));
    // Specialists together: each class scored by its vertical's specialist (sigmoid).
    const all = new Float32Array(test.n * C);
    for (const v of taxonomy.verticals) {
      const map = JSON.parse(readFileSync(join(out('data'), 'verticals', `${v.name}.json`), 'utf8'));
      const z = await logits(join(out(`specialist@${v.name}`), 'model.onnx'), test.x, test.n);
      for (let i = 0; i < test.n; i++)
        map.forEach((g, j) => (all[i * C + g] = 1 / (1 + Math.exp(-z[i * map.length + j]))));
    }
    add('specialists (20 together)', score(all, test, taxonomy, false)); // probabilities: no softmax column
    run(root, [...base, ...variants.sc]);
    add('+distill+SC', score(await logits(join(out('kc'), 'model.onnx'), test.x, test.n), test, taxonomy));
    run(root, [...base, ...variants.distillation]);
    add('+distillation', score(await logits(join(out('kc'), 'model.onnx'), test.x, test.n), test, taxonomy));
    console.log(
      `seed ${seed}: ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      JSON.stringify(Object.fromEntries(Object.entries(table).map(([k, v]) => [k, v.at(-1)]))),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
const stat = (xs) => {
  if (xs.every(Number.isNaN)) return '–';
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return `${(100 * m).toFixed(1)} ± ${(100 * sd).toFixed(1)}`;
};
console.log(`\n${args.classes} classes, ${args.spc} train samples/class, seeds ${args.seeds} (mean ± std, %)`);
console.log('| variant | mpvap (sigmoid scores) | mpvap (softmax, as the eval stage) | top-1 |\n|---|---|---|---|');
for (const name of [
  'generalist',
  '+distillation',
  '+distill+SC',
  '+distill+SC+self-paced',
  'specialists (20 together)',
]) {
  const rows = table[name] ?? [];
  console.log(
    `| ${name} | ${stat(rows.map((r) => r.mpvap))} | ${stat(rows.map((r) => r.mpvapSoftmax))} | ${stat(rows.map((r) => r.top1))} |`,
  );
}
