/**
 * Reading a WAL database's snapshot in place: the WAL-index header (-shm) and the WAL's frames
 * (formats: https://sqlite.org/walformat.html). Why frames read this way stay put while a
 * transaction lasts: docs/design/snapshot.md. Every descriptor passed in must be held open by the
 * caller until its connection closes (closing one drops SQLite's locks).
 */
import { fstatSync, read, readSync } from "node:fs";
import { endianness } from "node:os";
import { promisify } from "node:util";
import { VaultError } from "../errors.ts";
import type { BufferPool } from "../util/streams.ts";
import { readBlocks, readFullyAt } from "./codec.ts";
import { hasMagic, parseDatabaseHeader } from "./database-file.ts";

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

/** A read of the WAL-index: "torn" while a writer rewrites it, "absent" when no header is there. */
export type WalIndexRead = WalIndex | "absent" | "torn";

/**
 * The WAL-index header of the WAL-index file open at `fd`, and nBackfill: "torn" when its two header
 * copies differ or fail their checksum, "absent" when it is too short to hold a header.
 */
export function readWalIndex(fd: number): WalIndexRead {
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

/** readWalIndex, read again (three reads at most) while a writer is caught rewriting it. */
export function readSettledWalIndex(fd: number): WalIndexRead {
  let state: WalIndexRead = "torn";
  for (let attempt = 0; attempt < 3 && state === "torn"; attempt++) state = readWalIndex(fd);
  return state;
}

/** Whether two reads of the WAL-index found the same header (no commit between them). */
export function sameWalIndex(a: WalIndexRead, b: WalIndexRead): b is WalIndex {
  return typeof a === "object" && typeof b === "object" && Buffer.from(a.header).equals(Buffer.from(b.header));
}

/** Where our frames are: the WAL's descriptor and, per page they hold, the offset of its latest copy. */
export interface WalOverlay {
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
 * The frames 1 to `after.mxFrame` of the WAL open at `wal`, mapped over the database file open at
 * `source`, or null when anything disagrees (the caller then takes the backup API): the WAL's
 * header (magic, page size, the WAL-index's salts), a frame's salts, the last frame not a commit of
 * `pageCount` pages, a page past the end of the file in no frame, or page 1 as we would read it not a
 * valid header of that size. `after`: the WAL-index as read just after the read transaction began,
 * the same as just before.
 */
export function walOverlay(wal: number, source: number, after: WalIndex, pageSize: number, pageCount: number): WalOverlay | null {
  const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
  if (fstatSync(wal).size < WAL_HEADER_BYTES + after.mxFrame * frameBytes) return null;
  const walHeader = new Uint8Array(WAL_HEADER_BYTES);
  if (readSync(wal, walHeader, 0, WAL_HEADER_BYTES, 0) < WAL_HEADER_BYTES) return null;
  const headerView = new DataView(walHeader.buffer);
  const salts = walHeader.subarray(16, 24);
  if (!WAL_MAGIC.includes(headerView.getUint32(0)) || headerView.getUint32(8) !== pageSize) return null;
  if (!Buffer.from(salts).equals(Buffer.from(after.header.subarray(32, 40)))) return null; // the WAL-index's aSalt, as the WAL header holds them

  const latest = latestFrames(wal, after.mxFrame, salts, pageSize, pageCount);
  if (!latest) return null;
  const filePages = Math.min(pageCount, Math.floor(fstatSync(source).size / pageSize));
  for (let page = filePages + 1; page <= pageCount; page++) if (!latest.has(page)) return null;

  const first = new Uint8Array(100);
  const firstAt = latest.get(1);
  if ((firstAt === undefined ? readSync(source, first, 0, 100, 0) : readSync(wal, first, 0, 100, firstAt)) < 100) return null;
  const header = parseDatabaseHeader(first);
  if (!hasMagic(first) || !header.countValid || header.pageSize !== pageSize || header.pageCount !== pageCount) return null;
  return { wal, pageSize, pages: [...latest].sort((a, b) => a[0] - b[0]), inFile: filePages * pageSize, salts: salts.slice() };
}

/** Per page of the first `mxFrame` frames, the offset of its latest copy's bytes; null when a frame disagrees. */
function latestFrames(wal: number, mxFrame: number, salts: Uint8Array, pageSize: number, pageCount: number): Map<number, number> | null {
  const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
  const latest = new Map<number, number>();
  const frame = new Uint8Array(WAL_FRAME_HEADER_BYTES);
  const frameView = new DataView(frame.buffer);
  for (let k = 1; k <= mxFrame; k++) {
    const offset = WAL_HEADER_BYTES + (k - 1) * frameBytes;
    if (readSync(wal, frame, 0, WAL_FRAME_HEADER_BYTES, offset) < WAL_FRAME_HEADER_BYTES) return null;
    if (!Buffer.from(frame.subarray(8, 16)).equals(Buffer.from(salts))) return null;
    const page = frameView.getUint32(0);
    if (page === 0) return null;
    if (k === mxFrame && frameView.getUint32(4) !== pageCount) return null; // our last frame commits our size
    if (page <= pageCount) latest.set(page, offset + WAL_FRAME_HEADER_BYTES); // a later frame of a page replaces an earlier one
  }
  return latest;
}

const readAt = promisify(read);

/**
 * The snapshot's blocks: the database file's, with every page our frames hold read from the WAL.
 * Throws VaultError if the WAL was restarted (new salts) before a block's frames were read, so no
 * backup is ever stored from frames that changed under it.
 */
export async function* readOverlaid(
  source: number,
  bytes: number,
  overlay: WalOverlay,
  pool: BufferPool,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
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
        throw new VaultError(
          "the database's WAL was restarted while the backup read it, so the snapshot is not consistent; nothing was stored",
          "run the backup again",
        );
      position = end;
    } catch (error) {
      pool.release(block);
      throw error;
    }
    yield block;
  }
}
