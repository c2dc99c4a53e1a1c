#!/usr/bin/env node
// Probe: float64 Gram-product throughput of onnxruntime-node (MLAS DGEMM) for the FID covariance,
// by graph form and chunk size. Usage: node probes/eval/gemm-probe.mjs [rows] [d]
import * as ort from 'onnxruntime-node';
import { GraphBuilder, encodeModel } from '@distillery/runtime/onnx';
const rows = Number(process.argv[2] ?? 8192),
  d = Number(process.argv[3] ?? 2048);
const x = Float64Array.from({ length: rows * d }, (_, i) => Math.sin(i * 0.37));
const xt = new Float64Array(rows * d);
for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) xt[j * rows + r] = x[r * d + j];
async function time(name, model, feeds, flops) {
  const s = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'all' });
  await s.run(feeds);
  const t = performance.now();
  const reps = 3;
  for (let i = 0; i < reps; i++) await s.run(feeds);
  const sec = (performance.now() - t) / 1000 / reps;
  console.log(`${name}: ${sec.toFixed(3)} s, ${(flops / sec / 1e9).toFixed(1)} GFLOPS`);
}
const full = 2 * rows * d * d;
await time(
  'Gemm transA X^T X',
  encodeModel(
    new GraphBuilder('g', { opset: 13 })
      .input('X', 'float64', [rows, d])
      .node('Gemm', ['X', 'X'], ['G'], { transA: { i: 1 } })
      .output('G', 'float64', [d, d])
      .build(),
  ),
  { X: new ort.Tensor('float64', x, [rows, d]) },
  full,
);
await time(
  'MatMul Xt X (pre-transposed)',
  encodeModel(
    new GraphBuilder('g', { opset: 13 })
      .input('XT', 'float64', [d, rows])
      .input('X', 'float64', [rows, d])
      .node('MatMul', ['XT', 'X'], ['G'])
      .output('G', 'float64', [d, d])
      .build(),
  ),
  { XT: new ort.Tensor('float64', xt, [d, rows]), X: new ort.Tensor('float64', x, [rows, d]) },
  full,
);
await time(
  'Gemm transB Xt Xt^T',
  encodeModel(
    new GraphBuilder('g', { opset: 13 })
      .input('XT', 'float64', [d, rows])
      .node('Gemm', ['XT', 'XT'], ['G'], { transB: { i: 1 } })
      .output('G', 'float64', [d, d])
      .build(),
  ),
  { XT: new ort.Tensor('float64', xt, [d, rows]) },
  full,
);
const xf = Float32Array.from(x);
await time(
  'float32 Gemm transA (reference)',
  encodeModel(
    new GraphBuilder('g', { opset: 13 })
      .input('X', 'float32', [rows, d])
      .node('Gemm', ['X', 'X'], ['G'], { transA: { i: 1 } })
      .output('G', 'float32', [d, d])
      .build(),
  ),
  { X: new ort.Tensor('float32', xf, [rows, d]) },
  full,
);
