/**
 * Typed errors and the exit-code table. Every failure a user can cause is thrown as a VaultError
 * subclass carrying its exit code and an optional "Try: …" hint; the command wrapper turns it into
 * one line on stderr (or one JSON object with --json) and sets process.exitCode.
 */
import { statfsSync } from "node:fs";

/** The published exit codes (README "Exit codes"). Scripts must treat unknown codes as failure. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  partial: 3,
  verification: 4,
  storage: 10,
  locked: 11,
  auth: 12,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class VaultError extends Error {
  readonly exitCode: ExitCode = ExitCode.failure;
  /** A short stable identifier for scripts reading --json errors. */
  readonly code: string = "failure";
  constructor(
    message: string,
    readonly hint?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags or arguments (exit 2). */
export class UsageError extends VaultError {
  override readonly exitCode = ExitCode.usage;
  override readonly code = "usage";
}

/** The checks a stored backup goes through, in order (verify, restore). */
export const CHECK_STEPS = ["manifest", "object", "checksum", "sqlite", "integrity"] as const;
export type CheckStep = (typeof CHECK_STEPS)[number];

/** Checksums, sizes or SQLite integrity did not match what the manifest promises (exit 4). */
export class VerificationError extends VaultError {
  override readonly exitCode = ExitCode.verification;
  override readonly code = "verification";
  constructor(
    message: string,
    /** Which check failed. */
    readonly step: CheckStep,
    hint?: string,
  ) {
    super(message, hint);
  }
}

/** The storage is unreachable, or the bucket / repository directory does not exist (exit 10). */
export class StorageUnavailableError extends VaultError {
  override readonly exitCode = ExitCode.storage;
  override readonly code = "storage";
}

/** Another run holds the lock for this database (exit 11). */
export class LockedError extends VaultError {
  override readonly exitCode = ExitCode.locked;
  override readonly code = "locked";
}

/** The storage refused our credentials or denied access (exit 12). */
export class AuthError extends VaultError {
  override readonly exitCode = ExitCode.auth;
  override readonly code = "auth";
}

/** The run was interrupted by SIGINT / SIGTERM / SIGHUP (exit 130). */
export class InterruptedError extends VaultError {
  override readonly exitCode = ExitCode.interrupted;
  override readonly code = "interrupted";
  constructor(signal = "SIGINT") {
    super(`interrupted by ${signal}; nothing was left half-written`);
  }
}

/** The run's --deadline passed: it stopped as if interrupted, with nothing half-written. */
export class DeadlineError extends VaultError {
  override readonly code = "deadline";
  constructor(deadline: string) {
    super(
      `the run did not finish within --deadline ${deadline}; it was stopped, and nothing was left half-written`,
      "a stalled storage is the usual cause: see sqlite-vault doctor; or give the run more time",
    );
  }
}

/** A key that does not exist in storage. Storage backends throw it from get(); callers map it. */
export class NotFoundError extends VaultError {
  override readonly code = "not-found";
}

/**
 * A file system too full for a file that is written whole (exit 1): names the directory, the space
 * the file needs and the space free, so the user knows how much to free or where else there is room.
 */
export class NoSpaceError extends VaultError {
  constructor(
    /** The directory the file was going to. */
    readonly dir: string,
    readonly neededBytes: number,
    readonly freeBytes: number | null,
    what: string,
    hint: string,
    options?: ErrorOptions,
  ) {
    const free = freeBytes === null ? "" : `, ${formatSize(freeBytes)} free`;
    super(
      `no space left on device in ${dir} ${what}: it needs ${formatSize(neededBytes)}${free}; nothing was left half-written`,
      hint,
      options,
    );
  }
}

/** Bytes free for an unprivileged writer on the file system holding `dir`; null when it cannot be read. */
export function freeSpace(dir: string): number | null {
  try {
    const fs = statfsSync(dir);
    return fs.bavail * fs.bsize;
  } catch {
    return null;
  }
}

/** True for a write that failed because its file system is full: ENOSPC, or SQLite's SQLITE_FULL. */
export function isNoSpace(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (code === "ENOSPC" || code === "SQLITE_FULL" || /database or disk is full/.test(e.message)) return true;
  }
  return false;
}

/** MiB with one decimal (a size in a message, comparable with df -m); KiB under 1 MiB. */
function formatSize(bytes: number): string {
  return bytes < 2 ** 20 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** An error carrying another's exit code and code under a new message (context added, or rebuilt from a report). */
export class ContextualError extends VaultError {
  override readonly exitCode: ExitCode;
  override readonly code: string;
  constructor(message: string, original: { exitCode: number; code: string; hint?: string }) {
    super(message, original.hint);
    this.exitCode = original.exitCode as ExitCode;
    this.code = original.code;
  }
}

/** A read of `key` answered "not found" while a second look finds it: an answer not meant for the request. */
export function contradictedNotFound(key: string): StorageUnavailableError {
  return new StorageUnavailableError(
    `reading ${key} answered that it does not exist, yet the storage still has it: an answer that is not what was asked; nothing was decided on it`,
    "retry; if it persists, check what stands between this machine and the storage (a proxy or gateway)",
  );
}

/** The same failure, with what was being done in front of its message. */
export function withContext(prefix: string, error: unknown): VaultError {
  const e = toVaultError(error);
  return new ContextualError(`${prefix}: ${e.message}`, e);
}

/** Anything not thrown as a VaultError is reported as a plain failure (exit 1). */
export function toVaultError(error: unknown): VaultError {
  if (error instanceof VaultError) return error;
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOSPC") {
      const path = (error as NodeJS.ErrnoException).path;
      // Not knowing which command wrote, name no flag: the commands that can write elsewhere say so themselves.
      return new VaultError(
        `no space left on device${path ? ` writing ${path}` : ""}; nothing was left half-written`,
        "free some space on that file system",
        { cause: error },
      );
    }
    const path = (error as NodeJS.ErrnoException).path;
    if (code === "EACCES" || code === "EPERM")
      return new VaultError(
        path ? `permission denied: ${path}` : `permission denied: ${error.message}`,
        "check its owner and mode, or run as the user who owns it",
        { cause: error },
      );
    if (code === "ENOENT" && path)
      return new VaultError(`no such file or directory: ${path}`, "check the path; a directory it names must exist", { cause: error });
    return new VaultError(error.message, undefined, { cause: error });
  }
  return new VaultError(String(error));
}
