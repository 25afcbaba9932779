/**
 * Multipart part sizes, and cutting a stream into parts. Pure and free of the S3 client, so settings
 * can read the defaults without loading it. Why these defaults: docs/design/s3.md.
 */
import type { BufferPool } from "../../util/streams.ts";

/** S3's smallest part (but the last). */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
/** S3's minimum: each part in flight is held two or three times over, so small parts keep peak memory low. */
export const DEFAULT_PART_SIZE = MIN_PART_SIZE;
/** S3 allows 10,000 parts per upload; aim below it, so a body somewhat bigger than its hint still fits. */
const TARGET_PARTS = 9000;
const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
/** Compression already keeps every core busy: a third part in flight costs memory and gains nothing. */
export const DEFAULT_PART_CONCURRENCY = 2;

/**
 * The part size for a body of about `sizeHint` bytes: the configured size, or bigger when the body
 * would otherwise need more than TARGET_PARTS parts (rounded up to whole MiB, at most 5 GiB).
 */
export function partSizeFor(configured: number, sizeHint = 0): number {
  const needed = Math.ceil(sizeHint / TARGET_PARTS / (1024 * 1024)) * 1024 * 1024;
  return Math.min(MAX_PART_SIZE, Math.max(configured, needed));
}

/**
 * Cut a stream into parts of exactly `size` bytes (the last one shorter). With a pool, part buffers
 * come from it and the consumer gives each back when its upload has settled.
 */
export async function* splitParts(
  chunks: AsyncIterable<Uint8Array>,
  size: number,
  pool?: BufferPool,
): AsyncGenerator<Uint8Array<ArrayBuffer>> {
  const fresh = () => (pool ? pool.acquire() : Promise.resolve(new Uint8Array(size)));
  let part = await fresh();
  let filled = 0;
  for await (const chunk of chunks) {
    let offset = 0;
    while (offset < chunk.byteLength) {
      const n = Math.min(size - filled, chunk.byteLength - offset);
      part.set(chunk.subarray(offset, offset + n), filled);
      filled += n;
      offset += n;
      if (filled === size) {
        yield part;
        part = await fresh();
        filled = 0;
      }
    }
  }
  if (filled > 0) yield part.subarray(0, filled);
}
