/**
 * The storage contract (src/storage/types.ts), run against every backend: test/storage/*.test.ts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { NotFoundError, StorageUnavailableError } from "../../src/errors.ts";
import { readAll } from "../../src/util/streams.ts";
import type { ObjectInfo, PartialWrite, Storage } from "../../src/storage/types.ts";

export interface ContractTarget {
  /** A storage on a fresh, empty repository (a new prefix or directory per call). */
  fresh(): Promise<Storage>;
  /** A storage whose repository does not exist (no bucket / no directory). */
  missing(): Promise<Storage>;
  /** Leave a write of `key` behind the way a killed process would (an open multipart upload, a temp file). */
  abandonWrite(storage: Storage, key: string): Promise<void>;
  /** Store an object under a raw `key` no valid key could name, the way another tool could (a file, a PUT). */
  plant(storage: Storage, key: string): Promise<void>;
  cleanup(): Promise<void>;
}

const encoder = new TextEncoder();

function streamOf(chunks: Uint8Array[], options: { failAfter?: number } = {}): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (options.failAfter !== undefined && i >= options.failAfter) {
        controller.error(new Error("source failed on purpose"));
        return;
      }
      if (i >= chunks.length) controller.close();
      else controller.enqueue(chunks[i++]!);
    },
  });
}

/** Deterministic pseudo-random bytes (incompressible, distinct per seed). */
export function bytesOf(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function chunked(data: Uint8Array, chunkSize: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < data.byteLength; i += chunkSize) chunks.push(data.subarray(i, i + chunkSize));
  return chunks;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function listAll(storage: Storage, prefix = ""): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of storage.list(prefix)) out.push(info);
  return out;
}

function sha(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

/** Larger than one S3 part at the 5 MiB minimum, so S3 backends under test use multipart. */
export const LARGE = 12 * 1024 * 1024 + 12345;

export function describeStorageContract(label: string, target: () => ContractTarget): void {
  describe(`storage contract: ${label}`, () => {
    const t = target();
    afterAll(() => t.cleanup());

    test("put bytes, then get, stat and list them", async () => {
      const s = await t.fresh();
      const data = encoder.encode("hello, vault");
      expect(await s.put("db/a.json", data)).toEqual({ size: data.byteLength });
      expect(await readAll(await s.get("db/a.json"))).toEqual(data);
      const info = await s.stat("db/a.json");
      expect(info?.size).toBe(data.byteLength);
      expect(info?.lastModified).toBeInstanceOf(Date);
      expect((await listAll(s)).map((o) => o.key)).toEqual(["db/a.json"]);
    });

    test("stat and list give the time the storage stored an object (its own clock): readers tell a backup dated ahead by it", async () => {
      const s = await t.fresh();
      const before = Date.now();
      await s.put("db/when.json", encoder.encode("{}"));
      const after = Date.now();
      const [listed] = await listAll(s);
      const stated = await s.stat("db/when.json");
      // S3 keeps whole seconds; this machine's clock is the server's here, so a second either side.
      for (const at of [listed?.lastModified.getTime(), stated?.lastModified.getTime()]) {
        expect(at).toBeGreaterThanOrEqual(before - 1_000);
        expect(at).toBeLessThanOrEqual(after + 1_000);
      }
    });

    test("put a large stream in many chunks; the bytes come back identical", async () => {
      const s = await t.fresh();
      const data = bytesOf(LARGE, 7);
      const { size } = await s.put("db/big.bin", streamOf(chunked(data, 64 * 1024 + 3)));
      expect(size).toBe(LARGE);
      expect((await s.stat("db/big.bin"))?.size).toBe(LARGE);
      expect(sha(await readAll(await s.get("db/big.bin")))).toBe(sha(data));
    });

    test("an empty object is an object", async () => {
      const s = await t.fresh();
      expect(await s.put("db/empty", streamOf([]))).toEqual({ size: 0 });
      expect((await s.stat("db/empty"))?.size).toBe(0);
      expect((await readAll(await s.get("db/empty"))).byteLength).toBe(0);
    });

    test("get states the object's size before its bytes are read", async () => {
      const s = await t.fresh();
      const data = bytesOf(LARGE, 5);
      await s.put("db/sized.bin", data);
      await s.put("db/none", streamOf([]));
      const big = await s.get("db/sized.bin");
      expect(big.size).toBe(LARGE);
      expect((await readAll(big)).byteLength).toBe(LARGE);
      const empty = await s.get("db/none");
      expect(empty.size).toBe(0);
      await empty.cancel();
    });

    test("put replaces an existing object whole", async () => {
      const s = await t.fresh();
      await s.put("db/x", encoder.encode("old"));
      await s.put("db/x", encoder.encode("new content"));
      expect(new TextDecoder().decode(await readAll(await s.get("db/x")))).toBe("new content");
    });

    test("a put whose source fails leaves nothing visible, and the previous object intact", async () => {
      const s = await t.fresh();
      await s.put("db/keep", encoder.encode("previous"));
      const data = bytesOf(LARGE, 3);
      await expect(s.put("db/keep", streamOf(chunked(data, 1024 * 1024), { failAfter: 8 }))).rejects.toThrow("source failed on purpose");
      await expect(s.put("db/new", streamOf(chunked(data, 1024 * 1024), { failAfter: 8 }))).rejects.toThrow("source failed on purpose");
      expect(await s.stat("db/new")).toBeNull();
      expect(new TextDecoder().decode(await readAll(await s.get("db/keep")))).toBe("previous");
      expect((await listAll(s)).map((o) => o.key)).toEqual(["db/keep"]);
    });

    test("a put aborted by its signal rejects with the signal's reason and leaves nothing", async () => {
      const s = await t.fresh();
      const controller = new AbortController();
      const data = bytesOf(LARGE, 5);
      let sent = 0;
      const source = new ReadableStream<Uint8Array>({
        pull(c) {
          if (sent === 6) controller.abort(new Error("stop now"));
          if (sent * 1024 * 1024 >= data.byteLength) return c.close();
          c.enqueue(data.subarray(sent * 1024 * 1024, ++sent * 1024 * 1024));
        },
      });
      await expect(s.put("db/aborted", source, { signal: controller.signal })).rejects.toThrow("stop now");
      expect(await s.stat("db/aborted")).toBeNull();
      expect(await listAll(s)).toEqual([]);
    });

    test("list filters by prefix and returns keys in ascending order", async () => {
      const s = await t.fresh();
      for (const key of ["b/2", "a/3", "b/1", "ab/1", "b/10"]) await s.put(key, encoder.encode(key));
      expect((await listAll(s)).map((o) => o.key)).toEqual(["a/3", "ab/1", "b/1", "b/10", "b/2"]);
      expect((await listAll(s, "b/")).map((o) => o.key)).toEqual(["b/1", "b/10", "b/2"]);
      expect((await listAll(s, "a")).map((o) => o.key)).toEqual(["a/3", "ab/1"]);
      expect((await listAll(s, "b/1")).map((o) => o.key)).toEqual(["b/1", "b/10"]);
      expect(await listAll(s, "zzz/")).toEqual([]);
      const sized = await listAll(s, "b/10");
      expect(sized[0]?.size).toBe(4);
    });

    test("delete removes keys; missing keys are not an error", async () => {
      const s = await t.fresh();
      await s.put("d/1", encoder.encode("1"));
      await s.put("d/2", encoder.encode("2"));
      await s.delete(["d/1", "d/never-existed"]);
      expect(await s.stat("d/1")).toBeNull();
      expect((await listAll(s)).map((o) => o.key)).toEqual(["d/2"]);
    });

    test("missing keys: get throws NotFoundError, stat is null", async () => {
      const s = await t.fresh();
      await (s.create?.() ?? s.check());
      await expect(s.get("db/nope.json")).rejects.toBeInstanceOf(NotFoundError);
      expect(await s.stat("db/nope.json")).toBeNull();
    });

    test("keys that could escape the repository are refused", async () => {
      const s = await t.fresh();
      for (const key of ["../x", "/x", "a//b", "a/./b", "", "a/../../b"]) {
        await expect(s.put(key, encoder.encode("x"))).rejects.toThrow("invalid storage key");
        await expect(s.get(key)).rejects.toThrow("invalid storage key");
      }
    });

    test("an object no valid key names, put there by another tool, is passed over by list, which goes on", async () => {
      const s = await t.fresh();
      await (s.create?.() ?? s.check());
      await s.put("db/a.json", encoder.encode("a"));
      await t.plant(s, "db/x\\y.json");
      await s.put("db/z.json", encoder.encode("z"));
      expect((await listAll(s, "db/")).map((o) => o.key)).toEqual(["db/a.json", "db/z.json"]);
      expect((await listAll(s)).map((o) => o.key)).toEqual(["db/a.json", "db/z.json"]);
    });

    test("a put in progress is a partial write until it completes; then none remain", async () => {
      const s = await t.fresh();
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const data = bytesOf(LARGE, 9);
      let offset = 0;
      const source = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (offset >= data.byteLength) return c.close();
          if (offset >= data.byteLength - 1024 * 1024) await released;
          c.enqueue(data.subarray(offset, (offset += 1024 * 1024)));
        },
      });
      const put = s.put("db/slow", source);
      const deadline = Date.now() + 10_000;
      let partial: PartialWrite[] = [];
      while (partial.length === 0 && Date.now() < deadline) {
        partial = await collect(s.listPartialWrites("db/"));
        if (partial.length === 0) await Bun.sleep(20);
      }
      expect(partial).toHaveLength(1);
      expect(Math.abs(partial[0]!.startedAt.getTime() - Date.now())).toBeLessThan(60_000);
      expect(await collect(s.listPartialWrites("other/"))).toEqual([]);
      expect(await s.stat("db/slow")).toBeNull();
      release();
      await put;
      expect(await collect(s.listPartialWrites(""))).toEqual([]);
      expect((await s.stat("db/slow"))?.size).toBe(LARGE);
    });

    test("an abandoned write is listed and can be aborted", async () => {
      const s = await t.fresh();
      await s.put("db/real", encoder.encode("complete"));
      await t.abandonWrite(s, "db/abandoned");
      const partial = await collect(s.listPartialWrites("db/"));
      expect(partial).toHaveLength(1);
      await s.abortPartialWrite(partial[0]!);
      await s.abortPartialWrite(partial[0]!); // already gone: not an error
      expect(await collect(s.listPartialWrites(""))).toEqual([]);
      expect((await listAll(s)).map((o) => o.key)).toEqual(["db/real"]);
    });

    test("a repository that does not exist: StorageUnavailableError from check, get, stat and list", async () => {
      const s = await t.missing();
      await expect(s.check()).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(s.get("db/x.json")).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(s.stat("db/x.json")).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(listAll(s)).rejects.toBeInstanceOf(StorageUnavailableError);
    });

    test("create(), where a backend has it, makes a missing repository usable, and removeIfEmpty() takes it away again", async () => {
      const s = await t.missing();
      if (!s.create) {
        // A bucket is never created: nothing to make, and a missing one stays missing.
        expect(s.removeIfEmpty).toBeUndefined();
        await expect(s.check()).rejects.toBeInstanceOf(StorageUnavailableError);
        return;
      }
      await s.create();
      await s.check();
      expect(await listAll(s)).toEqual([]);
      await s.create(); // already there: not an error
      expect(s.removeIfEmpty).toBeDefined();
      await s.removeIfEmpty!();
      await expect(s.check()).rejects.toBeInstanceOf(StorageUnavailableError);
    });
  });
}
