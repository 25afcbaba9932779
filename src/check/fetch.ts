/**
 * The checks that make a stored backup trustworthy, shared by verify and restore. For one manifest,
 * streaming, into one local file:
 *   object     the data object exists and its size matches the manifest
 *   checksum   SHA-256 of the stored bytes; decompression; SHA-256 of the database bytes
 *   sqlite     the file opens as SQLite; page size and page count match the manifest
 *   integrity  PRAGMA integrity_check (or quick_check); foreign_key_check findings are warnings
 * (The first step, "manifest", is parseManifest's.) Each failure is a VerificationError naming its step.
 */
import { open, type FileHandle } from "node:fs/promises";
import { collectGarbage, decompress } from "../pipeline/codec.ts";
import type { RunContext } from "../context.ts";
import { decryptStream, NoMatchingIdentityError, redactSecrets, type DecryptionSettings } from "../pipeline/age.ts";
import { NotFoundError, StorageUnavailableError, VaultError, VerificationError } from "../errors.ts";
import type { BackupManifest } from "../repo/manifest.ts";
import { checkIntegrity, digestFile, openCopy, WriteProgress, type IntegrityCheck } from "./integrity.ts";
import { secondsSince } from "../output.ts";
import { readDatabaseHeader } from "../pipeline/snapshot.ts";
import type { Storage } from "../storage/types.ts";
import { syncPath, writeFully } from "../local/fsync.ts";
import { createDigestStream, iterate, mapStreamErrors } from "../util/streams.ts";

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
 * Download the backup into a new file at `path` (created with `mode`; fsynced when `durable`) and run every check.
 * Throws VerificationError (with its step) when the backup is bad, storage errors when the storage
 * fails, and the signal's reason when aborted. The caller owns `path` and removes it on failure.
 */
/**
 * A backup that none of the given keys opens, as a failed check (step checksum): for verify, a
 * failure of that backup among others; for restore --fallback, one to pass over. Its stored bytes
 * were checked against the manifest before this is thrown (see fetchAndCheck).
 */
export function keyMismatchFailure(error: NoMatchingIdentityError, manifest: BackupManifest): VerificationError {
  const recipients = manifest.stored.encryption?.recipients ?? [];
  const to = recipients.length ? ` (it is encrypted to ${recipients.join(", ")})` : " (it is encrypted with a passphrase)";
  return new VerificationError(`${error.message}${to}; its stored bytes match its manifest`, "checksum");
}

export async function fetchAndCheck(storage: Storage, manifest: BackupManifest, path: string, options: CheckOptions, ctx: RunContext): Promise<CheckResult> {
  try {
    await checkObject(storage, manifest);
    const started = performance.now();
    const stop = new AbortController();
    const signal = AbortSignal.any([ctx.signal, stop.signal]);
    let synced: Promise<void> = Promise.resolve();
    try {
      // The database's SHA-256 is read back from the file behind the download (src/check/integrity.ts).
      const digest = await download(storage, manifest, path, options, ctx, (progress) => digestFile(path, progress, signal));
      ctx.signal.throwIfAborted();
      if (digest.bytes !== manifest.database.bytes || digest.sha256 !== manifest.database.sha256)
        throw new VerificationError(`backup ${manifest.id} is corrupt: the decompressed database does not match its manifest's SHA-256`, "checksum");
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

/** Step "object": the data object exists and has the size the manifest records. */
async function checkObject(storage: Storage, manifest: BackupManifest): Promise<void> {
  const info = await storage.stat(manifest.stored.key);
  if (!info) throw new VerificationError(`backup ${manifest.id}: its data object ${manifest.stored.key} is missing`, "object");
  if (info.size !== manifest.stored.bytes)
    throw new VerificationError(`backup ${manifest.id}: its data object is ${info.size} bytes, the manifest says ${manifest.stored.bytes}`, "object");
}

/**
 * Only the stored bytes of a backup: its size and SHA-256 (for an encrypted backup checked without
 * its key). Throws VerificationError ("object", "checksum").
 */
export async function checkStoredBytes(storage: Storage, manifest: BackupManifest, ctx: RunContext, onBytes?: (bytes: number) => void): Promise<void> {
  try {
    await checkObject(storage, manifest);
    const digest = await digestObject(storage, manifest, ctx, onBytes);
    if (digest.bytes !== manifest.stored.bytes || digest.sha256 !== manifest.stored.sha256)
      throw new VerificationError(`backup ${manifest.id} is corrupt: the stored object does not match its manifest's SHA-256`, "checksum");
  } catch (error) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw error;
  }
}

async function digestObject(storage: Storage, manifest: BackupManifest, ctx: RunContext, onBytes?: (bytes: number) => void) {
  const digest = createDigestStream(onBytes);
  for await (const _ of iterate((await openObject(storage, manifest, ctx)).pipeThrough(digest.stream), ctx.signal));
  return digest.result();
}

async function openObject(storage: Storage, manifest: BackupManifest, ctx: RunContext): Promise<ReadableStream<Uint8Array>> {
  const key = manifest.stored.key;
  try {
    const source = await storage.get(key, { signal: ctx.signal });
    return mapStreamErrors(source, (error) => (error instanceof VaultError ? error : new StorageUnavailableError(`download of ${key} failed: ${(error as Error).message}`)));
  } catch (error) {
    if (error instanceof NotFoundError) throw new VerificationError(`backup ${manifest.id}: its data object ${key} is missing`, "object");
    throw error;
  }
}

/**
 * As on the way up (src/pipeline/codec.ts): without a collection now and then, download buffers pile up.
 * Decompressing 1 GiB: none 1.50 s, 86 MiB peak; every 64 MiB 1.63 s, 73 MiB; every 16 MiB 1.84 s, 65 MiB.
 */
const COLLECT_BYTES = 64 * 1024 * 1024;

/**
 * Step "checksum": stream the object through its digest, the decryption and the decompressor into
 * `path`, while `follow` reads the file back behind the writes; the database's digest it returns.
 */
async function download(
  storage: Storage,
  manifest: BackupManifest,
  path: string,
  options: CheckOptions,
  ctx: RunContext,
  follow: (progress: WriteProgress) => Promise<{ bytes: number; sha256: string }>,
): Promise<{ bytes: number; sha256: string }> {
  const { stored, database } = manifest;
  const storedDigest = createDigestStream(options.progress?.downloaded);
  const ciphertextOrCompressed = (await openObject(storage, manifest, ctx)).pipeThrough(storedDigest.stream);
  let compressed = ciphertextOrCompressed;
  if (stored.encryption) {
    try {
      compressed = await decryptStream(ciphertextOrCompressed, options.decryption ?? { identities: [], passphrases: [] }, `backup ${manifest.id}`);
    } catch (error) {
      if (ctx.signal.aborted || (error instanceof VaultError && !(error instanceof NoMatchingIdentityError))) throw error;
      // A damaged header reads like a wrong key, or does not parse: the stored checksum tells which.
      const digest = await digestObject(storage, manifest, ctx);
      if (digest.sha256 !== stored.sha256) throw new VerificationError(`backup ${manifest.id} is corrupt: the stored object does not match its manifest's SHA-256`, "checksum");
      if (error instanceof NoMatchingIdentityError) throw error;
      throw new VerificationError(`backup ${manifest.id} is corrupt: its age header does not parse (${redactSecrets((error as Error).message)})`, "checksum");
    }
  }
  const plain = decompress(compressed, stored.compression);
  const handle = await open(path, "wx", options.mode);
  const progress = new WriteProgress();
  const digest = follow(progress);
  digest.catch(() => {}); // awaited below, once the file is written
  let written = 0;
  let ok = false;
  const writer = new CoalescingWriter(handle, progress);
  try {
    let sinceCollect = 0;
    for await (const chunk of iterate(plain, ctx.signal)) {
      written += chunk.byteLength;
      // Never let a damaged or hostile object expand past the database it claims to hold.
      if (written > database.bytes) throw new VerificationError(`backup ${manifest.id} is corrupt: it decompresses to more than the manifest's ${database.bytes} bytes`, "checksum");
      await writer.write(chunk);
      sinceCollect += chunk.byteLength;
      if (sinceCollect >= COLLECT_BYTES) {
        sinceCollect = 0;
        collectGarbage();
      }
    }
    await writer.flush();
    ok = true;
  } catch (error) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    // Storage and file-system errors pass through; anything else came from the decompressor.
    if (error instanceof VaultError || isFsError(error)) throw error;
    const s = storedDigest.result();
    if (s.sha256 !== stored.sha256 && s.bytes === stored.bytes)
      throw new VerificationError(`backup ${manifest.id} is corrupt: the stored object does not match its manifest's SHA-256`, "checksum");
    throw new VerificationError(`backup ${manifest.id} is corrupt: ${stored.encryption ? "decryption or " : ""}decompression failed (${(error as Error).message})`, "checksum");
  } finally {
    progress.end(ok);
    await handle.close();
  }
  const s = storedDigest.result();
  if (s.bytes !== stored.bytes || s.sha256 !== stored.sha256)
    throw new VerificationError(`backup ${manifest.id} is corrupt: the stored object does not match its manifest's SHA-256 (${s.bytes} of ${stored.bytes} bytes read)`, "checksum");
  if (written !== database.bytes) throw new VerificationError(`backup ${manifest.id} is corrupt: it decompresses to ${written} bytes, the manifest says ${database.bytes}`, "checksum");
  return await digest;
}

/** Bytes per write of the database file, at least. */
const WRITE_BYTES = 2 * 1024 * 1024;

/**
 * Writes a file in pieces of at least WRITE_BYTES, whatever the chunks it is given (an uncompressed
 * download's are far smaller; a gzip member's or zstd frame's 2 MiB pass straight through), reporting each to
 * `progress`. The file system caches a file written in 2 MiB pieces in bigger units than one written
 * in 64 KiB ones, and the integrity check then reads it about 15% faster here (8.2 -> 7.0 s per GiB).
 */
class CoalescingWriter {
  private readonly pending = new Uint8Array(WRITE_BYTES);
  private pendingBytes = 0;
  private done = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly progress: WriteProgress,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    if (this.pendingBytes === 0 && chunk.byteLength >= WRITE_BYTES) return this.put(chunk);
    for (let at = 0; at < chunk.byteLength; ) {
      const n = Math.min(WRITE_BYTES - this.pendingBytes, chunk.byteLength - at);
      this.pending.set(chunk.subarray(at, at + n), this.pendingBytes);
      this.pendingBytes += n;
      at += n;
      if (this.pendingBytes === WRITE_BYTES) await this.flush();
    }
  }

  /** Write what is pending. */
  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const bytes = this.pendingBytes;
    this.pendingBytes = 0;
    await this.put(this.pending.subarray(0, bytes));
  }

  private async put(bytes: Uint8Array): Promise<void> {
    await writeFully(this.handle, bytes);
    this.done += bytes.byteLength;
    this.progress.written(this.done);
  }
}

/**
 * Steps "sqlite" and "integrity" on a local copy (the integrity pragmas split across cores, see
 * src/check/integrity.ts). Returns foreign key findings as warnings.
 */
export async function checkDatabase(path: string, manifest: BackupManifest, check: IntegrityCheck, signal?: AbortSignal): Promise<string[]> {
  const header = readDatabaseHeader(path);
  if (header.pageSize !== manifest.database.pageSize || header.pageCount !== manifest.database.pageCount)
    throw new VerificationError(
      `backup ${manifest.id}: page size x count ${header.pageSize} x ${header.pageCount} differs from the manifest's ${manifest.database.pageSize} x ${manifest.database.pageCount}`,
      "sqlite",
    );
  try {
    const db = openCopy(path);
    try {
      db.query("SELECT COUNT(*) FROM sqlite_schema").get();
    } finally {
      db.close();
    }
  } catch (error) {
    throw new VerificationError(`backup ${manifest.id} does not open as SQLite: ${(error as Error).message}`, "sqlite");
  }
  const findings = await checkIntegrity(path, check, signal);
  const problems = findings.problems;
  // An index in a collation only the application defines (create_collation, ICU, Android's
  // LOCALIZED) stops SQLite from checking the file at all: not damage, but nothing was verified.
  const collations = [...new Set(problems.map((p) => /no such collation sequence: (\S+)/.exec(p)?.[1]).filter((c) => c !== undefined))];
  if (collations.length && problems.every((p) => /no such collation sequence/.test(p)))
    throw new VerificationError(
      `backup ${manifest.id} cannot be checked here: its schema uses the collation sequence ${collations.join(", ")}, which only the application that made it defines`,
      "integrity",
      "the stored object is a plain database file: README, \"Format and recovery without sqlite-vault\", restores it by hand",
    );
  if (problems.length)
    throw new VerificationError(`backup ${manifest.id} fails ${check}: ${problems.slice(0, 3).join("; ")}${problems.length > 3 ? ` (+${problems.length - 3} more)` : ""}`, "integrity");
  return findings.foreignKeys;
}

function isFsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code);
}
