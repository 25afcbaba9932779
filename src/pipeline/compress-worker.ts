/**
 * A worker thread of src/pipeline/codec.ts: compresses one block into a gzip member with libdeflate, or
 * decompresses one whole member. Every large buffer of a task moves back to the JS thread: the member
 * and the block's buffer (back to its pool), or the output and the member's buffer (freed by the JS
 * thread once used, src/pipeline/decompress.ts). So no large buffer is ever left as garbage in this
 * worker's heap (its collector would lag, as the main one does).
 */
import type { CodecTask, GunzipResult, GzipResult } from "./codec.ts";
import { serveTasks } from "../util/workers.ts";
import { gunzipSync } from "node:zlib";

serveTasks<CodecTask, GzipResult | GunzipResult>((task) => {
  if (task.op === "gunzip") {
    const member = new Uint8Array(task.member);
    // No more output than the member's ISIZE claims (checked against MAX_MEMBER_OUTPUT when it was cut
    // out): a member whose deflate data runs on far past it is an error, not gigabytes of memory.
    const isize = new DataView(task.member).getUint32(member.byteLength - 4, true);
    const inflated = gunzipSync(member, { maxOutputLength: Math.max(isize, 1) });
    // Its own buffer, to transfer (a small Buffer may be a view of a shared pool).
    const output = inflated.byteOffset === 0 && inflated.buffer.byteLength === inflated.byteLength ? inflated : new Uint8Array(inflated);
    if (output.byteLength !== isize) throw new Error(`a gzip member holds ${output.byteLength} bytes, not the ${isize} it claims`);
    const result: GunzipResult = { output, spent: [task.member] };
    return { result, transfer: [output.buffer as ArrayBuffer, task.member] };
  }
  const member = Bun.gzipSync(new Uint8Array(task.block, 0, task.length), { level: task.level, library: "libdeflate" });
  const result: GzipResult = { member, block: task.block };
  return { result, transfer: [member.buffer as ArrayBuffer, task.block] };
});
