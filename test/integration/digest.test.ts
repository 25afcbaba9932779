/**
 * The restored database's SHA-256, read back from the file by a check worker beside the integrity
 * check (src/check/integrity.ts digestFile).
 */
import { afterAll, expect, test } from "bun:test";
import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { digestFile } from "../../src/check/integrity.ts";
import { removeTempDirs, tempDir } from "../helpers/db.ts";

afterAll(removeTempDirs);

const sha256 = (data: Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

test("hashes the whole file, whatever its length against the reader's 1 MiB buffer", async () => {
  const dir = tempDir("digest");
  for (const size of [0, 1, 1024 * 1024, 3 * 1024 * 1024 + 7]) {
    const data = new Uint8Array(size).map((_, i) => (i * 31 + size) & 0xff);
    const path = join(dir, `db-${size}`);
    writeFileSync(path, data);
    expect(await digestFile(path)).toEqual({ bytes: size, sha256: sha256(data) });
  }
});

test("reads what is in the file, not what a writer meant to write", async () => {
  const path = join(tempDir("digest"), "db");
  const fd = openSync(path, "wx");
  const a = new Uint8Array(300_000).fill(1);
  const b = new Uint8Array(300_000).fill(2);
  writeSync(fd, a);
  writeSync(fd, b, 0, b.byteLength, 100); // overwrites part of `a`: the file is not a + b
  closeSync(fd);
  expect(await digestFile(path)).toEqual({ bytes: 300_100, sha256: sha256(Buffer.concat([a.subarray(0, 100), b])) });
});

test("fails for a file that is not there", async () => {
  await expect(digestFile(join(tempDir("digest"), "missing"))).rejects.toThrow();
});
