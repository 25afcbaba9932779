/**
 * Downloads that survive a broken connection: a body that stops early or stalls (no data within the
 * attempt timeout) resumes with a ranged GET pinned to the object's ETag, up to the retry count, so
 * a changed object fails rather than being stitched together from two versions.
 */
import { AttemptTimeoutError, isTransient, TransientError } from "../retry.ts";
import type { GetOptions, ObjectStream } from "../types.ts";
import type { S3Connection } from "./client.ts";
import { describe, expectObject, mapS3Error } from "./errors.ts";

type Reader = {
  read(): Promise<{ done: true; value?: undefined } | { done: false; value: Uint8Array }>;
  cancel(reason?: unknown): Promise<void>;
};

/**
 * The object's bytes as a stream, with the size the answer states. Throws NotFoundError (before the
 * stream) when it is missing; the stream fails with the storage errors.
 */
export async function openDownload(s3: S3Connection, key: string, options: GetOptions): Promise<ObjectStream> {
  const objectName = s3.objectName(key);
  const signal = s3.runSignal(options.signal);
  signal?.throwIfAborted();
  const endpoint = s3.config.endpoint;
  let response = await s3.request(key, { method: "GET", objectName, returnBody: true }, signal, (r) => expectObject(endpoint, r, key));
  const etag = response.headers.get("etag");
  const total = Number(response.headers.get("content-length") ?? Number.NaN);
  let offset = 0;
  let reader: Reader = response.body!.getReader() as Reader;
  let resumes = 0;
  const retry = s3.retry;
  const resume = async (reason: unknown) => {
    if (resumes++ >= retry.retries || !Number.isFinite(total) || !etag) throw reason;
    s3.config.onRetry?.(`resuming the download of ${key} at byte ${offset} (${describe(reason)})`);
    await reader.cancel().catch(() => {});
    const headers = new Headers({ Range: `bytes=${offset}-`, "If-Match": etag });
    response = await s3.request(key, { method: "GET", objectName, headers, statusCode: 206, returnBody: true }, signal, (r) =>
      expectObject(endpoint, r, key),
    );
    reader = response.body!.getReader() as Reader;
  };
  // A body that ends early because we stopped reading (cancelled, aborted) is no closed connection.
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      while (true) {
        try {
          const { done, value } = await readWithin(reader, retry.timeoutMs, signal);
          if (cancelled) return;
          if (!done) {
            offset += value.byteLength;
            controller.enqueue(value);
            return;
          }
          if (!Number.isFinite(total) || offset >= total) return controller.close();
          if (signal?.aborted) return controller.error(signal.reason);
          await resume(new TransientError(`the connection closed after ${offset} of ${total} bytes`));
        } catch (error) {
          if (cancelled) return;
          if (signal?.aborted) return controller.error(signal.reason);
          if (!isTransient(error)) return controller.error(mapS3Error(error, key, s3.config, s3.credentialSource));
          try {
            await resume(error);
          } catch (final) {
            return controller.error(mapS3Error(final, key, s3.config, s3.credentialSource));
          }
        }
      }
    },
    cancel: (reason) => {
      cancelled = true;
      return reader.cancel(reason);
    },
  });
  return Object.assign(stream, { size: Number.isFinite(total) ? total : undefined });
}

/** Read one chunk, or fail as a timeout when nothing arrives in time, or with the signal's reason. */
async function readWithin(reader: Reader, timeoutMs: number, signal?: AbortSignal): ReturnType<Reader["read"]> {
  let timer: Timer | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new AttemptTimeoutError(`no data for ${timeoutMs / 1000}s`)), timeoutMs);
        if (!signal) return;
        onAbort = () => reject(signal.reason);
        if (signal.aborted) onAbort();
        else signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}
