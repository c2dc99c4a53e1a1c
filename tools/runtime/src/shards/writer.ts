/**
 * Streaming shard writer: rows arrive in column batches of any size; every `rowsPerShard` rows
 * become one Arrow IPC file. A shard is written to `<name>.tmp` through a small buffer (constant
 * memory, sha256 computed on the fly) and renamed when complete; manifest.json is written last,
 * atomically. `abort()` deletes everything this writer created, so a failed stage leaves no
 * partial shard behind.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type * as ArrowNs from 'apache-arrow';
import {
  checkColumn,
  concatColumn,
  copyColumn,
  loadArrow,
  makeRecordBatch,
  sliceColumn,
  toArrowSchema,
  type Arrow,
} from './arrow.js';
import { MANIFEST_FILE, type ColumnValues, type ShardEntry, type ShardManifest, type ShardSchema } from './schema.js';
import { writeFileAtomicSync } from '@distillery/core/plugin';

export interface ShardWriterOptions {
  /** Output directory (created if missing); should be empty or hold no other shard set. */
  dir: string;
  schema: ShardSchema;
  /** Rows per shard file; the last shard may have fewer. */
  rowsPerShard: number;
  /** Shard file names are `<prefix>-00000.arrow`, ...; default "part". */
  prefix?: string;
  /**
   * Appends smaller than this are copied and coalesced into one record batch of at least this
   * many rows (default 256); larger appends are written as they come, without a copy.
   */
  minBatchRows?: number;
}

const FLUSH_BYTES = 4 << 20;

/** Buffered, hashing, synchronous file sink. */
class FileSink {
  readonly fd: number;
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  private buffer = Buffer.allocUnsafe(FLUSH_BYTES);
  private used = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }
  write(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.bytes += chunk.byteLength;
    if (chunk.byteLength >= FLUSH_BYTES) {
      this.flush();
      writeAll(this.fd, chunk);
      return;
    }
    if (this.used + chunk.byteLength > FLUSH_BYTES) this.flush();
    this.buffer.set(chunk, this.used);
    this.used += chunk.byteLength;
  }
  flush(): void {
    if (this.used > 0) writeAll(this.fd, this.buffer.subarray(0, this.used));
    this.used = 0;
  }
  close(): void {
    // No fsync: rename-after-close protects readers from partial files on a crash of this
    // process; durability against power loss is the store's job when it publishes outDir.
    this.flush();
    closeSync(this.fd);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}

type FileWriterCtor = new (sink: FileSink) => ArrowNs.RecordBatchFileWriter;

/** A RecordBatchFileWriter that writes synchronously to a FileSink instead of its async queue. */
function fileWriterClass(arrow: Arrow): FileWriterCtor {
  class SinkFileWriter extends arrow.RecordBatchFileWriter {
    constructor(private readonly fileSink: FileSink) {
      super({ autoDestroy: true });
    }
    protected override _write(
      chunk: ArrayBufferView | ArrayBufferLike | ArrayLike<number> | string | Iterable<number> | null | undefined,
    ): this {
      if (this._started && chunk != null) {
        const bytes = ArrayBuffer.isView(chunk)
          ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
          : arrow.util.toUint8Array(chunk as never);
        if (bytes.byteLength > 0) {
          this.fileSink.write(bytes);
          this._position += bytes.byteLength;
        }
      }
      return this;
    }
  }
  return SinkFileWriter as unknown as FileWriterCtor;
}

export class ShardWriter {
  private readonly specs;
  private readonly prefix: string;
  private readonly minBatchRows: number;
  private readonly shards: ShardEntry[] = [];
  private current:
    | { sink: FileSink; writer: ArrowNs.RecordBatchFileWriter; rows: number; tmp: string; file: string }
    | undefined;
  private pending: { columns: Record<string, ColumnValues>; rows: number }[] = [];
  private pendingRows = 0;
  private total = 0;
  private state: 'open' | 'closed' | 'aborted' = 'open';

  private constructor(
    private readonly arrow: Arrow,
    private readonly arrowSchema: ArrowNs.Schema,
    private readonly FileWriter: FileWriterCtor,
    private readonly options: ShardWriterOptions,
  ) {
    this.specs = options.schema.columns;
    this.prefix = options.prefix ?? 'part';
    this.minBatchRows = options.minBatchRows ?? 256;
  }

  static async create(options: ShardWriterOptions): Promise<ShardWriter> {
    if (!Number.isInteger(options.rowsPerShard) || options.rowsPerShard <= 0) {
      throw new Error(`shard writer: rowsPerShard must be a positive integer, got ${options.rowsPerShard}`);
    }
    const arrow = await loadArrow();
    const schema = toArrowSchema(arrow, options.schema);
    mkdirSync(options.dir, { recursive: true });
    return new ShardWriter(arrow, schema, fileWriterClass(arrow), options);
  }

  /** Rows appended so far. */
  get rowsWritten(): number {
    return this.total;
  }

  /**
   * Appends `numRows` rows given column-wise (see ColumnValues). The writer copies whatever it
   * keeps, so the caller may reuse its buffers after the call returns.
   */
  append(columns: Record<string, ColumnValues>, numRows: number): void {
    if (this.state !== 'open') throw new Error(`shard writer (${this.options.dir}): append after ${this.state}`);
    if (!Number.isInteger(numRows) || numRows < 0) throw new Error(`shard writer: bad row count ${numRows}`);
    for (const spec of this.specs) checkColumn(spec, columns[spec.name], numRows);
    const known = new Set(this.specs.map((s) => s.name));
    for (const name of Object.keys(columns))
      if (!known.has(name)) throw new Error(`shard writer: unknown column ${name}`);
    let row = 0;
    while (row < numRows) {
      const shardRoom = this.options.rowsPerShard - (this.current?.rows ?? 0) - this.pendingRows;
      const take = Math.min(shardRoom, numRows - row);
      const piece = row === 0 && take === numRows ? columns : this.slice(columns, row, row + take);
      if (this.pendingRows === 0 && take >= this.minBatchRows) {
        this.writeBatch(piece, take);
      } else {
        this.pending.push({ columns: this.copy(piece), rows: take });
        this.pendingRows += take;
        if (this.pendingRows >= this.minBatchRows) this.flushPending();
      }
      row += take;
      this.total += take;
      if ((this.current?.rows ?? 0) + this.pendingRows === this.options.rowsPerShard) {
        this.flushPending();
        this.finishShard();
      }
    }
  }

  /** Finishes the last shard and writes manifest.json; returns the manifest. */
  async close(): Promise<ShardManifest> {
    if (this.state !== 'open') throw new Error(`shard writer (${this.options.dir}): close after ${this.state}`);
    try {
      this.flushPending();
      if (this.current) this.finishShard();
      const manifest: ShardManifest = {
        format: 'distillery-shards',
        version: 1,
        rowsPerShard: this.options.rowsPerShard,
        totalRows: this.total,
        columns: this.specs,
        metadata: this.options.schema.metadata,
        shards: this.shards,
      };
      writeFileAtomicSync(join(this.options.dir, MANIFEST_FILE), JSON.stringify(manifest, null, 1) + '\n');
      this.state = 'closed';
      return manifest;
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  /** Deletes every file this writer created (finished shards included) and the temp file. */
  async abort(): Promise<void> {
    if (this.state === 'aborted') return;
    this.state = 'aborted';
    if (this.current) {
      try {
        closeSync(this.current.sink.fd);
      } catch {
        // already closed
      }
      rmSync(this.current.tmp, { force: true });
      this.current = undefined;
    }
    for (const s of this.shards) rmSync(join(this.options.dir, s.file), { force: true });
    this.pending = [];
    this.pendingRows = 0;
  }

  private slice(columns: Record<string, ColumnValues>, a: number, b: number): Record<string, ColumnValues> {
    const out: Record<string, ColumnValues> = {};
    for (const spec of this.specs) out[spec.name] = sliceColumn(spec, columns[spec.name]!, a, b);
    return out;
  }

  private copy(columns: Record<string, ColumnValues>): Record<string, ColumnValues> {
    const out: Record<string, ColumnValues> = {};
    for (const spec of this.specs) out[spec.name] = copyColumn(spec, columns[spec.name]!);
    return out;
  }

  private flushPending(): void {
    if (this.pendingRows === 0) return;
    const merged: Record<string, ColumnValues> = {};
    for (const spec of this.specs)
      merged[spec.name] = concatColumn(
        spec,
        this.pending.map((p) => p.columns[spec.name]!),
      );
    const rows = this.pendingRows;
    this.pending = [];
    this.pendingRows = 0;
    this.writeBatch(merged, rows);
  }

  private writeBatch(columns: Record<string, ColumnValues>, rows: number): void {
    if (!this.current) {
      const file = `${this.prefix}-${String(this.shards.length).padStart(5, '0')}.arrow`;
      const tmp = join(this.options.dir, `${file}.tmp`);
      const sink = new FileSink(tmp);
      this.current = { sink, writer: new this.FileWriter(sink), rows: 0, tmp, file };
    }
    const batch = makeRecordBatch(this.arrow, this.arrowSchema, this.specs, columns, rows);
    this.current.writer.write(batch);
    this.current.rows += rows;
  }

  private finishShard(): void {
    const c = this.current;
    if (!c) return;
    c.writer.finish(); // writes the footer through _write
    c.sink.close();
    renameSync(c.tmp, join(this.options.dir, c.file));
    this.shards.push({ file: c.file, rows: c.rows, bytes: c.sink.bytes, sha256: c.sink.hash.digest('hex') });
    this.current = undefined;
  }
}

/** Convenience: writes all rows from an (async) iterable of column batches and closes. */
export async function writeShards(
  options: ShardWriterOptions,
  batches:
    | AsyncIterable<{ columns: Record<string, ColumnValues>; rows: number }>
    | Iterable<{ columns: Record<string, ColumnValues>; rows: number }>,
): Promise<ShardManifest> {
  const writer = await ShardWriter.create(options);
  try {
    for await (const b of batches) writer.append(b.columns, b.rows);
  } catch (error) {
    await writer.abort();
    throw error;
  }
  return writer.close();
}
