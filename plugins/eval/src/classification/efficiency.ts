/**
 * Model efficiency as MedDet reports it: parameters, FLOPs counted from the ONNX graph, and
 * latency/throughput in onnxruntime-node with identical session options for teacher and student.
 *
 * Parameters: elements of floating-point initializers (integer initializers are shape constants).
 * FLOPs (one multiply-add = 2 FLOPs), for the given input shapes, by static shape propagation:
 *   MatMul 2·M·K·N (times broadcast batch), Gemm 2·M·K·N (+ M·N with C), Conv
 *   2·Cout·prod(out spatial)·(Cin/group)·prod(kernel) (+ bias), pools prod(kernel) per output,
 *   GlobalAveragePool one per input element, elementwise ops one per output element,
 *   BatchNormalization 2 and Softmax 3 per element, ReduceSum/ReduceMean one per input element;
 *   Flatten/Reshape/Identity/Dropout/Transpose/Concat/Slice/Gather 0 (Slice and Gather need
 *   constant starts/ends/indices).
 * Any other op throws "not implemented" rather than undercount.
 */
import { readModelFile, type OnnxModel, type OnnxAttribute } from '@distillery/runtime/onnx';
import {
  diagnoseCudaProvider,
  onnxruntimeNodeInstall,
  openWithProvider,
  requestedProvider,
} from '@distillery/runtime/onnx/execution-provider';

/** Parameter and FLOP count of one model for given input shapes. */
export interface ModelCost {
  parameters: number;
  flops: number;
  flopsByOp: Record<string, number>;
}

const FLOAT_TYPES = new Set(['float32', 'float16', 'float64', 'bfloat16']);
const ELEMENTWISE = new Set([
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Relu',
  'Sigmoid',
  'Tanh',
  'LeakyRelu',
  'Clip',
  'Exp',
  'Erf',
  'Sqrt',
  'Pow',
  'HardSigmoid',
  'HardSwish',
  'Neg',
  'Max',
  'Min',
  'Sum',
]);
const FREE = new Set(['Identity', 'Dropout', 'Flatten', 'Reshape']);

function attrInts(attrs: Record<string, OnnxAttribute>, name: string): number[] | undefined {
  const a = attrs[name];
  return a && 'ints' in a ? a.ints : undefined;
}
function attrInt(attrs: Record<string, OnnxAttribute>, name: string, dflt: number): number {
  const a = attrs[name];
  return a && 'i' in a ? a.i : dflt;
}
const prod = (xs: number[]): number => xs.reduce((a, b) => a * b, 1);

function broadcast(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`shapes [${a}] and [${b}] do not broadcast`);
    return Math.max(x, y);
  });
}

/** Output spatial size of a conv/pool along each axis. */
function windowOut(inSpatial: number[], kernel: number[], attrs: Record<string, OnnxAttribute>): number[] {
  const strides = attrInts(attrs, 'strides') ?? kernel.map(() => 1);
  const dil = attrInts(attrs, 'dilations') ?? kernel.map(() => 1);
  const pads = attrInts(attrs, 'pads') ?? kernel.map(() => 0).concat(kernel.map(() => 0));
  const autoPad = attrs.auto_pad && 's' in attrs.auto_pad ? attrs.auto_pad.s : 'NOTSET';
  return inSpatial.map((x, i) => {
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return Math.ceil(x / strides[i]!);
    const pad = autoPad === 'VALID' ? 0 : pads[i]! + pads[i + kernel.length]!;
    return Math.floor((x + pad - dil[i]! * (kernel[i]! - 1) - 1) / strides[i]!) + 1;
  });
}

/** Counts parameters and FLOPs of a decoded model for `inputShapes` (by graph input name). */
export function modelCost(model: OnnxModel, inputShapes: Record<string, number[]>): ModelCost {
  const g = model.graph;
  const shapes = new Map<string, number[]>();
  let parameters = 0;
  const initData = new Map<string, ArrayLike<number | bigint>>();
  for (const t of g.initializers) {
    shapes.set(t.name, t.dims);
    if (FLOAT_TYPES.has(t.dataType)) parameters += prod(t.dims);
    if (t.data && !Array.isArray(t.data)) initData.set(t.name, t.data as ArrayLike<number | bigint>);
  }
  for (const input of g.inputs) {
    if (shapes.has(input.name)) continue;
    const s = inputShapes[input.name];
    if (!s) throw new Error(`model input ${input.name}: give its shape (e.g. [1, 3, 224, 224])`);
    shapes.set(input.name, s);
  }
  const flopsByOp: Record<string, number> = {};
  let flops = 0;
  for (const node of g.nodes) {
    const ins = node.inputs.map((n) => (n === '' ? undefined : shapes.get(n)));
    const x = ins[0];
    if (!x) throw new Error(`node ${node.name} (${node.opType}): shape of input ${node.inputs[0]} unknown`);
    let out: number[];
    let f = 0;
    const op = node.opType;
    if (op === 'MatMul') {
      const w = ins[1]!;
      const m = x.length >= 2 ? x[x.length - 2]! : 1;
      const k = x[x.length - 1]!;
      const n = w[w.length - 1]!;
      const batch = broadcast(x.slice(0, -2), w.slice(0, -2));
      out = [...batch, ...(x.length >= 2 ? [m] : []), n];
      f = 2 * prod(batch) * m * k * n;
    } else if (op === 'Gemm') {
      const w = ins[1]!;
      const transA = attrInt(node.attributes, 'transA', 0);
      const transB = attrInt(node.attributes, 'transB', 0);
      const [m, k] = transA ? [x[1]!, x[0]!] : [x[0]!, x[1]!];
      const n = transB ? w[0]! : w[1]!;
      out = [m, n];
      f = 2 * m * k * n + (ins[2] ? m * n : 0);
    } else if (op === 'Conv') {
      const w = ins[1]!;
      const kernel = attrInts(node.attributes, 'kernel_shape') ?? w.slice(2);
      const group = attrInt(node.attributes, 'group', 1);
      const spatial = windowOut(x.slice(2), kernel, node.attributes);
      out = [x[0]!, w[0]!, ...spatial];
      f = 2 * prod(out) * (x[1]! / group) * prod(kernel) + (ins[2] ? prod(out) : 0);
    } else if (op === 'MaxPool' || op === 'AveragePool') {
      const kernel = attrInts(node.attributes, 'kernel_shape')!;
      out = [x[0]!, x[1]!, ...windowOut(x.slice(2), kernel, node.attributes)];
      f = prod(out) * prod(kernel);
    } else if (op === 'GlobalAveragePool' || op === 'GlobalMaxPool') {
      out = [x[0]!, x[1]!, ...x.slice(2).map(() => 1)];
      f = prod(x);
    } else if (ELEMENTWISE.has(op)) {
      out = ins.slice(1).reduce<number[]>((acc, s) => (s ? broadcast(acc, s) : acc), x);
      // Variadic ops (Sum, Max, Min of n inputs) take n - 1 operations per output element.
      f = prod(out) * Math.max(1, ins.length - 1);
    } else if (op === 'BatchNormalization') {
      out = x;
      f = 2 * prod(x);
    } else if (op === 'Softmax' || op === 'LogSoftmax') {
      out = x;
      f = 3 * prod(x);
    } else if (op === 'ReduceSum' || op === 'ReduceMean') {
      // Axes from the second input (opset 13+) or the attribute (older opsets); none = all axes.
      const axesData = node.inputs[1] ? initData.get(node.inputs[1]) : undefined;
      if (node.inputs[1] && !axesData)
        throw new Error(`node ${node.name} (${op}): FLOP counting not implemented for non-constant axes`);
      const axes = (
        axesData ? Array.from(axesData, Number) : (attrInts(node.attributes, 'axes') ?? x.map((_, i) => i))
      ).map((a) => (a < 0 ? a + x.length : a));
      const keep = attrInt(node.attributes, 'keepdims', 1);
      out = keep ? x.map((d, i) => (axes.includes(i) ? 1 : d)) : x.filter((_, i) => !axes.includes(i));
      f = prod(x);
    } else if (op === 'Transpose') {
      const perm = attrInts(node.attributes, 'perm') ?? x.map((_, i) => x.length - 1 - i);
      out = perm.map((p) => x[p]!);
    } else if (op === 'Concat') {
      const axis = attrInt(node.attributes, 'axis', 0);
      const a = axis < 0 ? axis + x.length : axis;
      out = [...x];
      out[a] = ins.reduce((sum, s) => sum + (s ? s[a]! : 0), 0);
    } else if (op === 'Slice') {
      const [starts, ends, axesIn, stepsIn] = [1, 2, 3, 4].map((k) =>
        node.inputs[k] ? initData.get(node.inputs[k]) : undefined,
      );
      if (!starts || !ends || (node.inputs[3] && !axesIn) || (node.inputs[4] && !stepsIn))
        throw new Error(
          `node ${node.name} (Slice): FLOP counting not implemented for non-constant starts/ends/axes/steps`,
        );
      const st = Array.from(starts, Number);
      const en = Array.from(ends, Number);
      const axes = axesIn ? Array.from(axesIn, Number) : st.map((_, i) => i);
      const steps = stepsIn ? Array.from(stepsIn, Number) : st.map(() => 1);
      out = [...x];
      axes.forEach((axis, i) => {
        const a = axis < 0 ? axis + x.length : axis;
        const dim = x[a]!;
        const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v < 0 ? v + dim : v));
        const step = steps[i]!;
        const s0 = step > 0 ? clamp(st[i]!, 0, dim) : clamp(st[i]!, -1, dim - 1);
        const e0 = step > 0 ? clamp(en[i]!, 0, dim) : clamp(en[i]!, -1, dim - 1);
        out[a] = Math.max(0, Math.ceil((e0 - s0) / step));
      });
    } else if (op === 'Split') {
      // Sizes from the second input (opset 13+) or the attribute; none = equal parts. Free: a view.
      const axis = attrInt(node.attributes, 'axis', 0);
      const a = axis < 0 ? axis + x.length : axis;
      const sizesData = node.inputs[1] ? initData.get(node.inputs[1]) : undefined;
      if (node.inputs[1] && !sizesData)
        throw new Error(`node ${node.name} (Split): FLOP counting not implemented for non-constant split sizes`);
      const sizes = sizesData
        ? Array.from(sizesData, Number)
        : (attrInts(node.attributes, 'split') ?? node.outputs.map(() => x[a]! / node.outputs.length));
      node.outputs.forEach((name, i) => {
        const part = [...x];
        part[a] = sizes[i]!;
        shapes.set(name, part);
      });
      out = shapes.get(node.outputs[0]!)!;
    } else if (op === 'Gather') {
      const indices = ins[1];
      if (!indices)
        throw new Error(`node ${node.name} (Gather): FLOP counting not implemented for indices of unknown shape`);
      const axis = attrInt(node.attributes, 'axis', 0);
      const a = axis < 0 ? axis + x.length : axis;
      out = [...x.slice(0, a), ...indices, ...x.slice(a + 1)];
    } else if (FREE.has(op)) {
      if (op === 'Flatten') {
        const axis = attrInt(node.attributes, 'axis', 1);
        const a = axis < 0 ? axis + x.length : axis;
        out = [prod(x.slice(0, a)), prod(x.slice(a))];
      } else if (op === 'Reshape') {
        const target = initData.get(node.inputs[1]!);
        if (!target)
          throw new Error(`node ${node.name} (Reshape): FLOP counting not implemented for a non-constant shape`);
        const t = Array.from(target, (v) => Number(v));
        const known = t.map((v, i) => (v === 0 ? x[i]! : v));
        const minus = known.indexOf(-1);
        if (minus >= 0) known[minus] = prod(x) / prod(known.filter((v) => v !== -1));
        out = known;
      } else {
        out = x;
      }
    } else {
      throw new Error(`node ${node.name}: FLOP counting not implemented for op ${op}`);
    }
    shapes.set(node.outputs[0]!, out);
    flopsByOp[op] = (flopsByOp[op] ?? 0) + f;
    flops += f;
  }
  return { parameters, flops, flopsByOp };
}

/** Latency and throughput of one model. */
export interface LatencyStats {
  p50Ms: number;
  p95Ms: number;
  /** Samples per second at the measured batch size (batch / mean latency). */
  throughput: number;
  batch: number;
  iterations: number;
  /** Execution provider the timings ran on ('cuda' only when a GPU was given and its provider loaded). */
  provider: 'cuda' | 'cpu';
}

/** Session settings shared by teacher and student so that timings compare. */
export interface LatencyOptions {
  warmup?: number;
  iterations?: number;
  intraOpNumThreads?: number;
  seed?: number;
  /**
   * GPUs the runner assigned (physical indices): when non-empty the session asks for the CUDA
   * provider on the first (core onnx/execution-provider.ts) and falls back to CPU with a warning.
   */
  gpus?: readonly number[];
  /** Receives the CPU-fallback warning. */
  warn?: (message: string) => void;
}

/** Times `modelPath` on seeded random input of `shape` (first dim = batch; float32, or uint8 pixels for a uint8 input). */
export async function measureLatency(
  modelPath: string,
  shape: number[],
  options: LatencyOptions = {},
): Promise<LatencyStats> {
  const ort = await import('onnxruntime-node');
  const opened = await openWithProvider(
    requestedProvider(options.gpus ?? [], process.env.CUDA_VISIBLE_DEVICES),
    (executionProviders) =>
      ort.InferenceSession.create(modelPath, {
        intraOpNumThreads: options.intraOpNumThreads ?? 1,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        executionProviders,
      }),
    () => diagnoseCudaProvider(onnxruntimeNodeInstall()),
  );
  if (opened.warning) options.warn?.(opened.warning);
  const session = opened.session;
  try {
    let state = (options.seed ?? 0) >>> 0;
    const next = () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 4294967296;
    };
    const meta = session.inputMetadata[0];
    const uint8 = meta !== undefined && meta.isTensor && meta.type === 'uint8';
    const tensor = uint8
      ? new ort.Tensor(
          'uint8',
          Uint8Array.from({ length: prod(shape) }, () => Math.floor(next() * 256)),
          shape,
        )
      : new ort.Tensor(
          'float32',
          Float32Array.from({ length: prod(shape) }, () => next() - 0.5),
          shape,
        );
    const feeds = { [session.inputNames[0]!]: tensor };
    for (let i = 0; i < (options.warmup ?? 5); i++) await session.run(feeds);
    const iterations = options.iterations ?? 50;
    const times: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      times.push(performance.now() - t0);
    }
    const sorted = [...times].sort((a, b) => a - b);
    // Nearest-rank percentiles.
    const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    return {
      p50Ms: pct(50),
      p95Ms: pct(95),
      throughput: (shape[0]! * 1000) / mean,
      batch: shape[0]!,
      iterations,
      provider: opened.provider.name,
    };
  } finally {
    await session.release();
  }
}
