/**
 * A pool of worker threads for work that must leave the JS thread: the integrity check's statements
 * (src/check/integrity.ts) and libdeflate gzip compression (src/pipeline/codec.ts). One pool per worker module, one
 * worker per core, started on first use; an idle worker never keeps the process alive.
 *
 * A task that throws inside the worker rejects with TaskError (the task failed: for the integrity
 * check, SQLite refusing a malformed file). A worker that dies rejects with VaultError (our failure).
 * An aborted task's worker is terminated mid-task; other callers' queued tasks still run.
 *
 * Worker modules are separate entrypoints of the compiled executable (scripts/build.ts) and live
 * beside this file; they answer through serveTasks().
 */
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { VaultError } from "../errors.ts";

/** What postMessage can move to another thread instead of copying. */
type Transfer = ArrayBuffer | MessagePort;

/** The task itself failed inside the worker; the message is the worker's error message. */
export class TaskError extends Error {}

type Reply<R> = { id: number; result: R } | { id: number; error: string };

interface Pending<T, R> {
  id: number;
  task: T;
  transfer: Transfer[];
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

export class WorkerPool<T, R> {
  /** Every worker started and not discarded, busy or idle. */
  private readonly live = new Set<Worker>();
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Pending<T, R>>();
  private readonly queue: Pending<T, R>[] = [];
  private nextId = 1;

  /** `module`: the worker's path under src/, such as "check/integrity-worker.ts". */
  constructor(
    private readonly module: string,
    private readonly size = Math.max(1, availableParallelism()),
  ) {}

  /** Run one task; `transfer` lists buffers of the task moved (not copied) to the worker. */
  run(task: T, options: { signal?: AbortSignal; transfer?: Transfer[] } = {}): Promise<R> {
    const { signal } = options;
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const pending: Pending<T, R> = { id: this.nextId++, task, transfer: options.transfer ?? [], resolve, reject };
      const onAbort = () => {
        const index = this.queue.indexOf(pending);
        if (index >= 0) this.queue.splice(index, 1);
        for (const [worker, job] of this.busy) if (job === pending) this.discard(worker);
        reject(signal?.reason);
        // Other callers' jobs may be waiting for the worker just discarded.
        this.dispatch();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const done =
        <V>(settle: (value: V) => void) =>
        (value: V) => {
          signal?.removeEventListener("abort", onAbort);
          settle(value);
        };
      pending.resolve = done(resolve);
      pending.reject = done(reject);
      this.queue.push(pending);
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length) {
      const worker = this.idle.pop() ?? (this.live.size < this.size ? this.spawn() : undefined);
      if (!worker) return;
      const job = this.queue.shift()!;
      this.busy.set(worker, job);
      worker.ref(); // a busy worker keeps the process alive; an idle one never does
      worker.postMessage({ id: job.id, task: job.task }, job.transfer);
    }
  }

  private spawn(): Worker {
    const worker = new Worker(workerPath(this.module));
    this.live.add(worker);
    worker.onmessage = (event: MessageEvent<Reply<R>>) => {
      if (!this.live.has(worker)) return; // discarded meanwhile
      const job = this.busy.get(worker);
      this.busy.delete(worker);
      worker.unref();
      this.idle.push(worker);
      if (job && job.id === event.data.id) {
        if ("error" in event.data) job.reject(new TaskError(event.data.error));
        else job.resolve(event.data.result);
      }
      this.dispatch();
    };
    worker.onerror = (event: ErrorEvent) => {
      if (!this.live.has(worker)) return;
      const job = this.busy.get(worker);
      this.discard(worker);
      job?.reject(new VaultError(`a worker thread failed (${event.message})`));
      this.dispatch();
    };
    return worker;
  }

  /** Stop a worker (it may be in the middle of a task) and forget it. */
  private discard(worker: Worker): void {
    if (!this.live.delete(worker)) return;
    this.busy.delete(worker);
    const index = this.idle.indexOf(worker);
    if (index >= 0) this.idle.splice(index, 1);
    // A thread inside a long native call (one SQLite statement) stops only when the call returns:
    // it must not keep the process alive meanwhile.
    worker.unref();
    worker.terminate();
  }
}

/**
 * Where a worker module is: `module` is its path under src/. In the compiled executable the worker
 * entrypoints are embedded under the main one's directory (/$bunfs/root/), as they lie under src/,
 * while `__dirname` is the directory the build ran in, baked in at build time: a path under it exists
 * only on the build machine, and a relative one would load a file from the working directory if the
 * embedded one were missing. From source, src/ is this file's parent directory. (`__dirname`, not
 * import.meta: the executable is CommonJS bytecode.)
 */
export function workerPath(module: string, main = Bun.main): string {
  return main.startsWith(EMBEDDED_ROOT) ? join(dirname(main), module) : join(__dirname, "..", module);
}

const EMBEDDED_ROOT = "/$bunfs/";

/**
 * The worker side: answer each task with `handle`'s result (and move the buffers it lists), or with
 * the message of what it threw.
 */
export function serveTasks<T, R>(handle: (task: T) => { result: R; transfer?: Transfer[] }): void {
  const scope = globalThis as unknown as Worker;
  scope.onmessage = (event: MessageEvent<{ id: number; task: T }>) => {
    const { id, task } = event.data;
    let reply: { result: R; transfer?: Transfer[] };
    try {
      reply = handle(task);
    } catch (error) {
      scope.postMessage({ id, error: (error as Error).message });
      return;
    }
    scope.postMessage({ id, result: reply.result }, reply.transfer ?? []);
  };
}
