/**
 * NumPy .npy reading and writing (format versions 1.0, 2.0, 3.0; little-endian float32/float64;
 * C order). Reading streams rows so that a 50,000 x 2048 matrix never has to be held as float64.
 */
import { open, readFile } from 'node:fs/promises';
import { EvalInputError } from '../errors.js';

/** Parsed header of a .npy file. */
export interface NpyHeader {
  dtype: 'float32' | 'float64';
  shape: number[];
  /** Byte offset of the first element. */
  dataOffset: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Parses the header at the start of `bytes` (which must hold at least the whole header). */
export function parseNpyHeader(bytes: Uint8Array, file: string): NpyHeader {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new EvalInputError(`${file}: not a .npy file (bad magic)`);
  }
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new EvalInputError(`${file}: truncated .npy header`);
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    throw new EvalInputError(`${file}: unsupported .npy format version ${major}`);
  }
  if (bytes.length < start + headerLen) throw new EvalInputError(`${file}: truncated .npy header`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new EvalInputError(`${file}: cannot parse .npy header ${JSON.stringify(header)}`);
  }
  let dtype: NpyHeader['dtype'];
  if (descr === '<f4' || descr === '=f4') dtype = 'float32';
  else if (descr === '<f8' || descr === '=f8') dtype = 'float64';
  else throw new EvalInputError(`${file}: dtype ${descr} not supported (need little-endian float32 or float64)`);
  if (fortran === 'True')
    throw new EvalInputError(`${file}: Fortran-order arrays are not supported; save with C order`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number(s));
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new EvalInputError(`${file}: bad shape (${shapeText})`);
  return { dtype, shape, dataOffset: start + headerLen };
}

/** A whole array in float64 with its shape. */
export interface NdArray {
  shape: number[];
  data: Float64Array;
}

function toFloat64(bytes: Uint8Array, dtype: NpyHeader['dtype']): Float64Array {
  // Copy into an aligned buffer before viewing it as floats.
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return dtype === 'float64' ? new Float64Array(copy.buffer) : new Float64Array(new Float32Array(copy.buffer));
}

/** Parses a complete .npy file held in memory. */
export function parseNpy(bytes: Uint8Array, file: string): NdArray {
  const h = parseNpyHeader(bytes, file);
  const count = h.shape.reduce((a, b) => a * b, 1);
  const itemSize = h.dtype === 'float64' ? 8 : 4;
  const body = bytes.subarray(h.dataOffset);
  if (body.length !== count * itemSize) {
    throw new EvalInputError(
      `${file}: expected ${count * itemSize} data bytes for shape (${h.shape.join(', ')}), found ${body.length}`,
    );
  }
  return { shape: h.shape, data: toFloat64(body, h.dtype) };
}

/** Reads a whole .npy file as float64. */
export async function readNpy(path: string): Promise<NdArray> {
  return parseNpy(await readFile(path), path);
}

/**
 * Streams the rows of a 2-D .npy matrix (N x D) in chunks of up to `chunkRows` rows, in the file's
 * own dtype (float32 or float64; the buffer is reused: consume it before returning). `onChunk`
 * gets the chunk and the index of its first row.
 */
export async function streamNpyRows(
  path: string,
  chunkRows: number,
  onChunk: (rows: Float32Array | Float64Array, count: number, firstRow: number) => void | Promise<void>,
): Promise<{ rows: number; cols: number }> {
  const fh = await open(path, 'r');
  try {
    const headStart = new Uint8Array(12);
    await fh.read(headStart, 0, 12, 0);
    const headerLen =
      headStart[6] === 1 ? headStart[8]! | (headStart[9]! << 8) : new DataView(headStart.buffer).getUint32(8, true);
    const head = new Uint8Array(12 + headerLen);
    await fh.read(head, 0, head.length, 0);
    const h = parseNpyHeader(head, path);
    if (h.shape.length !== 2)
      throw new EvalInputError(`${path}: expected a 2-D feature matrix (N x D), got shape (${h.shape.join(', ')})`);
    const [rows, cols] = h.shape as [number, number];
    const itemSize = h.dtype === 'float64' ? 8 : 4;
    const { size } = await fh.stat();
    if (size - h.dataOffset !== rows * cols * itemSize) {
      throw new EvalInputError(
        `${path}: expected ${rows * cols * itemSize} data bytes for shape (${rows}, ${cols}), found ${size - h.dataOffset}`,
      );
    }
    const rowBytes = cols * itemSize;
    const buf = new Uint8Array(Math.max(1, Math.min(chunkRows, rows)) * rowBytes);
    for (let first = 0; first < rows; first += chunkRows) {
      const count = Math.min(chunkRows, rows - first);
      const want = count * rowBytes;
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, h.dataOffset + first * rowBytes + got);
        if (bytesRead === 0) throw new EvalInputError(`${path}: file ended early at row ${first}`);
        got += bytesRead;
      }
      const chunk =
        h.dtype === 'float64'
          ? new Float64Array(buf.buffer, 0, count * cols)
          : new Float32Array(buf.buffer, 0, count * cols);
      await onChunk(chunk, count, first);
    }
    return { rows, cols };
  } finally {
    await fh.close();
  }
}

/** Encodes a float64 array as .npy (version 1.0, '<f8', C order). */
export function encodeNpy(data: Float64Array, shape: readonly number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length)
    throw new Error(`encodeNpy: shape (${shape.join(', ')}) does not match ${data.length} values`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f8', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad so that the data starts on a 64-byte boundary, header ends with a newline.
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}
