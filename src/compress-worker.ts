/**
 * A worker thread of src/codec.ts: compresses one block into a gzip member with libdeflate. Both the
 * member and the block's buffer move back to the JS thread, so no large buffer is ever left as
 * garbage in this worker's heap (its collector would lag, as the main one does).
 */
import type { GzipTask } from "./codec.ts";
import { serveTasks } from "./workers.ts";

serveTasks((task: GzipTask) => {
  const member = Bun.gzipSync(new Uint8Array(task.block), { level: task.level, library: "libdeflate" });
  return { result: member, transfer: [member.buffer as ArrayBuffer, task.block] };
});
