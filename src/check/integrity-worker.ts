/** A worker thread of src/check/integrity.ts: runs one check statement (or file digest) at a time. */
import { runTask, type CheckTask } from "./integrity.ts";
import { serveTasks } from "../util/workers.ts";

serveTasks((task: CheckTask) => ({ result: runTask(task) }));
