/**
 * Dataset import: IDX (MNIST / Fashion-MNIST, gzip or not), NPY, image folders (PNG / JPEG),
 * CSV, Parquet, Arrow IPC and a synthetic generator, into dataset shards (schema "dataset/1",
 * see @distillery/core shards/schema.ts). Every reader streams chunks of rows; the shard writer
 * keeps memory flat. On any error the writer is aborted: no partial shard is left.
 */
import { createReadStream, readdirSync, readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { extname, join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import {
  ShardWriter,
  datasetSchema,
  openShardSet,
  type ColumnValues,
  type ShardManifest,
} from '@distillery/runtime/shards';
import { Rng, uniformStream } from '@distillery/runtime/rng';

/** One source of samples for one split. */
export interface ImportSource {
  split: string;
  /** idx/npy: images file; images: root folder (root/<class>/<file>); csv/parquet/arrow: the table file. */
  path?: string;
  /** idx/npy: labels file. */
  labels?: string;
  /** synthetic: number of samples. */
  samples?: number;
  /**
   * Carves a held-out split out of this source: each row independently goes to `split` with
   * probability `fraction`, decided by a seeded stream in row order (streamable, reproducible; the
   * count is binomial, e.g. 6,000 +- 73 of 60,000 at 0.1). Used for validation splits: tune on them,
   * never on the test split.
   */
  holdout?: { split: string; fraction: number; seed: number };
}

export interface ImportOptions {
  format: 'idx' | 'npy' | 'images' | 'csv' | 'parquet' | 'arrow' | 'synthetic';
  sources: ImportSource[];
  outDir: string;
  rowsPerShard: number;
  /** Default: max label + 1 seen (tables, idx, npy), number of class folders (images), classes (synthetic). */
  numClasses?: number;
  /** csv / parquet / arrow: label column (default "label"); id column (default: row number). */
  labelColumn?: string;
  idColumn?: string;
  /** images: 1 = grayscale, 3 = RGB. */
  channels?: 1 | 3;
  /** synthetic: feature dimension, classes, seed, cluster separation. */
  dim?: number;
  classes?: number;
  seed?: number;
  separation?: number;
  signal?: AbortSignal;
  progress?: (done: number) => void;
}

/** A chunk of rows from a reader. `values` is uint8 (pixels) or float32 (features), row-major. */
export interface Chunk {
  ids: string[];
  labels: Int32Array;
  values: Uint8Array | Float32Array;
  rows: number;
}

/** What a reader says about its samples before the first chunk. */
export interface SourceShape {
  shape: number[];
  input: 'pixels' | 'features';
  classNames?: string[];
}

export interface SourceReader {
  shape: SourceShape;
  chunks: AsyncGenerator<Chunk>;
}

const CHUNK_ROWS = 1024;

// ---------------------------------------------------------------- byte streams

/** Reads exact byte counts from a (possibly gzipped) file stream. */
class ByteReader {
  private iterator: AsyncIterator<Buffer>;
  private buffer: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  private ended = false;
  constructor(
    readonly path: string,
    stream: Readable,
  ) {
    this.iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }
  static async open(path: string): Promise<ByteReader> {
    const fh = await open(path, 'r').catch((e: Error) => {
      throw new Error(`${path}: cannot read (${e.message})`);
    });
    const head = Buffer.alloc(2);
    await fh.read(head, 0, 2, 0);
    await fh.close();
    const raw = createReadStream(path);
    const gz = head[0] === 0x1f && head[1] === 0x8b;
    return new ByteReader(path, gz ? raw.pipe(createGunzip()) : raw);
  }
  /** Exactly n bytes, or fewer only at end of file. */
  async read(n: number): Promise<Buffer> {
    // Collect stream chunks and concatenate once (concatenating per chunk is quadratic).
    const parts: Buffer[] = this.buffer.length ? [this.buffer] : [];
    let have = this.buffer.length;
    while (have < n && !this.ended) {
      let next: IteratorResult<Buffer>;
      try {
        next = await this.iterator.next();
      } catch (error) {
        throw new Error(`${this.path}: corrupt or truncated (${(error as Error).message})`);
      }
      if (next.done) this.ended = true;
      else {
        parts.push(next.value);
        have += next.value.length;
      }
    }
    const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
    const out = all.subarray(0, n);
    this.buffer = all.subarray(Math.min(n, all.length));
    return out;
  }
  async exact(n: number, what: string): Promise<Buffer> {
    const b = await this.read(n);
    if (b.length !== n) throw new Error(`${this.path}: truncated (${what}: wanted ${n} bytes, got ${b.length})`);
    return b;
  }
}

// ---------------------------------------------------------------- IDX

async function idxHeader(r: ByteReader): Promise<{ type: number; dims: number[] }> {
  const h = await r.exact(4, 'IDX header');
  if (h[0] !== 0 || h[1] !== 0) throw new Error(`${r.path}: not an IDX file (bad magic)`);
  const type = h[2]!;
  const ndims = h[3]!;
  const d = await r.exact(4 * ndims, 'IDX dims');
  return { type, dims: Array.from({ length: ndims }, (_, i) => d.readUInt32BE(4 * i)) };
}

/** Streams an IDX images + labels pair in chunks (also the item reader of format detection-canvas). */
export async function readIdx(source: ImportSource): Promise<SourceReader> {
  if (!source.path || !source.labels)
    throw new Error(`idx source (split ${source.split}): needs path (images) and labels`);
  const images = await ByteReader.open(source.path);
  const labels = await ByteReader.open(source.labels);
  const ih = await idxHeader(images);
  const lh = await idxHeader(labels);
  if (ih.type !== 0x08)
    throw new Error(
      `${source.path}: IDX element type 0x${ih.type.toString(16)} not supported (need 0x08 unsigned byte)`,
    );
  if (lh.type !== 0x08 || lh.dims.length !== 1)
    throw new Error(`${source.labels}: not an IDX label file (1-D unsigned bytes)`);
  const n = ih.dims[0]!;
  if (lh.dims[0] !== n) throw new Error(`${source.labels}: ${lh.dims[0]} labels for ${n} images in ${source.path}`);
  const sampleDims = ih.dims.slice(1);
  const width = sampleDims.reduce((a, b) => a * b, 1);
  const shape = sampleDims.length === 2 ? [...sampleDims, 1] : sampleDims;
  async function* chunks(): AsyncGenerator<Chunk> {
    for (let start = 0; start < n; start += CHUNK_ROWS) {
      const rows = Math.min(CHUNK_ROWS, n - start);
      const px = await images.exact(rows * width, `images ${start}..${start + rows}`);
      const lb = await labels.exact(rows, `labels ${start}..${start + rows}`);
      yield {
        ids: Array.from({ length: rows }, (_, i) => `${source.split}/${start + i}`),
        labels: Int32Array.from(lb),
        values: new Uint8Array(px),
        rows,
      };
    }
  }
  return { shape: { shape, input: 'pixels' }, chunks: chunks() };
}

// ---------------------------------------------------------------- NPY

interface NpyHeader {
  descr: string;
  shape: number[];
}

async function npyHeader(r: ByteReader): Promise<NpyHeader> {
  const magic = await r.exact(8, 'NPY magic');
  if (magic[0] !== 0x93 || magic.toString('latin1', 1, 6) !== 'NUMPY')
    throw new Error(`${r.path}: not an NPY file (bad magic)`);
  const major = magic[6]!;
  const lenBytes = await r.exact(major === 1 ? 2 : 4, 'NPY header length');
  const len = major === 1 ? lenBytes.readUInt16LE(0) : lenBytes.readUInt32LE(0);
  const text = (await r.exact(len, 'NPY header')).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(text)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(text)?.[1];
  if (!descr || !fortran || shapeText === undefined)
    throw new Error(`${r.path}: unreadable NPY header ${JSON.stringify(text)}`);
  if (fortran === 'True') throw new Error(`${r.path}: Fortran-order arrays are not supported (save with C order)`);
  return {
    descr,
    shape: shapeText
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map(Number),
  };
}

/** Little-endian NPY dtypes we read, with a converter to float32 / int32. */
const NPY_TYPES: Record<string, { size: number; get: (b: Buffer, o: number) => number }> = {
  '|u1': { size: 1, get: (b, o) => b[o]! },
  '|i1': { size: 1, get: (b, o) => b.readInt8(o) },
  '<u2': { size: 2, get: (b, o) => b.readUInt16LE(o) },
  '<i2': { size: 2, get: (b, o) => b.readInt16LE(o) },
  '<i4': { size: 4, get: (b, o) => b.readInt32LE(o) },
  '<u4': { size: 4, get: (b, o) => b.readUInt32LE(o) },
  '<i8': { size: 8, get: (b, o) => Number(b.readBigInt64LE(o)) },
  '<f4': { size: 4, get: (b, o) => b.readFloatLE(o) },
  '<f8': { size: 8, get: (b, o) => b.readDoubleLE(o) },
  '|b1': { size: 1, get: (b, o) => b[o]! },
};

async function readNpy(source: ImportSource): Promise<SourceReader> {
  if (!source.path || !source.labels)
    throw new Error(`npy source (split ${source.split}): needs path (inputs .npy) and labels (.npy)`);
  const xr = await ByteReader.open(source.path);
  const yr = await ByteReader.open(source.labels);
  const xh = await npyHeader(xr);
  const yh = await npyHeader(yr);
  const xt = NPY_TYPES[xh.descr];
  const yt = NPY_TYPES[yh.descr];
  if (!xt) throw new Error(`${source.path}: dtype ${xh.descr} not supported (${Object.keys(NPY_TYPES).join(', ')})`);
  if (!yt || yh.descr.includes('f')) throw new Error(`${source.labels}: labels must be integers, got ${yh.descr}`);
  const n = xh.shape[0] ?? 0;
  if (yh.shape.length !== 1 || yh.shape[0] !== n)
    throw new Error(`${source.labels}: shape (${yh.shape}) does not match ${n} samples in ${source.path}`);
  const sampleShape = xh.shape.slice(1);
  const width = sampleShape.reduce((a, b) => a * b, 1);
  const pixels = xh.descr === '|u1';
  async function* chunks(): AsyncGenerator<Chunk> {
    for (let start = 0; start < n; start += CHUNK_ROWS) {
      const rows = Math.min(CHUNK_ROWS, n - start);
      const xb = await xr.exact(rows * width * xt!.size, `samples ${start}..${start + rows}`);
      const yb = await yr.exact(rows * yt!.size, `labels ${start}..${start + rows}`);
      const values = pixels ? new Uint8Array(xb) : new Float32Array(rows * width);
      if (!pixels) for (let i = 0; i < rows * width; i++) values[i] = xt!.get(xb, i * xt!.size);
      const labels = new Int32Array(rows);
      for (let i = 0; i < rows; i++) labels[i] = yt!.get(yb, i * yt!.size);
      yield { ids: Array.from({ length: rows }, (_, i) => `${source.split}/${start + i}`), labels, values, rows };
    }
  }
  return {
    shape: { shape: sampleShape.length ? sampleShape : [1], input: pixels ? 'pixels' : 'features' },
    chunks: chunks(),
  };
}

// ---------------------------------------------------------------- image folders

interface DecodedImage {
  width: number;
  height: number;
  rgba: Uint8Array;
}

async function decodeImage(path: string): Promise<DecodedImage> {
  const bytes = readFileSync(path);
  const ext = extname(path).toLowerCase();
  try {
    if (ext === '.png') {
      const { PNG } = await import('pngjs');
      const png = PNG.sync.read(bytes);
      return { width: png.width, height: png.height, rgba: png.data };
    }
    const jpeg = (await import('jpeg-js')).default;
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
    return { width: img.width, height: img.height, rgba: img.data };
  } catch (error) {
    throw new Error(`${path}: cannot decode image (${(error as Error).message})`);
  }
}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg']);

async function readImages(source: ImportSource, channels: 1 | 3): Promise<SourceReader> {
  const root: string = source.path ?? '';
  if (!root) throw new Error(`images source (split ${source.split}): needs path (root/<class>/<image>)`);
  let classNames: string[];
  try {
    classNames = readdirSync(root, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  } catch (error) {
    throw new Error(`${root}: cannot list image folder (${(error as Error).message})`);
  }
  if (classNames.length === 0) throw new Error(`${root}: no class folders (expected root/<class>/<image>)`);
  const files: { path: string; label: number }[] = [];
  classNames.forEach((name, label) => {
    for (const f of readdirSync(join(root, name)).sort())
      if (IMAGE_EXT.has(extname(f).toLowerCase())) files.push({ path: join(root, name, f), label });
  });
  if (files.length === 0) throw new Error(`${root}: no PNG or JPEG files`);
  const first = await decodeImage(files[0]!.path);
  const [H, W] = [first.height, first.width];
  const width = H * W * channels;
  async function* chunks(): AsyncGenerator<Chunk> {
    for (let start = 0; start < files.length; start += CHUNK_ROWS) {
      const part = files.slice(start, start + CHUNK_ROWS);
      const values = new Uint8Array(part.length * width);
      for (let i = 0; i < part.length; i++) {
        const img = await decodeImage(part[i]!.path);
        if (img.width !== W || img.height !== H)
          throw new Error(
            `${part[i]!.path}: image is ${img.width}x${img.height}, the first image ${files[0]!.path} is ${W}x${H} (resize first)`,
          );
        const base = i * width;
        for (let p = 0; p < H * W; p++) {
          const [r, g, b] = [img.rgba[4 * p]!, img.rgba[4 * p + 1]!, img.rgba[4 * p + 2]!];
          if (channels === 1)
            values[base + p] = Math.round(0.299 * r + 0.587 * g + 0.114 * b); // ITU-R 601 luma
          else {
            values[base + 3 * p] = r;
            values[base + 3 * p + 1] = g;
            values[base + 3 * p + 2] = b;
          }
        }
      }
      yield {
        ids: part.map((f) => relative(root, f.path)),
        labels: Int32Array.from(part, (f) => f.label),
        values,
        rows: part.length,
      };
    }
  }
  return { shape: { shape: [H, W, channels], input: 'pixels', classNames }, chunks: chunks() };
}

// ---------------------------------------------------------------- tables: CSV, Parquet, Arrow

type TableRow = Record<string, unknown>;

/** Turns table rows into chunks: id column, label column, every other column a numeric feature (or one numeric list column). */
function tableChunks(
  path: string,
  source: ImportSource,
  rowsIn: AsyncIterable<TableRow[]>,
  labelColumn: string,
  idColumn: string | undefined,
): SourceReader {
  let featureColumns: string[] | undefined;
  let width = 0;
  const shape: SourceShape = { shape: [], input: 'features' };
  const gen = async function* (): AsyncGenerator<Chunk> {
    let rowNo = 0;
    for await (const rows of rowsIn) {
      if (rows.length === 0) continue;
      if (!featureColumns) {
        const cols = Object.keys(rows[0]!);
        if (!cols.includes(labelColumn))
          throw new Error(`${path}: no label column "${labelColumn}" (columns: ${cols.join(', ')})`);
        featureColumns = cols.filter((c) => c !== labelColumn && c !== idColumn);
        const firstValue = rows[0]![featureColumns[0]!];
        width =
          featureColumns.length === 1 && (Array.isArray(firstValue) || ArrayBuffer.isView(firstValue))
            ? (firstValue as ArrayLike<number>).length
            : featureColumns.length;
        if (width === 0) throw new Error(`${path}: no feature columns`);
      }
      const values = new Float32Array(rows.length * width);
      const labels = new Int32Array(rows.length);
      const ids: string[] = [];
      rows.forEach((row, i) => {
        const where = `${path} row ${rowNo + i + 1}`;
        const label = Number(row[labelColumn]);
        if (!Number.isInteger(label))
          throw new Error(`${where}: label ${JSON.stringify(row[labelColumn])} is not an integer`);
        labels[i] = label;
        ids.push(idColumn ? String(row[idColumn]) : `${source.split}/${rowNo + i}`);
        const list =
          width !== featureColumns!.length ||
          (featureColumns!.length === 1 && typeof row[featureColumns![0]!] === 'object')
            ? (row[featureColumns![0]!] as ArrayLike<unknown>)
            : undefined;
        for (let j = 0; j < width; j++) {
          const raw = list ? list[j] : row[featureColumns![j]!];
          const v =
            typeof raw === 'bigint'
              ? Number(raw)
              : typeof raw === 'number'
                ? raw
                : typeof raw === 'string' && raw.trim() !== ''
                  ? Number(raw)
                  : NaN;
          if (!Number.isFinite(v))
            throw new Error(
              `${where}: column ${list ? `${featureColumns![0]}[${j}]` : featureColumns![j]} value ${JSON.stringify(String(raw))} is not a finite number`,
            );
          values[i * width + j] = v;
        }
        if (list && list.length !== width)
          throw new Error(`${where}: list has ${list.length} values, expected ${width}`);
      });
      rowNo += rows.length;
      shape.shape = [width];
      yield { ids, labels, values, rows: rows.length };
    }
  };
  return { shape, chunks: gen() };
}

async function* csvRows(path: string): AsyncGenerator<TableRow[]> {
  const { parse } = await import('csv-parse');
  const parser = createReadStream(path).pipe(parse({ columns: true, skip_empty_lines: true, trim: true }));
  let batch: TableRow[] = [];
  try {
    for await (const record of parser) {
      batch.push(record as TableRow);
      if (batch.length === CHUNK_ROWS) {
        yield batch;
        batch = [];
      }
    }
  } catch (error) {
    throw new Error(`${path}: CSV error (${(error as Error).message})`);
  }
  if (batch.length) yield batch;
}

async function* parquetRows(path: string): AsyncGenerator<TableRow[]> {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  let file: Awaited<ReturnType<typeof asyncBufferFromFile>>;
  let rows: number;
  try {
    file = await asyncBufferFromFile(path);
    rows = Number((await parquetMetadataAsync(file)).num_rows);
  } catch (error) {
    throw new Error(`${path}: not a readable Parquet file (${(error as Error).message})`);
  }
  for (let start = 0; start < rows; start += CHUNK_ROWS) {
    yield (await parquetReadObjects({
      file,
      rowStart: start,
      rowEnd: Math.min(rows, start + CHUNK_ROWS),
    })) as TableRow[];
  }
}

async function* arrowRows(path: string): AsyncGenerator<TableRow[]> {
  const set = await openShardSet(path);
  let batch: TableRow[] = [];
  for await (const row of set.rows({ verify: 'size' })) {
    batch.push(row);
    if (batch.length === CHUNK_ROWS) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

// ---------------------------------------------------------------- synthetic

/** Gaussian clusters: class means ~ N(0, separation^2), samples = mean + N(0, 1); seeded. */
function readSynthetic(source: ImportSource, o: ImportOptions, splitIndex: number): SourceReader {
  const n = source.samples ?? 1000;
  const dim = o.dim ?? 16;
  const classes = o.classes ?? 10;
  const sep = o.separation ?? 2;
  const seed = o.seed ?? 0;
  const meanRng = uniformStream(seed);
  const gauss = (r: () => number) => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const means = Float32Array.from({ length: classes * dim }, () => gauss(meanRng) * sep);
  const r = uniformStream((seed * 7919 + splitIndex + 1) >>> 0);
  async function* chunks(): AsyncGenerator<Chunk> {
    for (let start = 0; start < n; start += CHUNK_ROWS) {
      const rows = Math.min(CHUNK_ROWS, n - start);
      const values = new Float32Array(rows * dim);
      const labels = new Int32Array(rows);
      for (let i = 0; i < rows; i++) {
        const y = Math.floor(r() * classes);
        labels[i] = y;
        for (let k = 0; k < dim; k++) values[i * dim + k] = means[y * dim + k]! + gauss(r);
      }
      yield { ids: Array.from({ length: rows }, (_, i) => `${source.split}/${start + i}`), labels, values, rows };
    }
  }
  return { shape: { shape: [dim], input: 'features' }, chunks: chunks() };
}

// ---------------------------------------------------------------- driver

async function openSource(o: ImportOptions, source: ImportSource, index: number): Promise<SourceReader> {
  const labelColumn = o.labelColumn ?? 'label';
  switch (o.format) {
    case 'idx':
      return readIdx(source);
    case 'npy':
      return readNpy(source);
    case 'images':
      return readImages(source, o.channels ?? 3);
    case 'csv':
      return tableChunks(need(source), source, csvRows(need(source)), labelColumn, o.idColumn);
    case 'parquet':
      return tableChunks(need(source), source, parquetRows(need(source)), labelColumn, o.idColumn);
    case 'arrow':
      return tableChunks(need(source), source, arrowRows(need(source)), labelColumn, o.idColumn);
    case 'synthetic':
      return readSynthetic(source, o, index);
  }
}
function need(source: ImportSource): string {
  if (!source.path) throw new Error(`source for split ${source.split}: path is required`);
  statSync(source.path, { throwIfNoEntry: false }) ??
    (() => {
      throw new Error(`${source.path}: no such file`);
    })();
  return source.path;
}

/**
 * Imports every source into one dataset shard set. The class count goes into the file metadata of
 * every shard, so when it is not given (and the format has no class list) a first pass over the
 * sources finds the largest label: memory stays flat at the price of reading twice.
 */
export async function importDataset(o: ImportOptions): Promise<ShardManifest> {
  if (o.sources.length === 0) throw new Error('dataset import: no sources');
  let numClasses = o.numClasses ?? (o.format === 'synthetic' ? (o.classes ?? 10) : undefined);
  if (numClasses === undefined && o.format !== 'images') {
    let maxLabel = -1;
    for (const [index, source] of o.sources.entries()) {
      for await (const chunk of (await openSource(o, source, index)).chunks)
        for (const y of chunk.labels) if (y > maxLabel) maxLabel = y;
    }
    numClasses = maxLabel + 1;
  }
  let writer: ShardWriter | undefined;
  let shape: SourceShape | undefined;
  let done = 0;
  const seenIds = new Set<string>();
  try {
    for (const [index, source] of o.sources.entries()) {
      const reader = await openSource(o, source, index);
      const where = source.path ?? `split ${source.split}`;
      const holdout = source.holdout;
      if (holdout && !(holdout.fraction > 0 && holdout.fraction < 1))
        throw new Error(`${where}: holdout.fraction must be in (0, 1), got ${holdout.fraction}`);
      if (holdout && holdout.split === source.split)
        throw new Error(`${where}: holdout.split "${holdout.split}" is the source's own split`);
      const holdoutRng = holdout ? new Rng(holdout.seed) : undefined;
      for await (const chunk of reader.chunks) {
        if (o.signal?.aborted) throw new Error('dataset import: cancelled');
        if (!shape) shape = { ...reader.shape, shape: [...reader.shape.shape] };
        else if (
          JSON.stringify(reader.shape.shape) !== JSON.stringify(shape.shape) ||
          reader.shape.input !== shape.input
        ) {
          throw new Error(
            `${where}: samples have shape ${JSON.stringify(reader.shape.shape)} (${reader.shape.input}), earlier sources ${JSON.stringify(shape.shape)} (${shape.input})`,
          );
        }
        const classes = numClasses ?? shape.classNames!.length;
        for (let i = 0; i < chunk.rows; i++) {
          const id = chunk.ids[i]!;
          if (seenIds.has(id)) throw new Error(`${where}: duplicate sample id ${id}`);
          seenIds.add(id);
          const y = chunk.labels[i]!;
          if (y < -1 || y >= classes)
            throw new Error(`${where}: sample ${id} has label ${y}, outside [-1, ${classes})`);
        }
        writer ??= await createWriter(o, shape, classes);
        const splits = new Array<string>(chunk.rows).fill(source.split);
        if (holdout)
          for (let i = 0; i < chunk.rows; i++) if (holdoutRng!.next() < holdout.fraction) splits[i] = holdout.split;
        writer.append(chunkColumns(chunk, splits), chunk.rows);
        done += chunk.rows;
        o.progress?.(done);
      }
    }
    if (!writer) throw new Error('dataset import: the sources hold no samples');
    return await writer.close();
  } catch (error) {
    await writer?.abort();
    throw error;
  }
}

async function createWriter(o: ImportOptions, shape: SourceShape, numClasses: number): Promise<ShardWriter> {
  const schema = datasetSchema({
    shape: shape.shape,
    input: shape.input,
    labels: 'single',
    numClasses,
    classNames: shape.classNames,
    source: `${o.format}: ${o.sources.map((s) => s.path ?? `${s.samples ?? ''} synthetic`).join(', ')}`,
    layout: shape.shape.length === 3 ? 'HWC' : 'flat',
  });
  return ShardWriter.create({ dir: o.outDir, schema, rowsPerShard: o.rowsPerShard });
}

function chunkColumns(chunk: Chunk, splits: string[]): Record<string, ColumnValues> {
  const columns: Record<string, ColumnValues> = { id: chunk.ids, split: splits, label: chunk.labels };
  columns[chunk.values instanceof Uint8Array ? 'pixels' : 'features'] = chunk.values;
  return columns;
}
