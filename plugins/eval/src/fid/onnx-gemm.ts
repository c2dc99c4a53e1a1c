/**
 * Float64 matrix products run by onnxruntime-node (MLAS DGEMM, multi-threaded): the O(N D^2)
 * covariance and the O(D^3) congruence L^T S L are far too slow in plain JavaScript for D = 2048.
 *
 * The two tiny ONNX graphs are encoded here directly as protobuf bytes (a dozen fields of
 * onnx.proto), so this module needs no ONNX builder.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';

type Bytes = number[];
function varint(value: number): Bytes {
  const out: Bytes = [];
  let v = value;
  while (v > 127) {
    out.push((v & 127) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
const key = (field: number, wire: number): Bytes => varint(field * 8 + wire);
const lenField = (field: number, body: Bytes): Bytes => [...key(field, 2), ...varint(body.length), ...body];
const strField = (field: number, s: string): Bytes => lenField(field, [...new TextEncoder().encode(s)]);
const intField = (field: number, v: number): Bytes => [...key(field, 0), ...varint(v)];

const DOUBLE = 11; // TensorProto.DataType.DOUBLE
/** ValueInfoProto of a float64 matrix with symbolic dims. */
function matrixInfo(name: string, dims: [string, string]): Bytes {
  const shape = dims.flatMap((d) => lenField(1, strField(2, d))); // Dimension.dim_param
  const tensorType = [...intField(1, DOUBLE), ...lenField(2, shape)];
  return [...strField(1, name), ...lenField(2, lenField(1, tensorType))];
}
/** NodeProto for Gemm(a, b) with optional transA (attribute type INT = 2). */
function gemmNode(a: string, b: string, out: string, transA: boolean): Bytes {
  const attrs = transA ? lenField(5, [...strField(1, 'transA'), ...intField(3, 1), ...intField(20, 2)]) : [];
  return [...strField(1, a), ...strField(1, b), ...strField(2, out), ...strField(4, 'Gemm'), ...attrs];
}
function model(nodes: Bytes[], inputs: Bytes[], outputs: Bytes[]): Uint8Array {
  const graph = [
    ...nodes.flatMap((n) => lenField(1, n)),
    ...strField(2, 'eval-linalg'),
    ...inputs.flatMap((i) => lenField(11, i)),
    ...outputs.flatMap((o) => lenField(12, o)),
  ];
  const opset = [...strField(1, ''), ...intField(2, 13)];
  return Uint8Array.from([...intField(1, 8), ...lenField(8, opset), ...lenField(7, graph)]);
}

/** Gram blocks of a row chunk split by columns into A (n x h1) and B (n x h2): AᵀA, BᵀA, BᵀB. */
const GRAM_MODEL = model(
  [gemmNode('A', 'A', 'AtA', true), gemmNode('B', 'A', 'BtA', true), gemmNode('B', 'B', 'BtB', true)],
  [matrixInfo('A', ['n', 'h1']), matrixInfo('B', ['n', 'h2'])],
  [matrixInfo('AtA', ['h1', 'h1']), matrixInfo('BtA', ['h2', 'h1']), matrixInfo('BtB', ['h2', 'h2'])],
);
/** Congruence M = Lᵀ (S L). */
const CONGRUENCE_MODEL = model(
  [gemmNode('S', 'L', 'SL', false), gemmNode('L', 'SL', 'M', true)],
  [matrixInfo('L', ['d', 'r']), matrixInfo('S', ['d', 'd'])],
  [matrixInfo('M', ['r', 'r'])],
);

interface Ort {
  InferenceSession: typeof InferenceSession;
  Tensor: typeof Tensor;
}
let ortPromise: Promise<Ort> | undefined;
const sessions = new Map<string, Promise<InferenceSession>>();

async function session(name: string, bytes: Uint8Array): Promise<{ ort: Ort; s: InferenceSession }> {
  ortPromise ??= import('onnxruntime-node') as unknown as Promise<Ort>;
  const ort = await ortPromise;
  let s = sessions.get(name);
  if (!s) {
    s = ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all' });
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
  const { ort, s } = await session('gram', GRAM_MODEL);
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
  const { ort, s: sess } = await session('congruence', CONGRUENCE_MODEL);
  const out = await sess.run({ L: new ort.Tensor('float64', l, [d, r]), S: new ort.Tensor('float64', s, [d, d]) });
  return out.M!.data as Float64Array;
}
