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

/** `first`, then everything `rest` still holds. */
export async function* prepend<T>(first: T[], rest: AsyncIterator<T>): AsyncGenerator<T> {
  yield* first;
  while (true) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

/** A web stream of what `source` yields, pulled one at a time; cancelling it ends `source`. */
export function streamOf(source: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      async cancel() {
        await iterator.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The bytes of a chunked stream, to be cut into pieces that do not follow its chunks (the gzip
 * members and zstd frames of a backup): read ahead with fill(), look with peek(), cut with take().
 */
export class ByteQueue {
  private pending: Uint8Array[];
  /** How many bytes are read and not yet taken. */
  buffered: number;

  constructor(
    head: Uint8Array,
    private readonly rest: AsyncIterator<Uint8Array>,
  ) {
    this.pending = head.length ? [head] : [];
    this.buffered = head.length;
  }

  /** Read until at least `n` bytes are buffered; false when the stream ends first. */
  async fill(n: number): Promise<boolean> {
    while (this.buffered < n) {
      const next = await this.rest.next();
      if (next.done) return false;
      this.pending.push(next.value);
      this.buffered += next.value.length;
    }
    return true;
  }

  /** A copy of the `n` buffered bytes at `offset` (offset + n <= buffered), which stay buffered. */
  peek(offset: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    for (const chunk of this.pending) {
      if (filled === n) break;
      if (offset >= chunk.length) {
        offset -= chunk.length;
        continue;
      }
      const part = chunk.subarray(offset, offset + n - filled);
      out.set(part, filled);
      filled += part.length;
      offset = 0;
    }
    if (filled < n) throw new Error(`peek past the ${this.buffered} bytes buffered`);
    return out;
  }

  /** Take the first `n` buffered bytes (n <= buffered) into one new buffer of exactly that size. */
  take(n: number): Uint8Array {
    if (n > this.buffered) throw new Error(`take past the ${this.buffered} bytes buffered`);
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.pending[0]!;
      const used = Math.min(chunk.length, n - filled);
      out.set(chunk.subarray(0, used), filled);
      filled += used;
      if (used === chunk.length) this.pending.shift();
      else this.pending[0] = chunk.subarray(used);
    }
    this.buffered -= n;
    return out;
  }
}

/** Collect a stream into one buffer; only for small objects such as manifests. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The stream's bytes, or null once they pass `limit` (the stream is then cancelled): never more in memory. */
export async function readAllUpTo(stream: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array | null> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of iterate(stream)) {
    total += chunk.byteLength;
    if (total > limit) return null; // iterate() cancels the stream when the loop is left
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks, total));
}

export interface Digest {
  bytes: number;
  sha256: string;
}

/**
 * A pass-through that feeds every chunk to a SHA-256 hasher and counts bytes (telling `onBytes` too,
 * for progress). Call `result()` only after the stream has been fully consumed.
 */
export function createDigestStream(onBytes?: (bytes: number) => void): {
  stream: TransformStream<Uint8Array, Uint8Array>;
  result(): Digest;
} {
  const hasher = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  let final: Digest | undefined;
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      hasher.update(chunk);
      bytes += chunk.byteLength;
      onBytes?.(chunk.byteLength);
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

/**
 * A fixed set of equal buffers handed out and given back, so that a long stream of big blocks reuses
 * the same memory instead of leaving garbage for the collector (which lags behind: reading 1 GiB in
 * fresh 4 MiB buffers peaked at 127 MiB RSS, with this pool at the size of the blocks in flight).
 * `acquire` waits while every buffer is out.
 */
export class BufferPool {
  private readonly free: Uint8Array<ArrayBuffer>[] = [];
  private readonly waiting: ((buffer: Uint8Array<ArrayBuffer>) => void)[] = [];
  private created = 0;

  constructor(
    readonly size: number,
    readonly max: number,
  ) {}

  acquire(): Promise<Uint8Array<ArrayBuffer>> {
    const buffer = this.free.pop();
    if (buffer) return Promise.resolve(buffer);
    if (this.created < this.max) {
      this.created++;
      return Promise.resolve(new Uint8Array(this.size));
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /**
   * Give back a buffer from `acquire` (or a view of one, or the same buffer moved back from another
   * thread); it must not be used afterwards. A view whose buffer moved away for good (detached) frees
   * its place: the pool makes a new buffer instead.
   */
  release(view: Uint8Array): void {
    if (view.buffer.byteLength === 0) {
      this.created--;
      if (this.waiting.length) {
        this.created++;
        this.waiting.shift()!(new Uint8Array(this.size));
      }
      return;
    }
    if (view.buffer.byteLength !== this.size)
      throw new Error(`a buffer of ${view.buffer.byteLength} bytes given back to a pool of ${this.size}`);
    const buffer = new Uint8Array(view.buffer as ArrayBuffer, 0, this.size);
    const next = this.waiting.shift();
    if (next) next(buffer);
    else this.free.push(buffer);
  }
}
