/**
 * Conversions between ShardSchema / ColumnValues and apache-arrow objects. apache-arrow is loaded
 * lazily (loadArrow) so that importing the shards module stays cheap for the runner.
 */
import type * as ArrowNs from 'apache-arrow';
import type { ColumnSpec, ColumnValues, ElementType, ListValues, NumericArray, ShardSchema } from './schema.js';

export type Arrow = typeof ArrowNs;

let arrowPromise: Promise<Arrow> | undefined;
export function loadArrow(): Promise<Arrow> {
  arrowPromise ??= import('apache-arrow');
  return arrowPromise;
}

export function arrowElementType(arrow: Arrow, type: ElementType): ArrowNs.DataType {
  switch (type) {
    case 'utf8':
      return new arrow.Utf8();
    case 'int8':
      return new arrow.Int8();
    case 'uint8':
      return new arrow.Uint8();
    case 'int16':
      return new arrow.Int16();
    case 'uint16':
      return new arrow.Uint16();
    case 'int32':
      return new arrow.Int32();
    case 'uint32':
      return new arrow.Uint32();
    case 'float32':
      return new arrow.Float32();
    case 'float64':
      return new arrow.Float64();
  }
}

export function arrowColumnType(arrow: Arrow, spec: ColumnSpec): ArrowNs.DataType {
  const element = arrowElementType(arrow, spec.type);
  if (spec.type === 'utf8' && (spec.width !== undefined || spec.list))
    throw new Error(`column ${spec.name}: utf8 columns cannot be lists`);
  if (spec.width !== undefined) {
    if (!Number.isInteger(spec.width) || spec.width <= 0)
      throw new Error(`column ${spec.name}: width must be a positive integer, got ${spec.width}`);
    return new arrow.FixedSizeList(spec.width, new arrow.Field('item', element, false));
  }
  if (spec.list) return new arrow.List(new arrow.Field('item', element, false));
  return element;
}

export function toArrowSchema(arrow: Arrow, schema: ShardSchema): ArrowNs.Schema {
  const seen = new Set<string>();
  const fields = schema.columns.map((c) => {
    if (seen.has(c.name)) throw new Error(`shard schema: duplicate column ${c.name}`);
    seen.add(c.name);
    return new arrow.Field(c.name, arrowColumnType(arrow, c), false);
  });
  return new arrow.Schema(fields, new Map(Object.entries(schema.metadata)));
}

function elementTypeOf(arrow: Arrow, type: ArrowNs.DataType, where: string): ElementType {
  if (arrow.DataType.isUtf8(type)) return 'utf8';
  if (arrow.DataType.isInt(type)) {
    const t = type as ArrowNs.Int;
    const name = `${t.isSigned ? 'int' : 'uint'}${t.bitWidth}`;
    if (
      name === 'int8' ||
      name === 'uint8' ||
      name === 'int16' ||
      name === 'uint16' ||
      name === 'int32' ||
      name === 'uint32'
    )
      return name;
  }
  if (arrow.DataType.isFloat(type)) {
    const p = (type as ArrowNs.Float).precision;
    if (p === arrow.Precision.SINGLE) return 'float32';
    if (p === arrow.Precision.DOUBLE) return 'float64';
  }
  throw new Error(`${where}: unsupported Arrow type ${String(type)}`);
}

export function fromArrowSchema(arrow: Arrow, schema: ArrowNs.Schema, where: string): ShardSchema {
  const columns: ColumnSpec[] = schema.fields.map((f) => {
    const t = f.type as ArrowNs.DataType;
    if (arrow.DataType.isFixedSizeList(t)) {
      const fl = t as ArrowNs.FixedSizeList;
      return {
        name: f.name,
        type: elementTypeOf(arrow, fl.children[0]!.type as ArrowNs.DataType, `${where} column ${f.name}`),
        width: fl.listSize,
      };
    }
    if (arrow.DataType.isList(t)) {
      return {
        name: f.name,
        type: elementTypeOf(
          arrow,
          (t as ArrowNs.List).children[0]!.type as ArrowNs.DataType,
          `${where} column ${f.name}`,
        ),
        list: true,
      };
    }
    return { name: f.name, type: elementTypeOf(arrow, t, `${where} column ${f.name}`) };
  });
  return { columns, metadata: Object.fromEntries(schema.metadata) };
}

const ARRAY_OF: Record<Exclude<ElementType, 'utf8'>, new (n: number) => NumericArray> = {
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
};

/** A new zeroed typed array of the column's element type. */
export function allocNumeric(type: ElementType, n: number): NumericArray {
  if (type === 'utf8') throw new Error('allocNumeric: utf8 is not numeric');
  return new ARRAY_OF[type](n);
}

function isListValues(v: ColumnValues): v is ListValues {
  return !Array.isArray(v) && !ArrayBuffer.isView(v) && typeof v === 'object' && 'offsets' in v;
}

/** Checks `values` against `spec` for `numRows` rows; throws naming the column. */
export function checkColumn(spec: ColumnSpec, values: ColumnValues | undefined, numRows: number): void {
  const where = `column ${spec.name}`;
  if (values === undefined) throw new Error(`${where}: missing`);
  if (spec.type === 'utf8') {
    if (!Array.isArray(values)) throw new Error(`${where}: expected string[]`);
    if (values.length !== numRows) throw new Error(`${where}: ${values.length} values for ${numRows} rows`);
    return;
  }
  const ctor = ARRAY_OF[spec.type];
  if (spec.list) {
    if (!isListValues(values)) throw new Error(`${where}: expected {offsets, values}`);
    if (values.offsets.length !== numRows + 1)
      throw new Error(`${where}: ${values.offsets.length} offsets for ${numRows} rows (need rows+1)`);
    if (!(values.values instanceof ctor)) throw new Error(`${where}: values must be ${ctor.name}`);
    const o = values.offsets;
    for (let r = 0; r < numRows; r++) if (o[r + 1]! < o[r]!) throw new Error(`${where}: offsets decrease at row ${r}`);
    if (o[0]! < 0 || o[numRows]! > values.values.length)
      throw new Error(`${where}: offsets out of range of ${values.values.length} values`);
    return;
  }
  if (!(values instanceof ctor)) throw new Error(`${where}: expected ${ctor.name}`);
  const expected = numRows * (spec.width ?? 1);
  if (values.length !== expected)
    throw new Error(`${where}: ${values.length} values for ${numRows} rows (need ${expected})`);
}

/** Rows [a, b) of one column; views where possible, list offsets rebased to 0. */
export function sliceColumn(spec: ColumnSpec, values: ColumnValues, a: number, b: number): ColumnValues {
  if (spec.type === 'utf8') return (values as string[]).slice(a, b);
  if (spec.list) {
    const lv = values as ListValues;
    const base = lv.offsets[a]!;
    const offsets = new Int32Array(b - a + 1);
    for (let r = 0; r <= b - a; r++) offsets[r] = lv.offsets[a + r]! - base;
    return { offsets, values: lv.values.subarray(base, lv.offsets[b]!) };
  }
  const w = spec.width ?? 1;
  return (values as NumericArray).subarray(a * w, b * w);
}

/** Copies a column's values so the caller may reuse its buffers. */
export function copyColumn(spec: ColumnSpec, values: ColumnValues): ColumnValues {
  if (spec.type === 'utf8') return (values as string[]).slice();
  if (spec.list) {
    const lv = values as ListValues;
    return { offsets: lv.offsets.slice(), values: lv.values.slice() };
  }
  return (values as NumericArray).slice();
}

/** Concatenates per-row-range pieces of one column (each already rebased). */
export function concatColumn(spec: ColumnSpec, pieces: ColumnValues[]): ColumnValues {
  if (pieces.length === 1) return pieces[0]!;
  if (spec.type === 'utf8') return (pieces as string[][]).flat();
  if (spec.list) {
    const lists = pieces as ListValues[];
    const rows = lists.reduce((s, p) => s + p.offsets.length - 1, 0);
    const total = lists.reduce((s, p) => s + (p.offsets[p.offsets.length - 1]! - p.offsets[0]!), 0);
    const offsets = new Int32Array(rows + 1);
    const out = allocNumeric(spec.type, total);
    let r = 0;
    let pos = 0;
    for (const p of lists) {
      const n = p.offsets.length - 1;
      const start = p.offsets[0]!;
      for (let i = 1; i <= n; i++) offsets[r + i] = pos + p.offsets[i]! - start;
      out.set(p.values.subarray(start, p.offsets[n]!) as never, pos);
      pos += p.offsets[n]! - start;
      r += n;
    }
    return { offsets, values: out };
  }
  const arrays = pieces as NumericArray[];
  const out = allocNumeric(
    spec.type,
    arrays.reduce((s, p) => s + p.length, 0),
  );
  let pos = 0;
  for (const p of arrays) {
    out.set(p as never, pos);
    pos += p.length;
  }
  return out;
}

function utf8Data(arrow: Arrow, strings: string[]): ArrowNs.Data {
  const offsets = new Int32Array(strings.length + 1);
  let total = 0;
  for (let i = 0; i < strings.length; i++) {
    total += Buffer.byteLength(strings[i]!, 'utf8');
    offsets[i + 1] = total;
  }
  const bytes = Buffer.allocUnsafe(total);
  for (let i = 0; i < strings.length; i++) bytes.write(strings[i]!, offsets[i]!, 'utf8');
  return arrow.makeData({
    type: new arrow.Utf8(),
    length: strings.length,
    nullCount: 0,
    valueOffsets: offsets,
    data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
  });
}

function columnData(
  arrow: Arrow,
  type: ArrowNs.DataType,
  spec: ColumnSpec,
  values: ColumnValues,
  numRows: number,
): ArrowNs.Data {
  if (spec.type === 'utf8') return utf8Data(arrow, values as string[]);
  const element = arrowElementType(arrow, spec.type);
  if (spec.list) {
    const lv = values as ListValues;
    const n = lv.offsets[numRows]! - lv.offsets[0]!;
    const child = arrow.makeData({
      type: element,
      length: n,
      nullCount: 0,
      data: lv.values.subarray(lv.offsets[0]!, lv.offsets[numRows]!),
    } as never) as ArrowNs.Data;
    const offsets = lv.offsets[0] === 0 ? lv.offsets : lv.offsets.map((o) => o - lv.offsets[0]!);
    return arrow.makeData({ type: type as ArrowNs.List, length: numRows, nullCount: 0, valueOffsets: offsets, child });
  }
  if (spec.width !== undefined) {
    const child = arrow.makeData({
      type: element,
      length: numRows * spec.width,
      nullCount: 0,
      data: values as NumericArray,
    } as never) as ArrowNs.Data;
    return arrow.makeData({ type: type as ArrowNs.FixedSizeList, length: numRows, nullCount: 0, child });
  }
  return arrow.makeData({
    type: element,
    length: numRows,
    nullCount: 0,
    data: values as NumericArray,
  } as never) as ArrowNs.Data;
}

/** Builds one Arrow record batch from checked column values. */
export function makeRecordBatch(
  arrow: Arrow,
  schema: ArrowNs.Schema,
  specs: ColumnSpec[],
  columns: Record<string, ColumnValues>,
  numRows: number,
): ArrowNs.RecordBatch {
  const children = specs.map((spec, i) =>
    columnData(arrow, schema.fields[i]!.type as ArrowNs.DataType, spec, columns[spec.name]!, numRows),
  );
  const struct = arrow.makeData({ type: new arrow.Struct(schema.fields), length: numRows, nullCount: 0, children });
  return new arrow.RecordBatch(schema, struct);
}

/** Column values of one Arrow column chunk, in the ColumnValues form. */
export function columnValuesOf(spec: ColumnSpec, data: ArrowNs.Data): ColumnValues {
  const n = data.length;
  const off = data.offset;
  if (spec.type === 'utf8') {
    const o = data.valueOffsets as Int32Array;
    const bytes = data.values as Uint8Array;
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = buf.toString('utf8', o[off + i]!, o[off + i + 1]!);
    return out;
  }
  if (spec.list) {
    const o = (data.valueOffsets as Int32Array).subarray(off, off + n + 1);
    const child = data.children[0]!;
    const values = (child.values as NumericArray).subarray(child.offset, child.offset + child.length);
    if (o[0] === 0) return { offsets: o, values };
    const base = o[0]!;
    return { offsets: o.map((x) => x - base), values: values.subarray(base, o[n]!) };
  }
  if (spec.width !== undefined) {
    const child = data.children[0]!;
    const start = child.offset + off * spec.width;
    return (child.values as NumericArray).subarray(start, start + n * spec.width);
  }
  return (data.values as NumericArray).subarray(off, off + n);
}
