/**
 * Moves a float model's pixel preprocessing into the model: the rewritten model takes the raw
 * uint8 pixels and starts with [Transpose] -> Cast -> Mul -> Add, producing the tensor the
 * original input received.
 *
 * Why: converting 784 uint8 pixels to float32 and normalising them took the JS thread ~2 us per
 * sample in teacher-infer (scalar code writing memory the inference thread then reads), about half of
 * a small teacher's own inference time. onnxruntime's vectorised kernels do the same work cheaply (a
 * uint8-input MLP with these nodes ran as fast as the float one), and a quarter of the bytes cross the
 * thread boundary. Figures: plugins/teacher-infer/README.md.
 *
 * The rewrite works on protobufjs' ModelProto messages (onnx-proto, onnx.proto of ONNX 1.10), so
 * every field that proto knows survives; fields only newer ONNX versions define are dropped.
 * Models whose weights live in external data files are not rewritten (onnxruntime loads the
 * rewritten model from memory and could not find them).
 */
import onnxProto from 'onnx-proto';

const { ModelProto } = onnxProto.onnx;

/**
 * Larger models are left alone. Their inference per sample takes long enough to hide the JS
 * thread's conversion (for the 784-2048-2048-10 MLP, 22 MiB, the JS thread and the in-model
 * transform tied in bench/teacher-infer), while decoding and re-encoding them costs start-up
 * time (~0.1 s at 22 MiB) and up to three copies of the model in memory.
 */
export const PIXEL_TRANSFORM_MAX_MODEL_BYTES = 16 << 20;
const FLOAT = 1;
const UINT8 = 2;
const EXTERNAL = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

/** What to move into the model: y = x * mul[c] + add[c] on the (optionally transposed) pixels. */
export interface PixelInputTransform {
  /** Model input to replace; default: the model's only input. */
  input?: string;
  /** Per-sample shape of the uint8 pixels as stored (e.g. [28, 28] or [H, W, C]); without
   * hwcToChw only its element count must match the model input's (the new input keeps the model's shape). */
  pixelShape: number[];
  /** Transpose [N, H, W, C] pixels to the model's [N, C, H, W] first (the new input is [N, H, W, C]). */
  hwcToChw: boolean;
  /** Per channel (length 1: every value); the channel axis is the model input's axis 1 for
   * channel-first models, its last axis otherwise. */
  mul: number[];
  add: number[];
  channelAxis: 'first' | 'last';
}

export type InputTransformResult =
  | { applied: true; bytes: Uint8Array; input: string }
  | { applied: false; reason: string };

type Dim = { dimValue?: number | { toNumber(): number } | null; dimParam?: string | null };
const dimNumber = (d: Dim): number | undefined => (d.dimValue == null ? undefined : Number(d.dimValue));

/** Rewrites `modelBytes` (see the module comment); `applied: false` says why it was left alone. */
export function prependPixelTransform(modelBytes: Uint8Array, spec: PixelInputTransform): InputTransformResult {
  if (spec.mul.length !== spec.add.length || spec.mul.length === 0)
    throw new Error('pixel transform: mul and add need the same, non-zero length');
  const model = ModelProto.decode(modelBytes);
  const graph = model.graph;
  if (!graph) return { applied: false, reason: 'model has no graph' };
  const initializerNames = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = (graph.input ?? []).filter((vi) => !initializerNames.has(vi.name ?? ''));
  const name = spec.input ?? (inputs.length === 1 ? (inputs[0]!.name ?? '') : '');
  const index = (graph.input ?? []).findIndex((vi) => vi.name === name);
  if (!name || index < 0)
    return { applied: false, reason: inputs.length === 1 ? `no input ${spec.input}` : 'several inputs' };
  if (initializerNames.has(name))
    return { applied: false, reason: `input ${name} has an initializer (a default value)` };
  if ((graph.initializer ?? []).some((t) => t.dataLocation === EXTERNAL))
    return { applied: false, reason: 'weights in external data files' };
  const original = graph.input![index]!;
  const tensorType = original.type?.tensorType;
  if (!tensorType || tensorType.elemType !== FLOAT) return { applied: false, reason: `input ${name} is not float32` };
  const dims = (tensorType.shape?.dim ?? []) as Dim[];
  const sample = dims.slice(1).map(dimNumber);
  const want = spec.hwcToChw ? [spec.pixelShape[2], spec.pixelShape[0], spec.pixelShape[1]] : spec.pixelShape;
  const perSample = (xs: (number | undefined)[]) => xs.reduce<number>((a, b) => a * (b ?? NaN), 1);
  if (dims.length < 2 || !(perSample(sample) === perSample(want)))
    return { applied: false, reason: `input ${name} shape does not match the pixels` };
  if (spec.hwcToChw && (spec.pixelShape.length !== 3 || sample.length !== 3 || sample.some((d, i) => d !== want[i]))) {
    return { applied: false, reason: `input ${name} is not [N, C, H, W] for HWC pixels` };
  }

  const channels = spec.mul.length;
  const modelChannels = spec.hwcToChw || spec.channelAxis === 'first' ? sample[0] : sample.at(-1);
  if (channels > 1 && modelChannels !== channels)
    return {
      applied: false,
      reason: `input ${name} has no ${spec.channelAxis === 'last' && !spec.hwcToChw ? 'last' : 'first'} axis of ${channels} channels to normalise per channel`,
    };

  const used = new Set<string>([
    ...(graph.initializer ?? []).map((t) => t.name ?? ''),
    ...(graph.input ?? []).map((v) => v.name ?? ''),
    ...(graph.node ?? []).flatMap((n) => [...(n.input ?? []), ...(n.output ?? [])]),
  ]);
  const fresh = (base: string) => {
    let candidate = base;
    for (let k = 1; used.has(candidate); k++) candidate = `${base}_${k}`;
    used.add(candidate);
    return candidate;
  };
  const pixels = fresh(`${name}__uint8`);
  const paramDims =
    channels === 1
      ? []
      : spec.channelAxis === 'first'
        ? [channels, ...Array(Math.max(0, sample.length - 1)).fill(1)]
        : [channels];
  const scaleName = fresh(`${name}__scale`);
  const shiftName = fresh(`${name}__shift`);
  const floatTensor = (tensorName: string, values: number[]) => ({
    name: tensorName,
    dataType: FLOAT,
    dims: paramDims,
    floatData: values,
  });
  const nodes: onnxProto.onnx.INodeProto[] = [];
  let current = pixels;
  if (spec.hwcToChw) {
    const out = fresh(`${name}__chw`);
    nodes.push({
      opType: 'Transpose',
      name: out,
      input: [current],
      output: [out],
      attribute: [{ name: 'perm', type: ATTR_INTS, ints: [0, 3, 1, 2] }],
    });
    current = out;
  }
  const cast = fresh(`${name}__float`);
  const scaled = fresh(`${name}__scaled`);
  nodes.push(
    {
      opType: 'Cast',
      name: cast,
      input: [current],
      output: [cast],
      attribute: [{ name: 'to', type: ATTR_INT, i: FLOAT }],
    },
    { opType: 'Mul', name: scaled, input: [cast, scaleName], output: [scaled] },
    { opType: 'Add', name: fresh(`${name}__normalise`), input: [scaled, shiftName], output: [name] },
  );
  graph.node = [...nodes, ...(graph.node ?? [])] as onnxProto.onnx.NodeProto[];
  graph.initializer = [
    ...(graph.initializer ?? []),
    floatTensor(scaleName, spec.mul),
    floatTensor(shiftName, spec.add),
  ] as onnxProto.onnx.TensorProto[];
  const pixelDims = spec.hwcToChw ? [dims[0]!, ...spec.pixelShape.map((d) => ({ dimValue: d }))] : dims;
  graph.input![index] = {
    name: pixels,
    type: { tensorType: { elemType: UINT8, shape: { dim: pixelDims } } },
  } as onnxProto.onnx.ValueInfoProto;
  return { applied: true, bytes: ModelProto.encode(model).finish(), input: pixels };
}
