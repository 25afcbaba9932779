/**
 * What a failed snapshot tells the user. SQLite reports its failures as messages only, so each rule
 * matches a message and, where the message alone is ambiguous, looks at the files to confirm.
 */
import { accessSync, constants, existsSync, statfsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { VaultError } from "../errors.ts";
import { readHeader } from "./database-file.ts";
import { BUSY_TIMEOUT_MS } from "./read-transaction.ts";

interface Failure {
  databasePath: string;
  /** The snapshot's temp directory. */
  dir: string;
  message: string;
}

/** A message pattern, and the error it means (null: not this rule after all, try the next). */
type Rule = [pattern: RegExp, explain: (failure: Failure) => VaultError | null];

const RULES: Rule[] = [
  [
    /not a database|file is encrypted/i,
    ({ databasePath, message }) => new VaultError(`${databasePath} is not a SQLite database (${message})`),
  ],
  [
    /disk is full|disk I\/O error|ENOSPC/i,
    ({ databasePath, dir }) =>
      isFull(dir)
        ? new VaultError(
            `no space left for the snapshot of ${databasePath} in ${dir}`,
            "the snapshot needs as much free space as the database: use --tmp-dir on a larger disk",
          )
        : null,
  ],
  [
    /busy|locked/i,
    ({ databasePath, message }) =>
      new VaultError(
        `${databasePath} stayed locked by a writer for ${BUSY_TIMEOUT_MS / 1000}s: ${message}`,
        "retry when the writer is idle",
      ),
  ],
  [
    /readonly/i,
    ({ databasePath }) =>
      (statSync(`${databasePath}-journal`, { throwIfNoEntry: false })?.size ?? 0) > 0
        ? new VaultError(
            `cannot snapshot ${databasePath}: it has a hot journal (a writer stopped in the middle of a transaction), which only a connection that may write can roll back; backups never write to the database`,
            `let the application open it, or run: sqlite3 '${databasePath}' 'PRAGMA quick_check'; then back up`,
          )
        : null,
  ],
  [
    /readonly|unable to open/i,
    ({ databasePath }) => {
      const walDir = unwritableWalDir(databasePath);
      return walDir
        ? new VaultError(
            `cannot snapshot ${databasePath}: it is in WAL mode, and reading it takes its -shm file, which does not exist and which this user cannot create in ${walDir}`,
            `run the backup as a user who can write to ${walDir} (the database's owner), or while the application has the database open`,
          )
        : null;
    },
  ],
];

/**
 * The VaultError (exit 1) for `error`, thrown while a snapshot of `databasePath` was taken into
 * `dir`: the first rule that matches and is confirmed, else "cannot snapshot" with the message.
 */
export function classifySnapshotError(error: unknown, databasePath: string, dir: string): VaultError {
  const failure: Failure = { databasePath, dir, message: (error as Error).message };
  for (const [pattern, explain] of RULES) {
    if (!pattern.test(failure.message)) continue;
    const explained = explain(failure);
    if (explained) return explained;
  }
  return new VaultError(`cannot snapshot ${databasePath}: ${failure.message}`, undefined, { cause: error });
}

/** True when the file system holding `dir` has (almost) no free blocks left. */
function isFull(dir: string): boolean {
  try {
    const fs = statfsSync(dir);
    return fs.bavail * fs.bsize < 1024 * 1024;
  } catch {
    return false;
  }
}

/**
 * The directory of a WAL-mode database whose -shm file is missing and cannot be created there by
 * this user (SQLite then cannot read the database at all), or null.
 */
function unwritableWalDir(databasePath: string): string | null {
  const dir = dirname(databasePath);
  try {
    if (readHeader(databasePath, 20)[18] !== 2 || existsSync(`${databasePath}-shm`)) return null; // not WAL (read version 2), or not missing
  } catch {
    return null;
  }
  try {
    accessSync(dir, constants.W_OK);
    return null;
  } catch {
    return dir;
  }
}
