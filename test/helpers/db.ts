/** Real SQLite databases for tests: a bank whose total balance is an invariant, and a writer process. */
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ACCOUNTS = 50;
export const INITIAL_BALANCE = 1000;

const dirs: string[] = [];

/** A fresh temp directory, removed by removeTempDirs(). */
export function tempDir(label = "t"): string {
  const dir = mkdtempSync(join(tmpdir(), `sqlite-vault-${label}-`));
  dirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/**
 * Create a bank database: ACCOUNTS accounts with INITIAL_BALANCE each, plus `fillerRows` rows of
 * app-like text and random blobs to give it size (about 1 KiB per row).
 */
export function createBankDb(path: string, options: { journalMode?: "wal" | "delete"; fillerRows?: number } = {}): void {
  const db = new Database(path, { create: true });
  db.run(`PRAGMA journal_mode = ${options.journalMode ?? "wal"}`);
  db.run("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)");
  db.run("CREATE TABLE transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, at TEXT)");
  db.run("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT, data BLOB)");
  db.run("CREATE INDEX notes_title ON notes(title)");
  const insertAccount = db.prepare("INSERT INTO accounts (id, balance) VALUES (?, ?)");
  const insertNote = db.prepare("INSERT INTO notes (title, body, data) VALUES (?, ?, ?)");
  db.transaction(() => {
    for (let i = 1; i <= ACCOUNTS; i++) insertAccount.run(i, INITIAL_BALANCE);
    for (let i = 0; i < (options.fillerRows ?? 0); i++)
      insertNote.run(
        `note ${i % 1000}`,
        `customer ${i} ordered item ${i % 37} for ${(i * 7) % 500} units; status shipped. `.repeat(8),
        crypto.getRandomValues(new Uint8Array(256)),
      );
  })();
  // A prepared statement left unfinalized keeps the connection open after close(), and its WAL would
  // then be checkpointed into the file at some later garbage collection.
  insertAccount.finalize();
  insertNote.finalize();
  db.close();
}

/** Total balance and integrity of a database (opened read-only). */
export function inspectBank(path: string): { total: number; integrity: string; transfers: number } {
  const db = new Database(path, { readonly: true });
  try {
    const total = (db.query("SELECT SUM(balance) AS t FROM accounts").get() as { t: number }).t;
    const integrity = (db.query("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check;
    const transfers = (db.query("SELECT COUNT(*) AS n FROM transfers").get() as { n: number }).n;
    return { total, integrity, transfers };
  } finally {
    db.close();
  }
}

export interface Writer {
  /** Stop the writer; resolves to the number of committed transfers. */
  stop(): Promise<number>;
  /** Resolves once the writer has committed at least n transfers. */
  waitForCommits(n: number): Promise<void>;
}

/**
 * Start a separate process that keeps committing transfers that preserve the total balance.
 * `autocheckpoint`: its WAL auto-checkpoint threshold in pages (1: a checkpoint after every commit).
 */
export function startWriter(path: string, options: { autocheckpoint?: number } = {}): Writer {
  const args = options.autocheckpoint === undefined ? [] : [String(options.autocheckpoint)];
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "writer.ts"), path, ...args], { stdout: "pipe", stderr: "inherit" });
  let commits = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  const done = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      for (const line of decoder.decode(chunk).split("\n")) {
        const n = Number(line.trim());
        if (line.trim() && Number.isFinite(n)) commits = Math.max(commits, n);
      }
      for (const w of waiters.filter((w) => commits >= w.n)) w.resolve();
    }
  })();
  return {
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      await done;
      return commits;
    },
    waitForCommits(n) {
      if (commits >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        waiters.push({ n, resolve });
        setTimeout(() => reject(new Error(`writer made only ${commits} commits`)), 30_000).unref();
      });
    },
  };
}

/**
 * An application process that keeps the database open, and so its WAL: it turns auto-checkpoints
 * off, runs `statements`, and waits until stop(). (In the test's own process, a connection would
 * share SQLite's lock bookkeeping with the snapshot's, and a descriptor closed nearby drops both.)
 */
export async function holdOpen(path: string, statements: string[]): Promise<{ stop(): Promise<void> }> {
  const script = `
    const { Database } = require("bun:sqlite");
    const db = new Database(${JSON.stringify(path)});
    db.run("PRAGMA wal_autocheckpoint = 0");
    for (const sql of ${JSON.stringify(statements)}) db.run(sql);
    process.stdout.write("ready\\n");
    process.on("SIGTERM", () => process.exit(0));
    setInterval(() => db.query("SELECT 1").get(), 1000); // (db stays referenced: a collected connection closes)`;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  if (!new TextDecoder().decode(value).includes("ready")) throw new Error("the application did not start");
  return {
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/**
 * Accounts whose balance is not what the transfers table says it must be (INITIAL_BALANCE plus what
 * came in minus what went out): a snapshot that mixed pages of different moments shows some, even
 * where each table alone looks whole. Only for banks that startWriter() alone has written to.
 */
export function ledgerMismatches(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (
      db
        .query(
          `SELECT COUNT(*) AS n FROM accounts a WHERE a.balance != ${INITIAL_BALANCE}
             + (SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE dst = a.id)
             - (SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE src = a.id)`,
        )
        .get() as { n: number }
    ).n;
  } finally {
    db.close();
  }
}

/**
 * A process that checkpoints the database over and over (PASSIVE, and every few rounds RESTART and
 * TRUNCATE, each giving up at once when a reader is in the way) until stop(), which resolves to
 * how many checkpoints copied frames into the file and how many restarted the WAL.
 */
export function startCheckpointer(path: string): { stop(): Promise<{ copied: number; restarted: number }> } {
  const script = `
    const { Database } = require("bun:sqlite");
    const db = new Database(${JSON.stringify(path)});
    db.run("PRAGMA busy_timeout = 0");
    let copied = 0, restarted = 0, stopping = false;
    process.on("SIGTERM", () => { stopping = true; });
    for (let round = 1; !stopping; round++) {
      const mode = round % 7 === 0 ? "TRUNCATE" : round % 3 === 0 ? "RESTART" : "PASSIVE";
      try {
        const { busy, checkpointed } = db.query("PRAGMA wal_checkpoint(" + mode + ")").get();
        if (checkpointed > 0) copied++;
        if (mode !== "PASSIVE" && busy === 0) restarted++;
      } catch {}
      await Bun.sleep(2);
    }
    db.close();
    process.stdout.write(JSON.stringify({ copied, restarted }));`;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  return {
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      return JSON.parse(await new Response(proc.stdout).text());
    },
  };
}
