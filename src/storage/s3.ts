/**
 * S3-compatible storage (AWS S3, DigitalOcean Spaces, Cloudflare R2, Backblaze B2, MinIO, Ceph RGW)
 * on @bradenmacdonald/s3-lite-client, with a multipart upload of our own (why: docs/design/s3.md).
 * Every request is retried with backoff under a per-attempt timeout (s3/client.ts); uploads retry
 * the failed part (s3/upload.ts), downloads resume where they broke (s3/download.ts), listings are
 * checked as the network input they are (s3/listing.ts), and failures map onto the storage errors
 * (s3/errors.ts).
 */
import { NotFoundError } from "../errors.ts";
import type { GetOptions, ObjectInfo, ObjectStream, PartialWrite, PutOptions, Storage } from "./types.ts";
import { S3Connection, type S3Config } from "./s3/client.ts";
import { openDownload } from "./s3/download.ts";
import { checkBucket, listObjects, statObject } from "./s3/listing.ts";
import { DEFAULT_PART_CONCURRENCY, DEFAULT_PART_SIZE, MIN_PART_SIZE } from "./s3/parts.ts";
import { abortOpenUpload, listOpenUploads, putObject, type PartSettings } from "./s3/upload.ts";

export type { S3Config } from "./s3/client.ts";
export { mapS3Error } from "./s3/errors.ts";
export { DEFAULT_PART_CONCURRENCY, DEFAULT_PART_SIZE, partSizeFor, splitParts } from "./s3/parts.ts";

export class S3Storage implements Storage {
  readonly url: string;
  private readonly s3: S3Connection;
  private readonly parts: PartSettings;

  constructor(config: S3Config) {
    this.s3 = new S3Connection(config);
    this.url = this.s3.url;
    this.parts = {
      size: Math.max(config.partSize ?? DEFAULT_PART_SIZE, MIN_PART_SIZE),
      concurrency: Math.max(1, config.partConcurrency ?? DEFAULT_PART_CONCURRENCY),
    };
  }

  /** Where the credentials in use came from, once a request has fetched them (for messages). */
  get credentialSource(): string | null {
    return this.s3.credentialSource;
  }

  /** How requests address the bucket. */
  get addressing(): "path-style" | "virtual-hosted" {
    return this.s3.config.pathStyle ? "path-style" : "virtual-hosted";
  }

  serverNow(): Date | undefined {
    return this.s3.serverNow();
  }

  /** The server's clock, from the Date header of a small request (null when it sends none). */
  async serverTime(): Promise<Date | null> {
    const query = { "list-type": "2", prefix: this.s3.base, "max-keys": "1" };
    const date = await this.s3.request("list", { method: "GET", objectName: "", query, returnBody: true }, undefined, async (r) => {
      await r.body?.cancel();
      return r.headers.get("date");
    });
    return date ? new Date(date) : null;
  }

  async check(): Promise<void> {
    await checkBucket(this.s3);
  }

  put(key: string, body: ReadableStream<Uint8Array> | Uint8Array, options: PutOptions = {}): Promise<{ size: number }> {
    return putObject(this.s3, key, body, options, this.parts);
  }

  get(key: string, options: GetOptions = {}): Promise<ObjectStream> {
    return openDownload(this.s3, key, options, this.s3.config.download);
  }

  stat(key: string): Promise<ObjectInfo | null> {
    return statObject(this.s3, key);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return listObjects(this.s3, prefix);
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) {
      await this.s3.request(key, { method: "DELETE", objectName: this.s3.objectName(key), statusCode: 204 }).catch((error) => {
        if (!(error instanceof NotFoundError)) throw error;
      });
    }
  }

  listPartialWrites(prefix: string): AsyncIterable<PartialWrite> {
    return listOpenUploads(this.s3, prefix);
  }

  abortPartialWrite(write: PartialWrite): Promise<void> {
    return abortOpenUpload(this.s3, write);
  }
}
