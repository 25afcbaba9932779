/**
 * The read transaction a snapshot is taken in, and the descriptors of the database's files that must
 * stay open until its connection closes: closing any descriptor of a file drops every POSIX lock this
 * process holds on it, SQLite's included (docs/design/snapshot.md).
 */
import { DatabaseSync } from "node:sqlite";
import { closeSync, openSync } from "node:fs";
import { adoptNewSidecars, existingSidecars } from "./database-file.ts";
import { readWalIndex, sameWalIndex, type WalIndexRead } from "./wal.ts";

/** How long the copy waits for a writer's lock in rollback-journal mode before giving up. */
export const BUSY_TIMEOUT_MS = 30_000;

/** The read-only connection and the descriptors of the database's files that must outlive it. */
export class HeldConnection {
  db: DatabaseSync | undefined;
  private readonly fds: number[] = [];
  private readonly sidecarsBefore: Set<string>;
  private ended = false;

  constructor(readonly databasePath: string) {
    this.sidecarsBefore = existingSidecars(databasePath);
  }

  /** Open `path` for reading until end(); -1 when it does not exist. */
  open(path: string): number {
    try {
      const fd = openSync(path, "r");
      this.fds.push(fd);
      return fd;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return -1;
      throw error;
    }
  }

  /** Ends the transaction, closes the connection and only then the descriptors. Idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    try {
      if (this.db?.isTransaction) this.db.exec("COMMIT");
    } catch {}
    this.db?.close();
    for (const fd of this.fds) {
      try {
        closeSync(fd);
      } catch {}
    }
    adoptNewSidecars(this.databasePath, this.sidecarsBefore);
  }
}

export interface ReadTransaction {
  journalMode: string;
  sqliteVersion: string;
  pageSize: number;
  pageCount: number;
  /** The -shm file's descriptor in WAL mode, else -1. */
  shm: number;
  walBefore: WalIndexRead;
  walAfter: WalIndexRead;
}

/**
 * Opens the connection on `held` and begins our own read transaction, so that waiting for a writer
 * ends in a clear "locked" error and the snapshot (the file, or the backup step, which reuses an open
 * transaction) is exactly this one. In WAL mode it begins again while a commit came between the
 * WAL-index reads around BEGIN (or our connection created the -shm), three times at most.
 */
export function beginReadTransaction(held: HeldConnection): ReadTransaction {
  const shmPath = `${held.databasePath}-shm`;
  const db = new DatabaseSync(held.databasePath, { readOnly: true });
  held.db = db;
  db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  let shm = held.open(shmPath);
  let walBefore: WalIndexRead = "absent";
  let walAfter: WalIndexRead = "absent";
  for (let attempt = 1; ; attempt++) {
    walBefore = shm >= 0 ? readWalIndex(shm) : "absent";
    db.exec("BEGIN");
    db.prepare("SELECT COUNT(*) FROM sqlite_schema").get();
    if (shm < 0) shm = held.open(shmPath);
    walAfter = shm >= 0 ? readWalIndex(shm) : "absent";
    if (typeof walAfter !== "object" || sameWalIndex(walBefore, walAfter) || attempt === 3) break;
    db.exec("COMMIT");
  }
  const journalMode = String((db.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode);
  const sqliteVersion = String((db.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v);
  const pageSize = Number((db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
  const pageCount = Number((db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count);
  return { journalMode, sqliteVersion, pageSize, pageCount, shm: journalMode === "wal" ? shm : -1, walBefore, walAfter };
}
