/**
 * A worker thread of src/codec.ts: compresses one block into a gzip member with libdeflate. Both the
 * member and the block's buffer move back to the JS thread (the buffer goes back to its pool), so no
 * large buffer is ever left as garbage in this worker's heap (its collector would lag, as the main
 * one does).
 */
import type { GzipResult, GzipTask } from "./codec.ts";
import { serveTasks } from "./workers.ts";

serveTasks((task: GzipTask) => {
  const member = Bun.gzipSync(new Uint8Array(task.block, 0, task.length), { level: task.level, library: "libdeflate" });
  const result: GzipResult = { member, block: task.block };
  return { result, transfer: [member.buffer as ArrayBuffer, task.block] };
});
