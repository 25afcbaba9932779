/**
 * The restored database's SHA-256, read back from the file by a check worker while the download is
 * still writing it (src/check/integrity.ts digestFile, WriteProgress).
 */
import { afterAll, expect, test } from "bun:test";
import { openSync, closeSync, writeSync } from "node:fs";
import { join } from "node:path";
import { digestFile, WriteProgress } from "../../src/check/integrity.ts";
import { removeTempDirs, tempDir } from "../helpers/db.ts";

afterAll(removeTempDirs);

const sha256 = (data: Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function pieces(count: number, size: number): Uint8Array[] {
  return Array.from({ length: count }, (_, k) => new Uint8Array(size).map((_, i) => (i * 31 + k * 7) & 0xff));
}

test("hashes the file as it is written, in pieces, with pauses the reader must wait out", async () => {
  const path = join(tempDir("digest"), "db");
  const fd = openSync(path, "wx");
  const progress = new WriteProgress();
  const digest = digestFile(path, progress);
  const parts = pieces(12, 700_001); // not a multiple of the reader's 1 MiB buffer
  let written = 0;
  for (const part of parts) {
    writeSync(fd, part);
    written += part.byteLength;
    progress.written(written);
    await pause(15);
  }
  closeSync(fd);
  progress.end(true);
  const whole = Buffer.concat(parts);
  expect(await digest).toEqual({ bytes: whole.byteLength, sha256: sha256(whole) });
});

test("reads what is in the file, not what the writer meant to write", async () => {
  const path = join(tempDir("digest"), "db");
  const fd = openSync(path, "wx");
  const progress = new WriteProgress();
  const digest = digestFile(path, progress);
  const [a, b] = pieces(2, 300_000);
  writeSync(fd, a!);
  writeSync(fd, b!, 0, b!.byteLength, 100); // overwrites part of `a`: the file is not a + b
  progress.written(100 + b!.byteLength);
  closeSync(fd);
  progress.end(true);
  const file = Buffer.concat([a!.subarray(0, 100), b!]);
  expect((await digest).sha256).toBe(sha256(file));
});

test("fails when the writer gives up, and when the file is shorter than reported", async () => {
  const dir = tempDir("digest");
  const gaveUp = new WriteProgress();
  const path = join(dir, "a");
  closeSync(openSync(path, "wx"));
  const first = digestFile(path, gaveUp);
  await pause(50);
  gaveUp.end(false);
  await expect(first).rejects.toThrow("gave up");

  const short = new WriteProgress();
  const other = join(dir, "b");
  const fd = openSync(other, "wx");
  writeSync(fd, new Uint8Array(1000));
  closeSync(fd);
  short.written(5000);
  short.end(true);
  await expect(digestFile(other, short)).rejects.toThrow("ends at byte 1000");
});
