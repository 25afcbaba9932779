/**
 * The integrity check of a restored or verified copy, split across cores.
 *
 * `PRAGMA integrity_check` is one single-threaded pass, and on a restore it is most of the time
 * (about 11 s of a 1 GiB restore here). It is two kinds of work, which SQLite lets us run apart:
 *   - the structure of the whole file: every b-tree page, the freelist, every page used exactly once,
 *     the number of entries of every index, NOT NULL, datatypes and CHECK constraints of every row.
 *     That is `PRAGMA quick_check` (everything but the index-content checks, and fast);
 *   - per table, `PRAGMA integrity_check(TABLE)`: that table's and its indexes' b-trees, every row
 *     against every index (missing or extra entries, UNIQUE), NOT NULL and CHECK constraints.
 *     A table-limited check skips only the whole-file page accounting, which quick_check does.
 * Together they check everything the single pass does. Each runs on its own read-only connection in
 * a worker thread, the biggest tables first (estimated as rows x (1 + indexes)), as many at once as
 * there are cores; `PRAGMA foreign_key_check` runs per table the same way. Small statements share a
 * connection in batches (see batched()): a database of thousands of small tables would otherwise
 * spend its check opening connections, each of which reads the whole schema.
 * One table can be most of the file (an app's log table), and its integrity_check(TABLE) would then
 * be most of the time on one core. Such a table's index lookups are split into rowid ranges instead
 * (src/check/index-check.ts, with the exact argument), when its indexes allow it to be done exactly.
 * A statement SQLite gives up on is a finding; a worker that dies is an internal error. Nothing
 * that did not run is ever reported as "ok", and our own failure is never reported as damage.
 */
import { constants, Database } from "bun:sqlite";
import { closeSync, openSync, readSync } from "node:fs";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { planTable, quoteIdentifier, quoteLiteral, runProbe, type ProbeTask, type TablePlan } from "./index-check.ts";
import { TaskError, WorkerPool } from "../util/workers.ts";

export type IntegrityCheck = "integrity_check" | "quick_check";

/**
 * One job for a worker: a statement whose rows are the findings (a pragma, or a UNIQUE index's
 * duplicate keys), one rowid range of a table's index lookups (src/check/index-check.ts), or the SHA-256 of
 * the whole file.
 */
export type CheckTask =
  | { path: string; sql: string }
  | { path: string; batch: string[] }
  | { path: string; probe: ProbeTask }
  | { path: string; digest: "sha256"; progress: SharedArrayBuffer };

export interface CheckFindings {
  /** Problems: anything but "ok" from the integrity pragmas. */
  problems: string[];
  /** foreign_key_check rows, summarised per table and parent, and the checks the schema would not let run. */
  foreignKeys: string[];
}

/**
 * Open our own private copy (a download being checked) read-only and immutable: nothing else writes
 * it, so SQLite takes no locks and never creates -wal/-shm files beside it. (Read-only connections to
 * a WAL-mode file would otherwise race each other to create and recover its shared-memory index.)
 */
export function openCopy(path: string): Database {
  const escaped = resolve(path).replace(/[%?#]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return new Database(`file:${escaped}?immutable=1`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI);
}

/** Run one task (on its own connection); the rows it returns. Used inside the workers. */
export function runTask(task: CheckTask): Record<string, unknown>[] {
  if ("digest" in task) return [hashFile(task.path, new BigInt64Array(task.progress))];
  if ("batch" in task) return runBatch(task.path, task.batch);
  const db = openCopy(task.path);
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

/**
 * SHA-256 and size of a file that is still being written, read behind its writer: progress[0] is
 * the number of bytes written so far, progress[1] becomes 1 when the writer is done (-1 when it gave
 * up). Every byte is read back from the file, not taken from the writer.
 */
function hashFile(path: string, progress: BigInt64Array): { bytes: number; sha256: string } {
  const hasher = new Bun.CryptoHasher("sha256");
  const buffer = new Uint8Array(1024 * 1024);
  const fd = openSync(path, "r");
  let bytes = 0;
  try {
    for (;;) {
      const state = Atomics.load(progress, 1); // before the count: once done, the count is final
      const written = Number(Atomics.load(progress, 0));
      if (bytes < written) {
        const n = readSync(fd, buffer, 0, Math.min(buffer.byteLength, written - bytes), bytes);
        if (n === 0) throw new Error(`${path} ends at byte ${bytes}, ${written} were written`);
        hasher.update(buffer.subarray(0, n));
        bytes += n;
      } else if (state === 1n) {
        return { bytes, sha256: hasher.digest("hex") };
      } else if (state < 0n) {
        throw new Error("the writer gave up");
      } else {
        Atomics.wait(progress, 0, BigInt(written), 100);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** What the writer of a file tells digestFile(): how far it got, and when it is done. */
export class WriteProgress {
  readonly buffer = new SharedArrayBuffer(16);
  private readonly view = new BigInt64Array(this.buffer);
  written(bytes: number): void {
    Atomics.store(this.view, 0, BigInt(bytes));
    Atomics.notify(this.view, 0);
  }
  end(ok: boolean): void {
    Atomics.store(this.view, 1, ok ? 1n : -1n);
    Atomics.notify(this.view, 0);
  }
}

/**
 * SHA-256 and size of the file at `path`, computed by a check worker that reads it as `progress`
 * reports it written: a restore hashes the database from the file while the download is still
 * writing it, on a core the download leaves partly idle.
 */
export async function digestFile(path: string, progress: WriteProgress, signal?: AbortSignal): Promise<{ bytes: number; sha256: string }> {
  const [row] = await pool().run({ path, digest: "sha256", progress: progress.buffer }, { signal });
  return row as { bytes: number; sha256: string };
}

interface Planned {
  /** The statement (for a range of index lookups: its scan), which also names the task in findings. */
  sql: string;
  kind: "integrity" | "foreign-keys";
  cost: number;
  probe?: ProbeTask;
}

export interface PlanOptions {
  /** Checks that run at once (the worker pool's size). */
  workers?: number;
  /** Tables with fewer rows are never split into ranges. */
  minSplitRows?: number;
  /** "always": split every table that can be, in three ranges; "never": no table (for tests). Default "auto". */
  split?: "auto" | "always" | "never";
  /** "always": every statement but the probes runs in batches, however big (for tests). Default "auto". */
  batch?: "auto" | "always";
}

/**
 * The statements that together make up `check` (and foreign_key_check) for the database at `path`,
 * biggest first. A table whose own check would hold up the others (more than a worker's fair share
 * of the work) has its index lookups split into rowid ranges (src/check/index-check.ts) when it can be.
 */
export function planCheck(path: string, check: IntegrityCheck, options: PlanOptions = {}): Planned[] {
  const workers = options.workers ?? availableParallelism();
  const minSplitRows = options.minSplitRows ?? 100_000;
  const db = openCopy(path);
  try {
    const names = db.query("SELECT name FROM sqlite_schema WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY rootpage").all() as { name: string }[];
    const indexes = db.query("SELECT tbl_name AS t, COUNT(*) AS n FROM sqlite_schema WHERE type = 'index' GROUP BY tbl_name").all() as { t: string; n: number }[];
    const indexCount = new Map(indexes.map((i) => [i.t, i.n]));
    const tables = names.map(({ name }) => {
      const rows = estimateRows(db, name);
      return { name, rows, cost: rows * (1 + (indexCount.get(name) ?? 0)) };
    });
    // The whole-file structure pass reads every page once: about as costly as a scan of every table.
    const totalRows = tables.reduce((sum, t) => sum + t.rows, 0);
    const planned: Planned[] = [{ sql: "PRAGMA quick_check", kind: "integrity", cost: totalRows }];
    const share = (totalRows + tables.reduce((sum, t) => sum + t.cost, 0)) / workers;
    for (const { name, rows, cost } of tables) {
      if (check === "integrity_check") {
        const parts = options.split === "always" ? 3 : options.split !== "never" && workers > 1 && rows >= minSplitRows && cost > share ? Math.min(16, Math.ceil((4 * cost) / share)) : 1;
        const split = parts > 1 ? trySplit(db, name, parts) : null;
        if (split) {
          for (const probe of split.ranges) planned.push({ sql: probe.sql, kind: "integrity", cost: cost / split.ranges.length, probe });
          for (const sql of split.statements) planned.push({ sql, kind: "integrity", cost: rows / 2 });
        } else {
          planned.push({ sql: `PRAGMA integrity_check(${quoteLiteral(name)})`, kind: "integrity", cost });
        }
      }
      if (hasForeignKeys(db, name)) planned.push({ sql: `PRAGMA foreign_key_check(${quoteLiteral(name)})`, kind: "foreign-keys", cost: rows });
    }
    return planned.sort((a, b) => b.cost - a.cost);
  } finally {
    db.close();
  }
}

/** A table that cannot even be planned (damage SQLite stumbles on) keeps integrity_check(TABLE). */
function trySplit(db: Database, table: string, parts: number): TablePlan | null {
  try {
    return planTable(db, table, parts);
  } catch {
    return null;
  }
}

function estimateRows(db: Database, table: string): number {
  try {
    const row = db.query(`SELECT max(rowid) AS n FROM ${quoteIdentifier(table)}`).get() as { n: number | null } | null;
    return Number(row?.n ?? 0);
  } catch {
    return Number.MAX_SAFE_INTEGER; // WITHOUT ROWID: unknown, so first
  }
}

function hasForeignKeys(db: Database, table: string): boolean {
  try {
    return db.query(`SELECT 1 FROM pragma_foreign_key_list(${quoteLiteral(table)}) LIMIT 1`).get() !== null;
  } catch {
    return true; // when in doubt, check
  }
}


/**
 * Run `check` and foreign_key_check on the database at `path`, split across the worker pool. A
 * statement SQLite gives up on (a malformed file) is a problem in the findings, named with its
 * statement. A worker that fails throws VaultError: nothing that did not run counts as passed, and
 * our own failure is never reported as damage. Throws the signal's reason when aborted.
 */
export async function checkIntegrity(path: string, check: IntegrityCheck, signal?: AbortSignal, options?: PlanOptions): Promise<CheckFindings> {
  let planned: Planned[];
  try {
    planned = planCheck(path, check, options);
  } catch (error) {
    return { problems: [`reading the schema failed: ${(error as Error).message}`], foreignKeys: [] };
  }
  // A foreign_key_check SQLite refuses is a fault of the schema ("foreign key mismatch": a parent key
  // without a UNIQUE index, a parent table that does not exist), which SQLite accepts with foreign keys
  // off, its default, and which integrity_check does not look at: a warning, never damage. (Damage
  // that stops it stops the whole-file pass too.)
  const refused = (p: Planned, message: string) =>
    p.kind === "foreign-keys"
      ? { p, rows: [], unchecked: `${p.sql} could not run: ${message}` }
      : { p: { ...p, kind: "integrity" as const }, rows: [{ failed: `${p.probe?.label ?? p.sql} failed: ${message}` }] };
  const results = (
    await Promise.all(
      batched(planned, options?.workers ?? availableParallelism(), options?.batch === "always").map((job) =>
        pool()
          .run(Array.isArray(job) ? { path, batch: job.map((p) => p.sql) } : job.probe ? { path, probe: job.probe } : { path, sql: job.sql }, { signal })
          .then(
            (rows) =>
              Array.isArray(job)
                ? job.map((p, k) => {
                    const result = rows[k] as { rows: Record<string, unknown>[] } | { failed: string };
                    return "failed" in result ? refused(p, result.failed) : { p, rows: result.rows };
                  })
                : [{ p: job, rows }],
            (error) => {
              if (signal?.aborted) throw signal.reason;
              // TaskError: SQLite refused the statement (a finding); anything else is our failure.
              if (!(error instanceof TaskError) || Array.isArray(job)) throw error;
              return [refused(job, (error as Error).message)];
            },
          ),
      ),
    )
  ).flat();
  const problems: string[] = [];
  const foreignKeys = new Map<string, number>();
  const unchecked: string[] = [];
  for (const result of results) {
    const { p, rows } = result;
    if ("unchecked" in result && result.unchecked) unchecked.push(result.unchecked);
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
  return { problems, foreignKeys: [...[...foreignKeys].map(([tables, n]) => `foreign_key_check: ${n} row(s) of ${tables} reference missing parents`), ...unchecked] };
}

/**
 * The planned statements as worker jobs: each big one alone, the small ones (below a sixteenth of a
 * worker's share) together in batches of up to that much (and at most a quarter of a worker's share
 * of the small statements each), so that thousands of small tables cost a few dozen connections, not
 * one each. Probes always run alone.
 */
export function batched(planned: Planned[], workers: number, always = false): (Planned | Planned[])[] {
  const threshold = always ? Infinity : planned.reduce((sum, p) => sum + p.cost, 0) / Math.max(1, workers) / 16;
  const small = (p: Planned) => !p.probe && (p.cost < threshold || threshold === 0);
  // Enough batches for every worker even when the small statements cost next to nothing.
  const most = Math.max(8, Math.ceil(planned.filter(small).length / (Math.max(1, workers) * 4)));
  const jobs: (Planned | Planned[])[] = [];
  let batch: Planned[] = [];
  let cost = 0;
  for (const p of planned) {
    if (!small(p)) {
      jobs.push(p);
      continue;
    }
    if (batch.length && (cost + p.cost > threshold || batch.length >= most)) {
      jobs.push(batch);
      batch = [];
      cost = 0;
    }
    batch.push(p);
    cost += p.cost;
  }
  if (batch.length) jobs.push(batch);
  return jobs;
}

let shared: WorkerPool<CheckTask, Record<string, unknown>[]> | undefined;

function pool(): WorkerPool<CheckTask, Record<string, unknown>[]> {
  return (shared ??= new WorkerPool("check/integrity-worker.ts"));
}
