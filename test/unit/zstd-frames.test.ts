/**
 * zstd frames (src/pipeline/zstd-frames.ts): the splitter walks frames by their block headers and cuts a
 * stream into exactly its frames, however the stream is chunked, whatever kinds of blocks they hold,
 * and refuses anything it cannot cut safely.
 */
import { describe, expect, test } from "bun:test";
import { frameHeader, MAX_FRAME_OUTPUT, splitFrames } from "../../src/pipeline/zstd-frames.ts";
import { splitAll } from "../helpers/chunks.ts";

const text = (n: number, seed: number): Uint8Array<ArrayBuffer> =>
  new TextEncoder().encode(Array.from({ length: n }, (_, i) => `line ${i * seed} of ${seed}\n`).join(""));
// Compressed blocks (text), raw blocks (random bytes do not compress), RLE blocks (one repeated
// byte), an empty frame, and frames with a content checksum (as the zstd CLI writes them).
// Content sizes of every width: 4 bytes, 2 bytes (stored less 256), 1 byte.
const blocks = [
  text(20_000, 1),
  crypto.getRandomValues(new Uint8Array(300_000)),
  new Uint8Array(400_000).fill(7),
  new Uint8Array(0),
  text(100, 2),
  text(10, 3),
];
const frames = blocks.map((block) => new Uint8Array(Bun.zstdCompressSync(block, { level: 3 })));
const checksummed = blocks.map(
  (block) =>
    new Uint8Array(
      Bun.spawnSync(["zstd", "-3", "-c", "--check", `--stream-size=${block.length}`], { stdin: block, stdout: "pipe" }).stdout,
    ),
);
const whole = new Uint8Array(Buffer.concat(frames));

const split = (bytes: Uint8Array, chunkSize: number, headBytes = 0) => splitAll(splitFrames, bytes, chunkSize, headBytes);

/** The types of the blocks of one frame (0 raw, 1 RLE, 2 compressed), walked by hand. */
function blockTypes(frame: Uint8Array): number[] {
  const header = frameHeader(frame)!;
  const types: number[] = [];
  for (let at = header.length, last = false; !last; ) {
    const h = frame[at]! | (frame[at + 1]! << 8) | (frame[at + 2]! << 16);
    last = (h & 1) === 1;
    types.push((h >> 1) & 3);
    at += 3 + (((h >> 1) & 3) === 1 ? 1 : h >>> 3);
  }
  return types;
}

describe("zstd frames", () => {
  test("each frame states its size; the blocks are of every kind; the CLI reads them as one file", () => {
    for (const [i, frame] of frames.entries()) expect(frameHeader(frame)?.contentSize).toBe(blocks[i]!.length);
    expect(new Set(frames.flatMap(blockTypes))).toEqual(new Set([0, 1, 2]));
    checksummed.forEach((frame, i) => {
      expect(frameHeader(frame)).toMatchObject({ contentSize: blocks[i]!.length, checksum: true });
    });
    const result = Bun.spawnSync(["zstd", "-d", "-c"], { stdin: whole, stdout: "pipe" });
    expect(new Uint8Array(result.stdout)).toEqual(new Uint8Array(Buffer.concat(blocks)));
  });

  test("the splitter gives back exactly the frames, however the stream is cut", async () => {
    for (const stream of [frames, checksummed]) {
      const bytes = new Uint8Array(Buffer.concat(stream));
      for (const [chunkSize, headBytes] of [
        [1, 0],
        [7, 18],
        [4096, 3],
        [bytes.length, 0],
        [bytes.length, bytes.length],
      ] as const) {
        expect(await split(bytes, chunkSize, headBytes)).toEqual(stream);
      }
    }
    expect(await split(new Uint8Array(0), 10)).toEqual([]);
  });

  test("frames that state no size, more than the largest we cut, or need a dictionary are not ours", () => {
    const streamed = new Uint8Array(Bun.spawnSync(["sh", "-c", "cat | zstd -3 -c"], { stdin: text(1000, 1), stdout: "pipe" }).stdout);
    expect(frameHeader(streamed)).toBeNull();
    const big = frames[0]!.slice();
    big[4] = 0b10100000; // single segment, a 4-byte content size
    new DataView(big.buffer).setUint32(5, MAX_FRAME_OUTPUT + 1, true);
    expect(frameHeader(big)).toBeNull();
    const dictionary = frames[0]!.slice();
    dictionary[4]! |= 0x01;
    expect(frameHeader(dictionary)).toBeNull();
    expect(frameHeader(Bun.gzipSync(text(10, 1)))).toBeNull();
  });

  test("a stream that ends inside a frame, a frame that is not ours, or a reserved block is refused", async () => {
    const last = whole.length - frames.at(-1)!.length;
    await expect(split(whole.subarray(0, whole.length - 1), 100)).rejects.toThrow(`the stream ends inside zstd frame ${frames.length}`);
    await expect(split(whole.subarray(0, last + 3), 100)).rejects.toThrow(`the stream ends inside zstd frame ${frames.length}`);
    const streamed = new Uint8Array(Bun.spawnSync(["sh", "-c", "cat | zstd -3 -c"], { stdin: text(1000, 1), stdout: "pipe" }).stdout);
    await expect(split(new Uint8Array(Buffer.concat([frames[0]!, streamed])), 100)).rejects.toThrow(
      `zstd frame 2 does not state a size up to ${MAX_FRAME_OUTPUT} bytes`,
    );
    const reserved = frames[0]!.slice();
    const at = frameHeader(reserved)!.length;
    reserved[at] = (reserved[at]! & ~0b110) | 0b110; // block type 3
    await expect(split(reserved, 100)).rejects.toThrow("zstd frame 1 has a block of the reserved type");
    // Raw blocks of 2 MiB (the most a block can say), never the last: longer than any frame of ours.
    const header = frames[1]!.subarray(0, frameHeader(frames[1]!)!.length);
    const rawBlock = new Uint8Array(3 + 0x1fffff);
    rawBlock.set([0xf8, 0xff, 0xff]); // not last, raw, 0x1fffff bytes
    await expect(split(new Uint8Array(Buffer.concat([header, ...Array(9).fill(rawBlock)])), 1 << 20)).rejects.toThrow(
      /zstd frame 1 is longer than \d+ bytes/,
    );
  });
});
