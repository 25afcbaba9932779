/**
 * The checks that make a stored backup trustworthy, shared by verify and restore. For one manifest,
 * streaming, into one local file:
 *   object     the data object exists and its size matches the manifest (src/check/stored.ts)
 *   checksum   SHA-256 of the stored bytes; decompression; SHA-256 of the database bytes (src/check/download.ts)
 *   sqlite     the file opens as SQLite; page size and page count match the manifest (src/check/database.ts)
 *   integrity  PRAGMA integrity_check (or quick_check); foreign_key_check findings are warnings
 * (The first step, "manifest", is parseManifest's.) Each failure is a VerificationError naming its step.
 */
import type { RunContext } from "../context.ts";
import { VerificationError } from "../errors.ts";
import { syncPath } from "../local/fsync.ts";
import type { DecryptionSettings, NoMatchingIdentityError } from "../pipeline/age.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import { secondsSince } from "../output.ts";
import type { Storage } from "../storage/types.ts";
import { checkDatabase } from "./database.ts";
import { download } from "./download.ts";
import { digestFile, type IntegrityCheck } from "./integrity.ts";
import { checkObject, corrupt, digestObject, storedMismatch } from "./stored.ts";

export type { IntegrityCheck };

export interface CheckResult {
  check: IntegrityCheck;
  /** Findings that do not fail the backup (foreign key violations). */
  warnings: string[];
}

export interface CheckOptions {
  mode: number;
  /** fsync the file (a restore keeps it; verify deletes it). The fsync overlaps the integrity check. */
  durable?: boolean;
  quick?: boolean;
  /** Keys for encrypted backups. */
  decryption?: DecryptionSettings;
  /** Told each block of stored bytes downloaded, and when the checks of the downloaded file begin. */
  progress?: { downloaded(bytes: number): void; checking(check: IntegrityCheck): void };
}

/**
 * A backup that none of the given keys opens, as a failed check (step checksum): for verify, a
 * failure of that backup among others; for restore --fallback, one to pass over. Its stored bytes
 * were checked against the manifest before this is thrown (see src/check/download.ts).
 */
export function keyMismatchFailure(error: NoMatchingIdentityError, manifest: BackupManifest): VerificationError {
  const recipients = manifest.stored.encryption?.recipients ?? [];
  const to = recipients.length ? ` (it is encrypted to ${recipients.join(", ")})` : " (it is encrypted with a passphrase)";
  return new VerificationError(`${error.message}${to}; its stored bytes match its manifest`, "checksum");
}

/**
 * Download the backup into a new file at `path` (created with `mode`; fsynced when `durable`) and run every check.
 * Throws VerificationError (with its step) when the backup is bad, storage errors when the storage
 * fails, and the signal's reason when aborted. The caller owns `path` and removes it on failure.
 */
export async function fetchAndCheck(
  storage: Storage,
  manifest: BackupManifest,
  path: string,
  options: CheckOptions,
  ctx: RunContext,
): Promise<CheckResult> {
  try {
    await checkObject(storage, manifest);
    const started = performance.now();
    const stop = new AbortController();
    const signal = AbortSignal.any([ctx.signal, stop.signal]);
    let synced: Promise<void> = Promise.resolve();
    try {
      // The database's SHA-256 is read back from the file behind the download (src/check/integrity.ts).
      const downloadOptions = { mode: options.mode, decryption: options.decryption, downloaded: options.progress?.downloaded };
      const digest = await download(storage, manifest, path, downloadOptions, ctx, (progress) => digestFile(path, progress, signal));
      ctx.signal.throwIfAborted();
      if (digest.bytes !== manifest.database.bytes || digest.sha256 !== manifest.database.sha256)
        throw corrupt(manifest, "the decompressed database does not match its manifest's SHA-256");
      ctx.log.debug(`downloaded, decompressed and hashed ${manifest.id} in ${secondsSince(started)} s`);
      const checkStarted = performance.now();
      const check: IntegrityCheck = options.quick ? "quick_check" : "integrity_check";
      // The fsync and the integrity check run at once, on the thread pool and the worker threads.
      options.progress?.checking(check);
      if (options.durable) synced = syncPath(path);
      synced.catch(() => {}); // awaited below
      const warnings = await checkDatabase(path, manifest, check, signal);
      await synced;
      ctx.log.debug(`${check}${options.durable ? " and fsync" : ""} of ${manifest.id} in ${secondsSince(checkStarted)} s`);
      return { check, warnings };
    } finally {
      stop.abort(new Error("check stopped"));
      await synced.catch(() => {});
    }
  } catch (error) {
    // An interrupted download can look like a short object: never report an interruption as damage.
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw error;
  }
}

/**
 * Only the stored bytes of a backup: its size and SHA-256 (for an encrypted backup checked without
 * its key). Throws VerificationError ("object", "checksum").
 */
export async function checkStoredBytes(
  storage: Storage,
  manifest: BackupManifest,
  ctx: RunContext,
  onBytes?: (bytes: number) => void,
): Promise<void> {
  try {
    await checkObject(storage, manifest);
    const digest = await digestObject(storage, manifest, ctx, onBytes);
    if (digest.bytes !== manifest.stored.bytes || digest.sha256 !== manifest.stored.sha256) throw storedMismatch(manifest);
  } catch (error) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw error;
  }
}
