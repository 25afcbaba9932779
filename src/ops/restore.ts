/**
 * Restore: download into a hidden temp file beside the target, run every check of src/check/fetch.ts
 * (size, both SHA-256s, SQLite header, integrity_check), fsync, then swap it atomically into place
 * (src/local/swap.ts) and fsync the directory. On any failure the target path is exactly as it was; an existing database is
 * replaced only with `force`, and then it (with its -wal/-shm/-journal) is moved aside under a name
 * the user can find, never deleted. With `fallback`, a backup that fails a check is skipped (and
 * reported) in favour of the next older one.
 */
import { Database } from "bun:sqlite";
import { closeSync, existsSync, fsyncSync, openSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { describeSelection, listManifests, readCandidates, type Candidate, type Selection } from "../repo/catalog.ts";
import { fetchAndCheck, keyMismatchFailure, type IntegrityCheck } from "../check/fetch.ts";
import { Prefetch } from "../check/stored.ts";
import { NoMatchingIdentityError, type DecryptionSettings } from "../pipeline/age.ts";
import type { RunContext } from "../context.ts";
import { freeSpace, isNoSpace, NoSpaceError, VaultError, VerificationError, type CheckStep } from "../errors.ts";
import { acquireLock } from "../local/lock.ts";
import { prepend } from "../util/streams.ts";
import { assertValidName, backupIdTime, type BackupManifest } from "../repo/manifest.ts";
import { resolveForWrite } from "../local/safe-path.ts";
import { removeStale, tempTag } from "../local/stale.ts";
import { syncDirectory } from "../local/fsync.ts";
import { refuseIfOpen } from "../local/open-files.ts";
import { installRestored, isEmptyFile, ownerFor, refuseOrphanSidecars, SIDECARS, type InstallOptions } from "../local/swap.ts";
import type { Storage } from "../storage/types.ts";

export interface RestoreInput {
  name: string;
  /** Where the database goes. */
  target: string;
  selection: Selection;
  force?: boolean;
  ifMissing?: boolean;
  /** quick_check instead of integrity_check. */
  quick?: boolean;
  /** When a backup fails a check, try the next older one. */
  fallback?: boolean;
  /** Keys for encrypted backups. */
  decryption?: DecryptionSettings;
}

export interface SkippedBackup {
  id: string;
  createdAt: string;
  step: CheckStep;
  reason: string;
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
      check: IntegrityCheck;
      /** Where the replaced database was moved, when one was replaced. */
      replaced: string[];
      /** Newer backups that failed a check and were passed over (only with fallback). */
      skipped: SkippedBackup[];
      warnings: string[];
      durationMs: number;
    }
  | { action: "skipped"; reason: "target-exists" | "no-backups"; name: string; target: string; repo: string };

/**
 * Restore one backup to `target`. Throws VerificationError (exit 4) when the chosen backup fails a
 * check (with `fallback`: when every candidate fails), VaultError when there is nothing to restore
 * or the target exists without `force`; in every failure case the target and its sidecar files are
 * untouched and no temp file remains.
 */
export async function runRestore(storage: Storage, input: RestoreInput, ctx: RunContext): Promise<RestoreResult> {
  const started = performance.now();
  assertValidName(input.name);
  const target = resolveForWrite(input.target);
  if (target !== resolve(input.target)) ctx.log.info(`${input.target} is a symbolic link: restoring to ${target}, where it leads`);
  const base = { name: input.name, target, repo: storage.url };
  const dir = dirname(target);
  if (!isDirectory(dir))
    throw existsSync(dir)
      ? new VaultError(`${dir} is not a directory`, "give a path in a directory")
      : new VaultError(`directory ${dir} does not exist`, `create it first: mkdir -p ${dir}`);
  const empty = isEmptyFile(target);
  refuseOrphanSidecars(target);
  // Before --if-missing's "it exists": a directory there (what `docker run -v` makes of a host file
  // that is missing) is no database, and the application would start with none.
  const existing = statSync(target, { throwIfNoEntry: false });
  if (existing && !existing.isFile())
    throw new VaultError(
      `${target} is not a regular file (${existing.isDirectory() ? "a directory" : "a special file"}); refusing to replace it`,
      "give the database's file path, or --output FILE to restore elsewhere",
    );
  if (input.ifMissing && existing && !empty) {
    ctx.log.info(`${target} exists; nothing to restore`);
    return { action: "skipped", reason: "target-exists", ...base };
  }
  if (empty)
    ctx.log.info(
      `${target} is empty: no database has been written there yet, so it is restored as a missing one (the empty file is kept aside)`,
    );
  if (existing && !input.force && !empty)
    throw new VaultError(
      `${target} already exists; refusing to overwrite it`,
      "pass --force to replace it (the current file is kept aside), or --output to restore elsewhere",
    );
  refuseIfOpen(target);

  // A fresh deployment's local repository may not exist yet; the first backup would create it.
  if (input.ifMissing) await storage.create?.();
  const entries = await listManifests(storage, input.name);
  if (entries.length === 0 && input.ifMissing) {
    ctx.log.info(`no backups of ${input.name} in ${storage.url}; starting without one`);
    return { action: "skipped", reason: "no-backups", ...base };
  }
  // The first backup's data object is asked for while its manifest is read.
  const prefetch = new Prefetch(storage, ctx.signal);
  try {
    const candidates = readCandidates(storage, entries, input.selection, { log: ctx.log, onRead: (e) => prefetch.start(e.dataKey) });
    const first = await candidates.next();
    if (first.done) {
      const which = describeSelection(input.selection);
      throw new VaultError(`no backup of ${input.name}${which ? ` ${which}` : ""} in ${storage.url}`, "run: sqlite-vault list");
    }

    // One restore (or backup) of a path at a time; then what a killed restore left here is stale.
    const lock = acquireLock(target, "restore");
    try {
      for (const stale of removeStale(dir, tempPrefix(target))) ctx.log.info(`removed ${stale}, left by a killed restore`);
      return await restoreFirstSound(storage, input, prepend([first.value], candidates), target, ctx, started, prefetch);
    } finally {
      lock.release();
    }
  } finally {
    prefetch.release();
  }
}

/** Whether `path` is a directory; false when it is missing or a file stands where a directory is named (ENOTDIR). */
function isDirectory(path: string): boolean {
  try {
    return statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return false;
    throw error;
  }
}

/** A backup that failed a check: the end of the restore, or with fallback, one to pass over (recorded in `skipped`). */
function passingOver(input: RestoreInput, skipped: SkippedBackup[], ctx: RunContext) {
  return (error: VerificationError, id: string, createdAt: string): void => {
    if (!input.fallback)
      throw new VerificationError(
        `${error.message} (failed step: ${error.step}); nothing was restored`,
        error.step,
        error.hint ??
          ("id" in input.selection
            ? "run: sqlite-vault verify --all"
            : "pass --fallback to restore the newest backup that passes every check"),
      );
    ctx.log.warn(`skipping backup ${id}: failed step ${error.step}: ${error.message}`);
    skipped.push({ id, createdAt, step: error.step, reason: error.message });
  };
}

/** What a restore of `manifest` reports about the backup itself. */
function restored(manifest: BackupManifest, target: string, storage: Storage) {
  return {
    action: "restored" as const,
    id: manifest.id,
    name: manifest.name,
    createdAt: manifest.createdAt,
    target,
    repo: storage.url,
    databaseBytes: manifest.database.bytes,
    storedBytes: manifest.stored.bytes,
  };
}

async function restoreFirstSound(
  storage: Storage,
  input: RestoreInput,
  candidates: AsyncIterable<Candidate>,
  target: string,
  ctx: RunContext,
  started: number,
  prefetch: Prefetch,
): Promise<RestoreResult> {
  const dir = dirname(target);
  const previous = statSync(target, { throwIfNoEntry: false });
  const mode = previous ? previous.mode & 0o777 : 0o600;
  const owner = ownerFor(target, previous);
  const skipped: SkippedBackup[] = [];
  const passOver = passingOver(input, skipped, ctx);
  for await (const candidate of candidates) {
    if (!candidate.ok) {
      passOver(candidate.error, candidate.entry.id, new Date(backupIdTime(candidate.entry.id)).toISOString());
      continue;
    }
    const manifest = candidate.manifest;
    ctx.log.info(`restoring ${manifest.name} ${manifest.id} (${manifest.createdAt}) to ${target}`);
    const temp = ctx.temp.add(join(dir, `${tempPrefix(target)}${tempTag()}.tmp`));
    // Measured before the download: once it fails, its file may hold the space until its last descriptor closes.
    const free = freeSpace(dir);
    const hint = "free some space there, or restore to a larger disk with --output PATH";
    // Refused before a byte is written: filling the disk first would also fill it for the
    // application that shares it (and a planted manifest may claim any size).
    if (free !== null && manifest.database.bytes > free)
      throw new NoSpaceError(dir, manifest.database.bytes, free, `to restore ${manifest.name}`, hint);
    try {
      const { check, warnings, replaced } = await restoreOne(
        storage,
        manifest,
        temp,
        target,
        { mode, owner, force: input.force === true },
        input,
        ctx,
        prefetch,
      );
      return {
        ...restored(manifest, target, storage),
        check,
        replaced,
        skipped,
        warnings,
        durationMs: Math.round(performance.now() - started),
      };
    } catch (error) {
      if (isNoSpace(error))
        throw new NoSpaceError(dir, manifest.database.bytes, free, `to restore ${manifest.name}`, hint, { cause: error });
      // With --fallback, a backup the given keys cannot open (one from before a key rotation) is
      // passed over like a damaged one; without it, that stays exit 12.
      if (input.fallback && error instanceof NoMatchingIdentityError) {
        passOver(keyMismatchFailure(error, manifest), manifest.id, manifest.createdAt);
        continue;
      }
      if (!(error instanceof VerificationError)) throw error;
      passOver(error, manifest.id, manifest.createdAt);
    } finally {
      ctx.progress?.end();
      for (const path of [temp, ...SIDECARS.map((s) => temp + s)]) ctx.temp.remove(path);
    }
  }
  throw new VerificationError(
    `none of the ${skipped.length} backup(s) of ${input.name} passed verification; nothing was restored`,
    skipped[0]?.step ?? "checksum",
    "run: sqlite-vault verify --all",
  );
}

/**
 * One backup to `target`, through a temp file: fetch, decrypt, split, decompress, hash, write and
 * check it (fetchAndCheck), then swap it into place (installRestored) and make the rename durable.
 * Throws as those do; the caller removes `temp` whatever happens.
 */
async function restoreOne(
  storage: Storage,
  manifest: BackupManifest,
  temp: string,
  target: string,
  file: InstallOptions,
  input: RestoreInput,
  ctx: RunContext,
  prefetch: Prefetch,
) {
  ctx.progress?.phase(`downloading ${manifest.name}`, manifest.stored.bytes);
  const progress = {
    downloaded: (n: number) => ctx.progress?.advance(n),
    checking: (check: IntegrityCheck) => ctx.progress?.phase(`checking ${manifest.name} (${check})`),
  };
  const { check, warnings } = await fetchAndCheck(
    storage,
    manifest,
    temp,
    { mode: file.mode, durable: true, quick: input.quick, decryption: input.decryption, progress, prefetch },
    ctx,
  );
  ctx.progress?.end();
  for (const warning of warnings) ctx.log.warn(warning);
  if (manifest.snapshot?.journalMode === "wal" && manifest.snapshot.method === "vacuum-into") setWalMode(temp);
  ctx.signal.throwIfAborted();
  let replaced: string[];
  try {
    replaced = installRestored(temp, target, file, ctx);
  } catch (error) {
    // One that failed after the switch (a stray -wal moved aside) still renamed files: make that durable.
    await syncDirectory(dirname(target)).catch(() => {});
    throw error;
  }
  ctx.temp.keep(temp);
  await syncDirectory(dirname(target));
  return { check, warnings, replaced };
}

/** Restore temp files: hidden, beside the target, named after it and the restoring process. */
function tempPrefix(target: string): string {
  return `.${basename(target)}.sqlite-vault-`;
}

/**
 * Backups made with VACUUM INTO hold rollback-journal files; give a WAL database its journal mode
 * back. (Online-backup-API copies keep the source's header, WAL mode included.)
 */
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
