/** A worker thread of src/integrity.ts: runs one check statement at a time on its own connection. */
import { runTask, type CheckTask } from "./integrity.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<{ id: number; task: CheckTask }>) => {
  const { id, task } = event.data;
  try {
    self.postMessage({ id, rows: runTask(task) });
  } catch (error) {
    self.postMessage({ id, error: (error as Error).message });
  }
};
