#!/usr/bin/env node
// Issue 17: how a specialist's accuracy is scored. One specialist's ONNX model on (a) the data's test
// rows whose label is in its vertical and (b) the same number of its own training rows, each ranked
// (1) within its vertical only (the specialist's own N_v outputs) and, for (a), (2) by nearest class
// mean of the raw embeddings restricted to the vertical's classes (from the vertical's training rows).
// Usage: node bench/eft-100k/specialist-check.mjs <out/eft-100k> <vertical> [rows]
import * as ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openShardSet } from '@distillery/runtime/shards';

const [out, vertical, rowsArg = '2000'] = process.argv.slice(2);
const limit = Number(rowsArg);
const map = JSON.parse(readFileSync(join(out, 'data', 'verticals', `${vertical}.json`), 'utf8'));
const local = new Map(map.map((g, i) => [g, i]));
const test = { x: [], y: [] };
const train = { x: [], y: [] };
const sums = new Map();
for await (const b of (await openShardSet(join(out, 'data'))).batches({ verify: 'size' })) {
  const sp = b.strings('split');
  const f = b.numeric('features');
  const l = b.numeric('label');
  const d = f.length / b.numRows;
  for (let r = 0; r < b.numRows; r++) {
    const y = local.get(l[r]);
    if (y === undefined) continue;
    const x = f.slice(r * d, (r + 1) * d);
    if (sp[r] === 'test' && test.y.length < limit) {
      test.x.push(x);
      test.y.push(y);
    }
    if (sp[r] === 'train') {
      if (train.y.length < limit) {
        train.x.push(x);
        train.y.push(y);
      }
      const s = sums.get(y) ?? { n: 0, v: new Float64Array(d) };
      for (let j = 0; j < d; j++) s.v[j] += x[j];
      s.n++;
      sums.set(y, s);
    }
  }
}
const session = await ort.InferenceSession.create(join(out, `specialist@${vertical}`, 'model.onnx'), {
  intraOpNumThreads: 1,
});
async function top1(set) {
  let hit = 0;
  const d = set.x[0].length;
  for (let i = 0; i < set.y.length; i += 200) {
    const n = Math.min(200, set.y.length - i);
    const x = new Float32Array(n * d);
    for (let r = 0; r < n; r++) x.set(set.x[i + r], r * d);
    const o = (await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [n, d]) }))[
      session.outputNames[0]
    ];
    const c = o.dims[1];
    for (let r = 0; r < n; r++) {
      const row = o.data.subarray(r * c, (r + 1) * c);
      const t = row[set.y[i + r]];
      let above = 0;
      for (let j = 0; j < c; j++) if (j !== set.y[i + r] && !(row[j] < t)) above++;
      if (above === 0) hit++;
    }
  }
  return hit / set.y.length;
}
// Nearest class mean within the vertical, raw embeddings.
const means = [...sums.entries()].map(([y, s]) => ({ y, m: Float64Array.from(s.v, (v) => v / s.n) }));
let ncm = 0;
for (let i = 0; i < test.y.length; i++) {
  let best = -1,
    bestD = Infinity;
  for (const { y, m } of means) {
    let dist = 0;
    for (let j = 0; j < m.length; j++) dist += (test.x[i][j] - m[j]) ** 2;
    if (dist < bestD) {
      bestD = dist;
      best = y;
    }
  }
  if (best === test.y[i]) ncm++;
}
console.log(
  JSON.stringify({
    vertical,
    classes: map.length,
    testRows: test.y.length,
    trainRows: train.y.length,
    specialistTop1WithinVerticalTest: await top1(test),
    specialistTop1WithinVerticalTrain: await top1(train),
    ncmRawWithinVerticalTest: ncm / test.y.length,
  }),
);
