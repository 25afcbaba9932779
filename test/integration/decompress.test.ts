/**
 * decompress() hands out its decompressed pieces for the consumer to free (discard()), so a restore
 * needs no garbage collections to keep its memory flat; what passes through from the source is never
 * freed, whatever the stream.
 */
import { expect, test } from "bun:test";
import { constants, deflateRawSync } from "node:zlib";
import { blockCompressor, mapBlocks } from "../../src/pipeline/codec.ts";
import { decompress, discard, own } from "../../src/pipeline/decompress.ts";
import { frameHeader } from "../../src/pipeline/gzip-members.ts";
import { streamOf } from "../../src/util/streams.ts";
import { chunked } from "../helpers/chunks.ts";

const BLOCK = 2 * 1024 * 1024;
const data = new TextEncoder().encode(Array.from({ length: 200_000 }, (_, i) => `row ${i} ${i % 97}\n`).join(""));

/** `data` in blocks compressed as a backup stores them, as one byte stream in 64 KiB chunks. */
async function stored(compression: "gzip" | "zstd"): Promise<Uint8Array> {
  const blocks = (async function* () {
    for (let at = 0; at < data.length; at += BLOCK) yield data.slice(at, at + BLOCK);
  })();
  return new Uint8Array(await new Response(mapBlocks(blocks, blockCompressor(compression), 2)).arrayBuffer());
}

for (const compression of ["gzip", "zstd"] as const)
  test(`${compression}: every decompressed piece is the consumer's to free, and freeing one leaves the rest intact`, async () => {
    const pieces: Uint8Array[] = [];
    const copies: Uint8Array[] = [];
    for await (const chunk of decompress(streamOf(chunked(await stored(compression), 64 * 1024)), compression)) {
      copies.push(new Uint8Array(chunk)); // a copy (a Buffer's slice() would share its memory)
      pieces.push(chunk);
      expect(discard(chunk)).toBe(true);
      expect(chunk.byteLength).toBe(0);
      expect(discard(chunk)).toBe(false); // once
    }
    expect(pieces.length).toBe(Math.ceil(data.length / BLOCK));
    expect(Buffer.concat(copies).equals(Buffer.from(data))).toBe(true);
  });

test("chunks that pass through (an uncompressed backup, one zstd stream without sizes) are never freed", async () => {
  // One frame that states no size (the zstd CLI reading a pipe), read as one stream.
  const single = Bun.spawnSync(["zstd", "-3", "-c"], { stdin: data, stdout: "pipe" }).stdout;
  for (const [compression, source] of [
    ["none", data],
    ["zstd", new Uint8Array(single)],
  ] as const) {
    let total = 0;
    for await (const chunk of decompress(streamOf(chunked(source, 64 * 1024)), compression)) {
      const before = new Uint8Array(chunk);
      expect(discard(chunk)).toBe(false);
      expect(Buffer.from(chunk).equals(Buffer.from(before))).toBe(true);
      total += chunk.byteLength;
    }
    expect(total).toBe(data.length);
  }
});

test("a piece that is a view into a larger buffer is never freed: other pieces may share that buffer", () => {
  const shared = new ArrayBuffer(8192);
  const view = own(new Uint8Array(shared, 4096, 100).fill(3));
  expect(discard(view)).toBe(false);
  expect(shared.detached).toBe(false);
  expect(new Uint8Array(shared, 0, 100).fill(1)[0]).toBe(1);
  const whole = own(new Uint8Array(100).fill(5));
  expect(discard(whole)).toBe(true);
  expect(whole.byteLength).toBe(0);
});

test("a gzip member whose deflate data runs far past the size it claims (ISIZE) fails at that size, never held whole in memory", async () => {
  // 1 GiB of zeros in one member (about 1 MiB stored) that claims 1 MiB: one flushed deflate block of
  // 1 MiB of zeros 1024 times, then a final empty block (compressing 1 GiB took 5 s). Its CRC is
  // never reached.
  const block = deflateRawSync(new Uint8Array(1024 * 1024), { finishFlush: constants.Z_FULL_FLUSH });
  const trailer = new Uint8Array(8);
  new DataView(trailer.buffer).setUint32(4, 1024 * 1024, true);
  const header = Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff);
  const member = Buffer.concat([header, ...Array<Uint8Array>(1024).fill(block), Uint8Array.of(3, 0), trailer]);
  const framed = Buffer.concat([frameHeader(member), member.subarray(10)]);
  const before = process.memoryUsage.rss();
  const run = async () => {
    for await (const chunk of decompress(streamOf(chunked(framed, 64 * 1024)), "gzip", { parallel: 1 })) discard(chunk);
  };
  await expect(run()).rejects.toThrow();
  expect(process.memoryUsage.rss() - before).toBeLessThan(256 * 1024 * 1024);
});
