/**
 * The source database's own files: its 100-byte header, and the -wal/-shm files beside it. Reads
 * only; a snapshot's consistency is argued in docs/design/snapshot.md.
 */
import { chmodSync, chownSync, closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { VaultError } from "../errors.ts";

export const SQLITE_MAGIC = "SQLite format 3\0";

export interface DatabaseHeader {
  pageSize: number;
  pageCount: number;
  /**
   * Whether SQLite trusts that page count (the change counter matches the version-valid-for number,
   * as in every file SQLite 3.7.0 or later wrote).
   */
  countValid: boolean;
}

/** Throws VaultError (exit 1) unless `path` is an existing, non-empty SQLite database file. */
export function assertSqliteFile(path: string): void {
  let info: ReturnType<typeof statSync>;
  try {
    info = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      throw new VaultError(`database ${path} does not exist`, "check the path; to restore it, run: sqlite-vault restore");
    throw new VaultError(`cannot read database ${path}: ${(error as Error).message}`);
  }
  if (!info.isFile()) throw new VaultError(`${path} is not a file`);
  if (info.size === 0)
    throw new VaultError(
      `${path} is empty: no database has been written there yet, so there is nothing to back up`,
      "check the path, or back up once the application has created its tables",
    );
  const header = readHeader(path, 100);
  if (header.byteLength < 100 || !hasMagic(header))
    throw new VaultError(`${path} is not a SQLite database`, "check the path: the file does not start with the SQLite header");
}

/** Page size and page count from a database file's header (the file must not be in use). */
export function readDatabaseHeader(path: string): DatabaseHeader {
  return parseDatabaseHeader(readHeader(path, 100));
}

/** The header's fields; all zero when it is shorter than 100 bytes. */
export function parseDatabaseHeader(header: Uint8Array): DatabaseHeader {
  if (header.byteLength < 100) return { pageSize: 0, pageCount: 0, countValid: false };
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const raw = view.getUint16(16);
  const pageSize = raw === 1 ? 65536 : raw;
  return { pageSize, pageCount: view.getUint32(28), countValid: view.getUint32(24) === view.getUint32(92) };
}

/** Whether `header` starts with the SQLite file magic. */
export function hasMagic(header: Uint8Array): boolean {
  return new TextDecoder().decode(header.subarray(0, 16)) === SQLITE_MAGIC;
}

/**
 * Whether the file behind `fd` has at least pageSize x pageCount bytes and a header that describes
 * exactly that many pages (not so for a database last written by SQLite before 3.7.0).
 */
export function fileMatches(fd: number, pageSize: number, pageCount: number): boolean {
  if (fstatSync(fd).size < pageSize * pageCount) return false;
  const header = new Uint8Array(100);
  const n = readSync(fd, header, 0, 100, 0);
  const parsed = parseDatabaseHeader(header.subarray(0, n));
  return parsed.countValid && parsed.pageSize === pageSize && parsed.pageCount === pageCount;
}

/** The first `length` bytes of the file at `path` (fewer when it is shorter). */
export function readHeader(path: string, length: number): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const buffer = new Uint8Array(length);
    const n = readSync(fd, buffer, 0, length, 0);
    return buffer.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

const SIDECARS = ["-wal", "-shm"];

/** Which of the database's -wal and -shm files exist now. */
export function existingSidecars(databasePath: string): Set<string> {
  return new Set(SIDECARS.filter((suffix) => statSync(databasePath + suffix, { throwIfNoEntry: false })));
}

/**
 * A read-only connection to a WAL database creates the -wal/-shm files when the application is not
 * running. Run as root, they would then belong to root and lock the application out of its own
 * database; give any file we created the database's owner and mode. (They are never deleted: another
 * process may have opened them meanwhile.)
 */
export function adoptNewSidecars(databasePath: string, before: Set<string>): void {
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
