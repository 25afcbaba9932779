/**
 * Compression on Bun's native zlib/zstd/libdeflate: measured in Bun here, fflate is about 2x slower to
 * compress and 7x slower to decompress.
 *
 * Backups compress in independent blocks (BLOCK_SIZE of the database each), several at a time, and
 * write the results in order: for gzip each block is a complete gzip member, and consecutive members
 * are one ordinary .gz file (RFC 1952 section 2.2) that `gunzip`, `zcat` and every zlib read as one
 * stream; for zstd each block is a frame, and concatenated frames are one ordinary .zst file.
 * - gzip runs libdeflate (Bun.gzipSync with library "libdeflate") on worker threads
 *   (src/pipeline/compress-worker.ts), at libdeflate's level 5 (GZIP_LEVEL). (Bun's thread-pool gzip() only
 *   offers zlib.) Each block's buffer moves to the worker and back, never copied.
 * - zstd runs Bun.zstdCompress(), which already works on Bun's thread pool.
 * - 2 MiB blocks cost 0.05% (gzip) and 0.4% (zstd) in size against 4 MiB ones, and halve the
 *   memory in flight. Memory stays bounded: at most `parallel` blocks and their outputs are in
 *   flight, whatever the database size. Against one unbroken stream, gzip loses nothing to speak of
 *   (its window is 32 KiB); zstd, whose window at level 3 is 2 MiB, loses up to about 6% on very
 *   compressible text (test/integration/pipeline.test.ts) and nothing on the benchmark's database.
 * - Each gzip member carries its own length in its header's extra field (src/pipeline/gzip-members.ts), which
 *   every gzip reader skips.
 * - Each zstd frame states its decompressed size in its header (src/pipeline/zstd-frames.ts).
 * Decompression of gzip backups cuts the stream into members by those lengths and decompresses
 * several at once with libdeflate on the same worker threads (about 680 MB/s per core here), in
 * order; zstd backups are cut into frames by walking their block headers and decompressed several
 * at once with Bun.zstdDecompress() on Bun's thread pool (1 GiB from a file: 1.2 s against 1.7 s as
 * one stream on the JS thread). A gzip stream without lengths (a backup of an earlier version), a zstd
 * stream whose first frame states no size (one streamed frame), and any other file of either kind
 * are read as one stream (DecompressionStream, which reads single- and multi-member files alike).
 * (Bun 1.4.5's zstd streams with ZSTD_c_nbWorkers are broken, so that option is never set.)
 */
import { availableParallelism } from "node:os";
import { read } from "node:fs";
import { promisify } from "node:util";
import { UsageError } from "../errors.ts";
import { iterate, prepend, streamOf, type BufferPool } from "../util/streams.ts";
import { WorkerPool } from "../util/workers.ts";
import { COMPRESSIONS, type Compression } from "../repo/manifest.ts";
import { FRAMED_HEADER_BYTES, frameHeader as framedMemberHeader, framedLength, splitMembers } from "./gzip-members.ts";
import { frameHeader, MAX_FRAME_HEADER_BYTES, splitFrames } from "./zstd-frames.ts";

/** `from` names where the value came from (a flag, a variable), for the error. */
export function parseCompression(value: string | undefined, fallback: Compression = "gzip", from?: string): Compression {
  if (value === undefined || value === "") return fallback;
  if ((COMPRESSIONS as readonly string[]).includes(value)) return value as Compression;
  throw new UsageError(`${from ? `${from}: ` : ""}unknown compression "${value}"`, `use one of: ${COMPRESSIONS.join(", ")}`);
}

/** Bytes of the database per independently compressed block. */
export const BLOCK_SIZE = 2 * 1024 * 1024;
/**
 * gzip: libdeflate's level 5, whose output is as small as `gzip -6` (zlib's default level) on
 * SQLite files: 0.989x to 1.008x of it on five generated app databases, 1.002x on the benchmark's,
 * while it compresses 41% faster than libdeflate's level 6 there (124 against 88 MB/s per core).
 * (On plain text it can be 2-3% larger; a database is what we compress.)
 * zstd: level 3, zstd's default.
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

function codecPool(): WorkerPool<CodecTask, GzipResult | GunzipResult> {
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
      return (block) => Bun.zstdCompress(block, { level: ZSTD_LEVEL });
    case "none":
      return async (block) => block.slice(); // the block's buffer goes back to its pool
  }
}

/**
 * How many blocks compress at once: one more than the cores (the JS thread also hashes, reads and
 * uploads, so one spare block keeps every core compressing), at most four. (Measured with zlib on
 * two cores, 1 GiB: 6.5 s with two blocks at a time, 5.8 s with three or four.)
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
 * COLLECT_EVERY blocks emitted.
 */
export function mapBlocks(
  blocks: AsyncIterable<Uint8Array>,
  transform: BlockCompressor,
  parallel: number,
  release?: (block: Uint8Array) => void,
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
          if (++emitted % COLLECT_EVERY === 0) collectGarbage();
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
 * allocations: backing up 1 GiB peaked at 100 MiB RSS in the pipeline alone. A full collection every
 * 16 MiB of database (a few milliseconds with our small heap) holds the whole backup at about 105 MiB
 * for 100 MiB and for 1 GiB alike; every 8 MiB saved 3 MiB more and cost 0.5 s per GiB.
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
export async function readFullyAt(fd: number, buffer: Uint8Array, offset: number, length: number, position: number, ended: (at: number) => Error): Promise<void> {
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
export async function* readBlocks(fd: number, length: number, pool: BufferPool, signal?: AbortSignal, inFile = length): AsyncGenerator<Uint8Array> {
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

/**
 * The decompressed stream of a stored object. gzip streams of framed members (src/pipeline/gzip-members.ts)
 * and zstd streams of sized frames (src/pipeline/zstd-frames.ts) are decompressed a piece per thread,
 * `parallel` at once, in order; any other stream as one. A damaged stream errors the returned one.
 */
export function decompress(source: ReadableStream<Uint8Array>, compression: Compression, parallel = defaultParallelism()): ReadableStream<Uint8Array> {
  if (compression === "none") return source;
  if (compression === "zstd")
    return streamOf(decompressPieces(source, "zstd", MAX_FRAME_HEADER_BYTES, (head) => frameHeader(head) !== null, (head, rest) => mapBlocks(splitFrames(head, rest), unzstdFrame, parallel)));
  return streamOf(decompressPieces(source, "gzip", FRAMED_HEADER_BYTES, (head) => framedLength(head) !== null, (head, rest) => mapBlocks(splitMembers(head, rest), gunzipMember, parallel)));
}

/**
 * `source` decompressed piece by piece by `split` when its first `headBytes` (or all of it, if
 * shorter) pass `isPieces`, else as one stream by DecompressionStream(`format`).
 */
async function* decompressPieces(
  source: ReadableStream<Uint8Array>,
  format: "gzip" | "zstd",
  headBytes: number,
  isPieces: (head: Uint8Array) => boolean,
  split: (head: Uint8Array, rest: AsyncIterator<Uint8Array>) => ReadableStream<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const rest = iterate(source)[Symbol.asyncIterator]();
  try {
    const chunks: Uint8Array[] = [];
    let length = 0;
    for (let next; length < headBytes && !(next = await rest.next()).done; length += next.value.length) chunks.push(next.value);
    const head = Buffer.concat(chunks, length);
    if (isPieces(head)) yield* split(head, rest);
    else yield* streamOf(prepend([head], rest)).pipeThrough(new DecompressionStream(format as "gzip") as unknown as TransformStream<Uint8Array, Uint8Array>);
  } finally {
    await rest.return?.();
  }
}

/**
 * One whole frame, decompressed on Bun's thread pool; exactly the size its header states (zstd itself
 * refuses a frame whose content differs from it; this holds whatever the zstd build).
 */
async function unzstdFrame(frame: Uint8Array): Promise<Uint8Array> {
  const expected = frameHeader(frame)!.contentSize; // splitFrames checked it
  const output = await Bun.zstdDecompress(frame as Uint8Array<ArrayBuffer>);
  if (output.byteLength !== expected) throw new Error(`a zstd frame decompressed to ${output.byteLength} bytes, its header says ${expected}`);
  return output;
}

/** One whole member, decompressed by a worker (its buffer moves there). */
async function gunzipMember(member: Uint8Array): Promise<Uint8Array> {
  const buffer = member.buffer as ArrayBuffer;
  if (member.byteOffset !== 0 || member.byteLength !== buffer.byteLength) throw new Error("gzip members must fill their buffer");
  const { output } = (await codecPool().run({ op: "gunzip", member: buffer }, { transfer: [buffer] })) as GunzipResult;
  return output;
}
