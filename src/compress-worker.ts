/**
 * A worker thread of src/codec.ts: compresses one block into a (framed) gzip member with libdeflate,
 * or decompresses one whole member. Compressing, both the member and the block's buffer move back to
 * the JS thread (the buffer goes back to its pool); decompressing, the output moves. So no large
 * buffer is ever left as garbage in this worker's heap (its collector would lag, as the main one does).
 */
import type { CodecTask, GunzipResult, GzipResult } from "./codec.ts";
import { frameMember } from "./gzip-members.ts";
import { serveTasks } from "./workers.ts";

serveTasks<CodecTask, GzipResult | GunzipResult>((task) => {
  if (task.op === "gunzip") {
    const output = Bun.gunzipSync(new Uint8Array(task.member), { library: "libdeflate" });
    const result: GunzipResult = { output };
    return { result, transfer: [output.buffer as ArrayBuffer] };
  }
  const member = frameMember(Bun.gzipSync(new Uint8Array(task.block, 0, task.length), { level: task.level, library: "libdeflate" }));
  const result: GzipResult = { member, block: task.block };
  return { result, transfer: [member.buffer as ArrayBuffer, task.block] };
});
