/**
 * Restore: download -> check the stored SHA-256 -> decompress -> check the database SHA-256 ->
 * SQLite integrity check -> fsync -> atomic rename into place -> fsync the directory.
 * Everything happens in a hidden temp file beside the target, so on any failure the target path is
 * exactly as it was; an existing database is replaced only with `force`, and then it (with its
 * -wal/-shm/-journal) is moved aside under a name the user can find, never deleted.
 */
import { Database } from "bun:sqlite";
import { chmodSync, existsSync, linkSync, openSync, closeSync, fsyncSync, renameSync, statSync, unlinkSync } from "node:fs";
import { open } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { describeSelection, readCatalog, selectCandidates, type Selection } from "./catalog.ts";
import { createDecompressor } from "./codec.ts";
import type { RunContext } from "./context.ts";
import { NotFoundError, StorageUnavailableError, VaultError, VerificationError } from "./errors.ts";
import { assertValidName, type BackupManifest } from "./manifest.ts";
import { readDatabaseHeader } from "./snapshot.ts";
import { syncDirectory } from "./storage/file.ts";
import type { Storage } from "./storage/types.ts";
import { createDigestStream, iterate, mapStreamErrors } from "./streams.ts";

export interface RestoreInput {
  name: string;
  /** Where the database goes. */
  target: string;
  selection: Selection;
  force?: boolean;
  ifMissing?: boolean;
  /** quick_check instead of integrity_check. */
  quick?: boolean;
}

export type RestoreResult =
  | {
      action: "restored";
      id: string;
      name: string;
      createdAt: string;
      target: string;
      repo: string;
      databaseBytes: number;
      storedBytes: number;
      check: "integrity_check" | "quick_check";
      /** Where the replaced database was moved, when one was replaced. */
      replaced: string[];
      durationMs: number;
    }
  | { action: "skipped"; reason: "target-exists" | "no-backups"; name: string; target: string; repo: string };

/** The sibling files SQLite keeps beside a database. A stale one must never meet a restored file. */
const SIDECARS = ["-wal", "-shm", "-journal"];

/**
 * Restore one backup to `target`. Throws VerificationError (exit 4) when the backup fails a check,
 * VaultError when there is nothing to restore or the target exists without `force`; in every failure
 * case the target and its sidecar files are untouched and no temp file remains.
 */
export async function runRestore(storage: Storage, input: RestoreInput, ctx: RunContext): Promise<RestoreResult> {
  const started = performance.now();
  assertValidName(input.name);
  const target = resolve(input.target);
  const base = { name: input.name, target, repo: storage.url };
  if (input.ifMissing && existsSync(target)) {
    ctx.log.info(`${target} exists; nothing to restore`);
    return { action: "skipped", reason: "target-exists", ...base };
  }
  const dir = dirname(target);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory())
    throw new VaultError(`directory ${dir} does not exist`, `create it first: mkdir -p ${dir}`);
  if (existsSync(target) && !input.force)
    throw new VaultError(`${target} already exists; refusing to overwrite it`, "pass --force to replace it (the current file is kept aside), or --output to restore elsewhere");

  const { backups } = await readCatalog(storage, input.name);
  const candidates = selectCandidates(backups, input.selection);
  const manifest = candidates[0];
  if (!manifest) {
    if (input.ifMissing && backups.length === 0) {
      ctx.log.info(`no backups of ${input.name} in ${storage.url}; starting without one`);
      return { action: "skipped", reason: "no-backups", ...base };
    }
    const which = describeSelection(input.selection);
    throw new VaultError(
      `no backup of ${input.name}${which ? ` ${which}` : ""} in ${storage.url}`,
      backups.length ? "run: sqlite-vault list" : "check --repo and --name; run: sqlite-vault list",
    );
  }

  ctx.log.info(`restoring ${manifest.name} ${manifest.id} (${manifest.createdAt}) to ${target}`);
  const temp = ctx.temp.add(join(dir, `.${basename(target)}.sqlite-vault-${crypto.randomUUID().slice(0, 8)}.tmp`));
  for (const suffix of SIDECARS) ctx.temp.add(temp + suffix);
  try {
    const mode = existsSync(target) ? statSync(target).mode & 0o777 : 0o600;
    await downloadVerified(storage, manifest, temp, mode, ctx);
    const check = input.quick ? "quick_check" : "integrity_check";
    checkDatabase(temp, manifest, check);
    if (manifest.snapshot?.journalMode === "wal") setWalMode(temp);
    ctx.signal.throwIfAborted();
    chmodSync(temp, mode);
    const replaced = swapIntoPlace(temp, target, input.force === true);
    ctx.temp.keep(temp);
    await syncDirectory(dir);
    return {
      action: "restored",
      id: manifest.id,
      name: manifest.name,
      createdAt: manifest.createdAt,
      target,
      repo: storage.url,
      databaseBytes: manifest.database.bytes,
      storedBytes: manifest.stored.bytes,
      check,
      replaced,
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    ctx.temp.remove(temp);
    for (const suffix of SIDECARS) ctx.temp.remove(temp + suffix);
  }
}

/** Stream the data object into `path`, checking both checksums and sizes. Throws VerificationError. */
export async function downloadVerified(storage: Storage, manifest: BackupManifest, path: string, mode: number, ctx: RunContext): Promise<void> {
  const { stored, database } = manifest;
  let source: ReadableStream<Uint8Array>;
  try {
    source = await storage.get(stored.key, { signal: ctx.signal });
  } catch (error) {
    if (error instanceof NotFoundError) throw new VerificationError(`backup ${manifest.id}: its data object ${stored.key} is missing`);
    throw error;
  }
  const storedDigest = createDigestStream();
  const dbDigest = createDigestStream();
  const plain = mapStreamErrors(source, (error) => (error instanceof VaultError ? error : new StorageUnavailableError(`download of ${stored.key} failed: ${(error as Error).message}`)))
    .pipeThrough(storedDigest.stream).pipeThrough(createDecompressor(stored.compression)).pipeThrough(dbDigest.stream);
  const handle = await open(path, "wx", mode);
  try {
    for await (const chunk of iterate(plain, ctx.signal)) {
      let offset = 0;
      while (offset < chunk.byteLength) offset += (await handle.write(chunk, offset)).bytesWritten;
    }
    await handle.sync();
  } catch (error) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    // Storage and file-system errors pass through; anything else came from the decompressor.
    if (error instanceof VaultError || isFsError(error)) throw error;
    throw new VerificationError(`backup ${manifest.id} is corrupt: decompression failed (${(error as Error).message})`);
  } finally {
    await handle.close();
  }
  const s = storedDigest.result();
  const d = dbDigest.result();
  if (s.bytes !== stored.bytes || s.sha256 !== stored.sha256)
    throw new VerificationError(`backup ${manifest.id} is corrupt: the stored object does not match its manifest's SHA-256 (${s.bytes} of ${stored.bytes} bytes read)`);
  if (d.bytes !== database.bytes || d.sha256 !== database.sha256)
    throw new VerificationError(`backup ${manifest.id} is corrupt: the decompressed database does not match its manifest's SHA-256`);
}

/** Open the restored copy as SQLite and run the integrity check. Throws VerificationError. */
export function checkDatabase(path: string, manifest: BackupManifest, check: "integrity_check" | "quick_check"): void {
  const header = readDatabaseHeader(path);
  if (header.pageSize !== manifest.database.pageSize || header.pageCount !== manifest.database.pageCount)
    throw new VerificationError(`backup ${manifest.id}: page size/count ${header.pageSize}x${header.pageCount} differ from the manifest's ${manifest.database.pageSize}x${manifest.database.pageCount}`);
  let db: Database | undefined;
  try {
    db = new Database(path, { readonly: true });
    const rows = db.query(`PRAGMA ${check}`).all() as Record<string, string>[];
    const problems = rows.map((row) => Object.values(row)[0]).filter((v) => v !== "ok");
    if (problems.length) throw new VerificationError(`backup ${manifest.id} fails ${check}: ${problems.slice(0, 3).join("; ")}${problems.length > 3 ? ` (+${problems.length - 3} more)` : ""}`);
  } catch (error) {
    if (error instanceof VerificationError) throw error;
    throw new VerificationError(`backup ${manifest.id} does not open as SQLite: ${(error as Error).message}`);
  } finally {
    db?.close();
  }
}

/** VACUUM INTO writes rollback-journal files; give a WAL database its journal mode back. */
function setWalMode(path: string): void {
  const db = new Database(path);
  try {
    db.run("PRAGMA journal_mode = WAL");
  } finally {
    db.close();
  }
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Atomically put `temp` at `target`. An existing target (only with force) and any sidecar files are
 * first moved aside as `{target}.replaced-{time}{suffix}`; returns those paths.
 */
function swapIntoPlace(temp: string, target: string, force: boolean): string[] {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const aside = `${target}.replaced-${stamp}`;
  const moved: string[] = [];
  const targetExists = existsSync(target);
  if (targetExists) {
    if (!force) throw new VaultError(`${target} appeared during the restore; refusing to overwrite it`, "pass --force to replace it");
    // A hard link keeps the old database reachable while rename() replaces the target atomically.
    try {
      linkSync(target, aside);
    } catch {
      renameSync(target, aside);
    }
    moved.push(aside);
  }
  for (const suffix of SIDECARS) {
    if (existsSync(target + suffix)) {
      renameSync(target + suffix, aside + suffix);
      moved.push(aside + suffix);
    }
  }
  if (targetExists) renameSync(temp, target);
  else {
    // link() refuses to overwrite: a file created meanwhile by someone else is never clobbered.
    try {
      linkSync(temp, target);
      unlinkSync(temp);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") throw new VaultError(`${target} appeared during the restore; refusing to overwrite it`, "pass --force to replace it");
      renameSync(temp, target); // filesystems without hard links
    }
  }
  return moved;
}

function isFsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code);
}
