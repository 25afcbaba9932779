/**
 * The split integrity check (src/check/integrity.ts, src/check/index-check.ts) against the single
 * `PRAGMA integrity_check` pass, on real databases with planted damage of each kind: an index whose
 * content no longer matches its table and a UNIQUE index holding a key twice (only the index checks
 * can see those; quick_check cannot), a row missing from its index, a NOT NULL violation, a
 * scrambled b-tree page, and an orphaned page (only the whole-file pass can see it). Each is planted
 * in every table in turn, including the last one the plan runs, and must be found with SQLite's own
 * words: both with one integrity_check(TABLE) per table and with every table's index lookups split
 * into rowid ranges.
 */
import { afterAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { Database } from "bun:sqlite";
import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { openCopy } from "../../src/check/copy.ts";
import { checkIntegrity, runTask } from "../../src/check/integrity.ts";
import { quickCheckCountsEntries, rowidBoundsSql } from "../../src/check/index-check.ts";
import { batched, planCheck, type PlanOptions } from "../../src/check/plan.ts";
import { removeTempDirs, tempDir } from "../helpers/db.ts";

setDefaultTimeout(60_000);
afterAll(removeTempDirs);

const TABLES = ["accounts", "orders", "notes", "tags"];

/** Four tables of different sizes, each with an index whose keys repeat; orders references accounts. */
function createDb(path: string): void {
  const db = new Database(path, { create: true });
  db.run("PRAGMA journal_mode = DELETE");
  db.run("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT)");
  db.run(
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts(id), total INTEGER NOT NULL, note TEXT)",
  );
  db.run("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, score INTEGER)");
  db.run("CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT NOT NULL, weight INTEGER)");
  db.run("CREATE INDEX accounts_email ON accounts(email)");
  db.run("CREATE INDEX orders_account ON orders(account_id, total)");
  db.run("CREATE INDEX notes_score ON notes(score)");
  db.run("CREATE INDEX tags_weight ON tags(weight)");
  db.transaction(() => {
    for (let i = 1; i <= 3000; i++) db.run("INSERT INTO accounts VALUES (?, ?, ?)", [i, `name ${i}`, `user${1 + (i % 2000)}@example.com`]);
    for (let i = 1; i <= 6000; i++)
      db.run("INSERT INTO orders VALUES (?, ?, ?, ?)", [i, 1 + (i % 3000), (i % 50) * 7, `order note ${i} `.repeat(3)]);
    for (let i = 1; i <= 1500; i++) db.run("INSERT INTO notes VALUES (?, ?, ?)", [i, `body ${i} `.repeat(10), i % 97]);
    for (let i = 1; i <= 800; i++) db.run("INSERT INTO tags VALUES (?, ?, ?)", [i, `tag-${i}`, i % 13]);
  })();
  db.close();
}

/** The findings of one pragma, or the error it stops with when SQLite gives up on the file. */
function singlePass(path: string, pragma = "integrity_check"): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.query(`PRAGMA ${pragma}`).all() as Record<string, string>[])
      .map((r) => String(Object.values(r)[0]))
      .filter((v) => v !== "ok");
  } catch (error) {
    return [(error as Error).message];
  } finally {
    db.close();
  }
}

/**
 * Edit the schema behind SQLite's back, as damage does. bun:sqlite runs in defensive mode, which
 * forbids writable_schema, so this goes through the sqlite3 CLI.
 */
function editSchema(path: string, sql: string): void {
  const result = Bun.spawnSync(["sqlite3", path], {
    stdin: Buffer.from(`.dbconfig defensive off\nPRAGMA writable_schema = ON;\n${sql}\nPRAGMA writable_schema = OFF;\n`),
    stderr: "pipe",
    stdout: "ignore",
  });
  if (result.exitCode !== 0 || result.stderr.length) throw new Error(`sqlite3 failed: ${result.stderr.toString()}`);
}

const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** Rewrite an index's definition so its stored content no longer matches its table. */
function mismatchIndex(path: string, table: string): void {
  const db = new Database(path, { readonly: true });
  const index = db.query("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?").get(table) as { name: string };
  db.close();
  const otherColumn = { accounts: "name", orders: "note", notes: "body", tags: "label" }[table]!;
  editSchema(
    path,
    `UPDATE sqlite_schema SET sql = ${literal(`CREATE INDEX ${index.name} ON ${table}(${otherColumn})`)} WHERE name = ${literal(index.name)};`,
  );
}

function mismatchColumns(path: string, index: string, sql: string): void {
  editSchema(path, `UPDATE sqlite_schema SET sql = ${literal(sql)} WHERE name = ${literal(index)};`);
}

/** Declare a column NOT NULL that holds NULLs. */
function nullInNotNull(path: string, table: string): void {
  const db = new Database(path);
  const column = { accounts: "email", orders: "note", notes: "score", tags: "weight" }[table]!;
  db.run(`UPDATE ${table} SET ${column} = NULL WHERE id = 7`);
  const { sql } = db.query("SELECT sql FROM sqlite_schema WHERE name = ?").get(table) as { sql: string };
  db.close();
  editSchema(
    path,
    `UPDATE sqlite_schema SET sql = ${literal(sql.replace(new RegExp(`${column} (TEXT|INTEGER)`), `${column} $1 NOT NULL`))} WHERE name = ${literal(table)};`,
  );
}

/** Scramble the cell area of the table's root page (its page header survives, so the file opens). */
function scrambleRoot(path: string, table: string): void {
  const db = new Database(path, { readonly: true });
  const { rootpage } = db.query("SELECT rootpage FROM sqlite_schema WHERE name = ?").get(table) as { rootpage: number };
  const pageSize = (db.query("PRAGMA page_size").get() as { page_size: number }).page_size;
  db.close();
  const fd = openSync(path, "r+");
  const junk = new Uint8Array(200).map((_, i) => (i * 37 + 11) & 0xff);
  writeSync(fd, junk, 0, junk.length, (rootpage - 1) * pageSize + 12);
  closeSync(fd);
}

function firstIndex(path: string, table: string, name?: string): { name: string; sql: string; rootpage: number } {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .query("SELECT name, sql, rootpage FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1 AND (?2 IS NULL OR name = ?2)")
      .get(table, name ?? null) as { name: string; sql: string; rootpage: number };
  } finally {
    db.close();
  }
}

/** Add a row while the table's index is hidden from SQLite: the index lacks it. */
function rowMissingFromIndex(path: string, table: string): void {
  const index = firstIndex(path, table);
  const row = {
    accounts: "100000, 'hidden', 'hidden@example.com'",
    orders: "100000, 1, 7, 'hidden'",
    notes: "100000, 'hidden', 5",
    tags: "100000, 'hidden', 5",
  }[table]!;
  editSchema(path, `DELETE FROM sqlite_schema WHERE name = ${literal(index.name)};`);
  editSchema(path, `INSERT INTO ${table} VALUES (${row});`);
  editSchema(
    path,
    `INSERT INTO sqlite_schema VALUES ('index', ${literal(index.name)}, ${literal(table)}, ${index.rootpage}, ${literal(index.sql)});`,
  );
}

/** Delete a row while the table's index is hidden from SQLite: the index keeps an entry for it. */
function entryWithoutRow(path: string, table: string, index = firstIndex(path, table)): void {
  editSchema(path, `DELETE FROM sqlite_schema WHERE name = ${literal(index.name)};`);
  editSchema(path, `DELETE FROM ${table} WHERE id = 7;`);
  editSchema(
    path,
    `INSERT INTO sqlite_schema VALUES ('index', ${literal(index.name)}, ${literal(table)}, ${index.rootpage}, ${literal(index.sql)});`,
  );
}

/** Declare an index UNIQUE whose keys repeat. */
function duplicateUniqueKey(path: string, table: string): void {
  const index = firstIndex(path, table);
  editSchema(
    path,
    `UPDATE sqlite_schema SET sql = ${literal(index.sql.replace("CREATE INDEX", "CREATE UNIQUE INDEX"))} WHERE name = ${literal(index.name)};`,
  );
}

/** Drop an index from the schema but not from the file: its pages become unreachable. */
function orphanIndex(path: string, table: string): void {
  editSchema(path, `DELETE FROM sqlite_schema WHERE type = 'index' AND tbl_name = ${literal(table)};`);
}

/** `splits`: the damaged table still has an index and a readable b-tree, so its lookups can be split. */
const damages: { label: string; plant: (path: string, table: string) => void; quickSees: boolean; splits: boolean }[] = [
  { label: "index content that does not match its table", plant: mismatchIndex, quickSees: false, splits: true },
  { label: "a key held twice in a UNIQUE index", plant: duplicateUniqueKey, quickSees: false, splits: true },
  { label: "a row missing from its index", plant: rowMissingFromIndex, quickSees: true, splits: true },
  // (quick_check counts index entries from SQLite 3.4x on; the split plan counts them itself too.)
  { label: "an index entry whose row is gone", plant: entryWithoutRow, quickSees: true, splits: true },
  { label: "a NULL in a NOT NULL column", plant: nullInNotNull, quickSees: true, splits: true },
  { label: "a scrambled b-tree page", plant: scrambleRoot, quickSees: true, splits: false },
  { label: "pages no b-tree uses", plant: orphanIndex, quickSees: true, splits: false },
];

describe("split integrity check", () => {
  test("an intact database passes, with foreign key violations as findings of their own", async () => {
    const path = join(tempDir("integrity"), "ok.db");
    createDb(path);
    expect(await checkIntegrity(path, "integrity_check")).toEqual({ problems: [], foreignKeys: [] });
    const db = new Database(path);
    db.run("DELETE FROM accounts WHERE id = 5");
    db.close();
    const findings = await checkIntegrity(path, "integrity_check");
    expect(findings.problems).toEqual([]);
    expect(findings.foreignKeys).toEqual(["foreign_key_check: 2 row(s) of orders -> accounts reference missing parents"]);
  });

  test("a check reads its copy through a memory map of the whole file", () => {
    const path = join(tempDir("integrity"), "mapped.db");
    createDb(path);
    const db = openCopy(path, { mapped: true });
    try {
      const { mmap_size } = db.query("PRAGMA mmap_size").get() as { mmap_size: number };
      expect(mmap_size).toBe(Bun.file(path).size);
    } finally {
      db.close();
    }
  });

  test("on one core no table's lookups are split into ranges; from two cores the biggest table's are, and every statement that looks pages up reads through a map", () => {
    const path = join(tempDir("integrity"), "per-table.db");
    createDb(path);
    const perTable = ["PRAGMA quick_check", "PRAGMA foreign_key_check('orders')", ...TABLES.map((t) => `PRAGMA integrity_check('${t}')`)];
    const plan = planCheck(path, "integrity_check", { workers: 1, minSplitRows: 0 });
    expect(plan.map((p) => p.sql).toSorted()).toEqual(perTable.toSorted());
    for (const p of plan) expect([p.sql, p.mapped === true]).toEqual([p.sql, p.sql.startsWith("PRAGMA integrity_check(")]);
    // A table that is most of the work (an app's log table): from two cores its lookups run in ranges.
    const db = new Database(path);
    db.transaction(() => {
      for (let i = 6001; i <= 40_000; i++) db.run("INSERT INTO orders VALUES (?, ?, ?, NULL)", [i, 1 + (i % 3000), i % 50]);
    })();
    db.close();
    for (const workers of [2, 3, 4]) {
      const split = planCheck(path, "integrity_check", { workers, minSplitRows: 0 });
      expect(split.filter((p) => p.probe).length).toBeGreaterThan(1);
      expect(split.some((p) => p.sql === "PRAGMA integrity_check('orders')")).toBe(false);
      for (const p of split)
        expect([p.sql, p.mapped === true]).toEqual([p.sql, p.probe !== undefined || p.sql.startsWith("PRAGMA integrity_check(")]);
    }
    const never = planCheck(path, "integrity_check", { workers: 2, minSplitRows: 0, split: "never" });
    expect(never.map((p) => p.sql).toSorted()).toEqual(perTable.toSorted());
    const whole = planCheck(path, "integrity_check", { workers: 4, split: "whole" });
    expect(whole.map((p) => [p.sql, p.mapped === true])).toEqual([
      ["PRAGMA integrity_check", true],
      ["PRAGMA foreign_key_check('orders')", false],
    ]);
  });

  test("the plan covers every table, the whole-file pass, and foreign keys", () => {
    const path = join(tempDir("integrity"), "plan.db");
    createDb(path);
    const plan = planCheck(path, "integrity_check", { workers: 4 }).map((p) => p.sql);
    expect(plan.toSorted()).toEqual(
      ["PRAGMA quick_check", "PRAGMA foreign_key_check('orders')", ...TABLES.map((t) => `PRAGMA integrity_check('${t}')`)].toSorted(),
    );
    // Biggest first: orders (6000 rows, one index) before tags (800 rows).
    expect(plan.indexOf("PRAGMA integrity_check('orders')")).toBeLessThan(plan.indexOf("PRAGMA integrity_check('tags')"));
    expect(
      planCheck(path, "quick_check")
        .map((p) => p.sql)
        .toSorted(),
    ).toEqual(["PRAGMA foreign_key_check('orders')", "PRAGMA quick_check"].toSorted());
    // A table with more than a worker's share of the work has its index lookups split into ranges
    // (small tables never are, by default); the others keep their own integrity_check.
    expect(planCheck(path, "integrity_check", { workers: 4 }).some((p) => p.probe)).toBe(false);
    const split = planCheck(path, "integrity_check", { workers: 4, minSplitRows: 0 });
    expect(split.filter((p) => p.probe).map((p) => p.probe!.table)).toEqual(Array(6).fill("orders"));
    expect(
      split
        .map((p) => p.sql)
        .filter((sql) => sql.startsWith("PRAGMA integrity_check"))
        .toSorted(),
    ).toEqual(
      TABLES.filter((t) => t !== "orders")
        .map((t) => `PRAGMA integrity_check('${t}')`)
        .toSorted(),
    );
    expect(planCheck(path, "integrity_check", { workers: 1, minSplitRows: 0 }).some((p) => p.probe)).toBe(false);
  });

  test("planning the ranges reads the ends of the table's b-tree, never the whole table", () => {
    const path = join(tempDir("integrity"), "bounds.db");
    createDb(path);
    const db = new Database(path, { readonly: true });
    try {
      const plan = (db.query(`EXPLAIN QUERY PLAN ${rowidBoundsSql("orders", "rowid")}`).all() as { detail: string }[]).map((r) => r.detail);
      expect(plan.filter((d) => d.includes(" orders"))).toEqual(["SEARCH orders", "SEARCH orders"]);
    } finally {
      db.close();
    }
  });

  const modes: { label: string; options: PlanOptions }[] = [
    { label: "one whole-file integrity_check", options: { split: "whole" } },
    { label: "one integrity_check per table", options: { split: "never" } },
    { label: "index lookups by rowid range", options: { split: "always" } },
    { label: "index lookups by rowid range, entries counted apart", options: { split: "always", countEntries: true } },
    { label: "statements batched on shared connections", options: { split: "never", batch: "always" } },
  ];
  for (const mode of modes) {
    for (const damage of damages) {
      for (const table of TABLES) {
        test(`${mode.label}: finds ${damage.label} in ${table}${table === TABLES.at(-1) ? " (the last table)" : ""}`, async () => {
          const path = join(tempDir("integrity"), `${table}.db`);
          createDb(path);
          damage.plant(path, table);
          const single = singlePass(path);
          expect(single.length).toBeGreaterThan(0); // the damage is real
          expect(singlePass(path, "quick_check").length > 0).toBe(damage.quickSees);
          if (mode.options.split === "always" && damage.splits) {
            // The damaged table's index lookups really are split (it did not fall back to integrity_check(TABLE)).
            const plan = planCheck(path, "integrity_check", mode.options);
            expect(plan.filter((p) => p.probe?.table === table)).toHaveLength(3);
            expect(plan.some((p) => p.sql === `PRAGMA integrity_check('${table}')`)).toBe(false);
          }
          const split = await checkIntegrity(path, "integrity_check", undefined, mode.options);
          expect(split.problems.length).toBeGreaterThan(0);
          // Everything the single pass reports, the split check reports too (up to its 100-finding cap);
          // when SQLite gives up on the file, the statement that stopped is named with the same error.
          if (single.length < 100)
            for (const problem of single) expect(split.problems.some((p) => p === problem || p.endsWith(`failed: ${problem}`))).toBe(true);
        });
      }
    }
  }

  for (const mode of modes) {
    test(`${mode.label}: a foreign key the schema gets wrong is a warning, not damage`, async () => {
      // SQLite accepts these with foreign keys off (its default), and integrity_check passes them;
      // foreign_key_check refuses to run. Such a database must still restore.
      const path = join(tempDir("integrity"), "fkschema.db");
      const db = new Database(path, { create: true });
      db.run("CREATE TABLE p (id INTEGER PRIMARY KEY, code TEXT)");
      db.run("CREATE TABLE c (id INTEGER PRIMARY KEY, pcode TEXT REFERENCES p(code))"); // no UNIQUE index on p.code
      db.run("CREATE TABLE d (id INTEGER PRIMARY KEY, x INTEGER REFERENCES gone(id))"); // no such table
      db.run("INSERT INTO p (code) VALUES ('a')");
      db.run("INSERT INTO c (pcode) VALUES ('a')");
      db.run("INSERT INTO d (x) VALUES (1)");
      db.close();
      expect(singlePass(path)).toEqual([]);
      const findings = await checkIntegrity(path, "integrity_check", undefined, mode.options);
      expect(findings.problems).toEqual([]);
      expect(findings.foreignKeys.toSorted()).toEqual([
        `PRAGMA foreign_key_check('c') could not run: foreign key mismatch - "c" referencing "p"`,
        "foreign_key_check: 1 row(s) of d -> gone reference missing parents",
      ]);
    });
  }

  test("thousands of small tables run in a few dozen batches, and a finding in any of them keeps its statement", async () => {
    const path = join(tempDir("integrity"), "many.db");
    const db = new Database(path, { create: true });
    db.transaction(() => {
      for (let i = 0; i < 600; i++) {
        db.run(`CREATE TABLE p${i} (id INTEGER PRIMARY KEY, v TEXT)`);
        db.run(`CREATE INDEX p${i}_v ON p${i}(v)`);
        db.run(`CREATE TABLE c${i} (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p${i}(id))`);
        for (let k = 1; k <= 5; k++) db.run(`INSERT INTO p${i} (v) VALUES (?)`, [`v${k}`]);
        db.run(`INSERT INTO c${i} (p) VALUES (1)`);
      }
      db.run("INSERT INTO c450 (p) VALUES (99)"); // one foreign key violation, in a batched table
    })();
    db.close();
    const planned = planCheck(path, "integrity_check", { workers: 2, split: "never" });
    expect(planned.length).toBe(1 + 1200 + 600);
    const jobs = batched(planned, 2);
    expect(jobs.length).toBeLessThan(40);
    expect(jobs.filter(Array.isArray).flat().length + jobs.filter((j) => !Array.isArray(j)).length).toBe(planned.length);
    // Index content that no longer matches its table, in a table deep inside a batch.
    editSchema(path, `UPDATE sqlite_schema SET sql = 'CREATE INDEX p321_v ON p321(id)' WHERE name = 'p321_v';`);
    const findings = await checkIntegrity(path, "integrity_check", undefined, { workers: 2, split: "never" });
    expect(findings.problems).toEqual(singlePass(path));
    expect(findings.foreignKeys).toEqual(["foreign_key_check: 1 row(s) of c450 -> p450 reference missing parents"]);
  });

  test("checks share the worker pool: stopping one (its busy workers are killed) never strands another", async () => {
    const dir = tempDir("integrity");
    const [a, b] = [join(dir, "a.db"), join(dir, "b.db")];
    createDb(a);
    createDb(b);
    const stop = new AbortController();
    const stopped = checkIntegrity(a, "integrity_check", stop.signal);
    const other = checkIntegrity(b, "integrity_check");
    stop.abort(new Error("stopped"));
    await expect(stopped).rejects.toThrow("stopped");
    expect(await other).toEqual({ problems: [], foreignKeys: [] });
    // And the pool still works afterwards.
    expect(await checkIntegrity(a, "quick_check")).toEqual({ problems: [], foreignKeys: [] });
  }, 20_000);

  test("a stopped check never keeps the process alive while SQLite is still inside its statement", async () => {
    const dir = tempDir("integrity");
    const path = join(dir, "a.db");
    createDb(path);
    // One statement that stays in SQLite for tens of seconds: a terminated worker stops only when it returns.
    const endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) SELECT count(*) FROM c";
    const script = join(dir, "stop.ts");
    writeFileSync(
      script,
      `import { WorkerPool } from ${JSON.stringify(join(import.meta.dir, "../../src/util/workers.ts"))};
const pool = new WorkerPool("check/integrity-worker.ts", 1);
const stop = new AbortController();
pool.run({ path: ${JSON.stringify(path)}, sql: ${JSON.stringify(endless)} }, { signal: stop.signal }).catch((e) => console.log(e.message));
setTimeout(() => stop.abort(new Error("stopped")), 500);
`,
    );
    const proc = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
    const exited = await Promise.race([proc.exited, Bun.sleep(5_000).then(() => "still running")]);
    proc.kill(9);
    expect(exited).toBe(0);
    expect((await new Response(proc.stdout).text()).trim()).toBe("stopped");
  }, 20_000);

  for (const mode of modes) {
    test(`${mode.label}: a table with an awkward name is checked like any other`, async () => {
      const path = join(tempDir("integrity"), "names.db");
      const db = new Database(path, { create: true });
      db.run(`CREATE TABLE "it's ""odd""" (id INTEGER PRIMARY KEY, "a ""v""" TEXT)`);
      db.run(`CREATE INDEX "odd ""v""" ON "it's ""odd"""("a ""v""")`);
      for (let i = 0; i < 100; i++) db.run(`INSERT INTO "it's ""odd""" ("a ""v""") VALUES (?)`, [`v${i}`]);
      db.close();
      expect(await checkIntegrity(path, "integrity_check", undefined, mode.options)).toEqual({ problems: [], foreignKeys: [] });
      editSchema(path, `UPDATE sqlite_schema SET sql = 'CREATE INDEX "odd ""v""" ON "it''s ""odd"""(id)' WHERE name = 'odd "v"';`);
      expect(singlePass(path, "quick_check")).toEqual([]);
      const split = await checkIntegrity(path, "integrity_check", undefined, mode.options);
      expect(split.problems).toEqual(singlePass(path));
    });
  }

  test("the split plan counts each index's entries itself where quick_check does not (SQLite before 3.54, as Debian 12's 3.40)", async () => {
    const path = join(tempDir("integrity"), "count.db");
    createDb(path);
    const counting = (options: PlanOptions) =>
      planCheck(path, "integrity_check", { split: "always", ...options }).filter((p) => p.sql.includes("wrong # of entries in index"));
    expect(counting({ countEntries: true })).toHaveLength(TABLES.length);
    for (const p of counting({ countEntries: true })) expect(runTask({ path, sql: p.sql })).toEqual([]);
    // This SQLite's quick_check counts them, so by default the plan leaves them to it.
    const db = new Database(path, { readonly: true });
    expect(quickCheckCountsEntries(db)).toBe(true);
    db.close();
    expect(counting({})).toHaveLength(0);
    entryWithoutRow(path, "notes");
    const findings = counting({ countEntries: true }).flatMap((p) =>
      runTask({ path, sql: p.sql }).map((row) => String(Object.values(row)[0])),
    );
    expect(findings).toEqual(["wrong # of entries in index notes_score"]);
    expect(singlePass(path, "quick_check")).toEqual(["wrong # of entries in index notes_score"]);
    expect((await checkIntegrity(path, "integrity_check", undefined, { split: "always" })).problems).toEqual([
      "wrong # of entries in index notes_score",
    ]);
    // Debian 12's sqlite3 (3.40) answers "ok" to the same quick_check: there the plan's own count is the check.
    const cli = Bun.spawnSync(["sqlite3", path, "SELECT sqlite_version(); PRAGMA quick_check;"], { stdout: "pipe" });
    const [version, quick] = cli.stdout.toString().trim().split("\n");
    if (Number(version!.split(".")[1]) < 54) expect(quick).toBe("ok");
  });

  test("the count covers every index of a table, not only its smallest (count(*) with INDEXED BY counts the smallest)", () => {
    const path = join(tempDir("integrity"), "count-two.db");
    createDb(path);
    const db = new Database(path);
    db.run("CREATE INDEX notes_body ON notes(body)"); // wider than notes_score: never the one count(*) picks
    db.close();
    const counting = () =>
      planCheck(path, "integrity_check", { split: "always", countEntries: true }).filter(
        (p) => p.sql.includes("wrong # of entries in index") && p.sql.includes("notes_body"),
      );
    expect(counting()).toHaveLength(1);
    entryWithoutRow(path, "notes", firstIndex(path, "notes", "notes_body"));
    expect(singlePass(path)).toContain("wrong # of entries in index notes_body");
    const findings = counting().flatMap((p) => runTask({ path, sql: p.sql }).map((row) => String(Object.values(row)[0])));
    expect(findings).toEqual(["wrong # of entries in index notes_body"]);
  });

  test("tables the range split cannot check exactly as SQLite does keep integrity_check(TABLE)", async () => {
    const path = join(tempDir("integrity"), "kinds.db");
    const db = new Database(path, { create: true });
    const kinds: Record<string, [string, string]> = {
      expression: ["(id INTEGER PRIMARY KEY, v TEXT)", "(lower(v))"],
      partial: ["(id INTEGER PRIMARY KEY, v TEXT)", "(v) WHERE v IS NOT NULL"],
      nocase: ["(id INTEGER PRIMARY KEY, v TEXT)", "(v COLLATE NOCASE)"],
      nocase_column: ["(id INTEGER PRIMARY KEY, v TEXT COLLATE NOCASE)", "(v)"],
      without_rowid: ["(id TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID", "(v)"],
      generated: ["(id INTEGER PRIMARY KEY, v TEXT, w TEXT AS (v || 'x'))", "(v)"],
      all_rowid_names_taken: ['(id INTEGER PRIMARY KEY, "rowid" TEXT, "_rowid_" TEXT, "oid" TEXT, v TEXT)', "(v)"],
      // Split: one column shadows "rowid" (the probes say _rowid_), and a UNIQUE index on a nullable column.
      column_named_rowid: ['(id INTEGER PRIMARY KEY, "rowid" TEXT, v TEXT)', '("rowid", v)'],
      unique_nullable: ["(id INTEGER PRIMARY KEY, v TEXT UNIQUE)", "(v, id)"],
    };
    for (const [name, [columns, index]] of Object.entries(kinds)) {
      db.run(`CREATE TABLE ${name} ${columns}`);
      db.run(`CREATE INDEX ${name}_index ON ${name}${index}`);
      for (let i = 1; i <= 50; i++) {
        if (name === "without_rowid") db.run(`INSERT INTO ${name} (id, v) VALUES (?, ?)`, [`k${i}`, `V${i % 7}`]);
        else if (name === "all_rowid_names_taken" || name === "column_named_rowid")
          db.run(`INSERT INTO ${name} ("rowid", v) VALUES (?, ?)`, [`r${i}`, `V${i % 7}`]);
        else if (name === "unique_nullable") db.run(`INSERT INTO ${name} (v) VALUES (?)`, [i % 5 === 0 ? null : `V${i}`]);
        else db.run(`INSERT INTO ${name} (v) VALUES (?)`, [i % 5 === 0 ? null : `V${i % 7}`]);
      }
    }
    db.close();
    const plan = planCheck(path, "integrity_check", { split: "always" });
    const split = new Set(plan.filter((p) => p.probe).map((p) => p.probe!.table));
    expect([...split].toSorted()).toEqual(["column_named_rowid", "unique_nullable"]);
    for (const name of Object.keys(kinds)) expect(plan.some((p) => p.sql === `PRAGMA integrity_check('${name}')`)).toBe(!split.has(name));
    // The UNIQUE index's own statement, which leaves NULL keys alone (SQLite allows any number of them).
    expect(plan.filter((p) => p.sql.includes("non-unique entry in index sqlite_autoindex_unique_nullable_1"))).toHaveLength(1);
    expect(await checkIntegrity(path, "integrity_check", undefined, { split: "always" })).toEqual({ problems: [], foreignKeys: [] });

    mismatchColumns(path, "column_named_rowid_index", 'CREATE INDEX column_named_rowid_index ON column_named_rowid(v, "rowid")');
    const single = singlePass(path);
    expect(single.length).toBeGreaterThan(0);
    expect((await checkIntegrity(path, "integrity_check", undefined, { split: "always" })).problems.toSorted()).toEqual(single.toSorted());
  });
});
