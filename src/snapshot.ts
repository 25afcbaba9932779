/**
 * A consistent copy of a live SQLite database: the only place that opens a source database.
 *
 * Method: VACUUM INTO from a read-only connection. Why, measured on a 1 GiB database here:
 * - the online backup API (node:sqlite backup(), ~550 MB/s) restarts from the first page whenever
 *   another connection writes between its steps, so copied in small steps under constant writes it
 *   may never finish; copied in one step it holds one read transaction exactly as VACUUM INTO does.
 * - VACUUM INTO (~300 MB/s) runs as one read transaction, never restarts, and writes a compacted file
 *   without free or half-empty pages: compressed objects came out 12% smaller at about the same total
 *   time on a 1 GiB database, because compression, not the copy, dominates a backup.
 *   scripts/bench-snapshot.ts repeats this on a 164 MiB app-like database that has seen deletes:
 *   VACUUM INTO 0.40 s -> 139 MiB -> 49.6 MiB gzipped, 1.63 s in all; backup API 0.32 s -> 164 MiB
 *   -> 56.0 MiB gzipped, 1.67 s in all (11% larger objects for no gain in time).
 * The source is opened read-only and never checkpointed or written: in WAL mode writers carry on
 * during the copy; in rollback-journal mode they wait only for the copy to the local temp file (a
 * busy timeout covers that), never for the upload.
 */
import { Database } from "bun:sqlite";
import { chmodSync, chownSync, closeSync, openSync, readSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import type { RunContext } from "./context.ts";
import { removeStale, tempTag } from "./stale.ts";
import { walResetWarning } from "./version.ts";
import { VaultError } from "./errors.ts";

export interface Snapshot {
  /** The private temp directory holding the copy (registered with the context's temp registry). */
  dir: string;
  /** The copy itself, inside dir. */
  path: string;
  bytes: number;
  pageSize: number;
  pageCount: number;
  journalMode: string;
  sqliteVersion: string;
}

const SQLITE_MAGIC = "SQLite format 3\0";
const SNAPSHOT_PREFIX = "sqlite-vault-snapshot-";
/** How long the copy waits for a writer's lock in rollback-journal mode before giving up. */
const BUSY_TIMEOUT_MS = 30_000;

/** Throws VaultError (exit 1) unless `path` is an existing, non-empty SQLite database file. */
export function assertSqliteFile(path: string): void {
  let info;
  try {
    info = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new VaultError(`database ${path} does not exist`, "check the path; to restore it, run: sqlite-vault restore");
    throw new VaultError(`cannot read database ${path}: ${(error as Error).message}`);
  }
  if (!info.isFile()) throw new VaultError(`${path} is not a file`);
  const header = readHeader(path, 100);
  if (header.byteLength < 100 || new TextDecoder().decode(header.subarray(0, 16)) !== SQLITE_MAGIC)
    throw new VaultError(`${path} is not a SQLite database`, "check the path: the file does not start with the SQLite header");
}

/** Page size and page count from a database file's header (the file must not be in use). */
export function readDatabaseHeader(path: string): { pageSize: number; pageCount: number } {
  const header = readHeader(path, 100);
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const raw = view.getUint16(16);
  const pageSize = raw === 1 ? 65536 : raw;
  return { pageSize, pageCount: view.getUint32(28) };
}

/**
 * Copy `databasePath` into a new 0600 temp file under `tmpDir`. Never modifies the source.
 * Throws VaultError for a missing or non-SQLite file; the temp file is removed on failure.
 */
export async function createSnapshot(databasePath: string, tmpDir: string, ctx: RunContext): Promise<Snapshot> {
  assertSqliteFile(databasePath);
  for (const stale of removeStale(tmpDir, SNAPSHOT_PREFIX)) ctx.log.info(`removed ${stale}, left by a killed run`);
  const dir = ctx.temp.add(await mkdtemp(join(tmpDir, `${SNAPSHOT_PREFIX}${tempTag()}-`)));
  try {
    return copyDatabase(databasePath, dir, ctx);
  } catch (error) {
    ctx.temp.remove(dir);
    throw error;
  }
}

function copyDatabase(databasePath: string, dir: string, ctx: RunContext): Snapshot {
  const path = join(dir, "snapshot.sqlite");
  // VACUUM INTO accepts an existing empty file: create it first so it is 0600 from the start.
  writeFileSync(path, new Uint8Array(0), { mode: 0o600 });
  ctx.signal.throwIfAborted();
  const sidecarsBefore = existingSidecars(databasePath);
  let db: Database | undefined;
  let journalMode = "unknown";
  let sqliteVersion = "unknown";
  try {
    db = new Database(databasePath, { readonly: true });
    db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    journalMode = String((db.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode);
    sqliteVersion = String((db.query("SELECT sqlite_version() AS v").get() as { v: string }).v);
    const warning = walResetWarning(sqliteVersion, journalMode);
    if (warning) ctx.log.warn(warning);
    db.run("VACUUM INTO ?", [path]);
  } catch (error) {
    const message = (error as Error).message;
    if (/not a database|file is encrypted/i.test(message)) throw new VaultError(`${databasePath} is not a SQLite database (${message})`);
    if (/disk is full/i.test(message))
      throw new VaultError(`no space left for the snapshot of ${databasePath} in ${dir}`, "the snapshot needs as much free space as the database: use --tmp-dir on a larger disk");
    if (/busy|locked/i.test(message)) throw new VaultError(`${databasePath} stayed locked by a writer for ${BUSY_TIMEOUT_MS / 1000}s: ${message}`, "retry when the writer is idle");
    throw new VaultError(`cannot snapshot ${databasePath}: ${message}`, undefined, { cause: error });
  } finally {
    db?.close();
    adoptNewSidecars(databasePath, sidecarsBefore);
  }
  ctx.signal.throwIfAborted();
  const bytes = statSync(path).size;
  const { pageSize, pageCount } = readDatabaseHeader(path);
  if (pageSize * pageCount !== bytes) throw new VaultError(`snapshot of ${databasePath} is inconsistent: ${pageCount} pages of ${pageSize} bytes but ${bytes} bytes`);
  return { dir, path, bytes, pageSize, pageCount, journalMode, sqliteVersion };
}

const SIDECARS = ["-wal", "-shm"];

function existingSidecars(databasePath: string): Set<string> {
  return new Set(SIDECARS.filter((suffix) => statSync(databasePath + suffix, { throwIfNoEntry: false })));
}

/**
 * A read-only connection to a WAL database creates the -wal/-shm files when the application is not
 * running. Run as root, they would then belong to root and lock the application out of its own
 * database; give any file we created the database's owner and mode. (They are never deleted: another
 * process may have opened them meanwhile.)
 */
function adoptNewSidecars(databasePath: string, before: Set<string>): void {
  const db = statSync(databasePath, { throwIfNoEntry: false });
  if (!db) return;
  for (const suffix of SIDECARS) {
    if (before.has(suffix)) continue;
    const path = databasePath + suffix;
    const info = statSync(path, { throwIfNoEntry: false });
    if (!info) continue;
    try {
      if (process.getuid?.() === 0 && (info.uid !== db.uid || info.gid !== db.gid)) chownSync(path, db.uid, db.gid);
      chmodSync(path, db.mode & 0o666);
    } catch {}
  }
}

function readHeader(path: string, length: number): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const buffer = new Uint8Array(length);
    const n = readSync(fd, buffer, 0, length, 0);
    return buffer.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}
