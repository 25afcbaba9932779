/**
 * Framed gzip members: each gzip member of a backup says how long it is, so that a restore can cut
 * the stream into members without decompressing it, and decompress several at once.
 *
 * The length travels in the header's extra field (RFC 1952 section 2.3.1.1), which every gzip reader
 * skips: FLG.FEXTRA set, XLEN = 8, one subfield with SI1 SI2 = "SV" and LEN = 4, whose data is the
 * member's whole length in bytes (header to trailer) as an unsigned 32-bit little-endian integer.
 * BGZF (the blocked gzip of bioinformatics) does the same with a 16-bit length; ours are bigger.
 * A stream whose first member has no such field (a backup of an earlier version, or any other gzip
 * file) is read as one ordinary stream instead.
 */
import { ByteQueue } from "../util/streams.ts";

/** The 10-byte gzip header plus XLEN (2) and the subfield (2 + 2 + 4). */
export const FRAMED_HEADER_BYTES = 20;
const FLG_FEXTRA = 0x04;
const SI1 = 0x53; // "S"
const SI2 = 0x56; // "V"
/** The largest member we accept: a 16 MiB block that does not compress, with room for deflate's overhead. */
export const MAX_MEMBER_BYTES = 17 * 1024 * 1024;
/** The most a member may decompress to (its ISIZE): blocks are 2 MiB; 16 MiB leaves room. */
export const MAX_MEMBER_OUTPUT = 16 * 1024 * 1024;

/**
 * The framed header of `member` (a gzip member with a plain 10-byte header, as libdeflate writes):
 * the framed member is this header followed by `member.subarray(10)`, so the member itself is never
 * copied.
 */
export function frameHeader(member: Uint8Array): Uint8Array {
  if (member.length < 18 || member[0] !== 0x1f || member[1] !== 0x8b || member[2] !== 8 || member[3] !== 0)
    throw new Error("not a plain gzip member");
  const header = new Uint8Array(FRAMED_HEADER_BYTES);
  header.set(member.subarray(0, 10));
  header[3] = FLG_FEXTRA;
  const view = new DataView(header.buffer);
  view.setUint16(10, 8, true);
  header[12] = SI1;
  header[13] = SI2;
  view.setUint16(14, 4, true);
  view.setUint32(16, member.length + FRAMED_HEADER_BYTES - 10, true);
  return header;
}

/**
 * The length of the framed member whose header starts `bytes` (at least FRAMED_HEADER_BYTES of it),
 * or null when it is not a framed member.
 */
export function framedLength(bytes: Uint8Array): number | null {
  if (bytes.length < FRAMED_HEADER_BYTES) return null;
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b || bytes[2] !== 8 || (bytes[3]! & FLG_FEXTRA) === 0) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, FRAMED_HEADER_BYTES);
  if (view.getUint16(10, true) !== 8 || bytes[12] !== SI1 || bytes[13] !== SI2 || view.getUint16(14, true) !== 4) return null;
  return view.getUint32(16, true);
}

/**
 * Cut a stream of framed members into whole members, each in its own buffer. `head` is what was
 * already read of the stream. Throws when the stream breaks off inside a member, when a member is not
 * framed or is out of bounds, or when one claims to decompress to more than MAX_MEMBER_OUTPUT.
 */
export async function* splitMembers(head: Uint8Array, rest: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  const queue = new ByteQueue(head, rest);
  for (let index = 1; await queue.fill(1); index++) {
    if (!(await queue.fill(FRAMED_HEADER_BYTES))) throw new Error(`the stream ends inside the header of gzip member ${index}`);
    const length = framedLength(queue.peek(0, FRAMED_HEADER_BYTES));
    if (length === null) throw new Error(`gzip member ${index} does not carry its length`);
    if (length < FRAMED_HEADER_BYTES + 8 || length > MAX_MEMBER_BYTES)
      throw new Error(`gzip member ${index} claims an impossible length (${length} bytes)`);
    if (!(await queue.fill(length))) throw new Error(`the stream ends inside gzip member ${index}`);
    const member = queue.take(length);
    const isize = new DataView(member.buffer).getUint32(length - 4, true);
    if (isize > MAX_MEMBER_OUTPUT) throw new Error(`gzip member ${index} claims to hold ${isize} bytes`);
    yield member;
  }
}
