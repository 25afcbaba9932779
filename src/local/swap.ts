/**
 * The restore's last stage: putting a checked file at the database's path. A database and its -wal,
 * -shm and -journal are paired by name alone, so the swap empties or keeps aside every sidecar before
 * the one rename that switches files; a database another process has open is never replaced.
 */
import { Database } from "bun:sqlite";
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  copyFileSync,
  existsSync,
  linkSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  type Stats,
} from "node:fs";
import { basename, dirname } from "node:path";
import type { RunContext } from "../context.ts";
import { refuseIfOpen } from "./open-files.ts";
import { SIDECARS } from "./sidecars.ts";

export { SIDECARS };
import { VaultError } from "../errors.ts";

/** What the restored file must look like before it replaces anything. */
export interface InstallOptions {
  mode: number;
  owner: { uid: number; gid: number } | null;
  /** --force: an existing database may be replaced (an empty file always may, see isEmptyFile). */
  force: boolean;
}

/**
 * Give the checked file at `temp` its mode and owner, check again that no process has the target
 * open, and swap it into place (swapIntoPlace). Returns where a replaced database was kept aside.
 */
export function installRestored(temp: string, target: string, options: InstallOptions, ctx: RunContext): string[] {
  chmodSync(temp, options.mode);
  if (options.owner) adoptOwner(temp, target, options.owner, ctx);
  refuseIfOpen(target);
  return swapIntoPlace(temp, target, options.force || isEmptyFile(target));
}

/**
 * Who must own the restored file, when not the user restoring: the owner of the file it replaces;
 * for a new file restored by root, the owner of its directory. Root restoring an application's
 * database must not leave it root's: the application, running as its own user, could not open it.
 */
export function ownerFor(target: string, previous: Stats | undefined): { uid: number; gid: number } | null {
  if (previous) return { uid: previous.uid, gid: previous.gid };
  if (process.getuid?.() !== 0) return null;
  const dir = statSync(dirname(target));
  return dir.uid === 0 ? null : { uid: dir.uid, gid: dir.gid };
}

function adoptOwner(path: string, target: string, owner: { uid: number; gid: number }, ctx: RunContext): void {
  const now = statSync(path);
  if (now.uid === owner.uid && now.gid === owner.gid) return;
  try {
    chownSync(path, owner.uid, owner.gid);
  } catch (error) {
    // Only root gives files away; anyone else's restore is their own file, as with cp.
    ctx.log.warn(`${target} will be owned by uid ${now.uid}, not ${owner.uid} as before: ${(error as Error).message}`);
  }
}

/**
 * Whether `target` is an empty file with nothing beside it: what `sqlite3 app.db 'select 1'` leaves on
 * a new machine, no database (backup says the same); a restore treats it as missing. Throws
 * VaultError for an empty file whose -wal or -journal holds bytes: SQLite would delete such a WAL on
 * opening the empty file, and a restore would replace it, so neither is chosen for the user.
 */
export function isEmptyFile(target: string): boolean {
  const stat = statSync(target, { throwIfNoEntry: false });
  if (!stat?.isFile() || stat.size > 0) return false;
  for (const suffix of ["-wal", "-journal"])
    if ((statSync(target + suffix, { throwIfNoEntry: false })?.size ?? 0) > 0)
      throw new VaultError(
        `${target} is empty, but ${target}${suffix} holds data (SQLite would discard it on opening the empty file); refusing to restore over it or to leave it`,
        `look at ${target}${suffix}; keep it if it matters, remove ${target} and ${target}${suffix}, then restore again`,
      );
  return true;
}

/**
 * Throws VaultError when `target` does not exist but its -wal or a hot -journal holds data: SQLite
 * would read that into the restored file on its first open (the commits of the database that was
 * there, or a rollback), so what the application reads would not be the backup. Neither file is
 * chosen for the user.
 */
export function refuseOrphanSidecars(target: string): void {
  if (statSync(target, { throwIfNoEntry: false })) return;
  const held = sidecarsWithData(target);
  if (held.length)
    throw new VaultError(
      `${target} does not exist, but ${held.join(" and ")} holds data (SQLite would apply it to the restored database); refusing to restore beside it`,
      `look at ${held.join(" and ")}: it may hold the last commits of the database that was there; move it aside, then restore again`,
    );
}

/** The file-system calls swapIntoPlace makes, so a test can fail any one of them (a crash, EIO). */
export interface SwapFs {
  link(from: string, to: string): void;
  rename(from: string, to: string): void;
  unlink(path: string): void;
}

const nodeFs: SwapFs = { link: linkSync, rename: renameSync, unlink: unlinkSync };

/**
 * Atomically put `temp` at `target`. An existing target may be replaced only when `replace` is true
 * (--force, or an empty file); it and its sidecar files are then kept as
 * `{target}.replaced-{time}[-N]{suffix}`, names never taken before; returns those paths. Throws
 * VaultError; on any failure, and at any crash point, the target opens as the database it was.
 *
 * SQLite pairs a database with its -wal and -journal by name alone, and no two names change in one
 * step: moving a sidecar that holds data leaves a moment with the old database without its WAL (lost
 * commits), or the new one beside the old WAL (applied to it: corruption). So such sidecars are
 * first emptied as SQLite does on a clean close (checkpoint, or roll back a hot journal), which its
 * own design makes crash-safe; what is left beside the database is then inert for any database. Then
 * the old files are hard-linked to their aside names (copies that survive a crash, removed again on
 * an error), the new file is renamed over the target (the one switch), and only then are the old,
 * inert sidecars removed.
 */
export function swapIntoPlace(temp: string, target: string, replace: boolean, fs: SwapFs = nodeFs): string[] {
  if (!existsSync(target)) {
    refuseOrphanSidecars(target); // one left there during the restore
    // link() refuses to overwrite: a file created meanwhile by someone else is never clobbered.
    try {
      fs.link(temp, target);
      fs.unlink(temp);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") throw appeared(target);
      if (!noHardLinks(error)) throw error;
      // A file system without hard links: rename() would replace a file created meanwhile, so look once more.
      if (existsSync(target)) throw appeared(target);
      fs.rename(temp, target);
    }
    moveStraySidecars(target, `${target}.stray-${stamp()}`, fs);
    return [];
  }
  if (!replace) throw appeared(target);
  emptySidecars(target);
  const kept = keepAside(target, fs);
  try {
    fs.rename(temp, target);
  } catch (error) {
    for (const path of kept) ignoreFailure(() => fs.unlink(path));
    throw new VaultError(
      `could not put the restored database at ${target}: ${(error as Error).message}; ${target} is as it was`,
      undefined,
      { cause: error },
    );
  }
  // Inert now (see above), and kept aside: a failure here leaves only files SQLite ignores or rebuilds.
  for (const suffix of SIDECARS) if (kept.includes(kept[0] + suffix)) ignoreFailure(() => fs.unlink(target + suffix));
  moveStraySidecars(target, kept[0]!, fs);
  return kept;
}

/**
 * After the switch: a -wal or hot -journal beside the restored file now was written by a process that
 * opened the old database (or none) after the last check, and SQLite would apply it to the restored
 * one, undoing the restore. Move it beside `aside` (the old database, kept), or a free name near it,
 * and throw VaultError: the restored file is in place, but someone is using the database.
 */
function moveStraySidecars(target: string, aside: string, fs: SwapFs): void {
  const stray = sidecarsWithData(target);
  if (!stray.length) return;
  const moved: string[] = [];
  for (const path of stray) {
    // One rename: a crash never leaves it both beside the restored file and aside.
    const to = freeName(aside, path.slice(target.length));
    fs.rename(path, to);
    moved.push(to);
  }
  throw new VaultError(
    `${stray.join(" and ")} appeared beside ${target} while the restore put it in place (a process opened the database meanwhile); moved to ${moved.join(" and ")} so SQLite does not apply it to the restored database, which is in place`,
    "stop every process that uses the database while restoring; if that process wrote to the old database, its commits are in the moved file",
  );
}

function appeared(target: string): VaultError {
  return new VaultError(`${target} appeared during the restore; refusing to overwrite it`, "pass --force to replace it");
}

/** `{base}{suffix}`, else the first of `{base}-N{suffix}` that does not exist. */
function freeName(base: string, suffix: string): string {
  for (let n = 1; ; n++) {
    const name = `${base}${n > 1 ? `-${n}` : ""}${suffix}`;
    if (!existsSync(name)) return name;
  }
}

/** A file-system time stamp for names: 20261205T120000Z. */
function stamp(): string {
  return new Date()
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

function ignoreFailure(fn: () => void): void {
  try {
    fn();
  } catch {}
}

/** The sidecars of `path` that SQLite would read into whatever database has that name: a WAL with a valid header, a hot journal. */
function sidecarsWithData(path: string): string[] {
  const held: string[] = [];
  for (const [suffix, holdsData] of [
    ["-wal", (head: Buffer) => head.length >= 32 && (head.readUInt32BE(0) & ~1) === 0x377f0682],
    ["-journal", (head: Buffer) => head.length > 0 && head[0] !== 0],
  ] as const) {
    const head = readHead(path + suffix, 32);
    if (head && holdsData(head)) held.push(path + suffix);
  }
  return held;
}

function readHead(path: string, bytes: number): Buffer | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return null;
  }
  try {
    const head = Buffer.alloc(bytes);
    return head.subarray(0, readSync(fd, head, 0, bytes, 0));
  } finally {
    closeSync(fd);
  }
}

/**
 * Bring what the -wal or a hot -journal of `target` holds into the database file, as SQLite does
 * when the last connection closes, so that no sidecar holds data. Throws VaultError, leaving the
 * files as SQLite leaves them after an interrupted checkpoint (the same database), when it cannot.
 */
function emptySidecars(target: string): void {
  const held = sidecarsWithData(target);
  if (held.length === 0) return;
  if (readHead(target, 16)?.toString("latin1") !== "SQLite format 3\0")
    throw new VaultError(
      `${held.join(" and ")} holds data, but ${target} is not a SQLite database; refusing to choose which of them to keep`,
      `look at them, move ${target} and ${held.join(", ")} aside yourself, then restore again`,
    );
  try {
    const db = new Database(target);
    try {
      db.query("SELECT count(*) FROM sqlite_schema").get(); // rolls a hot journal back
      const wal = db.query("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number } | null;
      if (wal?.busy) throw new Error("the checkpoint could not finish");
    } finally {
      db.close();
    }
  } catch (error) {
    throw new VaultError(
      `could not bring ${held.join(" and ")} into ${target} before replacing it: ${(error as Error).message}; nothing was replaced`,
      "stop whatever uses it; or move the files aside yourself, then restore again",
      { cause: error },
    );
  }
  const still = sidecarsWithData(target);
  if (still.length)
    throw new VaultError(
      `${still.join(" and ")} still holds data after a checkpoint of ${target}; nothing was replaced`,
      "stop whatever uses it, then restore again",
    );
}

/**
 * Hard-link `target` and its sidecars to the first free `{target}.replaced-{time}[-N]` names (copy them
 * where the file system has no hard links). A name that exists is never reused or replaced: link()
 * and an exclusive copy fail on it, and the next name is tried. Returns the new paths, database first.
 */
function keepAside(target: string, fs: SwapFs): string[] {
  const time = stamp();
  const sidecars = SIDECARS.filter((suffix) => existsSync(target + suffix));
  for (let n = 1; n <= 1000; n++) {
    const aside = `${target}.replaced-${time}${n > 1 ? `-${n}` : ""}`;
    const made: string[] = [];
    try {
      for (const suffix of ["", ...sidecars]) {
        keepCopy(target + suffix, aside + suffix, fs);
        made.push(aside + suffix);
      }
      return made;
    } catch (error) {
      for (const path of made) ignoreFailure(() => fs.unlink(path));
      if ((error as NodeJS.ErrnoException).code !== "EEXIST")
        throw new VaultError(`could not keep ${target} aside as ${aside}: ${(error as Error).message}; nothing was replaced`, undefined, {
          cause: error,
        });
    }
  }
  throw new VaultError(
    `could not find a free name to keep ${target} aside; nothing was replaced`,
    `remove old ${basename(target)}.replaced-* files`,
  );
}

function keepCopy(from: string, to: string, fs: SwapFs): void {
  try {
    fs.link(from, to);
  } catch (error) {
    if (!noHardLinks(error)) throw error;
    copyFileSync(from, to, constants.COPYFILE_EXCL); // no hard links here: an exclusive copy
  }
}

/** A link() that failed because the file system has no hard links (or no more), not because of the files. */
function noHardLinks(error: unknown): boolean {
  return ["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EMLINK"].includes((error as NodeJS.ErrnoException).code ?? "");
}
