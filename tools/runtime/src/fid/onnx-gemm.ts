/**
 * Float64 matrix work run by onnxruntime-node (MLAS DGEMM, multi-threaded, ~50 GFLOPS on this
 * 2-core machine): the O(N D^2) streaming covariance and the O(D^3) congruence L^T S L are far
 * too slow in plain JavaScript for D = 2048. The small graphs are built with the project's ONNX
 * GraphBuilder and kept in memory, one session per shape.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { GraphBuilder, encodeModel } from '../onnx/index.js';

const transA = { transA: { i: 1 } };

/** Column blocks of the Gram accumulation: `bounds[b]` .. `bounds[b+1]` (the last may be shorter). */
export function columnBlocks(d: number, blocks: number): number[] {
  const size = Math.ceil(d / blocks);
  const bounds = [0];
  while (bounds[bounds.length - 1]! < d) bounds.push(Math.min(d, bounds[bounds.length - 1]! + size));
  return bounds;
}

/**
 * One chunk's update of the streaming statistics, all in onnxruntime (the JS thread only reads
 * the file): C = float64(X) - shift; S += column sums of C; for every block pair i >= j of the
 * column split, G_ij += C_iᵀ C_j (Gemm with beta = 1 on the running accumulator). Only the lower
 * block triangle is computed: with B blocks that is (B+1)/(2B) of the full XᵀX flops.
 */
function statsChunkModel(dtype: 'float32' | 'float64', bounds: number[]): Uint8Array {
  const d = bounds[bounds.length - 1]!;
  const blocks = bounds.length - 1;
  const g = new GraphBuilder(`eval-fid-stats-${dtype}`, { opset: 13 })
    .input('X', dtype, ['n', d])
    .input('shift', 'float64', [d])
    .input('S', 'float64', [d])
    .initializer('axis0', BigInt64Array.from([0n]), [1])
    .initializer('widths', BigInt64Array.from(bounds.slice(1).map((b, i) => BigInt(b - bounds[i]!))), [blocks]);
  if (dtype === 'float32') g.node('Cast', ['X'], ['Xd'], { to: { i: 11 } });
  g.node('Sub', [dtype === 'float32' ? 'Xd' : 'X', 'shift'], ['C'])
    .node('ReduceSum', ['C', 'axis0'], ['colsum'], { keepdims: { i: 0 } })
    .node('Add', ['S', 'colsum'], ['S_out'])
    .output('S_out', 'float64', [d]);
  const parts = Array.from({ length: blocks }, (_, b) => `C${b}`);
  if (blocks > 1) g.node('Split', ['C', 'widths'], parts, { axis: { i: 1 } });
  for (let i = 0; i < blocks; i++) {
    for (let j = 0; j <= i; j++) {
      const [wi, wj] = [bounds[i + 1]! - bounds[i]!, bounds[j + 1]! - bounds[j]!];
      const [ci, cj] = blocks > 1 ? [parts[i]!, parts[j]!] : ['C', 'C'];
      g.input(`G${i}_${j}`, 'float64', [wi, wj])
        .node('Gemm', [ci, cj, `G${i}_${j}`], [`G${i}_${j}_out`], { transA: { i: 1 }, beta: { f: 1 } })
        .output(`G${i}_${j}_out`, 'float64', [wi, wj]);
    }
  }
  return encodeModel(g.build());
}

/** Running sums of the streaming statistics: column sums and the lower block triangle of CᵀC. */
export interface GramState {
  d: number;
  bounds: number[];
  colsum: Float64Array;
  /** Block (i, j), i >= j, row-major (bounds[i+1]-bounds[i]) x (bounds[j+1]-bounds[j]). */
  blocks: Map<string, Float64Array>;
}

export function newGramState(d: number, blockCount = 8): GramState {
  const bounds = columnBlocks(d, Math.max(1, Math.min(blockCount, d)));
  const blocks = new Map<string, Float64Array>();
  for (let i = 0; i + 1 < bounds.length; i++) {
    for (let j = 0; j <= i; j++)
      blocks.set(`${i}_${j}`, new Float64Array((bounds[i + 1]! - bounds[i]!) * (bounds[j + 1]! - bounds[j]!)));
  }
  return { d, bounds, colsum: new Float64Array(d), blocks };
}

/** Adds one chunk (`rows` x d, row-major, float32 or float64) shifted by `shift` to `state`. */
export async function accumulateChunk(
  state: GramState,
  x: Float32Array | Float64Array,
  rows: number,
  shift: Float64Array,
): Promise<void> {
  const dtype = x instanceof Float32Array ? 'float32' : 'float64';
  const { ort, s } = await session(`stats-${dtype}-${state.bounds.join(',')}`, () =>
    statsChunkModel(dtype, state.bounds),
  );
  const feeds: Record<string, Tensor> = {
    X:
      dtype === 'float32'
        ? new ort.Tensor('float32', x as Float32Array, [rows, state.d])
        : new ort.Tensor('float64', x as Float64Array, [rows, state.d]),
    shift: new ort.Tensor('float64', shift, [state.d]),
    S: new ort.Tensor('float64', state.colsum, [state.d]),
  };
  for (const [key, g] of state.blocks) {
    const [i, j] = key.split('_').map(Number) as [number, number];
    feeds[`G${key}`] = new ort.Tensor('float64', g, [
      state.bounds[i + 1]! - state.bounds[i]!,
      state.bounds[j + 1]! - state.bounds[j]!,
    ]);
  }
  const out = await s.run(feeds);
  state.colsum = out.S_out!.data as Float64Array;
  for (const key of [...state.blocks.keys()]) state.blocks.set(key, out[`G${key}_out`]!.data as Float64Array);
}

/** The full symmetric D x D matrix CᵀC from the block triangle. */
export function gramMatrix(state: GramState): Float64Array {
  const { d, bounds } = state;
  const gram = new Float64Array(d * d);
  for (const [key, g] of state.blocks) {
    const [i, j] = key.split('_').map(Number) as [number, number];
    const [r0, r1, c0, c1] = [bounds[i]!, bounds[i + 1]!, bounds[j]!, bounds[j + 1]!];
    const w = c1 - c0;
    for (let r = r0; r < r1; r++) {
      for (let c = c0; c < c1; c++) {
        const v = g[(r - r0) * w + (c - c0)]!;
        gram[r * d + c] = v;
        gram[c * d + r] = v;
      }
    }
  }
  return gram;
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

/** M = Lᵀ S L for L (d x r) and symmetric S (d x d), all row-major; returns r x r. */
export async function congruence(l: Float64Array, s: Float64Array, d: number, r: number): Promise<Float64Array> {
  const { ort, s: sess } = await session('congruence', congruenceModel);
  const out = await sess.run({ L: new ort.Tensor('float64', l, [d, r]), S: new ort.Tensor('float64', s, [d, d]) });
  return out.M!.data as Float64Array;
}
