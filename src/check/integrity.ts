/**
 * The integrity check of a restored or verified copy, split across cores: `PRAGMA quick_check` of the
 * whole file plus `integrity_check(TABLE)` per table (a big table's index lookups in rowid ranges,
 * src/check/index-check.ts), each on its own read-only connection in a worker, in the order
 * src/check/plan.ts chooses; together exactly what the single pass checks (docs/design/integrity.md).
 * A statement SQLite gives up on is a finding; a worker that dies is an internal error: nothing that
 * did not run is reported "ok", and our own failure is never reported as damage.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { availableParallelism } from "node:os";
import { openCopy } from "./copy.ts";
import { runProbe, type ProbeTask } from "./index-check.ts";
import { batched, planCheck, type IntegrityCheck, type Planned, type PlanOptions } from "./plan.ts";
import { TaskError, WorkerPool } from "../util/workers.ts";

export type { IntegrityCheck };

/**
 * One job for a worker: a statement whose rows are the findings (a pragma, or a UNIQUE index's
 * duplicate keys), one rowid range of a table's index lookups (src/check/index-check.ts), or the SHA-256 of
 * the whole file.
 */
export type CheckTask =
  | { path: string; sql: string; mapped?: boolean }
  | { path: string; batch: string[] }
  | { path: string; probe: ProbeTask }
  | { path: string; digest: "sha256" };

export interface CheckFindings {
  /** Problems: anything but "ok" from the integrity pragmas. */
  problems: string[];
  /** foreign_key_check rows, summarised per table and parent, and the checks the schema would not let run. */
  foreignKeys: string[];
}

/** Run one task (on its own connection); the rows it returns. Used inside the workers. */
export function runTask(task: CheckTask): Record<string, unknown>[] {
  if ("digest" in task) return [hashFile(task.path)];
  if ("batch" in task) return runBatch(task.path, task.batch);
  const db = openCopy(task.path, { mapped: "probe" in task || task.mapped === true });
  try {
    if ("probe" in task) return runProbe(db, task.probe).map((finding) => ({ finding }));
    return db.query(task.sql).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

/**
 * Several small statements on one connection (opening one reads the whole schema, which for a
 * database of thousands of tables costs more than checking a small table). Each result is one row
 * per statement: its rows, or the message SQLite refused it with (on a fresh connection after that).
 */
function runBatch(path: string, statements: string[]): Record<string, unknown>[] {
  const results: Record<string, unknown>[] = [];
  let db = openCopy(path);
  try {
    for (const sql of statements) {
      try {
        results.push({ rows: db.query(sql).all() });
      } catch (error) {
        results.push({ failed: (error as Error).message });
        db.close();
        db = openCopy(path);
      }
    }
  } finally {
    db.close();
  }
  return results;
}

/** SHA-256 and size of the file at `path`, as read from it (not as anyone meant to write it). */
function hashFile(path: string): { bytes: number; sha256: string } {
  const hasher = new Bun.CryptoHasher("sha256");
  const buffer = new Uint8Array(1024 * 1024);
  const fd = openSync(path, "r");
  let bytes = 0;
  try {
    for (let n: number; (n = readSync(fd, buffer, 0, buffer.byteLength, bytes)) > 0; bytes += n) hasher.update(buffer.subarray(0, n));
    return { bytes, sha256: hasher.digest("hex") };
  } finally {
    closeSync(fd);
  }
}

/**
 * SHA-256 and size of the file at `path`, computed by a check worker: a restore hashes the database
 * beside its integrity check, on a core the check leaves idle (docs/design/integrity.md).
 */
export async function digestFile(path: string, signal?: AbortSignal): Promise<{ bytes: number; sha256: string }> {
  const [row] = await pool().run({ path, digest: "sha256" }, { signal });
  return row as { bytes: number; sha256: string };
}

/**
 * Run `check` and foreign_key_check on the database at `path`, split across the worker pool. A
 * statement SQLite gives up on (a malformed file) is a problem in the findings, named with its
 * statement. A worker that fails throws VaultError: nothing that did not run counts as passed, and
 * our own failure is never reported as damage. Throws the signal's reason when aborted.
 */
export async function checkIntegrity(
  path: string,
  check: IntegrityCheck,
  signal?: AbortSignal,
  options?: PlanOptions,
): Promise<CheckFindings> {
  let planned: Planned[];
  try {
    planned = planCheck(path, check, options);
  } catch (error) {
    return { problems: [`reading the schema failed: ${(error as Error).message}`], foreignKeys: [] };
  }
  const jobs = batched(planned, options?.workers ?? availableParallelism(), options?.batch === "always");
  const results = (await Promise.all(jobs.map((job) => runJob(path, job, signal)))).flat();
  return summarise(results);
}

/** One planned statement's rows; `unchecked` when it was a foreign_key_check SQLite refused. */
interface JobResult {
  p: Planned;
  rows: Record<string, unknown>[];
  unchecked?: string;
}

/** One job (a statement, a probe, or a batch) on a worker; a batch answers one result per statement. */
async function runJob(path: string, job: Planned | Planned[], signal?: AbortSignal): Promise<JobResult[]> {
  const task: CheckTask = Array.isArray(job)
    ? { path, batch: job.map((p) => p.sql) }
    : job.probe
      ? { path, probe: job.probe }
      : { path, sql: job.sql, mapped: job.mapped };
  let rows: Record<string, unknown>[];
  try {
    rows = await pool().run(task, { signal });
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    // TaskError: SQLite refused the statement (a finding); anything else is our failure.
    if (!(error instanceof TaskError) || Array.isArray(job)) throw error;
    return [refused(job, (error as Error).message)];
  }
  if (!Array.isArray(job)) return [{ p: job, rows }];
  return job.map((p, k) => {
    const result = rows[k] as { rows: Record<string, unknown>[] } | { failed: string };
    return "failed" in result ? refused(p, result.failed) : { p, rows: result.rows };
  });
}

/**
 * A statement SQLite refused. A refused foreign_key_check is a fault of the schema ("foreign key
 * mismatch": a parent key without a UNIQUE index, a parent table that does not exist), which SQLite
 * accepts with foreign keys off, its default, and which integrity_check does not look at: a warning,
 * never damage. (Damage that stops it stops the whole-file pass too.) Any other is a problem.
 */
function refused(p: Planned, message: string): JobResult {
  return p.kind === "foreign-keys"
    ? { p, rows: [], unchecked: `${p.sql} could not run: ${message}` }
    : { p: { ...p, kind: "integrity" as const }, rows: [{ failed: `${p.probe?.label ?? p.sql} failed: ${message}` }] };
}

/** The findings of every statement: distinct problems in order, foreign key rows counted per table and parent. */
function summarise(results: JobResult[]): CheckFindings {
  const problems: string[] = [];
  const foreignKeys = new Map<string, number>();
  const unchecked: string[] = [];
  for (const result of results) {
    const { p, rows } = result;
    if (result.unchecked) unchecked.push(result.unchecked);
    if (p.kind === "integrity") {
      for (const row of rows) {
        const value = String(Object.values(row)[0]);
        if (value !== "ok" && !problems.includes(value)) problems.push(value);
      }
    } else {
      for (const row of rows as { table: string; parent: string }[]) {
        const key = `${row.table} -> ${row.parent}`;
        foreignKeys.set(key, (foreignKeys.get(key) ?? 0) + 1);
      }
    }
  }
  return {
    problems,
    foreignKeys: [
      ...[...foreignKeys].map(([tables, n]) => `foreign_key_check: ${n} row(s) of ${tables} reference missing parents`),
      ...unchecked,
    ],
  };
}

let shared: WorkerPool<CheckTask, Record<string, unknown>[]> | undefined;

function pool(): WorkerPool<CheckTask, Record<string, unknown>[]> {
  return (shared ??= new WorkerPool("check/integrity-worker.ts"));
}
