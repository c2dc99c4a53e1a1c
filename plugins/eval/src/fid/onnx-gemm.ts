/**
 * Float64 matrix products run by onnxruntime-node (MLAS DGEMM, multi-threaded): the O(N D^2)
 * covariance and the O(D^3) congruence L^T S L are far too slow in plain JavaScript for D = 2048.
 * The two tiny graphs are built with the project's ONNX GraphBuilder and kept in memory.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { GraphBuilder, encodeModel } from '@distillery/core/onnx/index';

const transA = { transA: { i: 1 } };

/** Gram blocks of a row chunk split by columns into A (n x h1) and B (n x h2): AᵀA, BᵀA, BᵀB. */
function gramModel(): Uint8Array {
  return encodeModel(
    new GraphBuilder('eval-gram', { opset: 13 })
      .input('A', 'float64', ['n', 'h1'])
      .input('B', 'float64', ['n', 'h2'])
      .node('Gemm', ['A', 'A'], ['AtA'], transA)
      .node('Gemm', ['B', 'A'], ['BtA'], transA)
      .node('Gemm', ['B', 'B'], ['BtB'], transA)
      .output('AtA', 'float64', ['h1', 'h1'])
      .output('BtA', 'float64', ['h2', 'h1'])
      .output('BtB', 'float64', ['h2', 'h2'])
      .build(),
  );
}

/** Congruence M = Lᵀ (S L). */
function congruenceModel(): Uint8Array {
  return encodeModel(
    new GraphBuilder('eval-congruence', { opset: 13 })
      .input('L', 'float64', ['d', 'r'])
      .input('S', 'float64', ['d', 'd'])
      .node('Gemm', ['S', 'L'], ['SL'])
      .node('Gemm', ['L', 'SL'], ['M'], transA)
      .output('M', 'float64', ['r', 'r'])
      .build(),
  );
}

interface Ort {
  InferenceSession: typeof InferenceSession;
  Tensor: typeof Tensor;
}
let ortPromise: Promise<Ort> | undefined;
const sessions = new Map<string, Promise<InferenceSession>>();

async function session(name: string, build: () => Uint8Array): Promise<{ ort: Ort; s: InferenceSession }> {
  ortPromise ??= import('onnxruntime-node') as unknown as Promise<Ort>;
  const ort = await ortPromise;
  let s = sessions.get(name);
  if (!s) {
    s = ort.InferenceSession.create(build(), { graphOptimizationLevel: 'all' });
    sessions.set(name, s);
  }
  return { ort, s: await s };
}

/**
 * Adds XᵀX to the symmetric D x D accumulator `gram` (row-major, full), X being `rows` x D
 * row-major. Splitting the columns in two halves skips one of the four blocks (25% fewer flops).
 */
export async function accumulateGram(x: Float64Array, rows: number, d: number, gram: Float64Array): Promise<void> {
  const h1 = Math.ceil(d / 2);
  const h2 = d - h1;
  if (h2 === 0 || rows === 0) {
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * d, r * d + d);
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) gram[i * d + j]! += row[i]! * row[j]!;
    }
    return;
  }
  const a = new Float64Array(rows * h1);
  const b = new Float64Array(rows * h2);
  for (let r = 0; r < rows; r++) {
    a.set(x.subarray(r * d, r * d + h1), r * h1);
    b.set(x.subarray(r * d + h1, r * d + d), r * h2);
  }
  const { ort, s } = await session('gram', gramModel);
  const out = await s.run({ A: new ort.Tensor('float64', a, [rows, h1]), B: new ort.Tensor('float64', b, [rows, h2]) });
  const ata = out.AtA!.data as Float64Array;
  const bta = out.BtA!.data as Float64Array;
  const btb = out.BtB!.data as Float64Array;
  for (let i = 0; i < h1; i++) for (let j = 0; j < h1; j++) gram[i * d + j]! += ata[i * h1 + j]!;
  for (let i = 0; i < h2; i++) {
    for (let j = 0; j < h1; j++) {
      const v = bta[i * h1 + j]!;
      gram[(h1 + i) * d + j]! += v;
      gram[j * d + h1 + i]! += v;
    }
    for (let j = 0; j < h2; j++) gram[(h1 + i) * d + h1 + j]! += btb[i * h2 + j]!;
  }
}

/** M = Lᵀ S L for L (d x r) and symmetric S (d x d), all row-major; returns r x r. */
export async function congruence(l: Float64Array, s: Float64Array, d: number, r: number): Promise<Float64Array> {
  const { ort, s: sess } = await session('congruence', congruenceModel);
  const out = await sess.run({ L: new ort.Tensor('float64', l, [d, r]), S: new ort.Tensor('float64', s, [d, d]) });
  return out.M!.data as Float64Array;
}
