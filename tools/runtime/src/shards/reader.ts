/**
 * Streaming shard reader: async iteration over record batches (or rows) of a shard set, at most
 * two shards in memory (the one being consumed and the next, read and verified ahead so that
 * consumers never wait for I/O or hashing; memory is bounded by the shard size, not the data set
 * size). Each shard is checked against the manifest (size, sha256 unless `verify: 'size'`; node's
 * createHash with SHA-NI runs at ~1.6 GB/s here, WebCrypto's digest blocked the JS thread 5x
 * longer) and parsed as an Arrow IPC file; a truncated or corrupt shard raises an error naming
 * the file.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, read, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type * as ArrowNs from 'apache-arrow';
import { columnValuesOf, fromArrowSchema, loadArrow, type Arrow } from './arrow.js';
import {
  MANIFEST_FILE,
  type ColumnSpec,
  type ColumnValues,
  type ListValues,
  type NumericArray,
  type ShardEntry,
  type ShardManifest,
  type ShardSchema,
} from './schema.js';

/** One record batch of a shard set, with typed column accessors (views, valid until the next shard). */
export interface ShardBatch {
  readonly numRows: number;
  /** Path of the shard file the batch came from. */
  readonly file: string;
  /** Index in the whole set of this batch's first row. */
  readonly startRow: number;
  readonly schema: ShardSchema;
  column(name: string): ColumnValues;
  /** A utf8 column. */
  strings(name: string): string[];
  /** A scalar or fixed-size list column: flat, row-major. */
  numeric(name: string): NumericArray;
  /** A variable-length list column. */
  list(name: string): ListValues;
}

export interface ReadOptions {
  /** 'sha256' (default) checks every shard's hash; 'size' only its byte size. */
  verify?: 'sha256' | 'size';
  /** Read only these shard indices, in this order (default: all, in manifest order). */
  shards?: number[];
  /**
   * Read shard k+2 into shard k's buffer (two buffers in all, instead of a new one per shard:
   * no page faults and no garbage-collection pressure from multi-MiB buffers). A batch's views
   * are then overwritten once the shard after the next one is read: for consumers that copy
   * what they keep, as ShardBatch's contract (views valid until the next shard) asks. Default false.
   */
  reuseBuffers?: boolean;
}

/** An opened shard set: its manifest and schema, plus streaming iteration. */
export interface ShardSet {
  readonly dir: string;
  readonly manifest: ShardManifest;
  readonly schema: ShardSchema;
  readonly totalRows: number;
  batches(options?: ReadOptions): AsyncGenerator<ShardBatch>;
  /** Rows as plain objects (strings, numbers, typed-array views for list columns). Slower than batches. */
  rows(options?: ReadOptions): AsyncGenerator<Record<string, string | number | NumericArray>>;
}

const MAGIC = Buffer.from('ARROW1');

class Batch implements ShardBatch {
  private readonly cache = new Map<string, ColumnValues>();
  constructor(
    private readonly rb: ArrowNs.RecordBatch,
    readonly file: string,
    readonly startRow: number,
    readonly schema: ShardSchema,
  ) {}
  get numRows(): number {
    return this.rb.numRows;
  }
  private spec(name: string): ColumnSpec {
    const spec = this.schema.columns.find((c) => c.name === name);
    if (!spec)
      throw new Error(`${this.file}: no column ${name} (have ${this.schema.columns.map((c) => c.name).join(', ')})`);
    return spec;
  }
  column(name: string): ColumnValues {
    let v = this.cache.get(name);
    if (!v) {
      const spec = this.spec(name);
      const index = this.schema.columns.indexOf(spec);
      v = columnValuesOf(spec, this.rb.data.children[index]!);
      this.cache.set(name, v);
    }
    return v;
  }
  strings(name: string): string[] {
    if (this.spec(name).type !== 'utf8') throw new Error(`${this.file}: column ${name} is not utf8`);
    return this.column(name) as string[];
  }
  numeric(name: string): NumericArray {
    const spec = this.spec(name);
    if (spec.type === 'utf8' || spec.list)
      throw new Error(`${this.file}: column ${name} is not a numeric scalar or fixed-size list`);
    return this.column(name) as NumericArray;
  }
  list(name: string): ListValues {
    if (!this.spec(name).list) throw new Error(`${this.file}: column ${name} is not a list column`);
    return this.column(name) as ListValues;
  }
}

function sameColumns(a: ColumnSpec[], b: ColumnSpec[]): boolean {
  return (
    a.length === b.length &&
    a.every(
      (c, i) =>
        c.name === b[i]!.name &&
        c.type === b[i]!.type &&
        (c.width ?? 0) === (b[i]!.width ?? 0) &&
        !!c.list === !!b[i]!.list,
    )
  );
}

/**
 * A whole file, read by one thread-pool operation into one buffer. fs.promises.readFile reads in
 * 512 KiB chunks and open/stat/read/close are each a thread-pool round trip: every step of a
 * read-ahead waited for the JS thread to return to the event loop, which a consumer busy with
 * a shard rarely does, so the next shard was still unread when it was needed. open, fstat and
 * close are cheap system calls and run synchronously here. A size other than the manifest's is
 * reported before anything is read.
 */
async function readShardBytes(
  path: string,
  expectBytes: number | undefined,
  spare: Buffer | undefined,
): Promise<Buffer> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new Error(`shard ${path}: cannot read (${(error as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (expectBytes !== undefined && size !== expectBytes) {
      throw new Error(`shard ${path}: truncated or corrupt: ${size} bytes, manifest says ${expectBytes}`);
    }
    const bytes = spare && spare.byteLength >= size ? spare.subarray(0, size) : Buffer.allocUnsafeSlow(size); // never from the shared pool: it may be reused
    let done = 0;
    while (done < size) {
      const got = await new Promise<number>((resolve, reject) =>
        read(fd, bytes, done, size - done, done, (error, n) => (error ? reject(error) : resolve(n))),
      );
      if (got === 0) throw new Error(`shard ${path}: truncated while reading: ${done} of ${size} bytes`);
      done += got;
    }
    return bytes;
  } catch (error) {
    const message = (error as Error).message;
    throw message.startsWith(`shard ${path}`) ? error : new Error(`shard ${path}: cannot read (${message})`);
  } finally {
    closeSync(fd);
  }
}

/** Checks the Arrow IPC file magic and opens the file reader; errors name the file. */
function openArrowFile(arrow: Arrow, path: string, bytes: Buffer): ArrowNs.RecordBatchFileReader {
  if (
    bytes.byteLength < 12 ||
    !bytes.subarray(0, 6).equals(MAGIC) ||
    !bytes.subarray(bytes.byteLength - 6).equals(MAGIC)
  ) {
    throw new Error(`shard ${path}: truncated or corrupt: not a complete Arrow IPC file (magic bytes missing)`);
  }
  try {
    const reader = arrow.RecordBatchReader.from(bytes);
    if (!reader.isFile()) throw new Error('not in the Arrow IPC file format');
    return reader.open() as ArrowNs.RecordBatchFileReader;
  } catch (error) {
    throw new Error(`shard ${path}: corrupt Arrow IPC file (${(error as Error).message})`);
  }
}

/**
 * sha256 of a read-ahead shard, computed in slices while the current shard's batches are
 * consumed: hashing a 6.4 MB shard at once held the JS thread ~4 ms, long enough for a consumer
 * feeding an inference thread to leave it idle; in slices between batches it costs the same CPU
 * and stalls nothing. A shard is still verified completely before its first batch is yielded.
 */
class SlicedHash {
  private readonly hash = createHash('sha256');
  private done = 0;
  constructor(private readonly bytes: Buffer) {}
  get remaining(): number {
    return this.bytes.byteLength - this.done;
  }
  step(n: number): void {
    const end = Math.min(this.bytes.byteLength, this.done + n);
    if (end > this.done) this.hash.update(this.bytes.subarray(this.done, end));
    this.done = end;
  }
  digest(): string {
    this.step(this.remaining);
    return this.hash.digest('hex');
  }
}

/**
 * Opens a shard set: a directory with manifest.json, or a single Arrow IPC file (a foreign file
 * without manifest, read as a one-shard set without hash check).
 */
export async function openShardSet(path: string): Promise<ShardSet> {
  const arrow = await loadArrow();
  let dir: string;
  let manifest: ShardManifest;
  if (existsSync(path) && statSync(path).isFile()) {
    dir = dirname(path);
    const reader = openArrowFile(arrow, path, await readShardBytes(path, undefined, undefined));
    const schema = fromArrowSchema(arrow, reader.schema, path);
    manifest = {
      format: 'distillery-shards',
      version: 1,
      rowsPerShard: 0,
      totalRows: -1,
      columns: schema.columns,
      metadata: schema.metadata,
      shards: [{ file: basename(path), rows: -1, bytes: statSync(path).size, sha256: '' }],
    };
  } else {
    dir = path;
    const manifestPath = join(dir, MANIFEST_FILE);
    let text: string;
    try {
      text = await readFile(manifestPath, 'utf8');
    } catch {
      throw new Error(`shard set ${dir}: no ${MANIFEST_FILE} (missing directory, or the writer did not finish)`);
    }
    try {
      manifest = JSON.parse(text) as ShardManifest;
    } catch (error) {
      throw new Error(`${manifestPath}: corrupt JSON (${(error as Error).message})`);
    }
    if (
      manifest.format !== 'distillery-shards' ||
      !Array.isArray(manifest.shards) ||
      !Array.isArray(manifest.columns)
    ) {
      throw new Error(`${manifestPath}: not a distillery shard manifest`);
    }
  }
  const schema: ShardSchema = { columns: manifest.columns, metadata: manifest.metadata };

  async function* batches(options: ReadOptions = {}): AsyncGenerator<ShardBatch> {
    const verify = options.verify ?? 'sha256';
    const order = options.shards ?? manifest.shards.map((_, i) => i);
    const starts: number[] = [];
    let acc = 0;
    for (const s of manifest.shards) {
      starts.push(acc);
      acc += Math.max(0, s.rows);
    }
    /** A shard read ahead: its bytes, and their hash while it is being computed. */
    interface ReadAhead {
      entry: ShardEntry;
      file: string;
      bytes: Buffer;
      hash: SlicedHash | undefined;
    }
    const read = (index: number, spare: Buffer | undefined): Promise<ReadAhead> => {
      const entry = manifest.shards[index];
      if (!entry)
        return Promise.reject(new Error(`shard set ${dir}: no shard #${index} (has ${manifest.shards.length})`));
      const file = join(dir, entry.file);
      return readShardBytes(file, entry.sha256 ? entry.bytes : undefined, spare).then((bytes) => ({
        entry,
        file,
        bytes,
        hash: verify === 'sha256' && entry.sha256 ? new SlicedHash(bytes) : undefined,
      }));
    };
    let ahead = order.length > 0 ? read(order[0]!, undefined) : undefined;
    /** The read-ahead shard once its bytes are in (its hash then advances between batches). */
    const arrival: { shard?: ReadAhead } = {};
    const arrivedHash = (): SlicedHash | undefined => arrival.shard?.hash; // read through a call: set by a callback
    /** The buffer of the shard before the current one, free for the next read when reusing. */
    let spare: Buffer | undefined;
    for (let k = 0; k < order.length; k++) {
      const index = order[k]!;
      const { entry, file, bytes, hash } = await ahead!;
      if (hash) {
        const got = hash.digest();
        if (got !== entry.sha256)
          throw new Error(`shard ${file}: corrupt: sha256 ${got} does not match the manifest's ${entry.sha256}`);
      }
      const reader = openArrowFile(arrow, file, bytes);
      // Read the next shard while this one is consumed (its error surfaces when reached).
      delete arrival.shard;
      ahead = k + 1 < order.length ? read(order[k + 1]!, spare) : undefined;
      ahead?.then(
        (next) => {
          arrival.shard = next;
        },
        () => {},
      );
      spare = undefined;
      const fileSchema = fromArrowSchema(arrow, reader.schema, file);
      if (!sameColumns(fileSchema.columns, schema.columns))
        throw new Error(`shard ${file}: columns differ from the manifest's`);
      let row = starts[index]!;
      let rows = 0;
      try {
        let batchesLeft = reader.numRecordBatches;
        for (const rb of reader) {
          yield new Batch(rb, file, row, schema);
          row += rb.numRows;
          rows += rb.numRows;
          // Spread the next shard's hash over the rest of this one.
          const nextHash = arrivedHash();
          if (nextHash) nextHash.step(Math.ceil(nextHash.remaining / Math.max(1, --batchesLeft)));
        }
      } catch (error) {
        if ((error as Error).message.startsWith(`shard ${file}`)) throw error;
        throw new Error(`shard ${file}: corrupt Arrow IPC file (${(error as Error).message})`);
      }
      if (entry.rows >= 0 && rows !== entry.rows)
        throw new Error(`shard ${file}: ${rows} rows, manifest says ${entry.rows}`);
      if (options.reuseBuffers) spare = Buffer.from(bytes.buffer);
    }
  }

  async function* rows(options: ReadOptions = {}): AsyncGenerator<Record<string, string | number | NumericArray>> {
    for await (const b of batches(options)) {
      const cols = schema.columns.map((c) => [c, b.column(c.name)] as const);
      for (let r = 0; r < b.numRows; r++) {
        const row: Record<string, string | number | NumericArray> = {};
        for (const [c, v] of cols) {
          if (c.type === 'utf8') row[c.name] = (v as string[])[r]!;
          else if (c.list) {
            const lv = v as ListValues;
            row[c.name] = lv.values.subarray(lv.offsets[r]!, lv.offsets[r + 1]!);
          } else if (c.width !== undefined) row[c.name] = (v as NumericArray).subarray(r * c.width, (r + 1) * c.width);
          else row[c.name] = (v as NumericArray)[r]!;
        }
        yield row;
      }
    }
  }

  return {
    dir,
    manifest,
    schema,
    totalRows: manifest.totalRows,
    batches,
    rows,
  };
}
