/**
 * A consistent snapshot of a live SQLite database: the only place that opens a source database.
 * Everything happens inside one read transaction on a read-only connection; the source is never
 * written or checkpointed. chooseMethod decides, from what the transaction observed, whether the
 * snapshot is read in place ("file-read", "wal-read") or copied to a private temp file ("file-copy",
 * "backup-api"). Every descriptor of the database's files stays open until the connection closes:
 * closing one drops SQLite's locks. Why each way is consistent: docs/design/snapshot.md.
 */
import { backup, DatabaseSync } from "node:sqlite";
import { closeSync, fstatSync, openSync, read, statSync, writeFileSync } from "node:fs";
import { mkdtemp, open } from "node:fs/promises";
import { promisify } from "node:util";
import { join } from "node:path";
import type { RunContext } from "../context.ts";
import { canWrite, resolveForWrite } from "../local/safe-path.ts";
import { writeFully } from "../local/fsync.ts";
import { removeStale, tempTag } from "../local/stale.ts";
import { walResetWarning } from "../version.ts";
import { VaultError } from "../errors.ts";
import { readBlocks } from "./codec.ts";
import type { BufferPool } from "../util/streams.ts";
import { assertSqliteFile, fileMatches, readDatabaseHeader } from "./database-file.ts";
import { classifySnapshotError } from "./snapshot-errors.ts";
import { beginReadTransaction, HeldConnection, type ReadTransaction } from "./read-transaction.ts";
import { readOverlaid, readSettledWalIndex, sameWalIndex, walOverlay, type WalIndex, type WalIndexRead, type WalOverlay } from "./wal.ts";

export { assertSqliteFile, readDatabaseHeader } from "./database-file.ts";

export interface Snapshot {
  /** The private temp directory (registered with the context's temp registry); empty for "file-read". */
  dir: string;
  /** The copy inside dir, or for "file-read" and "wal-read" the database itself. */
  path: string;
  bytes: number;
  pageSize: number;
  pageCount: number;
  journalMode: string;
  sqliteVersion: string;
  /** How the snapshot was taken (see chooseMethod). */
  method: SnapshotMethod;
  /**
   * The snapshot's `bytes`, in consecutive blocks of the pool's size (see readBlocks); read once,
   * before release().
   */
  blocks(pool: BufferPool, signal?: AbortSignal): AsyncGenerator<Uint8Array>;
  /** Ends what holds the snapshot (for "file-read" and "wal-read", the read transaction). Idempotent. */
  release(): void;
  /**
   * PRAGMA quick_check of exactly this snapshot (in place: on the connection holding it, so nothing
   * is opened or written beside the database), before any block is read. Its findings; [] when sound.
   */
  quickCheck(): string[];
}

export type SnapshotMethod = "file-read" | "wal-read" | "file-copy" | "backup-api";

const SNAPSHOT_PREFIX = "sqlite-vault-snapshot-";

/**
 * Take a snapshot of `databasePath`: a read transaction on the file itself, or a new 0600 temp file
 * under `tmpDir`. Never modifies the source. Throws VaultError for a missing or non-SQLite file; the
 * temp file is removed on failure. The caller must call release() when done reading.
 */
export async function createSnapshot(databasePath: string, givenTmpDir: string, ctx: RunContext): Promise<Snapshot> {
  assertSqliteFile(databasePath);
  const tmpDir = resolveForWrite(givenTmpDir);
  for (const stale of removeStale(tmpDir, SNAPSHOT_PREFIX)) ctx.log.info(`removed ${stale}, left by a killed run`);
  const dir = ctx.temp.add(await mkdtemp(join(tmpDir, `${SNAPSHOT_PREFIX}${tempTag()}-`)));
  try {
    return await takeSnapshot(databasePath, dir, ctx);
  } catch (error) {
    ctx.temp.remove(dir);
    throw error;
  }
}

/** What chooseMethod decides on, observed inside the read transaction. */
export interface SnapshotObservation {
  journalMode: string;
  pageCount: number;
  /** The database file could be opened. */
  sourceOpen: boolean;
  /** It is at least page size x page count bytes long, and its header says so (see fileMatches). */
  fileMatches: boolean;
  /** The WAL-index just before and just after the transaction began ("absent" without a -shm). */
  walBefore: WalIndexRead;
  walAfter: WalIndexRead;
  /** The WAL-index read again once the transaction had begun; "absent" outside WAL mode. */
  walNow: WalIndexRead;
  /** In WAL mode, whether this user can write the -shm file (only then is it shared memory). */
  shmWritable: boolean;
}

/**
 * How to take the snapshot, in this order of preference:
 * - "file-read": WAL mode, every frame checkpointed (nBackfill == mxFrame): the file holds our snapshot.
 * - "file-copy": a rollback-journal mode: the file holds our snapshot, and our lock keeps writers out
 *   of it until it is copied.
 * - "wal-read": WAL mode, frames pending, and no commit came while the transaction began: the file
 *   and our frames, read in place, if the WAL itself agrees (walOverlay), else "backup-api".
 * - "backup-api": SQLite's online backup API, into a temp file.
 */
export function chooseMethod(seen: SnapshotObservation): SnapshotMethod {
  const { journalMode, walBefore, walNow, walAfter } = seen;
  const wal = journalMode === "wal";
  const allCheckpointed = typeof walNow === "object" && walNow.nBackfill === walNow.mxFrame;
  const fileHoldsSnapshot = wal ? allCheckpointed : ["delete", "truncate", "persist"].includes(journalMode);
  if (seen.sourceOpen && fileHoldsSnapshot && seen.fileMatches) return wal ? "file-read" : "file-copy";
  const noCommitBetween = sameWalIndex(walBefore, walAfter);
  if (seen.sourceOpen && wal && noCommitBetween && walAfter.mxFrame !== 0 && walAfter.nPage === seen.pageCount && seen.shmWritable)
    return "wal-read";
  return "backup-api";
}

async function takeSnapshot(databasePath: string, dir: string, ctx: RunContext): Promise<Snapshot> {
  const path = join(dir, "snapshot.sqlite");
  ctx.signal.throwIfAborted();
  const held = new HeldConnection(databasePath);
  let taken: Taken;
  try {
    taken = await snapshotInTransaction(held, path, ctx);
    ctx.signal.throwIfAborted();
  } catch (error) {
    held.end();
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw classifySnapshotError(error, databasePath, dir);
  }
  const { tx, method, source, overlay } = taken;
  const common = { dir, journalMode: tx.journalMode, sqliteVersion: tx.sqliteVersion, method };
  const bytes = tx.pageSize * tx.pageCount;
  if (method === "file-read" || overlay) {
    const blocks = (pool: BufferPool, signal?: AbortSignal) =>
      overlay ? readOverlaid(source, bytes, overlay, pool, signal) : readBlocks(source, bytes, pool, signal);
    const inPlace = () => quickCheckFindings(held.db!);
    const { pageSize, pageCount } = tx;
    return { ...common, path: databasePath, bytes, pageSize, pageCount, blocks, release: () => held.end(), quickCheck: inPlace };
  }
  held.end();
  return { ...common, ...openCopy(databasePath, path) };
}

interface Taken {
  tx: ReadTransaction;
  method: SnapshotMethod;
  /** The database file's held descriptor, -1 when it could not be opened. */
  source: number;
  /** For "wal-read", where our frames are. */
  overlay: WalOverlay | null;
}

/** Begins the read transaction on `held`, chooses the method, and copies for the copying ones. */
async function snapshotInTransaction(held: HeldConnection, path: string, ctx: RunContext): Promise<Taken> {
  const { databasePath } = held;
  // The connection and the descriptor copied from are each opened by path: a file renamed over the
  // database between them (while BEGIN waited on a writer, say) would be copied without our lock on
  // it, torn. Both must be the file that was there before the connection opened.
  const before = statSync(databasePath, { throwIfNoEntry: false });
  const tx = beginReadTransaction(held);
  const warning = walResetWarning(tx.sqliteVersion, tx.journalMode);
  if (warning) ctx.log.warn(warning);
  const source = held.open(databasePath);
  if (source >= 0) {
    const opened = fstatSync(source);
    if (!before || opened.ino !== before.ino || opened.dev !== before.dev)
      throw new VaultError(
        `${databasePath} was replaced by another file while the backup began; nothing was backed up`,
        "run the backup again; the next one reads the new file",
      );
  }
  let method = chooseMethod(observe(databasePath, tx, source));
  let overlay: WalOverlay | null = null;
  if (method === "wal-read") {
    const wal = held.open(`${databasePath}-wal`);
    overlay = wal >= 0 ? walOverlay(wal, source, tx.walAfter as WalIndex, tx.pageSize, tx.pageCount) : null;
    if (!overlay) method = "backup-api";
  }
  if (method === "file-copy") {
    ctx.progress?.phase("copying a snapshot", tx.pageSize * tx.pageCount);
    await copyRange(source, path, tx.pageSize * tx.pageCount, ctx.signal, (n) => ctx.progress?.advance(n));
  } else if (method === "backup-api") {
    writeFileSync(path, new Uint8Array(0), { mode: 0o600 }); // the backup API fills an existing empty file, so 0600 from the start
    ctx.progress?.phase("copying a snapshot");
    await backup(held.db!, path, { rate: -1 });
  }
  return { tx, method, source, overlay };
}

function observe(databasePath: string, tx: ReadTransaction, source: number): SnapshotObservation {
  const wal = tx.journalMode === "wal";
  return {
    journalMode: tx.journalMode,
    pageCount: tx.pageCount,
    sourceOpen: source >= 0,
    fileMatches: source >= 0 && fileMatches(source, tx.pageSize, tx.pageCount),
    walBefore: tx.walBefore,
    walAfter: tx.walAfter,
    walNow: tx.shm >= 0 ? readSettledWalIndex(tx.shm) : "absent",
    shmWritable: wal && canWrite(`${databasePath}-shm`),
  };
}

/** The copy at `path`, checked against its own header, open for reading. Throws VaultError when they disagree. */
function openCopy(databasePath: string, path: string): Omit<Snapshot, "dir" | "journalMode" | "sqliteVersion" | "method"> {
  const copied = statSync(path).size;
  const header = readDatabaseHeader(path);
  if (header.pageSize * header.pageCount !== copied)
    throw new VaultError(
      `snapshot of ${databasePath} is inconsistent: ${header.pageCount} pages of ${header.pageSize} bytes but ${copied} bytes`,
    );
  const fd = openSync(path, "r");
  let closed = false;
  const release = () => {
    if (closed) return;
    closed = true;
    closeSync(fd);
  };
  const quickCheck = () => {
    const copy = new DatabaseSync(path, { readOnly: true });
    try {
      return quickCheckFindings(copy);
    } finally {
      copy.close();
    }
  };
  const blocks = (pool: BufferPool, signal?: AbortSignal) => readBlocks(fd, copied, pool, signal);
  return { path, bytes: copied, pageSize: header.pageSize, pageCount: header.pageCount, blocks, release, quickCheck };
}

/** PRAGMA quick_check on `connection`: one problem a line, [] when sound. */
function quickCheckFindings(connection: DatabaseSync): string[] {
  try {
    // One problem a line (a row may hold several), without the "*** in database main ***" heading.
    const rows = (connection.prepare("PRAGMA quick_check").all() as { quick_check: string }[]).map((r) => r.quick_check);
    return rows.flatMap((r) => r.split("\n")).filter((line) => line.trim() && line !== "ok" && !/^\*\*\* in database/.test(line));
  } catch (error) {
    // Damage the check cannot get past (a malformed b-tree page) is a finding too.
    if (/malformed|corrupt|not a database/i.test((error as Error).message)) return [(error as Error).message];
    throw error;
  }
}

const readAt = promisify(read);
const COPY_CHUNK = 4 * 1024 * 1024;

/** Copy the first `length` bytes of `fd` into a new 0600 file at `path`, telling `onBytes` as it goes. */
async function copyRange(fd: number, path: string, length: number, signal: AbortSignal, onBytes: (bytes: number) => void): Promise<void> {
  const out = await open(path, "wx", 0o600);
  try {
    const buffer = new Uint8Array(Math.min(COPY_CHUNK, Math.max(length, 1)));
    for (let position = 0; position < length; ) {
      signal.throwIfAborted();
      const { bytesRead } = await readAt(fd, buffer, 0, Math.min(buffer.length, length - position), position);
      if (bytesRead === 0) throw new VaultError(`the database file ended at byte ${position} of ${length}`);
      await writeFully(out, buffer.subarray(0, bytesRead)); // a short write would leave a hole of zeros
      position += bytesRead;
      onBytes(bytesRead);
    }
  } finally {
    await out.close();
  }
}
