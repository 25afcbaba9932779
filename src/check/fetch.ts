/**
 * The checks that make a stored backup trustworthy, shared by verify and restore. For one manifest,
 * streaming, into one local file:
 *   object     the data object exists and its size matches the manifest (src/check/stored.ts, from the GET's answer)
 *   checksum   SHA-256 of the stored bytes; decompression (src/check/download.ts); SHA-256 of the database bytes
 *   sqlite     the file opens as SQLite; page size and page count match the manifest (src/check/database.ts)
 *   integrity  PRAGMA integrity_check (or quick_check); foreign_key_check findings are warnings
 * (The first step, "manifest", is parseManifest's.) Each failure is a VerificationError naming its step.
 */
import type { RunContext } from "../context.ts";
import { VerificationError } from "../errors.ts";
import { syncPath } from "../local/fsync.ts";
import { type DecryptionSettings, type NoMatchingIdentityError, UnencryptedBackupError } from "../pipeline/age.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import { formatSeconds, secondsSince } from "../output.ts";
import type { Storage } from "../storage/types.ts";
import type { Digest } from "../util/streams.ts";
import { checkDatabase } from "./database.ts";
import { download } from "./download.ts";
import { digestFile, type IntegrityCheck } from "./integrity.ts";
import { corrupt, digestObject, storedMismatch, type Prefetch } from "./stored.ts";

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
  /** A GET of the data object already begun (src/check/stored.ts). */
  prefetch?: Prefetch;
}

/**
 * A backup that none of the given keys opens (or an unencrypted one, when keys were given), as a failed check (step checksum): for verify, a
 * failure of that backup among others; for restore --fallback, one to pass over. Its stored bytes
 * were checked against the manifest before this is thrown (see src/check/download.ts).
 */
export function keyMismatchFailure(error: NoMatchingIdentityError, manifest: BackupManifest): VerificationError {
  if (error instanceof UnencryptedBackupError) return new VerificationError(error.message, "checksum");
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
    const started = performance.now();
    const stop = new AbortController();
    const signal = AbortSignal.any([ctx.signal, stop.signal]);
    let synced: Promise<void> = Promise.resolve();
    try {
      const downloadOptions = {
        mode: options.mode,
        decryption: options.decryption,
        downloaded: options.progress?.downloaded,
        prefetch: options.prefetch,
      };
      const times = await download(storage, manifest, path, downloadOptions, ctx);
      ctx.signal.throwIfAborted();
      ctx.log.debug(
        `downloaded and decompressed ${manifest.id} in ${secondsSince(started)} s (the last stored byte at ${formatSeconds(times.lastByteMs)} s; ` +
          `decompressing ${formatSeconds(times.decompress.ms)} s and writing ${formatSeconds(times.write.ms)} s, summed over their calls)`,
      );
      const checkStarted = performance.now();
      const check: IntegrityCheck = options.quick ? "quick_check" : "integrity_check";
      // The database's SHA-256, the fsync and the integrity check run at once: the hash on a check
      // worker (the check's longest statement leaves the other core idle), the fsync on the thread pool.
      // A file that is not the manifest's database stops the check, and is reported as such whatever
      // the check made of it.
      const isDatabase = (d: Digest) => d.bytes === manifest.database.bytes && d.sha256 === manifest.database.sha256;
      // When each of the three ended, for the debug line.
      const endedAt = { digest: 0, check: 0, sync: 0 };
      const timed = <T>(phase: keyof typeof endedAt, work: Promise<T>) =>
        work.finally(() => {
          endedAt[phase] = performance.now() - checkStarted;
        });
      const digest = timed("digest", digestFile(path, signal)).then((d) => {
        if (!isDatabase(d)) stop.abort(new Error("not the database"));
        return d;
      });
      digest.catch(() => {}); // awaited below
      options.progress?.checking(check);
      if (options.durable) synced = timed("sync", syncPath(path));
      synced.catch(() => {}); // awaited below
      const checked = await timed("check", checkDatabase(path, manifest, check, signal)).then(
        (warnings) => ({ warnings }),
        (error: unknown) => ({ error }),
      );
      if (!isDatabase(await digest)) throw corrupt(manifest, "the decompressed database does not match its manifest's SHA-256");
      if ("error" in checked) throw checked.error;
      await synced;
      const at = (ms: number) => `${formatSeconds(ms)} s`;
      ctx.log.debug(
        `SHA-256, ${check}${options.durable ? " and fsync" : ""} of ${manifest.id} in ${secondsSince(checkStarted)} s, at once ` +
          `(SHA-256 done at ${at(endedAt.digest)}, ${check} at ${at(endedAt.check)}${options.durable ? `, fsync at ${at(endedAt.sync)}` : ""})`,
      );
      return { check, warnings: checked.warnings };
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
    const digest = await digestObject(storage, manifest, ctx, onBytes);
    if (digest.bytes !== manifest.stored.bytes || digest.sha256 !== manifest.stored.sha256) throw storedMismatch(manifest);
  } catch (error) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw error;
  }
}
