/** The sibling files SQLite keeps beside a database. A stale one must never meet a restored file. */
export const SIDECARS = ["-wal", "-shm", "-journal"];
