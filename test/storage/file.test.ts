import { afterAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FileStorage, TEMP_MARK } from "../../src/storage/file.ts";
import { openStorage } from "../../src/storage/index.ts";
import { removeTempDirs, tempDir } from "../helpers/db.ts";
import { bytesOf, describeStorageContract } from "./contract.ts";
import { readAll } from "../../src/util/streams.ts";
import { NotFoundError } from "../../src/errors.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

// As openStorage opens it: with the capabilities it adds (removeIfEmpty).
describeStorageContract("local directory", () => ({
  fresh: async () => openStorage(join(tempDir("file-contract"), "repo")),
  missing: async () => openStorage(join(tempDir("file-missing"), "does-not-exist")),
  async abandonWrite(storage, key) {
    const root = (storage as FileStorage).root;
    const dir = join(root, ...key.split("/").slice(0, -1));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${TEMP_MARK}${crypto.randomUUID()}`), "half a write");
  },
  async plant(storage, key) {
    writeFileSync(join((storage as FileStorage).root, ...key.split("/")), "planted");
  },
  cleanup: async () => removeTempDirs(),
}));

describe("local directory specifics", () => {
  afterAll(removeTempDirs);

  test("file:// URLs and plain paths open the same directory", () => {
    const dir = tempDir("file-url");
    expect((openStorage(`file://${dir}`) as FileStorage).root).toBe(dir);
    expect((openStorage(dir) as FileStorage).root).toBe(dir);
  });

  test("an object removed while get() opens it is NotFoundError or reads whole, never a read error midway (a concurrent prune)", async () => {
    const s = new FileStorage(join(tempDir("file-vanish"), "repo"));
    const data = bytesOf(4096, 5);
    const outcomes = { whole: 0, notFound: 0, other: [] as string[] };
    for (let i = 0; i < 400; i++) {
      await s.put(`k/${i}`, data);
      const [got] = await Promise.allSettled([s.get(`k/${i}`).then(readAll), s.delete([`k/${i}`])]);
      if (got.status === "fulfilled") {
        expect(got.value.length).toBe(data.length);
        outcomes.whole++;
      } else if (got.reason instanceof NotFoundError) outcomes.notFound++;
      else outcomes.other.push(String(got.reason));
    }
    expect(outcomes.other).toEqual([]);
    expect(outcomes.notFound).toBeGreaterThan(0); // the race was really run
  });

  test("a FIFO or a directory in an object's place is a missing object: get() neither hangs nor reads it", async () => {
    const root = join(tempDir("file-special"), "repo");
    const s = new FileStorage(root);
    await s.put("db/real", bytesOf(10));
    expect(Bun.spawnSync(["mkfifo", join(root, "db", "fifo")]).exitCode).toBe(0);
    mkdirSync(join(root, "db", "dir"));
    for (const key of ["db/fifo", "db/dir"]) await expect(s.get(key)).rejects.toBeInstanceOf(NotFoundError);
    expect((await s.get("db/real")).size).toBe(10);
  });

  test("a name's directory linked to another disk: list sees what put wrote through the link; a link back up is walked once, a dangling one, one to itself or one to a file holds nothing", async () => {
    const dir = tempDir("file-links");
    const root = join(dir, "repo");
    const elsewhere = join(dir, "other-disk", "app");
    mkdirSync(root);
    mkdirSync(elsewhere, { recursive: true });
    symlinkSync(elsewhere, join(root, "app"));
    symlinkSync(root, join(elsewhere, "loop"));
    symlinkSync(join(dir, "nowhere"), join(root, "dangling"));
    symlinkSync("self", join(root, "self")); // a link to itself: ELOOP
    writeFileSync(join(dir, "secret.json"), "{}");
    mkdirSync(join(root, "db"));
    symlinkSync(join(dir, "secret.json"), join(root, "db", "linked.json")); // put() never makes one: not an object
    const s = new FileStorage(root);
    await s.put("app/a.json", bytesOf(10));
    await s.put("db/b.json", bytesOf(20));
    expect(readdirSync(elsewhere).sort()).toEqual(["a.json", "loop"]);
    const listed = [];
    for await (const o of s.list("")) listed.push([o.key, o.size]);
    expect(listed).toEqual([
      ["app/a.json", 10],
      ["db/b.json", 20],
    ]);
    const abandoned = join(elsewhere, `${TEMP_MARK}x`);
    writeFileSync(abandoned, "half a write");
    const partial = [];
    for await (const w of s.listPartialWrites("app/")) partial.push(w);
    expect(partial.map((w) => w.handle)).toEqual([join(root, "app", `${TEMP_MARK}x`)]);
    await s.abortPartialWrite(partial[0]!);
    expect(readdirSync(elsewhere).sort()).toEqual(["a.json", "loop"]);
  });

  test("deleting the last key of a directory removes the directory, never the root", async () => {
    const root = join(tempDir("file-rmdir"), "repo");
    const s = new FileStorage(root);
    await s.put("db/a", bytesOf(10));
    await s.put("other/b", bytesOf(10));
    await s.delete(["db/a"]);
    expect(readdirSync(root)).toEqual(["other"]);
    await s.delete(["other/b"]);
    expect(readdirSync(root)).toEqual([]);
  });

  test("objects are written 0600 and no temp file remains after a failed put", async () => {
    const root = join(tempDir("file-mode"), "repo");
    const s = new FileStorage(root);
    await s.put("db/a", bytesOf(1000));
    expect(statSync(join(root, "db", "a")).mode & 0o777).toBe(0o600);
    const failing = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytesOf(100));
        c.error(new Error("boom"));
      },
    });
    await expect(s.put("db/b", failing)).rejects.toThrow("boom");
    expect(readdirSync(join(root, "db"))).toEqual(["a"]);
  });
});
