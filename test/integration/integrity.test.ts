/**
 * The split integrity check (src/integrity.ts) against the single `PRAGMA integrity_check` pass, on
 * real databases with planted damage of each kind: an index whose content no longer matches its
 * table (only the per-table checks can see it; quick_check cannot), a NOT NULL violation, a
 * scrambled b-tree page, and an orphaned page (only the whole-file pass can see it). Each is planted
 * in every table in turn, including the last one the plan runs, and must be found.
 */
import { afterAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { Database } from "bun:sqlite";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { checkIntegrity, planCheck } from "../../src/integrity.ts";
import { removeTempDirs, tempDir } from "../helpers/db.ts";

setDefaultTimeout(60_000);
afterAll(removeTempDirs);

const TABLES = ["accounts", "orders", "notes", "tags"];

/** Four tables of different sizes, each with an index; orders references accounts. */
function createDb(path: string): void {
  const db = new Database(path, { create: true });
  db.run("PRAGMA journal_mode = DELETE");
  db.run("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT)");
  db.run("CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts(id), total INTEGER NOT NULL, note TEXT)");
  db.run("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, score INTEGER)");
  db.run("CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT NOT NULL, weight INTEGER)");
  db.run("CREATE INDEX accounts_email ON accounts(email)");
  db.run("CREATE INDEX orders_account ON orders(account_id, total)");
  db.run("CREATE INDEX notes_score ON notes(score)");
  db.run("CREATE INDEX tags_weight ON tags(weight)");
  db.transaction(() => {
    for (let i = 1; i <= 3000; i++) db.run("INSERT INTO accounts VALUES (?, ?, ?)", [i, `name ${i}`, `user${i}@example.com`]);
    for (let i = 1; i <= 6000; i++) db.run("INSERT INTO orders VALUES (?, ?, ?, ?)", [i, 1 + (i % 3000), i * 7, `order note ${i} `.repeat(3)]);
    for (let i = 1; i <= 1500; i++) db.run("INSERT INTO notes VALUES (?, ?, ?)", [i, `body ${i} `.repeat(10), i % 97]);
    for (let i = 1; i <= 800; i++) db.run("INSERT INTO tags VALUES (?, ?, ?)", [i, `tag-${i}`, i % 13]);
  })();
  db.close();
}

/** The findings of one pragma, or the error it stops with when SQLite gives up on the file. */
function singlePass(path: string, pragma = "integrity_check"): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.query(`PRAGMA ${pragma}`).all() as Record<string, string>[]).map((r) => String(Object.values(r)[0])).filter((v) => v !== "ok");
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
  const result = Bun.spawnSync(["sqlite3", path], { stdin: Buffer.from(`.dbconfig defensive off\nPRAGMA writable_schema = ON;\n${sql}\nPRAGMA writable_schema = OFF;\n`), stderr: "pipe", stdout: "ignore" });
  if (result.exitCode !== 0 || result.stderr.length) throw new Error(`sqlite3 failed: ${result.stderr.toString()}`);
}

const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** Rewrite an index's definition so its stored content no longer matches its table. */
function mismatchIndex(path: string, table: string): void {
  const db = new Database(path, { readonly: true });
  const index = db.query("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?").get(table) as { name: string };
  db.close();
  const otherColumn = { accounts: "name", orders: "note", notes: "body", tags: "label" }[table]!;
  editSchema(path, `UPDATE sqlite_schema SET sql = ${literal(`CREATE INDEX ${index.name} ON ${table}(${otherColumn})`)} WHERE name = ${literal(index.name)};`);
}

/** Declare a column NOT NULL that holds NULLs. */
function nullInNotNull(path: string, table: string): void {
  const db = new Database(path);
  const column = { accounts: "email", orders: "note", notes: "score", tags: "weight" }[table]!;
  db.run(`UPDATE ${table} SET ${column} = NULL WHERE id = 7`);
  const { sql } = db.query("SELECT sql FROM sqlite_schema WHERE name = ?").get(table) as { sql: string };
  db.close();
  editSchema(path, `UPDATE sqlite_schema SET sql = ${literal(sql.replace(new RegExp(`${column} (TEXT|INTEGER)`), `${column} $1 NOT NULL`))} WHERE name = ${literal(table)};`);
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

/** Drop an index from the schema but not from the file: its pages become unreachable. */
function orphanIndex(path: string, table: string): void {
  editSchema(path, `DELETE FROM sqlite_schema WHERE type = 'index' AND tbl_name = ${literal(table)};`);
}

const damages: { label: string; plant: (path: string, table: string) => void; quickSees: boolean }[] = [
  { label: "index content that does not match its table", plant: mismatchIndex, quickSees: false },
  { label: "a NULL in a NOT NULL column", plant: nullInNotNull, quickSees: true },
  { label: "a scrambled b-tree page", plant: scrambleRoot, quickSees: true },
  { label: "pages no b-tree uses", plant: orphanIndex, quickSees: true },
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

  test("the plan covers every table, the whole-file pass, and foreign keys", () => {
    const path = join(tempDir("integrity"), "plan.db");
    createDb(path);
    const plan = planCheck(path, "integrity_check").map((p) => p.sql);
    expect(plan.toSorted()).toEqual(
      ["PRAGMA quick_check", "PRAGMA foreign_key_check('orders')", ...TABLES.map((t) => `PRAGMA integrity_check('${t}')`)].toSorted(),
    );
    // Biggest first: orders (6000 rows, one index) before tags (800 rows).
    expect(plan.indexOf("PRAGMA integrity_check('orders')")).toBeLessThan(plan.indexOf("PRAGMA integrity_check('tags')"));
    expect(planCheck(path, "quick_check").map((p) => p.sql).toSorted()).toEqual(["PRAGMA foreign_key_check('orders')", "PRAGMA quick_check"].toSorted());
  });

  for (const damage of damages) {
    for (const table of TABLES) {
      test(`finds ${damage.label} in ${table}${table === TABLES.at(-1) ? " (the last table)" : ""}`, async () => {
        const path = join(tempDir("integrity"), `${table}.db`);
        createDb(path);
        damage.plant(path, table);
        const single = singlePass(path);
        expect(single.length).toBeGreaterThan(0); // the damage is real
        expect(singlePass(path, "quick_check").length > 0).toBe(damage.quickSees);
        const split = await checkIntegrity(path, "integrity_check");
        expect(split.problems.length).toBeGreaterThan(0);
        // Everything the single pass reports, the split check reports too (up to its 100-finding cap);
        // when SQLite gives up on the file, the statement that stopped is named with the same error.
        if (single.length < 100) for (const problem of single) expect(split.problems.some((p) => p === problem || p.endsWith(`failed: ${problem}`))).toBe(true);
      });
    }
  }

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

  test("a table with an awkward name is checked like any other", async () => {
    const path = join(tempDir("integrity"), "names.db");
    const db = new Database(path, { create: true });
    db.run(`CREATE TABLE "it's ""odd""" (id INTEGER PRIMARY KEY, v TEXT)`);
    db.run(`CREATE INDEX odd_v ON "it's ""odd"""(v)`);
    for (let i = 0; i < 100; i++) db.run(`INSERT INTO "it's ""odd""" (v) VALUES (?)`, [`v${i}`]);
    db.close();
    editSchema(path, `UPDATE sqlite_schema SET sql = 'CREATE INDEX odd_v ON "it''s ""odd"""(id)' WHERE name = 'odd_v';`);
    expect(singlePass(path, "quick_check")).toEqual([]);
    const split = await checkIntegrity(path, "integrity_check");
    expect(split.problems).toEqual(singlePass(path));
  });
});
