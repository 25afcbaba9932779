import { describe, expect, test, beforeAll, afterAll, setDefaultTimeout } from "bun:test";
import { AuthError, StorageUnavailableError, VaultError } from "../../src/errors.ts";
import { S3Storage } from "../../src/storage/s3.ts";
import type { DownloadTuning } from "../../src/storage/s3/download.ts";
import { openStorage } from "../../src/storage/index.ts";
import { abandonUpload, adminClient, createTestBucket, listUploads, s3RepoUrl, testS3 } from "../helpers/s3.ts";
import { bytesOf, describeStorageContract, LARGE } from "./contract.ts";
import { readAll } from "../../src/util/streams.ts";
import { listings, on, startFaultProxy, type FaultProxy } from "../helpers/fault-proxy.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

const PART = 5 * 1024 * 1024;
let prefixCounter = 0;

function storageFor(
  bucket: string,
  prefix: string,
  secret?: string,
  onRetry?: (message: string) => void,
  more: { endpoint?: string; signal?: AbortSignal; timeoutMs?: number; download?: DownloadTuning } = {},
): S3Storage {
  const s3 = testS3();
  return new S3Storage({
    onRetry,
    bucket,
    prefix,
    signal: more.signal,
    // Through the proxy: few, quick retries.
    retry: more.endpoint ? { retries: 2, timeoutMs: more.timeoutMs ?? 60_000, baseDelayMs: 50 } : undefined,
    endpoint: more.endpoint ?? s3.endpoint,
    region: s3.region,
    pathStyle: true,
    credentials: { accessKeyId: s3.accessKey, secretAccessKey: secret ?? s3.secretKey, source: "the test" },
    partSize: PART,
    partConcurrency: 2,
    download: more.download,
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
  async plant(storage, key) {
    const url = new URL((storage as S3Storage).url);
    await adminClient(url.hostname).putObject(`${url.pathname.replace(/^\/|\/$/g, "")}/${key}`, "planted");
  },
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
    const s = new S3Storage({
      bucket: bucket.bucket,
      prefix: "",
      endpoint: "http://127.0.0.1:9",
      region: "us-east-1",
      pathStyle: true,
      credentials: null,
    });
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

describe("S3 answers that are not what was asked for, through the fault proxy", () => {
  let bucket: Awaited<ReturnType<typeof createTestBucket>>;
  let proxy: FaultProxy;
  let n = 0;
  beforeAll(async () => {
    bucket = await createTestBucket("s3answers");
    proxy = await startFaultProxy(testS3().endpoint);
  });
  afterAll(async () => {
    await proxy.stop();
    await bucket.cleanup();
  });
  const viaProxy = (more: { signal?: AbortSignal; timeoutMs?: number } = {}) =>
    storageFor(bucket.bucket, `a${n++}`, undefined, undefined, { endpoint: proxy.url, ...more });
  const keys = async (s: S3Storage, prefix = "") => {
    const out: string[] = [];
    for await (const o of s.list(prefix)) out.push(o.key);
    return out;
  };
  const html = () => ({ status: 200, body: "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>", contentType: "text/html" });

  test("a listing that repeats its <Contents> entries yields each key once", async () => {
    proxy.clear();
    const s = viaProxy();
    for (const key of ["db/1.json", "db/2.json", "db/3.json"]) await s.put(key, bytesOf(10));
    proxy.add({
      method: "GET",
      match: on.list,
      times: Infinity,
      fault: {
        kind: "rewrite",
        rewrite: ({ status, body }) => {
          const entries = body.match(/<Contents>[\s\S]*?<\/Contents>/g) ?? [];
          // each entry twice in place, and the whole set once more at the end
          return { status, body: body.replace(/<Contents>[\s\S]*<\/Contents>/, entries.map((e) => e + e).join("") + entries.join("")) };
        },
      },
    });
    expect(await keys(s)).toEqual(["db/1.json", "db/2.json", "db/3.json"]);
    expect(proxy.injected.length).toBeGreaterThan(0);
  });

  test("a listing whose continuation token never changes fails at once instead of looping", async () => {
    proxy.clear();
    const s = viaProxy();
    await s.put("db/1.json", bytesOf(10));
    proxy.add(listings.neverEnding("same-token"));
    const error = await keys(s).catch((e) => e);
    expect(error).toBeInstanceOf(StorageUnavailableError);
    expect(error.message).toContain("does not advance");
    expect(proxy.injected.length).toBeLessThanOrEqual(3);
  });

  test("a listing answered 200 with an <Error> is retried, then fails; never an empty repository", async () => {
    proxy.clear();
    const s = viaProxy();
    await s.put("db/1.json", bytesOf(10));
    proxy.add({ method: "GET", match: on.list, fault: { kind: "error-200" } });
    expect(await keys(s)).toEqual(["db/1.json"]);
    proxy.clear();
    proxy.add({ method: "GET", match: on.list, times: Infinity, fault: { kind: "error-200" } });
    await expect(keys(s)).rejects.toBeInstanceOf(StorageUnavailableError);
    expect(proxy.injected).toHaveLength(3);
  });

  test("a listing answered with an HTML page, another document or another bucket's listing fails", async () => {
    const s = viaProxy();
    await s.put("db/1.json", bytesOf(10));
    const answers: Record<string, (r: { status: number; body: string }) => { status: number; body: string; contentType?: string }> = {
      "an HTML page": html,
      "another document": ({ status }) => ({
        status,
        body: '<?xml version="1.0"?><ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>',
      }),
      "another bucket": ({ status, body }) => ({ status, body: body.replace(/<Name>[^<]*<\/Name>/, "<Name>someone-else</Name>") }),
      "another prefix": ({ status, body }) => ({ status, body: body.replace(/<Prefix>[^<]*<\/Prefix>/, "<Prefix>x/</Prefix>") }),
    };
    for (const [what, rewrite] of Object.entries(answers)) {
      proxy.clear();
      proxy.add({ method: "GET", match: on.list, times: Infinity, fault: { kind: "rewrite", rewrite } });
      const error = await keys(s).catch((e) => e);
      expect(error, what).toBeInstanceOf(StorageUnavailableError);
      expect(proxy.injected, what).toHaveLength(1); // a wrong endpoint is not retried
    }
    proxy.clear();
  });

  test("a GET answered 200 with an <Error> is a server error (retried, then StorageUnavailableError), never the object's bytes", async () => {
    proxy.clear();
    const s = viaProxy();
    await s.put("db/m.json", new TextEncoder().encode('{"a":1}'));
    proxy.add({ method: "GET", match: on.object("m.json"), fault: { kind: "error-200" } });
    expect(new TextDecoder().decode(await readAll(await s.get("db/m.json")))).toBe('{"a":1}');
    proxy.clear();
    proxy.add({ method: "GET", match: on.object("m.json"), times: Infinity, fault: { kind: "error-200" } });
    await expect(s.get("db/m.json").then(readAll)).rejects.toBeInstanceOf(StorageUnavailableError);
    proxy.clear();
    proxy.add({ method: "GET", match: on.object("m.json"), times: Infinity, fault: { kind: "rewrite", rewrite: html } });
    await expect(s.get("db/m.json").then(readAll)).rejects.toBeInstanceOf(StorageUnavailableError);
    proxy.clear();
  });

  test("a HEAD answered without an object's headers is a failure, not an object of size 0", async () => {
    proxy.clear();
    const s = viaProxy();
    await s.put("db/h.json", bytesOf(100));
    proxy.add({ method: "HEAD", match: on.object("h.json"), times: Infinity, fault: { kind: "rewrite", rewrite: html } });
    await expect(s.stat("db/h.json")).rejects.toBeInstanceOf(StorageUnavailableError);
    proxy.clear();
    expect((await s.stat("db/h.json"))?.size).toBe(100);
  });

  test("multipart: an initiate answered 200 with an <Error> is retried; a completion answered with something else fails, and no upload is left open", async () => {
    proxy.clear();
    const s = viaProxy();
    proxy.add({ method: "POST", match: on.initiate, fault: { kind: "error-200" } });
    await s.put("db/big", bytesOf(LARGE, 21));
    expect((await s.stat("db/big"))?.size).toBe(LARGE);
    proxy.clear();
    proxy.add({ method: "POST", match: on.complete, times: Infinity, fault: { kind: "rewrite", rewrite: html } });
    await expect(s.put("db/other", bytesOf(LARGE, 22))).rejects.toBeInstanceOf(StorageUnavailableError);
    proxy.clear();
    // (the initiate the proxy forwarded and then answered with an error left an upload of db/big: prune's housekeeping)
    expect((await listUploads(bucket.bucket)).filter((u) => u.key.endsWith("db/other"))).toEqual([]);
  });

  test("the run's signal, given when the storage is opened, ends a stalled stat, list and delete at once", async () => {
    proxy.clear();
    const plain = viaProxy();
    await plain.put("db/s.json", bytesOf(10));
    for (const [what, call] of [
      ["stat", (s: S3Storage) => s.stat("db/s.json")],
      ["list", (s: S3Storage) => keys(s)],
      ["delete", (s: S3Storage) => s.delete(["db/s.json"])],
    ] as const) {
      proxy.clear();
      proxy.add({ match: () => true, times: Infinity, fault: { kind: "delay", delayMs: 20_000 } });
      const run = new AbortController();
      const s = storageFor(bucket.bucket, plain.url.split("/").pop()!, undefined, undefined, {
        endpoint: proxy.url,
        signal: run.signal,
        timeoutMs: 30_000,
      });
      setTimeout(() => run.abort(new VaultError("stop")), 300);
      const started = performance.now();
      await expect(call(s), what).rejects.toThrow("stop");
      expect(performance.now() - started, what).toBeLessThan(2000);
    }
    proxy.clear();
  });
});

describe("S3 downloads in parts, through the fault proxy", () => {
  let bucket: Awaited<ReturnType<typeof createTestBucket>>;
  let proxy: FaultProxy;
  let n = 0;
  const MIB = 1024 * 1024;
  const SIZE = 5 * MIB + 12345; // six parts of 1 MiB, the last one short
  const data = bytesOf(SIZE, 31);
  beforeAll(async () => {
    bucket = await createTestBucket("s3parts");
    proxy = await startFaultProxy(testS3().endpoint);
  });
  afterAll(async () => {
    await proxy.stop();
    await bucket.cleanup();
  });
  /** A storage through the proxy holding `data` at db/big, downloading in parts of 1 MiB, 3 at once. */
  const stored = async (retries?: string[], download: DownloadTuning = { partBytes: MIB, minPartBytes: MIB, connections: 3 }) => {
    proxy.clear();
    const s = storageFor(bucket.bucket, `d${n++}`, undefined, (m) => retries?.push(m), { endpoint: proxy.url, timeoutMs: 2000, download });
    await s.put("db/big", data);
    proxy.clear();
    return s;
  };
  const same = (bytes: Uint8Array) => Buffer.from(bytes).equals(Buffer.from(data));
  const ranged = (headers: Record<string, unknown>) => typeof headers.range === "string";
  const gets = () => proxy.requests.filter((r) => r.startsWith("GET ") && r.includes("/db/big"));

  test("an object of several parts comes back identical: one GET for the first part, a ranged GET for each other; one part or one connection is one GET", async () => {
    const s = await stored();
    const stream = await s.get("db/big");
    expect(stream.size).toBe(SIZE);
    expect(same(await readAll(stream))).toBe(true);
    // Parts begun together reach the server in any order.
    const start = (r: string) => Number(/bytes=(\d+)/.exec(r)?.[1] ?? -1);
    const ranges = gets()
      .map((r) => r.split(" ")[2] ?? "whole")
      .sort((a, b) => start(a) - start(b));
    expect(ranges).toEqual(["whole", ...[1, 2, 3, 4].map((i) => `bytes=${i * MIB}-${(i + 1) * MIB - 1}`), `bytes=${5 * MIB}-${SIZE - 1}`]);

    for (const download of [
      { minPartBytes: SIZE, connections: 3 },
      { partBytes: MIB, connections: 1 },
    ]) {
      const one = await stored(undefined, download);
      expect(same(await readAll(await one.get("db/big"))), JSON.stringify(download)).toBe(true);
      expect(gets(), JSON.stringify(download)).toHaveLength(1);
    }

    // An object smaller than 4 parts of the largest size is split among the 4 connections, in parts
    // no smaller than the smallest size.
    const split = await stored(undefined, { minPartBytes: MIB });
    expect(same(await readAll(await split.get("db/big")))).toBe(true);
    const quarter = Math.ceil(SIZE / 4);
    expect(gets().filter((r) => r.endsWith(` bytes=${quarter}-${2 * quarter - 1}`))).toHaveLength(1);
    expect(gets()).toHaveLength(4);

    // By default parts are no smaller than 4 MiB: a 4 MiB object is one GET, 5 MiB two.
    const defaults = await stored(undefined, {});
    await defaults.put("db/small", data.subarray(0, 4 * MIB));
    proxy.clear();
    expect((await readAll(await defaults.get("db/small"))).length).toBe(4 * MIB);
    expect(proxy.requests.filter((r) => r.startsWith("GET "))).toHaveLength(1);
    expect(same(await readAll(await defaults.get("db/big")))).toBe(true);
    expect(gets().map((r) => r.split(" ")[2] ?? "whole")).toEqual(["whole", `bytes=${4 * MIB}-${SIZE - 1}`]);
  });

  test("one download in parts at a time per storage: a second one meanwhile is one GET; after the first ends or is cancelled, parts again", async () => {
    const s = await stored();
    const ranges = () => gets().filter((r) => r.includes(" bytes=")).length;
    const first = await s.get("db/big");
    const second = await s.get("db/big");
    const [a, b] = await Promise.all([readAll(first), readAll(second)]);
    expect(same(a) && same(b)).toBe(true);
    expect(gets()).toHaveLength(2 + 5); // two whole GETs, five ranges: the first's
    proxy.clear();
    expect(same(await readAll(await s.get("db/big")))).toBe(true);
    expect(ranges()).toBe(5);
    const reader = (await s.get("db/big")).getReader();
    await reader.read();
    await reader.cancel();
    proxy.clear();
    expect(same(await readAll(await s.get("db/big")))).toBe(true);
    expect(ranges()).toBe(5);
  });

  test("a part answered with another range is asked again; a part whose connection breaks resumes where it stopped; the bytes are identical", async () => {
    const retries: string[] = [];
    const s = await stored(retries);
    const third = (h: Record<string, unknown>) => h.range === `bytes=${2 * MIB}-${3 * MIB - 1}`;
    proxy.add({
      method: "GET",
      headers: third,
      fault: { kind: "headers", headers: (h) => ({ ...h, "content-range": `bytes ${3 * MIB}-${4 * MIB - 1}/${SIZE}` }) },
    });
    proxy.add({
      method: "GET",
      headers: (h) => h.range === `bytes=${4 * MIB}-${5 * MIB - 1}`,
      fault: { kind: "reset-response", afterBytes: 300_000 },
    });
    proxy.add({ method: "GET", headers: (h) => !ranged(h), fault: { kind: "reset-response", afterBytes: 200_000 } });
    expect(same(await readAll(await s.get("db/big")))).toBe(true);
    expect(proxy.injected.map((f) => f.split(" ")[0])).toEqual(["reset-response", "headers", "reset-response"]);
    // The range asked again, and two bodies resumed at the byte where each stopped.
    expect(retries.filter((m) => m.startsWith("retrying GET"))).toHaveLength(1);
    const resumed = retries.filter((m) => m.startsWith("resuming")).map((m) => Number(/at byte (\d+)/.exec(m)![1]));
    expect(resumed).toHaveLength(2);
    expect(resumed.every((at) => (at > 0 && at < MIB) || (at > 4 * MIB && at < 5 * MIB))).toBe(true);
    expect(gets().filter((r) => r.endsWith(`-${5 * MIB - 1}`) && !r.endsWith(`bytes=${4 * MIB}-${5 * MIB - 1}`))).toHaveLength(1);
  });

  test("a part answered 200 (the whole object, not the range), or by another version of the object, fails the download: never bytes stitched together", async () => {
    for (const fault of [
      { kind: "rewrite", rewrite: () => ({ status: 200, body: "not the range", contentType: "application/octet-stream" }) },
      { kind: "headers", headers: (h: Record<string, unknown>) => ({ ...h, etag: '"0123456789abcdef0123456789abcdef"' }) },
    ] as const) {
      const s = await stored();
      proxy.add({ method: "GET", headers: ranged, times: Infinity, fault });
      const failure = await s
        .get("db/big")
        .then(readAll)
        .then(
          () => null,
          (error: unknown) => error,
        );
      expect(failure, fault.kind).toBeInstanceOf(StorageUnavailableError);
      if (fault.kind === "headers") expect((failure as Error).message).toContain("changed on the server during the download");
    }
  });

  test("cancelling a download in parts ends the requests under way: a part waiting to be retried asks no more", async () => {
    const s = await stored();
    proxy.add({ method: "GET", headers: ranged, times: Number.POSITIVE_INFINITY, fault: { kind: "status", status: 503 } });
    const reader = (await s.get("db/big")).getReader();
    await reader.read();
    await reader.cancel(new Error("interrupted"));
    await Bun.sleep(30);
    const atCancel = gets().length;
    // Two parts failing with 503, each retried twice after 50 ms and 100 ms or more, had they gone on.
    await Bun.sleep(1000);
    expect(gets()).toHaveLength(atCancel);
  });

  test("a download in parts that its reader cancels stops every part: no part started after, no retry", async () => {
    const retries: string[] = [];
    const s = await stored(retries);
    proxy.add({ method: "GET", headers: ranged, times: Infinity, fault: { kind: "delay", delayMs: 300 } });
    const reader = (await s.get("db/big")).getReader();
    await reader.read();
    await reader.cancel(new Error("interrupted"));
    await Bun.sleep(800);
    // The first answer and at most the two parts begun beside it (the cancel may stop them before they
    // leave); none after the cancel.
    expect(gets().length).toBeGreaterThanOrEqual(1);
    expect(gets().length).toBeLessThanOrEqual(3);
    expect(retries).toEqual([]);
  });
});
