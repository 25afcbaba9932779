/**
 * Decompression of a stored object: gzip members and zstd frames that state their lengths are cut
 * apart and decompressed several at once, in order; any other stream is read as one. Each piece's
 * buffers are freed as soon as they are used (discard()), not left to the collector: it lags far
 * behind such native allocations, and a full collection every few blocks to keep memory flat cost a
 * restore of 500 MiB 0.3-0.7 s (docs/design/codec.md).
 */
import type { BusyTime } from "../util/busy.ts";
import { iterate, prepend, streamOf } from "../util/streams.ts";
import type { Compression } from "../repo/manifest.ts";
import { codecPool, defaultParallelism, mapBlocks, type GunzipResult } from "./codec.ts";
import { FRAMED_HEADER_BYTES, framedLength, splitMembers } from "./gzip-members.ts";
import { frameHeader, MAX_FRAME_HEADER_BYTES, splitFrames } from "./zstd-frames.ts";

/**
 * The decompressed stream of a stored object. gzip streams of framed members (src/pipeline/gzip-members.ts)
 * and zstd streams of sized frames (src/pipeline/zstd-frames.ts) are decompressed a piece per thread,
 * `parallel` at once, in order; any other stream as one. A damaged stream errors the returned one.
 * `busy` adds up the time each piece takes to decompress (a stream read as one is not timed).
 */
export function decompress(
  source: ReadableStream<Uint8Array>,
  compression: Compression,
  { parallel = defaultParallelism(), busy }: { parallel?: number; busy?: BusyTime } = {},
): ReadableStream<Uint8Array> {
  if (compression === "none") return source;
  const timed = (piece: (block: Uint8Array) => Promise<Uint8Array>) =>
    busy ? (block: Uint8Array) => busy.time(() => piece(block)) : piece;
  if (compression === "zstd")
    return streamOf(
      decompressPieces(
        source,
        "zstd",
        MAX_FRAME_HEADER_BYTES,
        (head) => frameHeader(head) !== null,
        (head, rest) => mapBlocks(splitFrames(head, rest), timed(unzstdFrame), parallel, undefined, false),
      ),
    );
  return streamOf(
    decompressPieces(
      source,
      "gzip",
      FRAMED_HEADER_BYTES,
      (head) => framedLength(head) !== null,
      (head, rest) => mapBlocks(splitMembers(head, rest), timed(gunzipMember), parallel, undefined, false),
    ),
  );
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
    for (let next: IteratorResult<Uint8Array>; length < headBytes && !(next = await rest.next()).done; length += next.value.length)
      chunks.push(next.value);
    const head = Buffer.concat(chunks, length);
    if (isPieces(head)) yield* split(head, rest);
    else
      yield* streamOf(prepend([head], rest)).pipeThrough(
        new DecompressionStream(format as "gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
      );
  } finally {
    await rest.return?.();
  }
}

/** The buffers of decompressed pieces, which the consumer of decompress() frees once it is done with them. */
const made = new WeakSet<ArrayBufferLike>();

/**
 * Free a chunk of decompress()'s stream now if it is a decompressed piece (then the chunk is empty
 * afterwards, and this returns true); a chunk passed through from the source is not ours to free.
 */
export function discard(chunk: Uint8Array): boolean {
  if (!made.delete(chunk.buffer)) return false;
  free(chunk.buffer as ArrayBuffer);
  return true;
}

/**
 * Hand `output` to the consumer to free, when it fills its buffer alone (a small output may be a
 * view into a buffer other outputs share: that one is left to the collector).
 */
export function own(output: Uint8Array): Uint8Array {
  if (output.byteOffset === 0 && output.byteLength === output.buffer.byteLength) made.add(output.buffer);
  return output;
}

/** Detaching a buffer releases its memory at once. */
function free(buffer: ArrayBuffer): void {
  if (!buffer.detached) buffer.transfer(0);
}

/**
 * One whole frame (its own buffer, from splitFrames), decompressed on Bun's thread pool; exactly the
 * size its header states (zstd itself refuses a frame whose content differs from it; this holds
 * whatever the zstd build).
 */
async function unzstdFrame(frame: Uint8Array): Promise<Uint8Array> {
  const expected = frameHeader(frame)!.contentSize; // splitFrames checked it
  const output = await Bun.zstdDecompress(frame as Uint8Array<ArrayBuffer>);
  free(frame.buffer as ArrayBuffer);
  own(output);
  if (output.byteLength !== expected)
    throw new Error(`a zstd frame decompressed to ${output.byteLength} bytes, its header says ${expected}`);
  return output;
}

/** One whole member, decompressed by a worker (its buffer moves there, and back to be freed). */
async function gunzipMember(member: Uint8Array): Promise<Uint8Array> {
  const buffer = member.buffer as ArrayBuffer;
  if (member.byteOffset !== 0 || member.byteLength !== buffer.byteLength) throw new Error("gzip members must fill their buffer");
  const { output, spent } = (await codecPool().run({ op: "gunzip", member: buffer }, { transfer: [buffer] })) as GunzipResult;
  for (const b of spent) free(b);
  return own(output);
}
