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
      insertNote.run(`note ${i % 1000}`, `customer ${i} ordered item ${i % 37} for ${(i * 7) % 500} units; status shipped. `.repeat(8), crypto.getRandomValues(new Uint8Array(256)));
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
