/**
 * Uploads: a body of one part is a single PUT, a longer one a multipart upload of our own (initiate,
 * parts, complete, abort; why not the client's: docs/design/s3.md). A failed part is retried on its
 * own, not the object; the stored size is confirmed with a HEAD. Also the housekeeping of uploads
 * left open by interrupted runs. Objects are stored as application/octet-stream and never with
 * Content-Encoding: some providers decompress objects that declare one, breaking the stored checksum.
 */
import { NotFoundError, StorageUnavailableError } from "../../errors.ts";
import { BufferPool, iterate, prepend } from "../../util/streams.ts";
import { TransientError } from "../retry.ts";
import type { PartialWrite, PutOptions } from "../types.ts";
import type { S3Connection } from "./client.ts";
import { expectDocument } from "./errors.ts";
import { statObject } from "./listing.ts";
import { partSizeFor, splitParts } from "./parts.ts";
import { decodeXml, escapeXml, xmlText } from "./xml.ts";

/** How long a multipart upload's clean-up may take once the run is interrupted. */
const ABORT_ON_INTERRUPT_MS = 2000;

export interface PartSettings {
  size: number;
  concurrency: number;
}

/**
 * Store `body` under `key` and return its size. Atomic as S3 is: the object appears whole or not at
 * all; a multipart upload that fails is aborted (at best effort: prune removes what is left). Throws
 * StorageUnavailableError when the stored size is not the size sent.
 */
export async function putObject(
  s3: S3Connection,
  key: string,
  body: ReadableStream<Uint8Array> | Uint8Array,
  options: PutOptions,
  settings: PartSettings,
): Promise<{ size: number }> {
  const name = s3.objectName(key);
  const signal = s3.runSignal(options.signal);
  const chunks = body instanceof Uint8Array ? single(body) : iterate(body, signal);
  // Part buffers are reused: at most `concurrency` uploading and one filling.
  const partSize = partSizeFor(settings.size, options.sizeHint);
  const pool = new BufferPool(partSize, settings.concurrency + 1);
  const parts = splitParts(chunks, partSize, pool);
  const first = await parts.next();
  const firstPart: Uint8Array<ArrayBuffer> = first.done ? new Uint8Array(0) : first.value;
  const second = first.done ? first : await parts.next();
  let size: number;
  if (second.done) {
    signal?.throwIfAborted();
    await s3.request(key, { method: "PUT", objectName: name, payload: firstPart, headers: contentHeaders() }, signal);
    size = firstPart.byteLength;
  } else {
    const upload = { key, name, concurrency: settings.concurrency, signal };
    size = await putMultipart(s3, upload, prepend([firstPart, second.value], parts), (part) => pool.release(part));
  }
  const stored = await statObject(s3, key);
  if (!stored || stored.size !== size)
    throw new StorageUnavailableError(`stored size of ${key} is ${stored?.size ?? "missing"}, expected ${size}`);
  return { size };
}

type Upload = { key: string; name: string; concurrency: number; signal?: AbortSignal };

async function putMultipart(
  s3: S3Connection,
  upload: Upload,
  parts: AsyncIterable<Uint8Array<ArrayBuffer>>,
  release?: (part: Uint8Array) => void,
): Promise<number> {
  const { key, name, signal } = upload;
  const uploadId = await s3.request(
    key,
    { method: "POST", objectName: name, query: { uploads: "" }, headers: contentHeaders(), returnBody: true },
    signal,
    async (r) => {
      const xml = await r.text();
      expectDocument(s3.config.endpoint, xml, "InitiateMultipartUploadResult", `the start of the upload of ${key}`);
      const id = xmlText(xml, "UploadId");
      if (!id) throw new StorageUnavailableError(`S3 did not return an UploadId for ${key}`);
      return id;
    },
  );
  const etags: string[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let size = 0;
  try {
    let partNumber = 0;
    for await (const part of parts) {
      if (failure) break;
      signal?.throwIfAborted();
      const number = ++partNumber;
      size += part.byteLength;
      // Each part is retried on its own; the bytes stay in memory until it is stored.
      const stored = s3
        .request(
          key,
          { method: "PUT", objectName: name, query: { partNumber: String(number), uploadId }, payload: part },
          signal,
          async (response) => {
            const etag = response.headers.get("etag");
            if (!etag) throw new TransientError(`S3 returned no ETag for part ${number} of ${key}`);
            return etag;
          },
        )
        .then(
          (etag) => {
            etags[number - 1] = etag;
          },
          (error) => {
            failure ??= error;
          },
        );
      const tracked: Promise<void> = stored.finally(() => {
        inFlight.delete(tracked);
        release?.(part);
      });
      inFlight.add(tracked);
      if (inFlight.size >= upload.concurrency) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    signal?.throwIfAborted();
    await completeMultipart(s3, upload, uploadId, etags, size);
    return size;
  } catch (error) {
    await Promise.allSettled(inFlight);
    await abortMultipart(s3, key, name, uploadId);
    throw error;
  }
}

async function completeMultipart(
  s3: S3Connection,
  { key, name, signal }: Upload,
  uploadId: string,
  etags: string[],
  size: number,
): Promise<void> {
  const xml = `<CompleteMultipartUpload>${etags.map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
  try {
    await s3.request(
      key,
      { method: "POST", objectName: name, query: { uploadId }, payload: xml, returnBody: true },
      signal,
      async (response) => {
        // S3 may answer 200 and still report an error in the body (documented for this call); it asks to be retried.
        expectDocument(
          s3.config.endpoint,
          await response.text(),
          "CompleteMultipartUploadResult",
          `the completion of the upload of ${key}`,
        );
      },
    );
  } catch (error) {
    // A retry after a completion whose answer was lost finds the upload gone: the object is there.
    if (error instanceof NotFoundError && (await statObject(s3, key))?.size === size) return;
    throw error;
  }
}

async function abortMultipart(s3: S3Connection, key: string, name: string, uploadId: string): Promise<void> {
  // Clean-up runs after an interruption too, but then only briefly: prune removes what it leaves.
  const interrupted = s3.config.signal?.aborted === true;
  const retry = interrupted ? { ...s3.retry, retries: 0, timeoutMs: Math.min(s3.retry.timeoutMs, ABORT_ON_INTERRUPT_MS) } : s3.retry;
  await s3
    .request(key, { method: "DELETE", objectName: name, query: { uploadId }, statusCode: 204 }, undefined, undefined, {
      retry,
      followRun: false,
    })
    .catch(() => {});
}

/** Multipart uploads under `prefix` that were started and never completed, each once. */
export async function* listOpenUploads(s3: S3Connection, prefix: string): AsyncIterable<PartialWrite> {
  const { bucket, endpoint } = s3.config;
  let keyMarker = "";
  let uploadIdMarker = "";
  const markers = new Set<string>();
  const seen = new Set<string>();
  while (true) {
    const query: Record<string, string> = { uploads: "", prefix: s3.base + prefix };
    if (keyMarker) query["key-marker"] = keyMarker;
    if (uploadIdMarker) query["upload-id-marker"] = uploadIdMarker;
    const xml = await s3.request("uploads", { method: "GET", objectName: "", query, returnBody: true }, undefined, async (r) => {
      const text = await r.text();
      expectDocument(endpoint, text, "ListMultipartUploadsResult", `the list of uploads in ${bucket}`);
      return text;
    });
    let added = 0;
    for (const [, body] of xml.matchAll(/<Upload>([\s\S]*?)<\/Upload>/g)) {
      const key = xmlText(body!, "Key");
      const handle = xmlText(body!, "UploadId");
      const initiated = xmlText(body!, "Initiated");
      if (key === undefined || !handle || !initiated || seen.has(handle)) continue;
      seen.add(handle);
      added++;
      yield { key: decodeXml(key).slice(s3.base.length), named: true, handle, startedAt: new Date(initiated) };
    }
    if (xmlText(xml, "IsTruncated") !== "true") return;
    markers.add(`${keyMarker}\n${uploadIdMarker}`);
    keyMarker = decodeXml(xmlText(xml, "NextKeyMarker") ?? "");
    uploadIdMarker = xmlText(xml, "NextUploadIdMarker") ?? "";
    if (!keyMarker && !uploadIdMarker) return;
    if (markers.has(`${keyMarker}\n${uploadIdMarker}`) || added === 0)
      throw new StorageUnavailableError(
        `the S3 list of uploads in ${s3.url} does not advance; stopped after ${seen.size} uploads`,
        "the endpoint is not a working S3 service; check it (--repo, ?endpoint=)",
      );
  }
}

/** Abort an open upload; one already gone is no error. */
export async function abortOpenUpload(s3: S3Connection, write: PartialWrite): Promise<void> {
  await s3
    .request(write.key, { method: "DELETE", objectName: s3.objectName(write.key), query: { uploadId: write.handle }, statusCode: 204 })
    .catch((error) => {
      if (!(error instanceof NotFoundError)) throw error;
    });
}

function contentHeaders(): Headers {
  return new Headers({ "Content-Type": "application/octet-stream" });
}

async function* single(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
