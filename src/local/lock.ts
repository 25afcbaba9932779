/**
 * One backup or restore at a time per database path, across processes of one user. The lock is a
 * file named after the database's real path, in the user's own lock directory (see lockDir), held
 * with flock(2): the kernel drops it when its process ends, however it ends, so a killed run never
 * blocks the next. It holds the owner's pid and host for messages, and is removed on release (a run
 * that locked a file removed meanwhile tries again). Where flock cannot be loaded, the lock is a
 * file linked into place, and one whose process is gone is taken over as stale.
 */
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  writeSync,
  lstatSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { homedir, hostname, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { LockedError, VaultError } from "../errors.ts";
import { tryExclusiveLock } from "./flock.ts";

export interface Lock {
  path: string;
  release(): void;
}

interface LockOwner {
  purpose: string;
  pid: number;
  host: string;
  startedAt: string;
}

/**
 * The user's lock directory, mode 0700, in a place no other user can create first (a directory in
 * the shared temp dir can be made by anyone, which stops every later run): for root, sqlite-vault in
 * /run (or /var/run), which only root may write; for anyone else, ~/.local/state/sqlite-vault/locks.
 * Chosen by who runs, never by a variable a session sets, so every run of one user meets the same
 * locks. A user with no usable home directory (a system user) falls back to the temp dir.
 */
export function lockDir(): string {
  const uid = process.getuid?.();
  if (uid === 0) {
    for (const run of ["/run", "/var/run"]) {
      const stat = lstatSync(run, { throwIfNoEntry: false });
      if (stat?.isDirectory() && stat.uid === 0 && (stat.mode & 0o022) === 0) return join(run, "sqlite-vault");
    }
  }
  const home = process.env.HOME || homedir();
  const state = join(home, ".local", "state");
  try {
    mkdirSync(state, { recursive: true, mode: 0o700 });
    if (lstatSync(home).uid === uid) return join(state, "sqlite-vault", "locks");
  } catch {}
  return join(tmpdir(), `sqlite-vault-locks-${uid ?? 0}`);
}

/** Create `dir` (mode 0700, and its parents), or accept it only as this user's own private directory. */
function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const stat = lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o077) !== 0)
    throw new VaultError(
      `the lock directory ${dir} is not a private directory of this user`,
      `remove it (sqlite-vault creates it, mode 0700)`,
    );
}

/** Take the lock for `target` or throw LockedError naming the holder. Synchronous and atomic. */
export function acquireLock(target: string, purpose: string, dir = lockDir()): Lock {
  ensurePrivateDir(dir);
  const real = safeRealpath(target);
  const id = new Bun.CryptoHasher("sha256").update(real).digest("hex").slice(0, 24);
  const path = join(dir, `${id}.lock`);
  const owner: LockOwner = { purpose, pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  return flockLock(path, real, owner) ?? linkLock(path, real, owner);
}

/**
 * The lock as a flock on the lock file; undefined when flock is not available. After the flock is
 * taken the file must still be the one at `path`: a holder removes it on release, and a run that
 * opened it just before then holds a lock on a file no other run can see, so it tries again.
 */
function flockLock(path: string, real: string, owner: LockOwner): Lock | undefined {
  for (let attempt = 0; attempt < 10; attempt++) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    let taken: boolean | undefined;
    try {
      taken = tryExclusiveLock(fd);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    if (taken === undefined) {
      closeSync(fd);
      return undefined;
    }
    if (!taken) {
      const holder = readOwnerFrom(fd);
      closeSync(fd);
      throw lockedBy(holder, real);
    }
    if (lstatSync(path, { throwIfNoEntry: false })?.ino !== fstatSync(fd).ino) {
      closeSync(fd); // removed by its holder meanwhile: the lock is the file at `path`
      continue;
    }
    ftruncateSync(fd, 0);
    writeSync(fd, JSON.stringify(owner), 0);
    // Removed while still held, so that no run can lock this file once it is released.
    return held(path, () => closeSync(fd));
  }
  throw new LockedError(`could not take the lock for ${real}`, "retry in a moment");
}

/** A held lock whose release (idempotent) removes the lock file, then runs `after`. */
function held(path: string, after: () => void = () => {}): Lock {
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      try {
        unlinkSync(path);
      } catch {}
      after();
    },
  };
}

function lockedBy(holder: LockOwner | null, real: string): LockedError {
  return new LockedError(
    `another ${holder?.purpose ?? "run"} of ${real} is running${holder ? ` (pid ${holder.pid}, since ${holder.startedAt})` : ""}`,
    "wait for it to finish; runs of one database never overlap",
  );
}

function readOwnerFrom(fd: number): LockOwner | null {
  try {
    return JSON.parse(readFileSync(fd, "utf8")) as LockOwner;
  } catch {
    return null;
  }
}

/** The lock as a file linked into place, a stale one (its process gone) taken over; for systems without flock. */
function linkLock(path: string, real: string, owner: LockOwner): Lock {
  const staging = `${path}.${process.pid}.${crypto.randomUUID()}`;
  writeFileSync(staging, JSON.stringify(owner), { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(staging, path);
        return held(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const found = readOwner(path);
      if (!found) continue; // released meanwhile: try again
      const { owner: holder, ino } = found;
      if (holder && isAlive(holder)) throw lockedBy(holder, real);
      // Stale: its process is gone. Several runs may find it so at once: each moves the lock aside
      // (rename is atomic, so one of them gets any given file) and removes it only if it is the very
      // file found stale; a fresh lock another run has taken meanwhile is put back, and is the holder.
      const aside = `${path}.stale.${crypto.randomUUID()}`;
      try {
        renameSync(path, aside);
      } catch {
        continue; // gone already
      }
      if (lstatSync(aside).ino === ino) {
        unlinkSync(aside);
        continue;
      }
      try {
        linkSync(aside, path);
      } catch {}
      unlinkSync(aside);
      throw lockedBy(readOwner(path)?.owner ?? null, real);
    }
    throw new LockedError(`could not take the lock for ${real}`, "retry in a moment");
  } finally {
    try {
      unlinkSync(staging);
    } catch {}
  }
}

/** The lock file's owner (null when unreadable) and its inode, read from one open file; null when there is no lock. */
function readOwner(path: string): { owner: LockOwner | null; ino: number } | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return null;
  }
  try {
    return { owner: readOwnerFrom(fd), ino: fstatSync(fd).ino };
  } finally {
    closeSync(fd);
  }
}

function isAlive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true; // cannot check another host's processes: assume alive
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The real path of `path` (through symbolic links), or `path` itself when it does not resolve. */
export function safeRealpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
