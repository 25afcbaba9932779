/**
 * A consistent snapshot of a live SQLite database: the only place that opens a source database.
 *
 * Everything happens inside one read transaction that we open first on a read-only connection, so
 * the snapshot is exactly that transaction's, taken in one go; it never restarts however busy the
 * writers are. The source is never written or checkpointed. Four ways, in that order:
 *
 * - "file-read": in WAL mode, when every committed frame is already checkpointed into the file (the
 *   application closed its last connection, or checkpointed after its last write; with SQLite's
 *   default auto-checkpoint a busy one usually has frames pending), the file itself holds exactly our
 *   snapshot and no checkpoint can write it while our transaction lasts (see fileHoldsSnapshot). The
 *   backup then reads the database file itself, and the transaction ends when the last block is
 *   read: no copy, no temp space. Writers never wait (in WAL mode they append to the WAL); their
 *   frames are checkpointed once we are done, so the WAL may grow meanwhile by what they write.
 * - "file-copy": in rollback-journal mode the file holds our snapshot too, but our shared lock keeps
 *   writers out of it, so the file is copied to a private temp file first (0.5 s per GiB here) and
 *   the transaction ends before compression and the upload; writers wait for that copy only (a busy
 *   timeout covers it).
 * - "wal-read": in WAL mode with frames not yet checkpointed (a live application's usual state), when
 *   we know exactly which frames our transaction sees: the database file and those frames of the WAL,
 *   read in place, each page from the last of our frames that holds it, else from the file, as SQLite
 *   itself reads it. No checkpoint can write a page of the file that none of our frames holds, and
 *   no writer can overwrite our frames (see walOverlay). No copy, no temp space, and writers never wait.
 * - "backup-api": otherwise, SQLite's online backup API in one step (node:sqlite backup() with rate
 *   -1), which reads our snapshot through the WAL into a private temp file: 1.1-2.5 s per GiB here.
 *
 * Either way the result is page for page the live database, as `sqlite3 .backup` would copy it, with
 * a valid header; it is checked against the transaction's page size and count.
 *
 * While the transaction holds SQLite's locks, the database's files (the database, -wal, -shm) are only
 * ever read through descriptors that stay open until the connection is closed: closing any
 * descriptor of a file drops every POSIX lock this process holds on it, SQLite's included, and a
 * writer or a checkpoint could then change the file under us.
 *
 * Why not VACUUM INTO (which earlier builds used): it took 3.6 s per GiB here and its output cannot be
 * compressed before it is complete either. scripts/bench-snapshot.ts compares the ways.
 */
import { backup, DatabaseSync } from "node:sqlite";
import { accessSync, chmodSync, chownSync, closeSync, constants, existsSync, fstatSync, openSync, read, readSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, open } from "node:fs/promises";
import { promisify } from "node:util";
import { endianness } from "node:os";
import { dirname, join } from "node:path";
import type { RunContext } from "../context.ts";
import { resolveForWrite } from "../local/safe-path.ts";
import { removeStale, tempTag } from "../local/stale.ts";
import { walResetWarning } from "../version.ts";
import { VaultError } from "../errors.ts";
import { readBlocks, readFullyAt } from "./codec.ts";
import type { BufferPool } from "../util/streams.ts";

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
  /** How the snapshot was taken (see the top of this file). */
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
  if (info.size === 0) throw new VaultError(`${path} is empty: no database has been written there yet, so there is nothing to back up`, "check the path, or back up once the application has created its tables");
  const header = readHeader(path, 100);
  if (header.byteLength < 100 || new TextDecoder().decode(header.subarray(0, 16)) !== SQLITE_MAGIC)
    throw new VaultError(`${path} is not a SQLite database`, "check the path: the file does not start with the SQLite header");
}

/**
 * Page size and page count from a database file's header (the file must not be in use).
 * `countValid`: whether SQLite trusts that page count (the change counter matches the
 * version-valid-for number, as in every file SQLite 3.7.0 or later wrote).
 */
export function readDatabaseHeader(path: string): { pageSize: number; pageCount: number; countValid: boolean } {
  return parseDatabaseHeader(readHeader(path, 100));
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

function parseDatabaseHeader(header: Uint8Array): { pageSize: number; pageCount: number; countValid: boolean } {
  if (header.byteLength < 100) return { pageSize: 0, pageCount: 0, countValid: false };
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const raw = view.getUint16(16);
  const pageSize = raw === 1 ? 65536 : raw;
  return { pageSize, pageCount: view.getUint32(28), countValid: view.getUint32(24) === view.getUint32(92) };
}

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

async function takeSnapshot(databasePath: string, dir: string, ctx: RunContext): Promise<Snapshot> {
  const path = join(dir, "snapshot.sqlite");
  ctx.signal.throwIfAborted();
  const sidecarsBefore = existingSidecars(databasePath);
  // Descriptors of the database's own files, closed only after the connection (see the top of this file).
  const held: number[] = [];
  let db: DatabaseSync | undefined;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    try {
      if (db?.isTransaction) db.exec("COMMIT");
    } catch {}
    db?.close();
    for (const fd of held) {
      try {
        closeSync(fd);
      } catch {}
    }
    adoptNewSidecars(databasePath, sidecarsBefore);
  };
  let journalMode = "unknown";
  let sqliteVersion = "unknown";
  let method: SnapshotMethod = "backup-api";
  let pageSize = 0;
  let pageCount = 0;
  let source = -1;
  let overlay: WalOverlay | null = null;
  try {
    db = new DatabaseSync(databasePath, { readOnly: true });
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Our own read transaction, so that waiting for a writer ends in a clear "locked" error and the
    // snapshot (the file, or the backup step, which reuses an open transaction) is exactly this one.
    // In WAL mode, the WAL-index header just before and just after it began: the same header means
    // no commit came between, and our snapshot is exactly the frames it lists (see walOverlay). A
    // commit in between (or a -shm that our connection created) begins it again, twice at most.
    let shm = openHeld(`${databasePath}-shm`, held);
    let walBefore: ReturnType<typeof readWalIndex> = "absent";
    let walAfter: ReturnType<typeof readWalIndex> = "absent";
    for (let attempt = 1; ; attempt++) {
      walBefore = shm >= 0 ? readWalIndex(shm) : "absent";
      db.exec("BEGIN");
      db.prepare("SELECT COUNT(*) FROM sqlite_schema").get();
      if (shm < 0) shm = openHeld(`${databasePath}-shm`, held);
      walAfter = shm >= 0 ? readWalIndex(shm) : "absent";
      if (typeof walAfter !== "object" || sameWalIndex(walBefore, walAfter) || attempt === 3) break;
      db.exec("COMMIT");
    }
    journalMode = String((db.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode);
    sqliteVersion = String((db.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v);
    pageSize = Number((db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
    pageCount = Number((db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count);
    const warning = walResetWarning(sqliteVersion, journalMode);
    if (warning) ctx.log.warn(warning);
    if (journalMode !== "wal") shm = -1;
    source = openHeld(databasePath, held);
    if (source >= 0 && fileHoldsSnapshot(journalMode, shm) && fileMatches(source, pageSize, pageCount)) {
      method = journalMode === "wal" ? "file-read" : "file-copy";
      if (method === "file-copy") {
        ctx.progress?.phase("copying a snapshot", pageSize * pageCount);
        await copyRange(source, path, pageSize * pageCount, ctx.signal, (n) => ctx.progress?.advance(n));
      }
    } else if (source >= 0 && shm >= 0 && sameWalIndex(walBefore, walAfter) && (overlay = walOverlay(databasePath, held, source, walAfter as WalIndex, pageSize, pageCount))) {
      method = "wal-read";
    } else {
      writeFileSync(path, new Uint8Array(0), { mode: 0o600 }); // the backup API fills an existing empty file, so 0600 from the start
      ctx.progress?.phase("copying a snapshot");
      await backup(db, path, { rate: -1 });
    }
    ctx.signal.throwIfAborted();
  } catch (error) {
    end();
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const message = (error as Error).message;
    if (/not a database|file is encrypted/i.test(message)) throw new VaultError(`${databasePath} is not a SQLite database (${message})`);
    if (/disk is full|disk I\/O error|ENOSPC/i.test(message) && isFull(dir))
      throw new VaultError(`no space left for the snapshot of ${databasePath} in ${dir}`, "the snapshot needs as much free space as the database: use --tmp-dir on a larger disk");
    if (/busy|locked/i.test(message)) throw new VaultError(`${databasePath} stayed locked by a writer for ${BUSY_TIMEOUT_MS / 1000}s: ${message}`, "retry when the writer is idle");
    if (/readonly/i.test(message) && (statSync(`${databasePath}-journal`, { throwIfNoEntry: false })?.size ?? 0) > 0)
      throw new VaultError(
        `cannot snapshot ${databasePath}: it has a hot journal (a writer stopped in the middle of a transaction), which only a connection that may write can roll back; backups never write to the database`,
        `let the application open it, or run: sqlite3 '${databasePath}' 'PRAGMA quick_check'; then back up`,
      );
    const walDir = /readonly|unable to open/i.test(message) ? unwritableWalDir(databasePath) : null;
    if (walDir)
      throw new VaultError(
        `cannot snapshot ${databasePath}: it is in WAL mode, and reading it takes its -shm file, which does not exist and which this user cannot create in ${walDir}`,
        `run the backup as a user who can write to ${walDir} (the database's owner), or while the application has the database open`,
      );
    throw new VaultError(`cannot snapshot ${databasePath}: ${message}`, undefined, { cause: error });
  }
  const findings = (connection: DatabaseSync) => {
    try {
      // One problem a line (a row may hold several), without the "*** in database main ***" heading.
      const rows = (connection.prepare("PRAGMA quick_check").all() as { quick_check: string }[]).map((r) => r.quick_check);
      return rows.flatMap((r) => r.split("\n")).filter((line) => line.trim() && line !== "ok" && !/^\*\*\* in database/.test(line));
    } catch (error) {
      // Damage the check cannot get past (a malformed b-tree page) is a finding too.
      if (/malformed|corrupt|not a database/i.test((error as Error).message)) return [(error as Error).message];
      throw error;
    }
  };
  const inPlace = () => findings(db!);
  const common = { dir, journalMode, sqliteVersion, method };
  const bytes = pageSize * pageCount;
  if (method === "file-read") return { ...common, path: databasePath, bytes, pageSize, pageCount, blocks: (pool, signal) => readBlocks(source, bytes, pool, signal), release: end, quickCheck: inPlace };
  if (overlay) {
    const read = overlay;
    return { ...common, path: databasePath, bytes, pageSize, pageCount, blocks: (pool, signal) => readOverlaid(source, bytes, read, pool, signal), release: end, quickCheck: inPlace };
  }
  end();
  const copied = statSync(path).size;
  const header = readDatabaseHeader(path);
  if (header.pageSize * header.pageCount !== copied)
    throw new VaultError(`snapshot of ${databasePath} is inconsistent: ${header.pageCount} pages of ${header.pageSize} bytes but ${copied} bytes`);
  const fd = openSync(path, "r");
  let closed = false;
  const release = () => {
    if (closed) return;
    closed = true;
    closeSync(fd);
  };
  const onCopy = () => {
    const copy = new DatabaseSync(path, { readOnly: true });
    try {
      return findings(copy);
    } finally {
      copy.close();
    }
  };
  return { ...common, path, bytes: copied, pageSize: header.pageSize, pageCount: header.pageCount, blocks: (pool, signal) => readBlocks(fd, copied, pool, signal), release, quickCheck: onCopy };
}

/** Open `path` for reading into `held`; -1 when it does not exist. */
function openHeld(path: string, held: number[]): number {
  try {
    const fd = openSync(path, "r");
    held.push(fd);
    return fd;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return -1;
    throw error;
  }
}

/**
 * Whether the file behind `fd` has at least pageSize x pageCount bytes and a header that describes
 * exactly that many pages (not so for a database last written by SQLite before 3.7.0).
 */
function fileMatches(fd: number, pageSize: number, pageCount: number): boolean {
  if (fstatSync(fd).size < pageSize * pageCount) return false;
  const header = new Uint8Array(100);
  const n = readSync(fd, header, 0, 100, 0);
  const parsed = parseDatabaseHeader(header.subarray(0, n));
  return parsed.countValid && parsed.pageSize === pageSize && parsed.pageCount === pageCount;
}

const readAt = promisify(read);
const COPY_CHUNK = 4 * 1024 * 1024;

/** Copy the first `length` bytes of `fd` into a new 0600 file at `path`, telling `onBytes` as it goes. */
async function copyRange(fd: number, path: string, length: number, signal: AbortSignal, onBytes: (bytes: number) => void): Promise<void> {
  const out = await open(path, "wx", 0o600);
  try {
    const buffer = new Uint8Array(Math.min(COPY_CHUNK, Math.max(length, 1)));
    for (let position = 0; position < length;) {
      signal.throwIfAborted();
      const { bytesRead } = await readAt(fd, buffer, 0, Math.min(buffer.length, length - position), position);
      if (bytesRead === 0) throw new VaultError(`the database file ended at byte ${position} of ${length}`);
      await out.write(buffer, 0, bytesRead, position);
      position += bytesRead;
      onBytes(bytesRead);
    }
  } finally {
    await out.close();
  }
}

/**
 * Whether, inside our read transaction, the database file holds exactly our snapshot and nothing
 * can write the file until the transaction ends. `shm`: a descriptor of the -shm file, or -1.
 *
 * - Rollback-journal modes: yes. Our transaction holds a SHARED lock, and a writer needs an EXCLUSIVE
 *   one to write the file.
 * - WAL: only when the WAL-index (the -shm file, format in https://sqlite.org/walformat.html) shows
 *   every frame checkpointed into the file, `nBackfill == mxFrame`, read after our transaction
 *   began. Then the file holds every frame of our snapshot. No checkpoint can write the file while
 *   we read: it may only copy frames up to the read mark of every reader (ours is at most the
 *   mxFrame our snapshot ends at, all of which are already copied), and a reader that started on a
 *   fully checkpointed WAL holds read lock 0, which every checkpoint must take exclusively before it
 *   writes the file. Any other state, a header that is being rewritten, or no -shm: no.
 * Both hold only while this process keeps SQLite's locks: see the top of this file.
 */
export function fileHoldsSnapshot(journalMode: string, shm: number): boolean {
  if (journalMode !== "wal") return ["delete", "truncate", "persist"].includes(journalMode);
  if (shm < 0) return false;
  for (let attempt = 0; attempt < 3; attempt++) {
    const state = readWalIndex(shm);
    if (state === "absent") return false;
    if (state !== "torn") return state.nBackfill === state.mxFrame;
  }
  return false;
}

const WAL_INDEX_VERSION = 3007000;

/** What readWalIndex reads: the WAL-index header and the checkpoint's progress. */
export interface WalIndex {
  /** The last committed frame. */
  mxFrame: number;
  /** Frames checkpointed into the database file. */
  nBackfill: number;
  /** The database's size in pages as of mxFrame. */
  nPage: number;
  /** The header itself (48 bytes; its change counter grows with every commit). */
  header: Uint8Array;
}

/**
 * The WAL-index header of the WAL-index file open at `fd`, and nBackfill: "torn" when its two header
 * copies differ or fail their checksum, "absent" when it is too short to hold a header.
 */
export function readWalIndex(fd: number): WalIndex | "absent" | "torn" {
  const raw = new Uint8Array(136);
  if (readSync(fd, raw, 0, 136, 0) < 136) return "absent";
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const little = endianness() === "LE"; // the WAL-index is in the machine's byte order
  const u32 = (offset: number) => view.getUint32(offset, little);
  for (let i = 0; i < 48; i++) if (raw[i] !== raw[48 + i]) return "torn";
  if (u32(0) !== WAL_INDEX_VERSION || raw[12] !== 1) return "torn";
  // walChecksumBytes over the first 40 bytes, native order.
  let s1 = 0;
  let s2 = 0;
  for (let offset = 0; offset < 40; offset += 8) {
    s1 = (s1 + u32(offset) + s2) >>> 0;
    s2 = (s2 + u32(offset + 4) + s1) >>> 0;
  }
  if (s1 !== u32(40) || s2 !== u32(44)) return "torn";
  return { mxFrame: u32(16), nBackfill: u32(96), nPage: u32(20), header: raw.slice(0, 48) };
}

/** Whether two reads of the WAL-index found the same header (no commit between them). */
function sameWalIndex(a: WalIndex | "absent" | "torn", b: WalIndex | "absent" | "torn"): boolean {
  return typeof a === "object" && typeof b === "object" && Buffer.from(a.header).equals(Buffer.from(b.header));
}

/** Where our frames are: the WAL's descriptor and, per page they hold, the offset of its latest copy. */
interface WalOverlay {
  wal: number;
  pageSize: number;
  /** [page number, offset of the page's bytes in the WAL], by page number. */
  pages: [number, number][];
  /** How many of the snapshot's bytes to take from the database file (the rest come from frames). */
  inFile: number;
  /** The WAL header's salts: a WAL restarted (its frames about to be overwritten) has new ones. */
  salts: Uint8Array;
}

const WAL_HEADER_BYTES = 32;
const WAL_FRAME_HEADER_BYTES = 24;
const WAL_MAGIC = [0x377f0682, 0x377f0683];

/**
 * The frames our transaction sees, when it is certain which they are and that they stay put until
 * the transaction ends, or null (the caller then takes the backup API). Called inside the
 * transaction, with `after` the WAL-index as read just after it began, the same as just before.
 *
 * - Which frames: SQLite's readers take their snapshot from the WAL-index header, whose change
 *   counter grows with every commit. The same header before and after our transaction began means
 *   no commit came between: our snapshot is frames 1 to its mxFrame, and the database is its nPage
 *   pages (checked against our page count; the last frame must commit exactly that many).
 * - That they stay put: a reader that begins with frames not yet checkpointed holds a read mark of
 *   at most its mxFrame (https://sqlite.org/walformat.html). A checkpoint copies frames into the file
 *   only up to every reader's mark, so it only ever writes pages that one of our frames holds (which
 *   we read from the WAL, never from the file), and never shrinks the file below our pages; the WAL
 *   restarts (overwriting frame 1 on) only once no reader holds a mark, nor is it truncated, and no
 *   last connection can delete it while ours is open.
 * - This holds only when SQLite can use the WAL-index as shared memory: when this user cannot write
 *   the -shm file, SQLite reads the WAL by other rules, and so do we (the backup API).
 * - Everything else must agree too: the WAL's header (magic, page size, salts the same as the
 *   WAL-index's), every frame's salts, the last frame a commit of our page count, every page past
 *   the end of the file in some frame, and page 1 as we would read it a valid header of our size.
 */
function walOverlay(databasePath: string, held: number[], source: number, after: WalIndex, pageSize: number, pageCount: number): WalOverlay | null {
  if (after.mxFrame === 0 || after.nPage !== pageCount) return null;
  try {
    accessSync(`${databasePath}-shm`, constants.W_OK);
  } catch {
    return null;
  }
  const wal = openHeld(`${databasePath}-wal`, held);
  if (wal < 0) return null;
  const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
  if (fstatSync(wal).size < WAL_HEADER_BYTES + after.mxFrame * frameBytes) return null;
  const walHeader = new Uint8Array(WAL_HEADER_BYTES);
  if (readSync(wal, walHeader, 0, WAL_HEADER_BYTES, 0) < WAL_HEADER_BYTES) return null;
  const headerView = new DataView(walHeader.buffer);
  const salts = walHeader.subarray(16, 24);
  if (!WAL_MAGIC.includes(headerView.getUint32(0)) || headerView.getUint32(8) !== pageSize) return null;
  if (!Buffer.from(salts).equals(Buffer.from(after.header.subarray(32, 40)))) return null; // the WAL-index's aSalt, as the WAL header holds them

  const latest = new Map<number, number>();
  const frame = new Uint8Array(WAL_FRAME_HEADER_BYTES);
  const frameView = new DataView(frame.buffer);
  for (let k = 1; k <= after.mxFrame; k++) {
    const offset = WAL_HEADER_BYTES + (k - 1) * frameBytes;
    if (readSync(wal, frame, 0, WAL_FRAME_HEADER_BYTES, offset) < WAL_FRAME_HEADER_BYTES) return null;
    if (!Buffer.from(frame.subarray(8, 16)).equals(Buffer.from(salts))) return null;
    const page = frameView.getUint32(0);
    if (page === 0) return null;
    if (k === after.mxFrame && frameView.getUint32(4) !== pageCount) return null; // our last frame commits our size
    if (page <= pageCount) latest.set(page, offset + WAL_FRAME_HEADER_BYTES); // a later frame of a page replaces an earlier one
  }
  const filePages = Math.min(pageCount, Math.floor(fstatSync(source).size / pageSize));
  for (let page = filePages + 1; page <= pageCount; page++) if (!latest.has(page)) return null;

  const first = new Uint8Array(100);
  const firstAt = latest.get(1);
  if ((firstAt === undefined ? readSync(source, first, 0, 100, 0) : readSync(wal, first, 0, 100, firstAt)) < 100) return null;
  const header = parseDatabaseHeader(first);
  if (new TextDecoder().decode(first.subarray(0, 16)) !== SQLITE_MAGIC || !header.countValid || header.pageSize !== pageSize || header.pageCount !== pageCount) return null;
  return { wal, pageSize, pages: [...latest].sort((a, b) => a[0] - b[0]), inFile: filePages * pageSize, salts: salts.slice() };
}

/**
 * The snapshot's blocks: the database file's, with every page our frames hold read from the WAL.
 * Throws VaultError if the WAL was restarted before a block's frames were read: our read mark rules
 * that out, and the check (the WAL header, rewritten with new salts before any frame is overwritten)
 * makes sure no backup is ever stored from frames that changed under it.
 */
async function* readOverlaid(source: number, bytes: number, overlay: WalOverlay, pool: BufferPool, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const { wal, pages, pageSize } = overlay;
  const walHeader = new Uint8Array(WAL_HEADER_BYTES);
  let next = 0;
  let position = 0;
  for await (const block of readBlocks(source, bytes, pool, signal, overlay.inFile)) {
    try {
      const end = position + block.byteLength;
      for (; next < pages.length && (pages[next]![0] - 1) * pageSize < end; next++) {
        const [page, at] = pages[next]!;
        const into = (page - 1) * pageSize - position;
        if (into < 0 || into + pageSize > block.byteLength) throw new Error(`page ${page} straddles a block`); // blocks hold whole pages
        await readFullyAt(wal, block, into, pageSize, at, () => new Error(`the WAL ended inside the frame of page ${page}`));
      }
      const { bytesRead } = await readAt(wal, walHeader, 0, WAL_HEADER_BYTES, 0);
      if (bytesRead < WAL_HEADER_BYTES || !Buffer.from(walHeader.subarray(16, 24)).equals(Buffer.from(overlay.salts)))
        throw new VaultError("the database's WAL was restarted while the backup read it, so the snapshot is not consistent; nothing was stored", "run the backup again");
      position = end;
    } catch (error) {
      pool.release(block);
      throw error;
    }
    yield block;
  }
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
