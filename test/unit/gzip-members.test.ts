/**
 * Framed gzip members (src/pipeline/gzip-members.ts): the length in the extra field is what every gzip reader
 * skips, and the splitter cuts a stream into exactly its members, however the stream is chunked, and
 * refuses anything it cannot cut safely.
 */
import { describe, expect, test } from "bun:test";
import { gunzipSync } from "node:zlib";
import { frameHeader, framedLength, MAX_MEMBER_OUTPUT, splitMembers } from "../../src/pipeline/gzip-members.ts";
import { splitAll } from "../helpers/chunks.ts";

const text = (n: number, seed: number): Uint8Array<ArrayBuffer> =>
  new TextEncoder().encode(Array.from({ length: n }, (_, i) => `line ${i * seed} of ${seed}\n`).join(""));
/** A member framed as a backup stores it: the framed header, then the member after its own 10-byte header. */
const frame = (member: Uint8Array) => new Uint8Array(Buffer.concat([frameHeader(member), member.subarray(10)]));
const members = [text(5000, 1), text(3000, 2), text(10, 3)].map((block) => ({
  block,
  member: frame(Bun.gzipSync(block, { level: 5, library: "libdeflate" })),
}));
const whole = new Uint8Array(Buffer.concat(members.map((m) => m.member)));

const split = (bytes: Uint8Array, chunkSize: number, headBytes = 0) => splitAll(splitMembers, bytes, chunkSize, headBytes);

describe("framed gzip members", () => {
  test("a framed member says its own length, and gzip readers skip the field", () => {
    for (const { block, member } of members) {
      expect(framedLength(member)).toBe(member.length);
      expect(new Uint8Array(gunzipSync(member))).toEqual(block);
      expect(new Uint8Array(Bun.gunzipSync(member as Uint8Array<ArrayBuffer>, { library: "libdeflate" }))).toEqual(block);
    }
    const result = Bun.spawnSync(["gunzip", "-c"], { stdin: whole, stdout: "pipe" });
    expect(new Uint8Array(result.stdout)).toEqual(new Uint8Array(Buffer.concat(members.map((m) => m.block))));
    expect(framedLength(Bun.gzipSync(text(10, 1)))).toBeNull();
  });

  test("the splitter gives back exactly the members, however the stream is cut", async () => {
    for (const [chunkSize, headBytes] of [
      [1, 0],
      [7, 20],
      [4096, 3],
      [whole.length, 0],
      [whole.length, whole.length],
    ] as const) {
      expect(await split(whole, chunkSize, headBytes)).toEqual(members.map((m) => m.member));
    }
    expect(await split(new Uint8Array(0), 10)).toEqual([]);
  });

  test("a stream that ends inside a member or its header, an unframed member, or an impossible one is refused", async () => {
    const last = whole.length - members[2]!.member.length;
    await expect(split(whole.subarray(0, whole.length - 1), 100)).rejects.toThrow("the stream ends inside gzip member 3");
    await expect(split(whole.subarray(0, last + 5), 100)).rejects.toThrow("the stream ends inside the header of gzip member 3");
    const unframed = new Uint8Array(Buffer.concat([members[0]!.member, Bun.gzipSync(text(10, 1))]));
    await expect(split(unframed, 100)).rejects.toThrow("gzip member 2 does not carry its length");
    const short = members[0]!.member.slice();
    new DataView(short.buffer).setUint32(16, 10, true);
    await expect(split(short, 100)).rejects.toThrow("gzip member 1 claims an impossible length (10 bytes)");
    const bomb = members[1]!.member.slice();
    new DataView(bomb.buffer).setUint32(bomb.length - 4, MAX_MEMBER_OUTPUT + 1, true);
    await expect(split(new Uint8Array(Buffer.concat([members[0]!.member, bomb])), 100)).rejects.toThrow(
      `gzip member 2 claims to hold ${MAX_MEMBER_OUTPUT + 1} bytes`,
    );
  });
});
