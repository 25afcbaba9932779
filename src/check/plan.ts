/**
 * The plan of an integrity check: the statements that together make up `PRAGMA integrity_check` (or
 * quick_check) and foreign_key_check, each for its own connection on a worker, biggest first
 * (estimated as rows x (1 + indexes)).
 * Small statements share a connection in batches (batched()): a database of thousands of small tables
 * would otherwise spend its check opening connections, each of which reads the whole schema. One table
 * can be most of the file (an app's log table), and its integrity_check(TABLE) would then be most of
 * the time on one core: with SPLIT_MIN_WORKERS cores or more, such a table's index lookups are split
 * into rowid ranges instead (src/check/index-check.ts, with the exact argument), when its indexes
 * allow it to be done exactly.
 */
import type { Database } from "bun:sqlite";
import { availableParallelism } from "node:os";
import { openCopy } from "./copy.ts";
import { planTable, quoteIdentifier, quoteLiteral, type ProbeTask, type TablePlan } from "./index-check.ts";

export type IntegrityCheck = "integrity_check" | "quick_check";

/**
 * Fewest cores for splitting a big table's index lookups into rowid ranges: on 2 cores a restore with
 * them took 5-11% less time than with one integrity_check per table, for 5-12% more CPU
 * (docs/design/integrity.md).
 */
export const SPLIT_MIN_WORKERS = 2;

export interface Planned {
  /** The statement (for a range of index lookups: its scan), which also names the task in findings. */
  sql: string;
  kind: "integrity" | "foreign-keys";
  cost: number;
  probe?: ProbeTask;
  /**
   * Read through a map of the file (src/check/copy.ts): the statements that look pages up again and
   * again. A statement that reads each page once (quick_check, foreign keys) does not: each map's
   * pages count in the resident set once more.
   */
  mapped?: boolean;
}

export interface PlanOptions {
  /** Checks that run at once (the worker pool's size). */
  workers?: number;
  /** Tables with fewer rows are never split into ranges. */
  minSplitRows?: number;
  /**
   * "whole": one `PRAGMA integrity_check`; "never": quick_check and integrity_check per table;
   * "always": also every table that can be, in three ranges (for tests). Default "auto": per table,
   * and from SPLIT_MIN_WORKERS workers on a big table in ranges.
   */
  split?: "auto" | "whole" | "always" | "never";
  /** "always": every statement but the probes runs in batches, however big (for tests). Default "auto". */
  batch?: "auto" | "always";
  /** Count a split table's index entries with a statement of its own; by default only when quick_check does not. */
  countEntries?: boolean;
}

/**
 * The statements that together make up `check` (and foreign_key_check) for the database at `path`,
 * biggest first. A table whose own check would hold up the others (more than a worker's fair share
 * of the work) has its index lookups split into rowid ranges (src/check/index-check.ts) when it can be.
 */
export function planCheck(path: string, check: IntegrityCheck, options: PlanOptions = {}): Planned[] {
  const workers = options.workers ?? availableParallelism();
  const minSplitRows = options.minSplitRows ?? 100_000;
  const whole = check === "quick_check" || options.split === "whole";
  const split = (options.split ?? "auto") === "auto" && workers < SPLIT_MIN_WORKERS ? "never" : options.split;
  const db = openCopy(path);
  try {
    const names = db
      .query("SELECT name FROM sqlite_schema WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY rootpage")
      .all() as { name: string }[];
    const indexes = db.query("SELECT tbl_name AS t, COUNT(*) AS n FROM sqlite_schema WHERE type = 'index' GROUP BY tbl_name").all() as {
      t: string;
      n: number;
    }[];
    const indexCount = new Map(indexes.map((i) => [i.t, i.n]));
    const tables = names.map(({ name }) => {
      const rows = estimateRows(db, name);
      return { name, rows, cost: rows * (1 + (indexCount.get(name) ?? 0)) };
    });
    // The whole-file structure pass reads every page once: about as costly as a scan of every table.
    const totalRows = tables.reduce((sum, t) => sum + t.rows, 0);
    if (whole) return planWhole(db, check, tables, totalRows);
    return planTables(db, tables, totalRows, workers, minSplitRows, split, options.countEntries);
  } finally {
    db.close();
  }
}

type TableCost = { name: string; rows: number; cost: number };

/** quick_check, and integrity_check per table: a big table's index lookups in rowid ranges when it can be. */
function planTables(
  db: Database,
  tables: TableCost[],
  totalRows: number,
  workers: number,
  minSplitRows: number,
  split?: string,
  countEntries?: boolean,
): Planned[] {
  const planned: Planned[] = [{ sql: "PRAGMA quick_check", kind: "integrity", cost: totalRows }];
  const share = (totalRows + tables.reduce((sum, t) => sum + t.cost, 0)) / workers;
  for (const { name, rows, cost } of tables) {
    const parts =
      split === "always"
        ? 3
        : split !== "never" && workers > 1 && rows >= minSplitRows && cost > share
          ? Math.min(16, Math.ceil((4 * cost) / share))
          : 1;
    const ranges = parts > 1 ? trySplit(db, name, parts, countEntries) : null;
    if (ranges) {
      for (const probe of ranges.ranges)
        planned.push({ sql: probe.sql, kind: "integrity", cost: cost / ranges.ranges.length, probe, mapped: true });
      for (const sql of ranges.statements) planned.push({ sql, kind: "integrity", cost: rows / 2 });
    } else {
      planned.push({ sql: `PRAGMA integrity_check(${quoteLiteral(name)})`, kind: "integrity", cost, mapped: true });
    }
    if (hasForeignKeys(db, name))
      planned.push({ sql: `PRAGMA foreign_key_check(${quoteLiteral(name)})`, kind: "foreign-keys", cost: rows });
  }
  return planned.sort((a, b) => b.cost - a.cost);
}

/** One whole-file pass, and foreign_key_check per table beside it. */
function planWhole(db: Database, check: IntegrityCheck, tables: TableCost[], totalRows: number): Planned[] {
  const cost = totalRows + (check === "integrity_check" ? tables.reduce((sum, t) => sum + t.cost, 0) : 0);
  const planned: Planned[] = [{ sql: `PRAGMA ${check}`, kind: "integrity", cost, mapped: check === "integrity_check" }];
  for (const { name, rows } of tables)
    if (hasForeignKeys(db, name))
      planned.push({ sql: `PRAGMA foreign_key_check(${quoteLiteral(name)})`, kind: "foreign-keys", cost: rows });
  return planned.sort((a, b) => b.cost - a.cost);
}

/** A table that cannot even be planned (damage SQLite stumbles on) keeps integrity_check(TABLE). */
function trySplit(db: Database, table: string, parts: number, countEntries?: boolean): TablePlan | null {
  try {
    return planTable(db, table, parts, countEntries);
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
