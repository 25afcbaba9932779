/** Cutting streams into pieces for the splitter tests (gzip members, zstd frames). */

/** `bytes` as a stream of chunks of `size` bytes. */
export async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** Every piece `splitter` cuts `bytes` into, given its first `headBytes` as the head and the rest in chunks of `chunkSize`. */
export async function splitAll(
  splitter: (head: Uint8Array, rest: AsyncIterator<Uint8Array>) => AsyncGenerator<Uint8Array>,
  bytes: Uint8Array,
  chunkSize: number,
  headBytes = 0,
): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const piece of splitter(bytes.subarray(0, headBytes), chunked(bytes.subarray(headBytes), chunkSize))) out.push(piece);
  return out;
}
