/**
 * Compression in independent blocks, several at a time, written in order: gzip members (libdeflate on
 * worker threads, src/pipeline/compress-worker.ts) or zstd frames (Bun's thread pool), whose
 * concatenation is one ordinary .gz or .zst file. Each piece states its own length
 * (src/pipeline/gzip-members.ts, src/pipeline/zstd-frames.ts), so decompression cuts the stream into
 * pieces and decompresses several at once; a stream without lengths is read as one. Memory stays
 * bounded: at most `parallel` blocks are in flight. The measurements: docs/design/codec.md.
 */
import { availableParallelism } from "node:os";
import { read } from "node:fs";
import { promisify } from "node:util";
import { UsageError } from "../errors.ts";
import type { BufferPool } from "../util/streams.ts";
import { WorkerPool } from "../util/workers.ts";
import { COMPRESSIONS, type Compression } from "../repo/manifest.ts";
import { frameHeader as framedMemberHeader } from "./gzip-members.ts";

/** `from` names where the value came from (a flag, a variable), for the error. */
export function parseCompression(value: string | undefined, fallback: Compression = "gzip", from?: string): Compression {
  if (value === undefined || value === "") return fallback;
  if ((COMPRESSIONS as readonly string[]).includes(value)) return value as Compression;
  throw new UsageError(`${from ? `${from}: ` : ""}unknown compression "${value}"`, `use one of: ${COMPRESSIONS.join(", ")}`);
}

/** Bytes of the database per independently compressed block. */
export const BLOCK_SIZE = 2 * 1024 * 1024;
/**
 * gzip: libdeflate's level 5, as small as `gzip -6` on SQLite files and faster than level 6; zstd:
 * its default level (docs/design/codec.md).
 */
export const GZIP_LEVEL: GzipLevel = 5;
export const ZSTD_LEVEL = 3;

/** A gzip block for src/pipeline/compress-worker.ts: the first `length` bytes of `block`. */
export interface GzipTask {
  op: "gzip";
  block: ArrayBuffer;
  length: number;
  level: GzipLevel;
}
/** The member (with a plain header: framing is added here, see blockCompressor), and the task's buffer moved back. */
export interface GzipResult {
  member: Uint8Array;
  block: ArrayBuffer;
}
/** One whole gzip member to decompress. */
export interface GunzipTask {
  op: "gunzip";
  member: ArrayBuffer;
}
export interface GunzipResult {
  output: Uint8Array;
  /** The member's buffer, moved back to be freed here (see src/pipeline/compress-worker.ts). */
  spent: ArrayBuffer[];
}
export type CodecTask = GzipTask | GunzipTask;
type GzipLevel = 5;

let codecWorkers: WorkerPool<CodecTask, GzipResult | GunzipResult> | undefined;

export function codecPool(): WorkerPool<CodecTask, GzipResult | GunzipResult> {
  return (codecWorkers ??= new WorkerPool("pipeline/compress-worker.ts"));
}

/**
 * Compresses one block into a self-contained gzip member or zstd frame, off the JS thread. A
 * compressor that moves the block's buffer to another thread answers with the buffer given back
 * (`returned`); the block itself is then detached.
 */
export type BlockCompressor = (block: Uint8Array) => Promise<Uint8Array | { output: Uint8Array | Uint8Array[]; returned: Uint8Array }>;

export function blockCompressor(compression: Compression): BlockCompressor {
  switch (compression) {
    case "gzip":
      return async (block) => {
        // The block's whole buffer moves to the worker (no copy) and comes back with the member.
        const buffer = block.buffer as ArrayBuffer;
        if (block.byteOffset !== 0) throw new Error("gzip blocks must start at their buffer's start");
        const task: GzipTask = { op: "gzip", block: buffer, length: block.byteLength, level: GZIP_LEVEL };
        const { member, block: returned } = (await codecPool().run(task, { transfer: [buffer] })) as GzipResult;
        // The framed member, as its new header and the rest of the member: never copied.
        return { output: [framedMemberHeader(member), member.subarray(10)], returned: new Uint8Array(returned) };
      };
    case "zstd":
      // Never with ZSTD_c_nbWorkers: Bun 1.4.5's zstd streams with it are broken.
      return (block) => Bun.zstdCompress(block, { level: ZSTD_LEVEL });
    case "none":
      return async (block) => block.slice(); // the block's buffer goes back to its pool
  }
}

/**
 * How many blocks compress at once: one more than the cores (the JS thread also hashes, reads and
 * uploads, so one spare block keeps every core compressing), at most four.
 */
export function defaultParallelism(): number {
  return Math.min(4, availableParallelism() + 1);
}

/**
 * The stream of `blocks` each transformed by `transform` (compressed, or decompressed): up to
 * `parallel` blocks are in the works at once, and the outputs (a chunk, or several) are emitted in the order of their
 * blocks. The work runs ahead of the consumer by at most `parallel` blocks; each block (or its buffer
 * given back by the transform) is handed to `release` as soon as its transform settles. The first
 * failure (reading or transforming) errors the stream; blocks still in flight are dropped and the
 * source is closed. Cancelling the stream closes the source too. A full garbage collection runs every
 * COLLECT_EVERY blocks emitted, unless `collect` is false (a consumer that frees the outputs itself).
 */
export function mapBlocks(
  blocks: AsyncIterable<Uint8Array>,
  transform: BlockCompressor,
  parallel: number,
  release?: (block: Uint8Array) => void,
  collect = true,
): ReadableStream<Uint8Array> {
  const source = blocks[Symbol.asyncIterator]();
  let emitted = 0;
  const inFlight: Promise<Uint8Array | Uint8Array[]>[] = [];
  let exhausted = false;
  let closed = false;
  // Top the queue up to `parallel` blocks; runs one at a time (the source is read in order).
  let filling: Promise<void> = Promise.resolve();
  const fill = () =>
    (filling = filling.then(async () => {
      while (!exhausted && !closed && inFlight.length < parallel) {
        const next = await source.next();
        if (next.done) {
          exhausted = true;
          return;
        }
        const block = next.value;
        const compressed = transform(block).then(
          (out) => {
            if (out instanceof Uint8Array) {
              release?.(block);
              return out;
            }
            release?.(out.returned);
            return out.output;
          },
          (error: unknown) => {
            release?.(block); // possibly detached: its pool makes a new buffer
            throw error;
          },
        );
        compressed.catch(() => {}); // reported in order, by pull()
        inFlight.push(compressed);
      }
    }));
  const close = async () => {
    if (closed) return;
    closed = true;
    inFlight.length = 0;
    if (!exhausted) await source.return?.();
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          await fill();
          const head = inFlight.shift();
          if (!head) {
            controller.close();
            return;
          }
          const out = await head;
          void fill().catch(() => {}); // keep every core busy while the consumer works on `out`
          if (out instanceof Uint8Array) controller.enqueue(out);
          else for (const chunk of out) controller.enqueue(chunk);
          if (++emitted % COLLECT_EVERY === 0 && collect) collectGarbage();
        } catch (error) {
          await close().catch(() => {});
          controller.error(error);
        }
      },
      cancel: close,
    },
    { highWaterMark: 0 },
  );
}

/**
 * The compressors return a new buffer per block, and the collector lags far behind such native
 * allocations: a full collection every 16 MiB of database bounds the pipeline's memory whatever the
 * database size (docs/design/codec.md).
 */
const COLLECT_EVERY = (16 * 1024 * 1024) / BLOCK_SIZE;

export function collectGarbage(): void {
  Bun.gc(true);
}

const readAt = promisify(read);

/**
 * Fill `buffer[offset, offset + length)` from the file open at `fd`, starting at `position`.
 * Throws `ended(at)` (at: the file position where it ran out) if the file ends first.
 */
export async function readFullyAt(
  fd: number,
  buffer: Uint8Array,
  offset: number,
  length: number,
  position: number,
  ended: (at: number) => Error,
): Promise<void> {
  for (let filled = 0; filled < length; ) {
    const { bytesRead } = await readAt(fd, buffer, offset + filled, length - filled, position + filled);
    if (bytesRead === 0) throw ended(position + filled);
    filled += bytesRead;
  }
}

/**
 * The first `length` bytes of the file open at `fd` (read at positions 0 on; the descriptor stays
 * open), in consecutive blocks of the pool's size (the last one shorter), each in a buffer from
 * `pool` that the consumer gives back with pool.release(). Only the first `inFile` bytes are read
 * from the file; any after them are zeros, for the caller to fill in. Throws if the file ends before
 * `inFile`.
 */
export async function* readBlocks(
  fd: number,
  length: number,
  pool: BufferPool,
  signal?: AbortSignal,
  inFile = length,
): AsyncGenerator<Uint8Array> {
  for (let position = 0; position < length; ) {
    signal?.throwIfAborted();
    const block = await pool.acquire();
    const want = Math.min(pool.size, length - position);
    try {
      const fromFile = Math.max(0, Math.min(want, inFile - position));
      block.fill(0, fromFile, want);
      await readFullyAt(fd, block, 0, fromFile, position, (at) => new Error(`the snapshot ended at byte ${at} of ${length}`));
    } catch (error) {
      pool.release(block);
      throw error;
    }
    position += want;
    yield want === block.length ? block : block.subarray(0, want);
  }
}
