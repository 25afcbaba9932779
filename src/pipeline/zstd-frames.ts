/**
 * zstd frames of a backup: each block of the database is one zstd frame (RFC 8878 section 3.1.1)
 * whose header states its decompressed size (Frame_Content_Size), so a restore can cut the stream
 * into frames by walking their block headers, without decompressing, and decompress several at once.
 * A stream whose first frame does not state a size we accept (a backup of an earlier version, written
 * as one streamed frame, or any other .zst file) is read as one ordinary stream instead.
 */
import { ByteQueue } from "../util/streams.ts";

const MAGIC = 0xfd2fb528;
/** Magic, descriptor, window descriptor, dictionary ID and content size at their largest. */
export const MAX_FRAME_HEADER_BYTES = 18;
/** The most a frame may decompress to: blocks are 2 MiB (4 MiB in earlier builds); 16 MiB leaves room. */
export const MAX_FRAME_OUTPUT = 16 * 1024 * 1024;
/** The largest frame we accept: MAX_FRAME_OUTPUT stored raw, with every block header and a checksum. */
export const MAX_FRAME_BYTES = MAX_FRAME_OUTPUT + 1024 * 1024;
const BLOCK_HEADER_BYTES = 3;

interface FrameHeader {
  /** Bytes of the frame header. */
  length: number;
  /** Frame_Content_Size: what the frame decompresses to. */
  contentSize: number;
  /** A 4-byte checksum follows the last block. */
  checksum: boolean;
}

/**
 * The header at the start of `bytes`, when it is a zstd frame that states a content size of at most
 * MAX_FRAME_OUTPUT and needs no dictionary; null otherwise (or when `bytes` is too short to tell).
 */
export function frameHeader(bytes: Uint8Array): FrameHeader | null {
  if (bytes.length < 6) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) return null;
  const descriptor = bytes[4]!;
  const sizeFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  if ((descriptor & 0x08) !== 0 || (descriptor & 0x03) !== 0) return null; // reserved bit; a dictionary
  const sizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][sizeFlag]!;
  if (sizeBytes === 0) return null; // no content size
  const at = 5 + (singleSegment ? 0 : 1);
  const length = at + sizeBytes;
  if (bytes.length < length) return null;
  let contentSize: number;
  if (sizeBytes === 1) contentSize = bytes[at]!;
  else if (sizeBytes === 2) contentSize = view.getUint16(at, true) + 256;
  else if (sizeBytes === 4) contentSize = view.getUint32(at, true);
  else contentSize = Number(view.getBigUint64(at, true));
  if (contentSize > MAX_FRAME_OUTPUT) return null;
  return { length, contentSize, checksum: ((descriptor >> 2) & 1) === 1 };
}

/**
 * Cut a stream of zstd frames into whole frames, each in its own buffer (its header passes
 * frameHeader()). `head` is what was already
 * read of the stream. Throws when the stream breaks off inside a frame, when a frame does not state
 * its size (or states more than MAX_FRAME_OUTPUT), or has a reserved block type or an impossible size.
 */
export async function* splitFrames(head: Uint8Array, rest: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  const queue = new ByteQueue(head, rest);
  for (let index = 1; await queue.fill(1); index++) {
    const whole = await queue.fill(MAX_FRAME_HEADER_BYTES);
    const header = frameHeader(queue.peek(0, Math.min(queue.buffered, MAX_FRAME_HEADER_BYTES)));
    if (!header && !whole) throw new Error(`the stream ends inside zstd frame ${index}`);
    if (!header) throw new Error(`zstd frame ${index} does not state a size up to ${MAX_FRAME_OUTPUT} bytes`);
    let length = header.length;
    for (let last = false; !last; ) {
      if (!(await queue.fill(length + BLOCK_HEADER_BYTES))) throw new Error(`the stream ends inside zstd frame ${index}`);
      const [b0, b1, b2] = queue.peek(length, BLOCK_HEADER_BYTES);
      const block = b0! | (b1! << 8) | (b2! << 16);
      last = (block & 1) === 1;
      const type = (block >> 1) & 3;
      if (type === 3) throw new Error(`zstd frame ${index} has a block of the reserved type`);
      length += BLOCK_HEADER_BYTES + (type === 1 ? 1 : block >>> 3); // an RLE block stores one byte
      if (length > MAX_FRAME_BYTES) throw new Error(`zstd frame ${index} is longer than ${MAX_FRAME_BYTES} bytes`);
    }
    if (header.checksum) length += 4;
    if (!(await queue.fill(length))) throw new Error(`the stream ends inside zstd frame ${index}`);
    yield queue.take(length);
  }
}
