#!/usr/bin/env node
// Top-1 / top-5 of ONNX students on the first N test rows of an EFT data stage output, scored
// against every class (a quick check while tuning; the eval stage gives the full report).
// Usage: node probes/eft-100k/quick-score.mjs <data dir> <model.onnx>... [--rows 2000]
import * as ort from 'onnxruntime-node';
import { parseArgs } from 'node:util';
import { openShardSet } from '@distillery/runtime/shards';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rows: { type: 'string', default: '2000' } },
});
const [dataDir, ...models] = positionals;
const limit = Number(values.rows);
const xs = [];
const ys = [];
for await (const b of (await openShardSet(dataDir)).batches({ verify: 'size' })) {
  const sp = b.strings('split');
  const f = b.numeric('features');
  const l = b.numeric('label');
  const d = f.length / b.numRows;
  for (let r = 0; r < b.numRows && ys.length < limit; r++)
    if (sp[r] === 'test') {
      xs.push(f.slice(r * d, (r + 1) * d));
      ys.push(l[r]);
    }
}
const d = xs[0].length;
for (const model of models) {
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 2 });
  let top1 = 0,
    top5 = 0;
  for (let i = 0; i < ys.length; i += 100) {
    const n = Math.min(100, ys.length - i);
    const x = new Float32Array(n * d);
    for (let r = 0; r < n; r++) x.set(xs[i + r], r * d);
    const out = (await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x, [n, d]) }))[s.outputNames[0]];
    const c = out.dims[1];
    for (let r = 0; r < n; r++) {
      const row = out.data.subarray(r * c, (r + 1) * c);
      const t = row[ys[i + r]];
      // Ties count against the true class (a dead-feature model gives every class the same score),
      // and so does a NaN score.
      let above = Number.isNaN(t) ? c : 0;
      for (let j = 0; j < c; j++) if (j !== ys[i + r] && !(row[j] < t)) above++;
      if (above === 0) top1++;
      if (above < 5) top5++;
    }
  }
  console.log(
    `${model}: top-1 ${((100 * top1) / ys.length).toFixed(2)}%, top-5 ${((100 * top5) / ys.length).toFixed(2)}% over ${ys.length} test rows`,
  );
}
