/**
 * The private copy a check reads: a download nothing else writes. Opened read-only and immutable, so
 * SQLite takes no locks and never creates -wal/-shm files beside it.
 */
import { constants, Database } from "bun:sqlite";
import { resolve } from "node:path";

/**
 * Open our own private copy (a download being checked) read-only and immutable: nothing else writes
 * it, so SQLite takes no locks and never creates -wal/-shm files beside it. (Read-only connections to
 * a WAL-mode file would otherwise race each other to create and recover its shared-memory index.)
 */
export function openCopy(path: string): Database {
  const escaped = resolve(path).replace(/[%?#]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return new Database(`file:${escaped}?immutable=1`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI);
}
