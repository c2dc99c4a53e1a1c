import { readFile } from 'node:fs/promises';
import onnxProto from 'onnx-proto';
import { writeFileAtomicSync } from '@distillery/core/plugin';

/** Element types, named as onnxruntime-node names them. */
export type OnnxDataType =
  | 'float32'
  | 'uint8'
  | 'int8'
  | 'uint16'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'string'
  | 'bool'
  | 'float16'
  | 'float64'
  | 'uint32'
  | 'uint64'
  | 'bfloat16';

/** TensorProto.DataType codes of the official schema. */
export const ONNX_DATA_TYPE_CODE: Record<OnnxDataType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
  bfloat16: 16,
};
const DATA_TYPE_BY_CODE = new Map<number, OnnxDataType>(
  Object.entries(ONNX_DATA_TYPE_CODE).map(([k, v]) => [v, k as OnnxDataType]),
);

export function dataTypeName(code: number): OnnxDataType | `unknown(${number})` {
  return DATA_TYPE_BY_CODE.get(code) ?? `unknown(${code})`;
}

/** A dimension: a size, a symbolic name (e.g. "batch"), or null when absent. */
export type OnnxDim = number | string | null;

/** A graph input, output or value_info entry. Shape undefined = unknown rank. */
export interface OnnxValueInfo {
  name: string;
  elemType: OnnxDataType | `unknown(${number})`;
  shape?: OnnxDim[];
}

/** Decoded tensor contents (float16 / bfloat16 as raw uint16 bits, bool as uint8). */
export type OnnxTensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | string[];

/** An initializer or tensor attribute. `data` is undefined when it lives in external files. */
export interface OnnxTensor {
  name: string;
  dataType: OnnxDataType | `unknown(${number})`;
  dims: number[];
  data?: OnnxTensorData;
  /** external_data key/values (location, offset, length) when stored outside the model file. */
  external?: Record<string, string>;
}

/** One attribute value, tagged with its ONNX kind (a bare number would be ambiguous int/float). */
export type OnnxAttribute =
  | { f: number }
  | { i: number }
  | { s: string }
  | { t: OnnxTensor }
  | { g: OnnxGraph }
  | { floats: number[] }
  | { ints: number[] }
  | { strings: string[] }
  | { tensors: OnnxTensor[] }
  | { graphs: OnnxGraph[] };

export interface OnnxNode {
  name: string;
  opType: string;
  /** '' is the default ONNX domain. */
  domain: string;
  /** Input value names; '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attributes: Record<string, OnnxAttribute>;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  initializers: OnnxTensor[];
  valueInfo: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsetImports: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  graph: OnnxGraph;
  metadata: Record<string, string>;
}

// ---------------------------------------------------------------- protobuf plumbing

// The official onnx.proto (onnx-proto: ONNX v1.10.2's onnx.proto3, IR version 8, compiled by protobufjs).
// Its message classes use camelCase field names; the plain objects below use the .proto's own
// snake_case names, and are converted at the boundary.
const ModelProto = onnxProto.onnx.ModelProto;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !ArrayBuffer.isView(value) && !Array.isArray(value);
}

/** Renames every object key below `value` (typed arrays and bytes are left as they are). */
function renameKeys(value: unknown, rename: (key: string) => string): unknown {
  if (Array.isArray(value)) return value.map((v) => renameKeys(v, rename));
  if (!isPlainObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [rename(k), renameKeys(v, rename)]));
}
const toCamel = (key: string): string => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const toSnake = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

// Shapes of the plain objects (onnx.proto field names, longs as numbers).
interface PbEntry {
  key?: string;
  value?: string;
}
interface PbTensor {
  dims?: number[];
  data_type?: number;
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: number[];
  name?: string;
  raw_data?: Uint8Array;
  external_data?: PbEntry[];
  data_location?: number;
  double_data?: number[];
  uint64_data?: number[];
}
interface PbDim {
  dim_value?: number;
  dim_param?: string;
}
interface PbValueInfo {
  name?: string;
  type?: { tensor_type?: { elem_type?: number; shape?: { dim?: PbDim[] } } };
}
interface PbAttribute {
  name?: string;
  type?: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: PbTensor;
  g?: PbGraph;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
  tensors?: PbTensor[];
  graphs?: PbGraph[];
}
interface PbNode {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  attribute?: PbAttribute[];
}
interface PbGraph {
  node?: PbNode[];
  name?: string;
  initializer?: PbTensor[];
  input?: PbValueInfo[];
  output?: PbValueInfo[];
  value_info?: PbValueInfo[];
}
interface PbModel {
  ir_version?: number;
  opset_import?: { domain?: string; version?: number }[];
  producer_name?: string;
  producer_version?: string;
  graph?: PbGraph;
  metadata_props?: PbEntry[];
}

const ATTR = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
} as const;
const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

function bytesOf(data: Exclude<OnnxTensorData, string[]>): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function tensorToPb(t: OnnxTensor): PbTensor {
  if (typeof t.dataType !== 'string' || t.dataType.startsWith('unknown'))
    throw new Error(`tensor ${t.name}: cannot encode data type ${t.dataType}`);
  const pb: PbTensor = { name: t.name, dims: t.dims, data_type: ONNX_DATA_TYPE_CODE[t.dataType as OnnxDataType] };
  if (t.external) {
    pb.data_location = 1;
    pb.external_data = Object.entries(t.external).map(([key, value]) => ({ key, value }));
  } else if (Array.isArray(t.data)) {
    pb.string_data = t.data.map((s) => utf8Encoder.encode(s));
  } else if (t.data) {
    pb.raw_data = bytesOf(t.data); // little-endian: every platform node supports here is
  }
  return pb;
}

/** Copies bytes into a fresh, aligned buffer and views them as the tensor's element type. */
function viewRaw(raw: Uint8Array, type: OnnxDataType | string): OnnxTensorData {
  const buf = Uint8Array.prototype.slice.call(raw).buffer as ArrayBuffer;
  switch (type) {
    case 'float32':
      return new Float32Array(buf);
    case 'float64':
      return new Float64Array(buf);
    case 'int8':
      return new Int8Array(buf);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buf);
    case 'int16':
      return new Int16Array(buf);
    case 'uint16':
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(buf);
    case 'int32':
      return new Int32Array(buf);
    case 'uint32':
      return new Uint32Array(buf);
    case 'int64':
      return new BigInt64Array(buf);
    case 'uint64':
      return new BigUint64Array(buf);
    default:
      return new Uint8Array(buf);
  }
}

function tensorFromPb(pb: PbTensor): OnnxTensor {
  const dataType = dataTypeName(pb.data_type ?? 0);
  const t: OnnxTensor = { name: pb.name ?? '', dataType, dims: (pb.dims ?? []).map(Number) };
  if (pb.data_location === 1 || (pb.external_data && pb.external_data.length > 0)) {
    t.external = Object.fromEntries((pb.external_data ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    return t;
  }
  if (pb.raw_data && pb.raw_data.byteLength > 0) t.data = viewRaw(pb.raw_data, dataType);
  else if (pb.float_data?.length) t.data = Float32Array.from(pb.float_data);
  else if (pb.double_data?.length) t.data = Float64Array.from(pb.double_data);
  else if (pb.int64_data?.length) t.data = BigInt64Array.from(pb.int64_data, (v) => BigInt(v));
  else if (pb.uint64_data?.length) t.data = BigUint64Array.from(pb.uint64_data, (v) => BigInt(v));
  else if (pb.string_data?.length) t.data = pb.string_data.map((b) => utf8.decode(b));
  else if (pb.int32_data?.length) {
    // int32_data also carries int8/int16/uint8/uint16/bool/float16 values, one per entry.
    const v = pb.int32_data;
    switch (dataType) {
      case 'int8':
        t.data = Int8Array.from(v);
        break;
      case 'uint8':
      case 'bool':
        t.data = Uint8Array.from(v);
        break;
      case 'int16':
        t.data = Int16Array.from(v);
        break;
      case 'uint16':
      case 'float16':
      case 'bfloat16':
        t.data = Uint16Array.from(v);
        break;
      default:
        t.data = Int32Array.from(v);
    }
  } else t.data = viewRaw(new Uint8Array(0), dataType);
  return t;
}

function valueInfoToPb(v: OnnxValueInfo): PbValueInfo {
  if (v.elemType.startsWith('unknown')) throw new Error(`value ${v.name}: cannot encode element type ${v.elemType}`);
  const tensor: NonNullable<NonNullable<PbValueInfo['type']>['tensor_type']> = {
    elem_type: ONNX_DATA_TYPE_CODE[v.elemType as OnnxDataType],
  };
  if (v.shape)
    tensor.shape = {
      dim: v.shape.map((d) =>
        typeof d === 'number' ? { dim_value: d } : typeof d === 'string' ? { dim_param: d } : {},
      ),
    };
  return { name: v.name, type: { tensor_type: tensor } };
}

function valueInfoFromPb(pb: PbValueInfo): OnnxValueInfo {
  const tt = pb.type?.tensor_type;
  const v: OnnxValueInfo = { name: pb.name ?? '', elemType: dataTypeName(tt?.elem_type ?? 0) };
  if (tt?.shape)
    v.shape = (tt.shape.dim ?? []).map((d) =>
      d.dim_value !== undefined ? Number(d.dim_value) : d.dim_param !== undefined ? d.dim_param : null,
    );
  return v;
}

function attributeToPb(name: string, a: OnnxAttribute): PbAttribute {
  if ('f' in a) return { name, type: ATTR.FLOAT, f: a.f };
  if ('i' in a) return { name, type: ATTR.INT, i: a.i };
  if ('s' in a) return { name, type: ATTR.STRING, s: utf8Encoder.encode(a.s) };
  if ('t' in a) return { name, type: ATTR.TENSOR, t: tensorToPb(a.t) };
  if ('g' in a) return { name, type: ATTR.GRAPH, g: graphToPb(a.g) };
  if ('floats' in a) return { name, type: ATTR.FLOATS, floats: a.floats };
  if ('ints' in a) return { name, type: ATTR.INTS, ints: a.ints };
  if ('strings' in a) return { name, type: ATTR.STRINGS, strings: a.strings.map((s) => utf8Encoder.encode(s)) };
  if ('tensors' in a) return { name, type: ATTR.TENSORS, tensors: a.tensors.map(tensorToPb) };
  return { name, type: ATTR.GRAPHS, graphs: a.graphs.map(graphToPb) };
}

function attributeFromPb(pb: PbAttribute): OnnxAttribute {
  switch (pb.type) {
    case ATTR.FLOAT:
      return { f: pb.f ?? 0 };
    case ATTR.INT:
      return { i: Number(pb.i ?? 0) };
    case ATTR.STRING:
      return { s: utf8.decode(pb.s ?? new Uint8Array(0)) };
    case ATTR.TENSOR:
      return { t: tensorFromPb(pb.t ?? {}) };
    case ATTR.GRAPH:
      return { g: graphFromPb(pb.g ?? {}) };
    case ATTR.FLOATS:
      return { floats: pb.floats ?? [] };
    case ATTR.INTS:
      return { ints: (pb.ints ?? []).map(Number) };
    case ATTR.STRINGS:
      return { strings: (pb.strings ?? []).map((b) => utf8.decode(b)) };
    case ATTR.TENSORS:
      return { tensors: (pb.tensors ?? []).map(tensorFromPb) };
    case ATTR.GRAPHS:
      return { graphs: (pb.graphs ?? []).map(graphFromPb) };
    default: {
      // IR < 2 had no type field: infer from the field that is set.
      if (pb.floats?.length) return { floats: pb.floats };
      if (pb.ints?.length) return { ints: pb.ints.map(Number) };
      if (pb.f !== undefined) return { f: pb.f };
      if (pb.i !== undefined) return { i: Number(pb.i) };
      if (pb.s !== undefined) return { s: utf8.decode(pb.s) };
      if (pb.t) return { t: tensorFromPb(pb.t) };
      throw new Error(`attribute ${pb.name ?? '?'}: unsupported attribute type ${pb.type}`);
    }
  }
}

function graphToPb(g: OnnxGraph): PbGraph {
  return {
    name: g.name,
    node: g.nodes.map((n) => ({
      name: n.name,
      op_type: n.opType,
      domain: n.domain,
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attributes).map(([k, a]) => attributeToPb(k, a)),
    })),
    initializer: g.initializers.map(tensorToPb),
    input: g.inputs.map(valueInfoToPb),
    output: g.outputs.map(valueInfoToPb),
    value_info: g.valueInfo.map(valueInfoToPb),
  };
}

function graphFromPb(pb: PbGraph): OnnxGraph {
  return {
    name: pb.name ?? '',
    nodes: (pb.node ?? []).map((n) => ({
      name: n.name ?? '',
      opType: n.op_type ?? '',
      domain: n.domain ?? '',
      inputs: n.input ?? [],
      outputs: n.output ?? [],
      attributes: Object.fromEntries((n.attribute ?? []).map((a) => [a.name ?? '', attributeFromPb(a)])),
    })),
    initializers: (pb.initializer ?? []).map(tensorFromPb),
    inputs: (pb.input ?? []).map(valueInfoFromPb),
    outputs: (pb.output ?? []).map(valueInfoFromPb),
    valueInfo: (pb.value_info ?? []).map(valueInfoFromPb),
  };
}

// ---------------------------------------------------------------- public API

/** Serialises a model to ONNX protobuf bytes. */
export function encodeModel(model: OnnxModel): Uint8Array {
  const pb: PbModel = {
    ir_version: model.irVersion,
    opset_import: model.opsetImports,
    producer_name: model.producerName,
    producer_version: model.producerVersion,
    graph: graphToPb(model.graph),
    metadata_props: Object.entries(model.metadata).map(([key, value]) => ({ key, value })),
  };
  return ModelProto.encode(ModelProto.fromObject(renameKeys(pb, toCamel) as Record<string, unknown>)).finish();
}

/** Parses ONNX protobuf bytes; throws when they are not a model with a graph. */
export function decodeModel(bytes: Uint8Array, where = 'ONNX model'): OnnxModel {
  let pb: PbModel;
  try {
    pb = renameKeys(
      ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, enums: Number, arrays: false, defaults: false }),
      toSnake,
    ) as PbModel;
  } catch (error) {
    throw new Error(`${where}: not a valid ONNX protobuf (${(error as Error).message})`);
  }
  if (!pb.graph || !pb.ir_version || !pb.opset_import?.length) {
    throw new Error(
      `${where}: not a valid ONNX model (missing ${!pb.graph ? 'graph' : !pb.ir_version ? 'ir_version' : 'opset_import'})`,
    );
  }
  return {
    irVersion: Number(pb.ir_version),
    opsetImports: pb.opset_import.map((o) => ({ domain: o.domain ?? '', version: Number(o.version ?? 0) })),
    producerName: pb.producer_name ?? '',
    producerVersion: pb.producer_version ?? '',
    graph: graphFromPb(pb.graph),
    metadata: Object.fromEntries((pb.metadata_props ?? []).map((e) => [e.key ?? '', e.value ?? ''])),
  };
}

/** Reads and decodes a model file; errors name the file. */
export async function readModelFile(path: string): Promise<OnnxModel> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new Error(`ONNX model ${path}: cannot read (${(error as Error).message})`);
  }
  return decodeModel(bytes, `ONNX model ${path}`);
}

/** Writes bytes (or a model) to `path` atomically: temp file in the same directory, then rename. */
export function writeModelFile(path: string, model: OnnxModel | Uint8Array): void {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  writeFileAtomicSync(path, bytes);
}

export interface GraphBuilderOptions {
  /** Opset of the default ONNX domain (default 17). */
  opset?: number;
  /** IR version (default 8, understood by onnxruntime >= 1.10). */
  irVersion?: number;
  producerName?: string;
  metadata?: Record<string, string>;
}

type InitializerData = Exclude<OnnxTensorData, string[]>;
const INITIALIZER_TYPE = new Map<unknown, OnnxDataType>([
  [Float32Array, 'float32'],
  [Float64Array, 'float64'],
  [Int8Array, 'int8'],
  [Uint8Array, 'uint8'],
  [Int16Array, 'int16'],
  [Uint16Array, 'uint16'],
  [Int32Array, 'int32'],
  [Uint32Array, 'uint32'],
  [BigInt64Array, 'int64'],
  [BigUint64Array, 'uint64'],
]);

/**
 * Builds a single-graph model. Checks as it goes: every node input must already exist (graph
 * input, initializer or an earlier node's output), names are unique, initializer sizes match dims.
 */
export class GraphBuilder {
  private readonly graph: OnnxGraph;
  private readonly defined = new Set<string>();
  private readonly opset: number;
  private readonly irVersion: number;

  constructor(
    name: string,
    private readonly options: GraphBuilderOptions = {},
  ) {
    this.graph = { name, nodes: [], inputs: [], outputs: [], initializers: [], valueInfo: [] };
    this.opset = options.opset ?? 17;
    this.irVersion = options.irVersion ?? 8;
  }

  private define(name: string, what: string): void {
    if (!name) throw new Error(`graph ${this.graph.name}: ${what} needs a name`);
    if (this.defined.has(name)) throw new Error(`graph ${this.graph.name}: ${what} ${name} is already defined`);
    this.defined.add(name);
  }

  input(name: string, elemType: OnnxDataType, shape: OnnxDim[]): this {
    this.define(name, 'input');
    this.graph.inputs.push({ name, elemType, shape });
    return this;
  }

  /** An initializer; `dataType` defaults from the typed array (Uint8Array + 'bool' for booleans). */
  initializer(name: string, data: InitializerData, dims: number[], dataType?: OnnxDataType): this {
    this.define(name, 'initializer');
    const size = dims.reduce((a, b) => a * b, 1);
    if (data.length !== size)
      throw new Error(
        `graph ${this.graph.name}: initializer ${name} has ${data.length} values for dims [${dims}] (${size})`,
      );
    const type = dataType ?? INITIALIZER_TYPE.get(data.constructor);
    if (!type) throw new Error(`initializer ${name}: unsupported array type`);
    this.graph.initializers.push({ name, dataType: type, dims, data });
    return this;
  }

  node(
    opType: string,
    inputs: string[],
    outputs: string[],
    attributes: Record<string, OnnxAttribute> = {},
    options: { name?: string; domain?: string } = {},
  ): this {
    const name = options.name ?? `${opType}_${this.graph.nodes.length}`;
    for (const i of inputs) {
      if (i !== '' && !this.defined.has(i))
        throw new Error(`graph ${this.graph.name}: node ${name} (${opType}) reads undefined value ${i}`);
    }
    for (const o of outputs) this.define(o, `output of node ${name}`);
    this.graph.nodes.push({ name, opType, domain: options.domain ?? '', inputs, outputs, attributes });
    return this;
  }

  output(name: string, elemType: OnnxDataType, shape: OnnxDim[]): this {
    if (!this.defined.has(name)) throw new Error(`graph ${this.graph.name}: output ${name} is never produced`);
    this.graph.outputs.push({ name, elemType, shape });
    return this;
  }

  build(): OnnxModel {
    if (this.graph.outputs.length === 0) throw new Error(`graph ${this.graph.name}: no outputs`);
    return {
      irVersion: this.irVersion,
      opsetImports: [{ domain: '', version: this.opset }],
      producerName: this.options.producerName ?? 'distillery',
      producerVersion: '0.1.0',
      graph: this.graph,
      metadata: this.options.metadata ?? {},
    };
  }
}
