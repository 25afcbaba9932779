/**
 * The index-content part of `PRAGMA integrity_check(T)` for one big table, split into rowid ranges on
 * separate connections (integrity_check(T) itself cannot be divided). Only for a rowid table whose
 * indexes are all plain BINARY columns; every probe is prepared and its plan checked before any range
 * runs, and any other table keeps integrity_check(T). Why this checks exactly what SQLite's pass
 * checks, point by point: docs/design/integrity.md.
 */
import type { Database } from "bun:sqlite";

/** One range of rows of one table, checked against every index of the table. */
export interface ProbeTask {
  table: string;
  /** Names the task where it fails. */
  label: string;
  /** Selects `r` (the rowid) and one 0/1 column per index, for the rows some index lacks. */
  sql: string;
  /** The indexes, in the order of the scan's flag columns. */
  indexes: string[];
  /** Counts the rows up to a rowid (`?`): SQLite's "row N" is the row's position in the table. */
  ordinalSql: string;
}

export interface TablePlan {
  /** One task per rowid range, covering every possible rowid. */
  ranges: ProbeTask[];
  /** Statements whose rows are findings: the entry counts (unless quick_check makes them), and one per UNIQUE index. */
  statements: string[];
}

interface IndexInfo {
  name: string;
  unique: boolean;
  /** Key columns (not the rowid), with whether each may hold NULL. */
  columns: { name: string; nullable: boolean }[];
}

/** SQLite's findings stop at 100; so does each range. */
const MAX_FINDINGS = 100;
const MIN_ROWID = -(2n ** 63n);
const MAX_ROWID = 2n ** 63n - 1n;

/**
 * The split plan of `table` in `parts` rowid ranges, or null when the table is not one this module
 * checks exactly like SQLite (see above), or when SQLite would not plan a probe as an index search.
 * `countEntries`: a statement counts each index's entries (by default when quick_check does not).
 */
export function planTable(db: Database, table: string, parts: number, countEntries = !quickCheckCountsEntries(db)): TablePlan | null {
  const rowid = rowidName(db, table);
  const indexes = rowid === null ? null : readIndexes(db, table);
  if (rowid === null || indexes === null || indexes.length === 0) return null;
  const t = quoteIdentifier(table);
  // Each index joined to each row by its whole entry: the first rowid term is part of the search key;
  // the second (the unary + keeps it out of the key) compares the rowid as read from the end of the
  // entry found. A row no entry matches has that index's side NULL. (A join, not one NOT EXISTS
  // per index: the same searches for 7-8% less work; GROUP BY keeps a row one row whatever repeats.)
  const joins = indexes.map((index, k) => {
    const i = `i${k}`;
    const keys = index.columns.map((c) => `${i}.${quoteIdentifier(c.name)} IS t.${quoteIdentifier(c.name)}`);
    return `LEFT JOIN ${t} AS ${i} INDEXED BY ${quoteIdentifier(index.name)} ON ${[...keys, `${i}.${rowid} = t.${rowid}`, `+${i}.${rowid} = t.${rowid}`].join(" AND ")}`;
  });
  const missing = indexes.map((_, k) => `i${k}.${rowid} IS NULL`);
  const scan = (lo: bigint, hi: bigint) =>
    `SELECT t.${rowid} AS r, ${missing.map((m, k) => `max(${m}) AS m${k}`).join(", ")} FROM ${t} AS t NOT INDEXED ${joins.join(" ")} ` +
    `WHERE t.${rowid} BETWEEN ${lo} AND ${hi} AND (${missing.join(" OR ")}) GROUP BY t.${rowid} LIMIT ${MAX_FINDINGS}`;
  if (!plansAsSearches(db, scan(MIN_ROWID, MAX_ROWID), indexes)) return null;

  const statements: string[] = [];
  if (countEntries) {
    // sum(1), not count(*): SQLite answers `count(*) FROM t INDEXED BY x` from the table's smallest
    // index, whichever x names. The table's own count is taken once.
    const counts = indexes.map(
      (index) =>
        `SELECT ${quoteLiteral(index.name)} AS name, (SELECT coalesce(sum(1), 0) FROM ${t} AS c INDEXED BY ${quoteIdentifier(index.name)}) AS n`,
    );
    const countSql =
      `WITH r(n) AS MATERIALIZED (SELECT coalesce(sum(1), 0) FROM ${t} AS c NOT INDEXED) ` +
      `SELECT 'wrong # of entries in index ' || e.name AS finding FROM (${counts.join(" UNION ALL ")}) AS e, r WHERE e.n != r.n`;
    if (!plansAsScans(db, countSql, indexes)) return null;
    statements.push(countSql);
  }
  for (const index of indexes.filter((i) => i.unique)) {
    const columns = index.columns.map((c) => quoteIdentifier(c.name));
    const notNull = index.columns.filter((c) => c.nullable).map((c) => `${quoteIdentifier(c.name)} IS NOT NULL`);
    const sql =
      `SELECT ${quoteLiteral(`non-unique entry in index ${index.name}`)} AS finding FROM (SELECT 1 FROM ${t} AS c INDEXED BY ${quoteIdentifier(index.name)}` +
      `${notNull.length ? ` WHERE ${notNull.join(" AND ")}` : ""} GROUP BY ${columns.join(", ")} HAVING count(*) > 1 LIMIT 1)`;
    // The index's own entries (past its NULL keys when it skips them), in its order.
    const read = explain(db, sql)?.find((detail) => / c USING /.test(detail));
    if (read !== `SCAN c USING COVERING INDEX ${index.name}` && !read?.startsWith(`SEARCH c USING COVERING INDEX ${index.name} (`))
      return null;
    statements.push(sql);
  }

  // Counted in the table itself: an index (which may be the damaged one) could answer otherwise.
  const ordinalSql = `SELECT count(*) AS n FROM ${t} NOT INDEXED WHERE ${rowid} <= ?`;
  const names = indexes.map((i) => i.name);
  const ranges = rowidRanges(db, table, rowid, parts).map(([lo, hi]) => ({
    table,
    label: `the index lookups of ${t} rowid ${lo} to ${hi}`,
    sql: scan(lo, hi),
    indexes: names,
    ordinalSql,
  }));
  return { ranges, statements };
}

/** Run one range on `db`: SQLite's findings for the rows of the range that an index lacks. */
export function runProbe(db: Database, task: ProbeTask): string[] {
  const rows = db.query(task.sql).safeIntegers(true).all() as Record<string, bigint>[];
  const ordinal = db.query(task.ordinalSql).safeIntegers(true);
  const findings: string[] = [];
  for (const row of rows) {
    const { n } = ordinal.get(row.r!) as { n: bigint };
    task.indexes.forEach((name, k) => {
      if (row[`m${k}`]) findings.push(`row ${n} missing from index ${name}`);
    });
  }
  return findings;
}

/** A name for the rowid that no column of the table shadows; null for WITHOUT ROWID tables. */
function rowidName(db: Database, table: string): string | null {
  const info = db.query("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?").get(table) as { wr: number } | null;
  if (!info || info.wr) return null;
  const columns = db.query("SELECT name, hidden FROM pragma_table_xinfo(?)").all(table) as { name: string; hidden: number }[];
  if (columns.some((c) => c.hidden === 2 || c.hidden === 3)) return null; // generated columns
  const taken = new Set(columns.map((c) => c.name.toLowerCase()));
  return ["rowid", "_rowid_", "oid"].find((name) => !taken.has(name)) ?? null;
}

/** The table's indexes, or null when one is partial, on an expression or the rowid, or not BINARY. */
function readIndexes(db: Database, table: string): IndexInfo[] | null {
  const list = db.query('SELECT name, "unique" AS u, partial FROM pragma_index_list(?)').all(table) as {
    name: string;
    u: number;
    partial: number;
  }[];
  const notNull = new Map(
    (db.query('SELECT name, "notnull" AS nn FROM pragma_table_info(?)').all(table) as { name: string; nn: number }[]).map((c) => [
      c.name,
      c.nn === 1,
    ]),
  );
  const indexes: IndexInfo[] = [];
  for (const { name, u, partial } of list) {
    if (partial) return null;
    const keys = db.query("SELECT cid, name, coll FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno").all(name) as {
      cid: number;
      name: string | null;
      coll: string | null;
    }[];
    if (keys.length === 0 || keys.some((k) => k.cid < 0 || k.name === null || (k.coll ?? "BINARY").toUpperCase() !== "BINARY")) return null;
    indexes.push({ name, unique: u === 1, columns: keys.map((k) => ({ name: k.name!, nullable: !notNull.get(k.name!) })) });
  }
  return indexes;
}

/** The first SQLite 3 minor version whose quick_check is known to count index entries. */
const QUICK_CHECK_COUNTS_FROM = 54;

/**
 * Whether quick_check counts each index's entries against its table's rows ("wrong # of entries in
 * index"), check (5) of docs/design/integrity.md: the SQLite 3.54 Bun embeds does, Debian 12's 3.40
 * does not. Versions between are not known here, so they count for themselves.
 */
export function quickCheckCountsEntries(db: Database): boolean {
  const { v } = db.query("SELECT sqlite_version() AS v").get() as { v: string };
  const [major = 0, minor = 0] = v.split(".").map(Number);
  return major > 3 || (major === 3 && minor >= QUICK_CHECK_COUNTS_FROM);
}

/**
 * Whether `sql` reads the rows from the table itself, by rowid range (never from an index, which
 * would compare an index with itself), and searches each index for the whole entry, rowid included.
 */
function plansAsSearches(db: Database, sql: string, indexes: IndexInfo[]): boolean {
  const plan = explain(db, sql);
  if (!plan?.includes("SEARCH t USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)")) return false;
  return indexes.every((index, k) => {
    const key = [...index.columns.map((c) => `${c.name}=?`), "rowid=?"].join(" AND ");
    return plan.includes(`SEARCH i${k} USING COVERING INDEX ${index.name} (${key}) LEFT-JOIN`);
  });
}

/** Whether `sql` (the entry counts) scans the table itself once, and each index, whole. */
function plansAsScans(db: Database, sql: string, indexes: IndexInfo[]): boolean {
  const plan = explain(db, sql);
  if (plan?.filter((detail) => detail === "SCAN c").length !== 1) return false;
  return indexes.every((index) => plan.includes(`SCAN c USING COVERING INDEX ${index.name}`));
}

function explain(db: Database, sql: string): string[] | null {
  try {
    return (db.query(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((step) => step.detail);
  } catch {
    return null;
  }
}

/**
 * `parts` consecutive ranges of equal width between the table's smallest and largest rowid, the first
 * and last stretched to the smallest and largest rowid there can be: together they hold every row.
 */
function rowidRanges(db: Database, table: string, rowid: string, parts: number): [bigint, bigint][] {
  const { lo, hi } = db.query(rowidBoundsSql(table, rowid)).safeIntegers(true).get() as {
    lo: bigint | null;
    hi: bigint | null;
  };
  if (lo === null || hi === null || parts <= 1 || hi - lo < BigInt(parts)) return [[MIN_ROWID, MAX_ROWID]];
  const width = (hi - lo + 1n) / BigInt(parts);
  const ranges: [bigint, bigint][] = [];
  for (let k = 0n, start = MIN_ROWID; k < BigInt(parts); k++) {
    const end = k === BigInt(parts) - 1n ? MAX_ROWID : lo + width * (k + 1n) - 1n;
    ranges.push([start, end]);
    start = end + 1n;
  }
  return ranges;
}

/**
 * The table's least and greatest rowid, each read from an end of its b-tree. (One min() beside one
 * max() in a single SELECT is a scan of the whole table: 50 ms of a 500 MiB restore, with a core idle.)
 */
export function rowidBoundsSql(table: string, rowid: string): string {
  const t = quoteIdentifier(table);
  return `SELECT (SELECT min(${rowid}) FROM ${t}) AS lo, (SELECT max(${rowid}) FROM ${t}) AS hi`;
}

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A string literal (pragma arguments are names or literals; a literal takes any table name). */
export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
