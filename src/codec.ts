/**
 * Compression on Bun's native zlib/zstd/libdeflate: measured in Bun here, fflate is about 2x slower to
 * compress and 7x slower to decompress.
 *
 * Backups compress in independent blocks (BLOCK_SIZE of the database each), several at a time, and
 * write the results in order: for gzip each block is a complete gzip member, and consecutive members
 * are one ordinary .gz file (RFC 1952 section 2.2) that `gunzip`, `zcat` and every zlib read as one
 * stream; for zstd each block is a frame, and concatenated frames are one ordinary .zst file.
 * - gzip runs libdeflate (Bun.gzipSync with library "libdeflate") on worker threads
 *   (src/compress-worker.ts): on the benchmark database, level 6 compresses 155 MiB/s per core
 *   against zlib's 116, and 2% smaller. (Bun's thread-pool gzip() only offers zlib.)
 * - zstd runs Bun.zstdCompress(), which already works on Bun's thread pool.
 * - 2 MiB blocks cost 0.05% (gzip) and 0.4% (zstd) in size against 4 MiB ones, and halve the
 *   memory in flight. Memory stays bounded: at most `parallel` blocks and their outputs are in
 *   flight, whatever the database size.
 * Decompression is one stream (DecompressionStream), which reads both single- and multi-member files:
 * at about 680 MB/s here it is faster alone than node:zlib gunzip() per block on the thread pool
 * (6.7 s for 1 GiB one at a time, 3.5 s three at a time, against 1.6 s).
 * (Bun 1.4.5's zstd streams with ZSTD_c_nbWorkers are broken, so that option is never set.)
 */
import { availableParallelism } from "node:os";
import { open } from "node:fs/promises";
import { UsageError } from "./errors.ts";
import type { BufferPool } from "./streams.ts";
import { WorkerPool } from "./workers.ts";
import { COMPRESSIONS, type Compression } from "./manifest.ts";

export function parseCompression(value: string | undefined, fallback: Compression = "gzip"): Compression {
  if (value === undefined || value === "") return fallback;
  if ((COMPRESSIONS as readonly string[]).includes(value)) return value as Compression;
  throw new UsageError(`unknown compression "${value}"`, `use one of: ${COMPRESSIONS.join(", ")}`);
}

/** Bytes of the database per independently compressed block. */
export const BLOCK_SIZE = 2 * 1024 * 1024;
/** Level 6, the level `gzip` itself uses (here libdeflate's); zstd -3, zstd's default. */
export const GZIP_LEVEL: GzipLevel = 6;
export const ZSTD_LEVEL = 3;

/** A gzip block for src/compress-worker.ts. */
export interface GzipTask {
  block: ArrayBuffer;
  level: GzipLevel;
}
type GzipLevel = 6;

let gzipWorkers: WorkerPool<GzipTask, Uint8Array> | undefined;

function gzipPool(): WorkerPool<GzipTask, Uint8Array> {
  return (gzipWorkers ??= new WorkerPool("compress-worker.ts"));
}

/** Compresses one block into a self-contained gzip member or zstd frame, off the JS thread. */
export type BlockCompressor = (block: Uint8Array) => Promise<Uint8Array>;

export function blockCompressor(compression: Compression): BlockCompressor {
  switch (compression) {
    case "gzip":
      return (block) => {
        // A copy of the block moves to the worker, so the pooled buffer is free again at once.
        const copy = block.slice();
        return gzipPool().run({ block: copy.buffer, level: GZIP_LEVEL }, { transfer: [copy.buffer] });
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
 * The compressed stream of `blocks`: up to `parallel` blocks are compressed at once, and the outputs
 * are emitted in the order of their blocks. Compression runs ahead of the consumer by at most
 * `parallel` blocks; each block is handed to `release` as soon as its compression settles. The first
 * failure (reading or compressing) errors the stream; blocks still in flight are dropped and the
 * source is closed. Cancelling the stream closes the source too.
 */
export function compressBlocks(blocks: AsyncIterable<Uint8Array>, compress: BlockCompressor, parallel: number, release?: (block: Uint8Array) => void): ReadableStream<Uint8Array> {
  const source = blocks[Symbol.asyncIterator]();
  let emitted = 0;
  const inFlight: Promise<Uint8Array>[] = [];
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
        const compressed = compress(block).finally(() => release?.(block));
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
          controller.enqueue(out);
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
 * 8 MiB of database (a few milliseconds with our small heap) holds it at about 70 MiB, no slower.
 */
const COLLECT_EVERY = (8 * 1024 * 1024) / BLOCK_SIZE;

export function collectGarbage(): void {
  Bun.gc(true);
}

/**
 * A file read in consecutive blocks of the pool's size (the last one shorter), each in a buffer from
 * `pool` that the consumer gives back with pool.release().
 */
export async function* readBlocks(path: string, pool: BufferPool, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const blockSize = pool.size;
  const handle = await open(path, "r");
  try {
    while (true) {
      signal?.throwIfAborted();
      const block = await pool.acquire();
      let filled = 0;
      while (filled < blockSize) {
        const { bytesRead } = await handle.read(block, filled, blockSize - filled, null);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled === 0) {
        pool.release(block);
        return;
      }
      yield filled === blockSize ? block : block.subarray(0, filled);
      if (filled < blockSize) return;
    }
  } finally {
    await handle.close();
  }
}

export function createDecompressor(compression: Compression): TransformStream<Uint8Array, Uint8Array> {
  if (compression === "none") return new TransformStream();
  return new DecompressionStream(compression as "gzip") as unknown as TransformStream<Uint8Array, Uint8Array>;
}
