/** Small helpers over web streams, shared by storage backends and the backup/restore pipelines. */

/** Iterate a web stream, stopping with the signal's reason when it aborts (the stream is cancelled). */
export async function* iterate(stream: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncIterable<Uint8Array> {
  const reader = stream.getReader();
  const onAbort = () => {
    reader.cancel(signal?.reason).catch(() => {});
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  let finished = false;
  try {
    while (true) {
      signal?.throwIfAborted();
      const { done, value } = await reader.read();
      // An aborted source may end early rather than fail: never pass that off as the whole stream.
      signal?.throwIfAborted();
      if (done) {
        finished = true;
        return;
      }
      signal?.throwIfAborted();
      yield value;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** Collect a stream into one buffer; only for small objects such as manifests. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export interface Digest {
  bytes: number;
  sha256: string;
}

/**
 * A pass-through that feeds every chunk to a SHA-256 hasher and counts bytes. Call `result()` only
 * after the stream has been fully consumed.
 */
export function createDigestStream(): { stream: TransformStream<Uint8Array, Uint8Array>; result(): Digest } {
  const hasher = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  let final: Digest | undefined;
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      hasher.update(chunk);
      bytes += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  return {
    stream,
    result: () => (final ??= { bytes, sha256: hasher.digest("hex") }),
  };
}

/** A stream that re-throws the source's errors through `map`, so a consumer can tell who failed. */
export function mapStreamErrors(source: ReadableStream<Uint8Array>, map: (error: unknown) => unknown): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        controller.error(map(error));
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
