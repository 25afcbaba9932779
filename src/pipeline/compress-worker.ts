/**
 * A worker thread of src/pipeline/codec.ts: compresses one block into a gzip member with libdeflate, or
 * decompresses one whole member. Every large buffer of a task moves back to the JS thread: the member
 * and the block's buffer (back to its pool), or the output and the member's buffer (freed by the JS
 * thread once used, src/pipeline/decompress.ts). So no large buffer is ever left as garbage in this
 * worker's heap (its collector would lag, as the main one does).
 */
import type { CodecTask, GunzipResult, GzipResult } from "./codec.ts";
import { serveTasks } from "../util/workers.ts";

serveTasks<CodecTask, GzipResult | GunzipResult>((task) => {
  if (task.op === "gunzip") {
    const output = Bun.gunzipSync(new Uint8Array(task.member), { library: "libdeflate" });
    const result: GunzipResult = { output, spent: [task.member] };
    return { result, transfer: [output.buffer as ArrayBuffer, task.member] };
  }
  const member = Bun.gzipSync(new Uint8Array(task.block, 0, task.length), { level: task.level, library: "libdeflate" });
  const result: GzipResult = { member, block: task.block };
  return { result, transfer: [member.buffer as ArrayBuffer, task.block] };
});
