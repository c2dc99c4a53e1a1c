import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ShardWriter, datasetSchema } from '@distillery/runtime/shards';
import { readModelFile } from '@distillery/runtime/onnx';
import { writeBundle } from '@distillery/plugin-multi-student';
import { routingTable } from '@distillery/plugin-multi-student';
import plugin from '../src/plugin.js';
import { modelCost } from '../src/classification/efficiency.js';
import type { EvalReport } from '../src/stage/report.js';
import { linearLogits, makeCtx, rng, writeLinearModel } from './stage-helpers.js';

const dim = 4,
  C = 6;
const argmax = (v: ArrayLike<number>, off: number, n: number): number => {
  let best = 0;
  for (let j = 1; j < n; j++) if (v[off + j]! > v[off + best]!) best = j;
  return best;
};

test('eval stage: an MSD bundle is one composite model: routing accuracy, end-to-end and known-partition top-1, top-k order, cost', async () => {
  // Under the package: the bundle's copied runner resolves onnxruntime-node from the repository.
  const root = mkdtempSync(join(import.meta.dirname, 'tmp-msd-'));
  try {
    const r = rng(21);
    const n = 90;
    const x = Float32Array.from({ length: n * dim }, () => r() * 4 - 2);
    const labels = Int32Array.from({ length: n }, () => Math.floor(r() * C));
    const writer = await ShardWriter.create({
      dir: join(root, 'data'),
      schema: datasetSchema({ shape: [dim], input: 'features', labels: 'single', numClasses: C }),
      rowsPerShard: 32,
    });
    writer.append(
      {
        id: Array.from({ length: n }, (_, i) => `s${i}`),
        split: Array.from({ length: n }, () => 'test'),
        label: labels,
        features: x,
      },
      n,
    );
    await writer.close();
    const table = routingTable(
      C,
      [
        [0, 2, 4],
        [1, 3, 5],
      ],
      'consecutive',
      0,
    );
    const rand = (len: number) => Float32Array.from({ length: len }, () => r() * 2 - 1);
    const router = { w: rand(dim * 2), b: rand(2) };
    const students = [0, 1].map(() => ({ w: rand(dim * 3), b: rand(3) }));
    writeLinearModel(join(root, 'router'), router.w, router.b, dim, 2);
    students.forEach((s, k) => writeLinearModel(join(root, `student${k}`), s.w, s.b, dim, 3));
    mkdirSync(join(root, 'bundle'));
    await writeBundle({
      routing: table,
      outDir: join(root, 'bundle'),
      preprocessing: 'features as they are',
      router: { stage: 'router', path: join(root, 'router', 'model.onnx') },
      students: [0, 1].map((k) => ({ stage: `student@${k}`, path: join(root, `student${k}`, 'model.onnx') })),
    });

    const { ctx } = makeCtx(
      plugin,
      { topk: [1, 5], latencyRuns: 5, latencyWarmup: 1 },
      {
        outDir: join(root, 'out'),
        pipelineDir: root,
        inputs: {
          dataset: [{ stage: 'data', path: join(root, 'data') }],
          model: [{ stage: 'msd', path: join(root, 'bundle') }],
        },
      },
    );
    const result = await plugin.run(ctx);
    const report = JSON.parse(readFileSync(join(root, 'out', 'report.json'), 'utf8')) as EvalReport;
    const m = report.models[0]!;

    // Independent float64 reference.
    const zr = linearLogits(x, router.w, router.b, dim, 2);
    const zs = students.map((s) => linearLogits(x, s.w, s.b, dim, 3));
    let routed = 0,
      correct = 0,
      known = 0,
      top5 = 0;
    for (let i = 0; i < n; i++) {
      const y = labels[i]!;
      const k = argmax(zr, i * 2, 2);
      const trueK = table.classToStudent[y]!;
      const part = table.partitions[k]!;
      const local = Array.from(zs[k]!.subarray(i * 3, i * 3 + 3));
      if (k === trueK) routed++;
      if (part[argmax(local, 0, 3)] === y) correct++;
      if (table.partitions[trueK]![argmax(zs[trueK]!, i * 3, 3)] === y) known++;
      // Ranking: the chosen student's classes by its logits, then the other partition's by id.
      const ranking = [
        ...part
          .map((g, j) => [local[j]!, g] as const)
          .sort((a, b) => b[0] - a[0])
          .map((e) => e[1]),
        ...table.partitions[1 - k]!,
      ];
      if (ranking.slice(0, 5).includes(y)) top5++;
    }
    assert.ok(routed > 0 && routed < n, 'the fixture has both correct and wrong routes');
    assert.equal(m.composite!.routingAccuracy, routed / n);
    assert.equal(m.metrics.top1, correct / n);
    assert.equal(m.composite!.knownPartitionTop1, known / n);
    assert.equal(m.metrics.topk['5'], top5 / n);
    assert.equal(result?.metrics?.['msd/routing_accuracy'], routed / n);
    // Cost: parameters = router + both students; active = router + one; FLOPs = router + one student.
    assert.equal(m.efficiency.parameters, dim * 2 + 2 + 2 * (dim * 3 + 3));
    assert.equal(m.composite!.activeParameters, dim * 2 + 2 + (dim * 3 + 3));
    const flops = async (file: string) => modelCost(await readModelFile(join(root, file)), { x: [1, dim] }).flops;
    assert.equal(m.efficiency.flops, (await flops('router/model.onnx')) + (await flops('student0/model.onnx')));
    assert.ok(m.efficiency.latencyP50Ms > 0);
    assert.match(readFileSync(join(root, 'out', 'report.md'), 'utf8'), /## Multi-student bundles[\s\S]*\| msd \| 2 \|/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
