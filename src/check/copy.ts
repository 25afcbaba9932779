/**
 * The private copy a check reads: a download nothing else writes. Opened read-only and immutable, so
 * SQLite takes no locks and never creates -wal/-shm files beside it.
 */
import { constants, Database } from "bun:sqlite";
import { statSync } from "node:fs";
import { resolve } from "node:path";

/**
 * Open our own private copy (a download being checked) read-only and immutable: nothing else writes
 * it, so SQLite takes no locks and never creates -wal/-shm files beside it. (Read-only connections to
 * a WAL-mode file would otherwise race each other to create and recover its shared-memory index.)
 */
export function openCopy(path: string, options: { mapped?: boolean } = {}): Database {
  const escaped = resolve(path).replace(/[%?#]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const db = new Database(`file:${escaped}?immutable=1`, constants.SQLITE_OPEN_READONLY | constants.SQLITE_OPEN_URI);
  // `mapped`: read through a map, not a read() per page. An integrity check's index lookups revisit
  // pages far more often than any cache holds, and those reads were most of its time
  // (docs/design/integrity.md). The map's hazard, a file cut short under it, cannot arise for a file
  // only we write. Other statements read too little to gain, and each map counts in the RSS.
  if (options.mapped) db.run(`PRAGMA mmap_size = ${statSync(path).size}`);
  return db;
}
