/**
 * One backup or restore at a time per database path, across processes. The lock is a file in the OS temp dir named
 * after the database's real path, created atomically (write a temp file, then link() it into place,
 * which fails if the lock exists). It holds the owner's pid and host; a lock whose process is gone
 * (killed with -9, crashed) is stale and taken over, so it never blocks the next run.
 */
import { linkSync, mkdirSync, readFileSync, realpathSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { LockedError } from "./errors.ts";

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

/** Take the lock for `target` or throw LockedError naming the holder. Synchronous and atomic. */
export function acquireLock(target: string, purpose: string, dir = join(tmpdir(), "sqlite-vault-locks")): Lock {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const real = safeRealpath(target);
  const id = new Bun.CryptoHasher("sha256").update(real).digest("hex").slice(0, 24);
  const path = join(dir, `${id}.lock`);
  const owner: LockOwner = { purpose, pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  const staging = `${path}.${process.pid}.${crypto.randomUUID()}`;
  writeFileSync(staging, JSON.stringify(owner), { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(staging, path);
        let released = false;
        return {
          path,
          release() {
            if (released) return;
            released = true;
            try {
              unlinkSync(path);
            } catch {}
          },
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const holder = readOwner(path);
      if (holder && isAlive(holder)) {
        throw new LockedError(`another ${holder.purpose ?? "run"} of ${real} is running (pid ${holder.pid}, since ${holder.startedAt})`, "wait for it to finish; runs of one database never overlap");
      }
      // Stale: its process is gone. Remove it and try again.
      try {
        unlinkSync(path);
      } catch {}
    }
    throw new LockedError(`could not take the lock for ${real}`, "retry in a moment");
  } finally {
    try {
      unlinkSync(staging);
    } catch {}
  }
}

function readOwner(path: string): LockOwner | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as LockOwner;
  } catch {
    return null;
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

function safeRealpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
