/**
 * Downloads. A big object comes in parts over several connections at once: a hosted S3 serves each
 * connection at a fraction of the link's speed (restic fetches its packs the same way). Each part,
 * and the rest of a body that stops early or stalls (no data within the attempt timeout), is a
 * ranged GET pinned to the object's ETag, up to the retry count per part, so a changed object fails
 * rather than being stitched together from two versions.
 */
import { StorageUnavailableError } from "../../errors.ts";
import { AttemptTimeoutError, isTransient, TransientError } from "../retry.ts";
import type { GetOptions, ObjectStream } from "../types.ts";
import type { S3Connection } from "./client.ts";
import { describe, expectObject, mapS3Error } from "./errors.ts";
import { type LongTimer, setLongTimeout } from "../../util/timer.ts";

/**
 * Bytes per part of a download in parts: the object split among the connections, within these
 * bounds. Below 4 MiB a part's own request costs more than it gains: a 3 MiB object in parts of 1 MiB
 * restored 8% slower on loopback, and no faster through 25 MB/s per connection with 50 ms latency;
 * 16 MiB in 4 parts instead of 2 of 8 MiB was 16% faster there.
 */
export const DOWNLOAD_PART_BYTES = 8 * 1024 * 1024;
export const DOWNLOAD_MIN_PART_BYTES = 4 * 1024 * 1024;
/** Parts downloading at once (the one being read and those after it, each read ahead into memory). */
export const DOWNLOAD_CONNECTIONS = 4;
/**
 * A part read ahead outlives a young collection, so its used-up chunks wait for a full one: without
 * one every 8 MiB, 4 parts of 8 MiB grew a 500 MiB restore's private memory from 45 to 112 MiB (73
 * with it, for about 5 ms each, which a 50 MiB restore's 4 parts of 4 MiB need not pay).
 */
const COLLECT_AFTER_BYTES = 8 * 1024 * 1024;

export interface DownloadTuning {
  /** The largest part. */
  partBytes?: number;
  /** The smallest part: an object of at most this size comes in one GET. */
  minPartBytes?: number;
  connections?: number;
}

type Reader = {
  read(): Promise<{ done: true; value?: undefined } | { done: false; value: Uint8Array }>;
  cancel(reason?: unknown): Promise<void>;
};

/**
 * The object's bytes as a stream, with the size the answer states. Throws NotFoundError (before the
 * stream) when it is missing; the stream fails with the storage errors. An object of more than one
 * part, from a server that takes ranges, is read in parts, `connections` at once.
 */
export async function openDownload(s3: S3Connection, key: string, options: GetOptions, tuning: DownloadTuning = {}): Promise<ObjectStream> {
  const signal = s3.runSignal(options.signal);
  signal?.throwIfAborted();
  const response = await s3.request(key, { method: "GET", objectName: s3.objectName(key), returnBody: true }, signal, (r) =>
    expectObject(s3.config.endpoint, r, key),
  );
  const etag = response.headers.get("etag");
  const total = Number(response.headers.get("content-length") ?? Number.NaN);
  const object: ObjectVersion = { key, etag, total };
  const connections = tuning.connections ?? DOWNLOAD_CONNECTIONS;
  const partBytes = Math.max(
    tuning.minPartBytes ?? DOWNLOAD_MIN_PART_BYTES,
    Math.min(tuning.partBytes ?? DOWNLOAD_PART_BYTES, Math.ceil(total / connections)),
  );
  const inParts =
    connections > 1 &&
    !downloadingInParts.has(s3) &&
    etag !== null &&
    Number.isFinite(total) &&
    total > partBytes &&
    response.headers.get("accept-ranges")?.toLowerCase() === "bytes";
  // Cancelling the stream also ends requests still under way (a part's, a resume's, their retries' waits).
  const stop = new AbortController();
  const requests = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const end = (reason?: unknown) => stop.abort(reason ?? new Error("download stopped"));
  const stream = inParts
    ? partsStream(s3, object, response, { partBytes, connections }, requests, end)
    : rangeStream(new RangeReader(s3, object, 0, Number.isFinite(total) ? total : Number.POSITIVE_INFINITY, requests, response), end);
  return Object.assign(stream, { size: Number.isFinite(total) ? total : undefined });
}

/**
 * Connections with a download in parts under way. Another download at the same time (verify checks
 * two backups at once by default) comes in one GET: parts read ahead take memory, and downloads side
 * by side already use several connections.
 */
const downloadingInParts = new WeakSet<S3Connection>();

/** The object as the first answer described it: every later request must be for this version. */
interface ObjectVersion {
  key: string;
  etag: string | null;
  /** NaN when the answer stated no length. */
  total: number;
}

/**
 * Bytes [start, end) of the object: from `first` (an answer for the whole object, left unread past
 * `end`) or from ranged GETs, resuming where a body stopped. `end` is Infinity when the length is
 * unknown (then a body that ends is the end, and nothing resumes).
 */
class RangeReader {
  private offset: number;
  private reader: Reader | undefined;
  private resumes = 0;
  cancelled = false;

  constructor(
    private readonly s3: S3Connection,
    private readonly object: ObjectVersion,
    start: number,
    private readonly end: number,
    private readonly signal: AbortSignal | undefined,
    first?: Response,
  ) {
    this.offset = start;
    this.reader = first?.body?.getReader() as Reader | undefined;
  }

  /** The next chunk of the range; undefined at its end, or once cancelled. */
  async read(): Promise<Uint8Array | undefined> {
    const { s3, object, signal } = this;
    while (true) {
      if (this.cancelled) return undefined;
      if (this.offset >= this.end) {
        // A whole-object answer read up to its first part's end: the rest comes in other parts.
        await this.reader?.cancel().catch(() => {});
        return undefined;
      }
      try {
        if (!this.reader) {
          this.reader = await this.open();
          if (this.cancelled) {
            await this.reader.cancel().catch(() => {});
            return undefined;
          }
        }
        const { done, value } = await readWithin(this.reader, s3.retry.timeoutMs, signal);
        if (this.cancelled) return undefined;
        if (!done) {
          const take = Math.min(value.byteLength, this.end - this.offset);
          this.offset += take;
          return take < value.byteLength ? value.subarray(0, take) : value;
        }
        if (this.end === Number.POSITIVE_INFINITY) return undefined;
        throw new TransientError(`the connection closed after ${this.offset} of ${object.total} bytes`);
      } catch (error) {
        if (this.cancelled) return undefined;
        if (signal?.aborted) throw signal.reason;
        if (!isTransient(error)) throw mapS3Error(error, object.key, s3.config, s3.credentialSource);
        if (this.resumes++ >= s3.retry.retries || this.end === Number.POSITIVE_INFINITY || !object.etag)
          throw mapS3Error(error, object.key, s3.config, s3.credentialSource);
        s3.config.onRetry?.(`resuming the download of ${object.key} at byte ${this.offset} (${describe(error)})`);
        await this.reader?.cancel().catch(() => {});
        this.reader = undefined;
      }
    }
  }

  cancel(reason?: unknown): Promise<void> {
    this.cancelled = true;
    return this.reader?.cancel(reason).catch(() => {}) ?? Promise.resolve();
  }

  /** A ranged GET of the rest of the range, for the version first answered. */
  private async open(): Promise<Reader> {
    const { s3, object, offset, end, signal } = this;
    const { key, etag, total } = object;
    const range = `bytes ${offset}-${end - 1}/${total}`;
    const headers = new Headers({ Range: `bytes=${offset}-${end - 1}`, "If-Match": etag! });
    const response = await s3.request(
      key,
      { method: "GET", objectName: s3.objectName(key), headers, statusCode: 206, returnBody: true },
      signal,
      async (r) => {
        // A 206 must be the bytes asked for, of the version asked for.
        const answered = r.headers.get("content-range");
        if (answered !== range) {
          await r.body?.cancel().catch(() => {});
          throw new TransientError(`S3 answered ${answered ?? "no range"} for ${range}`);
        }
        const tag = r.headers.get("etag");
        if (tag !== null && tag !== etag) {
          await r.body?.cancel().catch(() => {});
          throw new StorageUnavailableError(`${key} changed on the server during the download`, "retry");
        }
        return expectObject(s3.config.endpoint, r, key);
      },
    );
    return response.body!.getReader() as Reader;
  }
}

/** One range as a stream; `end` stops its requests when it is cancelled. */
function rangeStream(range: RangeReader, end: (reason?: unknown) => void): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      try {
        const chunk = await range.read();
        if (range.cancelled) return;
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      } catch (error) {
        controller.error(error);
      }
    },
    cancel: (reason) => {
      const cancelled = range.cancel(reason);
      end(reason);
      return cancelled;
    },
  });
}

/**
 * One part of a download in parts, read ahead into memory from the moment it starts. `next()`
 * hands its chunks over in order as they arrive, then undefined; a failure is thrown when reached.
 */
class Part {
  private readonly chunks: Uint8Array[] = [];
  private finished = false;
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;

  constructor(readonly range: RangeReader) {
    void this.fill();
  }

  private async fill(): Promise<void> {
    try {
      for (let chunk = await this.range.read(); chunk; chunk = await this.range.read()) {
        this.chunks.push(chunk);
        this.wake?.();
      }
      this.finished = true;
    } catch (error) {
      this.failure = { error };
    }
    this.wake?.();
  }

  async next(): Promise<Uint8Array | undefined> {
    while (true) {
      const chunk = this.chunks.shift();
      if (chunk) return chunk;
      if (this.failure) throw this.failure.error;
      if (this.finished || this.range.cancelled) return undefined;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

/**
 * The object in parts of `partBytes`, `connections` of them downloading at once, emitted in order:
 * the first from the answer already open, each later one by a ranged GET started as a part before it
 * is used up. `end` stops every request when the stream is cancelled or fails.
 */
function partsStream(
  s3: S3Connection,
  object: ObjectVersion,
  first: Response,
  { partBytes, connections }: { partBytes: number; connections: number },
  signal: AbortSignal,
  end: (reason?: unknown) => void,
): ReadableStream<Uint8Array> {
  const count = Math.ceil(object.total / partBytes);
  const parts: Part[] = [];
  const start = (index: number) => {
    if (index >= count || parts[index]) return;
    const end = Math.min(object.total, (index + 1) * partBytes);
    parts[index] = new Part(new RangeReader(s3, object, index * partBytes, end, signal, index === 0 ? first : undefined));
  };
  let current = 0;
  let usedUp = 0; // bytes of parts used up since the last collection
  downloadingInParts.add(s3);
  for (let i = 0; i < connections; i++) start(i);
  const stopAll = async (reason?: unknown) => {
    downloadingInParts.delete(s3);
    const cancelled = Promise.all(parts.map((part) => part?.range.cancel(reason)));
    end(reason);
    await cancelled;
  };
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      try {
        while (current < count) {
          const chunk = await parts[current]!.next();
          if (parts[current]!.range.cancelled) return;
          if (chunk) return controller.enqueue(chunk);
          delete parts[current];
          current++;
          usedUp += partBytes;
          // (With no more parts than connections, every part is read at once: a collection frees nothing in time.)
          if (usedUp >= COLLECT_AFTER_BYTES && count > connections) {
            usedUp = 0;
            Bun.gc(true);
          }
          start(current + connections - 1);
        }
        downloadingInParts.delete(s3);
        controller.close();
      } catch (error) {
        await stopAll();
        controller.error(error);
      }
    },
    cancel: stopAll,
  });
}

/** Read one chunk, or fail as a timeout when nothing arrives in time, or with the signal's reason. */
async function readWithin(reader: Reader, timeoutMs: number, signal?: AbortSignal): ReturnType<Reader["read"]> {
  let timer: LongTimer | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => {
        timer = setLongTimeout(() => reject(new AttemptTimeoutError(`no data for ${timeoutMs / 1000}s`)), timeoutMs);
        if (!signal) return;
        onAbort = () => reject(signal.reason);
        if (signal.aborted) onAbort();
        else signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    timer?.clear();
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}
