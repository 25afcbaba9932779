import { describe, expect, test, beforeAll, afterAll, setDefaultTimeout } from "bun:test";
import { AuthError, StorageUnavailableError } from "../../src/errors.ts";
import { S3Storage } from "../../src/storage/s3.ts";
import { openStorage } from "../../src/storage/index.ts";
import { abandonUpload, adminClient, createTestBucket, listUploads, s3RepoUrl, testS3 } from "../helpers/s3.ts";
import { bytesOf, describeStorageContract, LARGE } from "./contract.ts";
import { readAll } from "../../src/streams.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

const PART = 5 * 1024 * 1024;
let prefixCounter = 0;

function storageFor(bucket: string, prefix: string, secret?: string, onRetry?: (message: string) => void): S3Storage {
  const s3 = testS3();
  return new S3Storage({
    onRetry,
    bucket,
    prefix,
    endpoint: s3.endpoint,
    region: s3.region,
    pathStyle: true,
    credentials: { accessKeyId: s3.accessKey, secretAccessKey: secret ?? s3.secretKey, source: "the test" },
    partSize: PART,
    partConcurrency: 2,
  });
}

const buckets: Awaited<ReturnType<typeof createTestBucket>>[] = [];

describeStorageContract("S3 (Ceph RGW)", () => ({
  async fresh() {
    if (!buckets[0]) buckets.push(await createTestBucket("contract"));
    return storageFor(buckets[0]!.bucket, `p${prefixCounter++}/nested`);
  },
  missing: async () => storageFor("no-such-bucket-sqlite-vault", "x"),
  abandonWrite: (storage, key) => abandonUpload(storage as S3Storage, key),
  async cleanup() {
    for (const b of buckets.splice(0)) await b.cleanup();
  },
}));

describe("S3 specifics", () => {
  let bucket: Awaited<ReturnType<typeof createTestBucket>>;
  beforeAll(async () => {
    bucket = await createTestBucket("s3spec");
  });
  afterAll(() => bucket.cleanup());

  test("a download its reader stops (a failed write, an interrupted run) ends without a retry or a 'connection closed' warning", async () => {
    const retries: string[] = [];
    const s = storageFor(bucket.bucket, "stopped", undefined, (message) => retries.push(message));
    await s.put("db/big", bytesOf(LARGE, 12));
    // As a restore's pipeline does when its file write fails (disk full) or the run is interrupted.
    const sinks = {
      "a failing write": () => new WritableStream<Uint8Array>({ write: () => Promise.reject(new Error("ENOSPC")) }),
      "a cancelled read": null,
    };
    for (const [how, sink] of Object.entries(sinks))
      for (let i = 0; i < 5; i++) {
        const stream = await s.get("db/big");
        if (sink) await stream.pipeTo(sink()).catch(() => {});
        else {
          const reader = stream.getReader();
          await reader.read();
          await reader.cancel(new Error("interrupted"));
        }
        await Bun.sleep(50);
        expect(retries, how).toEqual([]);
      }
  });

  test("an object larger than the part size goes up as a multipart upload and comes back identical", async () => {
    const s = storageFor(bucket.bucket, "multi");
    const data = bytesOf(LARGE, 11);
    await s.put("db/big", new Blob([data]).stream());
    const stored = await adminClient(bucket.bucket).statObject("multi/db/big");
    expect(stored.size).toBe(LARGE);
    // A multipart object's ETag is "<md5 of part md5s>-<parts>": 3 parts of 5 MiB for 12 MiB.
    expect(stored.etag).toMatch(/-3$/);
    expect(Buffer.from(await readAll(await s.get("db/big"))).equals(Buffer.from(data))).toBe(true);
    expect(await listUploads(bucket.bucket)).toEqual([]);
  });

  test("a multipart upload that fails midway is aborted: no object and no incomplete upload remain", async () => {
    const s = storageFor(bucket.bucket, "fail");
    const data = bytesOf(LARGE, 12);
    let offset = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(c) {
        if (offset >= 2 * PART + 1000) return c.error(new Error("disk read failed"));
        c.enqueue(data.subarray(offset, (offset += 1024 * 1024)));
      },
    });
    await expect(s.put("db/partial", source)).rejects.toThrow("disk read failed");
    expect(await s.stat("db/partial")).toBeNull();
    expect(await listUploads(bucket.bucket)).toEqual([]);
  });

  test("the stored object never carries Content-Encoding", async () => {
    const s = storageFor(bucket.bucket, "enc");
    await s.put("db/x.sqlite.gz", bytesOf(100));
    const response = await adminClient(bucket.bucket).getObject("enc/db/x.sqlite.gz");
    expect(response.headers.get("content-encoding")).toBeNull();
    await response.body?.cancel();
  });

  test("a wrong secret is an AuthError that does not leak the secret", async () => {
    const s = storageFor(bucket.bucket, "auth", "wrong-secret-value-1234");
    const error = await s.check().catch((e) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect(String(error.message) + String(error.hint)).not.toContain("wrong-secret-value-1234");
    await expect(s.put("db/x", bytesOf(10))).rejects.toBeInstanceOf(AuthError);
  });

  test("an endpoint that refuses connections is StorageUnavailableError", async () => {
    const s = new S3Storage({ bucket: bucket.bucket, prefix: "", endpoint: "http://127.0.0.1:9", region: "us-east-1", pathStyle: true, credentials: null });
    await expect(s.check()).rejects.toBeInstanceOf(StorageUnavailableError);
  });

  test("openStorage reads the endpoint from the URL and credentials from the environment", async () => {
    const s3 = testS3();
    const storage = openStorage(s3RepoUrl(bucket.bucket, "via-url"), {
      env: { AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey },
    });
    await storage.put("db/y", bytesOf(10));
    expect((await storage.stat("db/y"))?.size).toBe(10);
    expect(storage.url).toBe(`s3://${bucket.bucket}/via-url`);
  });
});
