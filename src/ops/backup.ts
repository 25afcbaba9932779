/**
 * Backup: snapshot -> compress in parallel blocks -> encrypt -> hash -> upload the data object ->
 * write the manifest (the commit point); storeSnapshot is that line. Reading the snapshot,
 * compressing (on the thread pool) and uploading overlap; checksums of the database bytes and of
 * the stored bytes are computed in the same single pass.
 */
import { hostname } from "node:os";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { BLOCK_SIZE, blockCompressor, mapBlocks, defaultParallelism, type BlockCompressor } from "../pipeline/codec.ts";
import { describeEncryption, encryptStream, type EncryptionSettings } from "../pipeline/age.ts";
import { creationTime } from "./clock-guard.ts";
import { assertEncryptionKept } from "./encryption-guard.ts";
import { assertSameSource } from "./source-guard.ts";
import { commit, takeBack } from "./commit.ts";
import type { RunContext } from "../context.ts";
import { UsageError, VaultError, VerificationError } from "../errors.ts";
import { acquireLock, safeRealpath } from "../local/lock.ts";
import { isFutureDated, listManifests } from "../repo/catalog.ts";
import {
  assertValidName,
  createBackupId,
  dataKey,
  deriveName,
  FORMAT_NAME,
  FORMAT_VERSION,
  manifestKey,
  type BackupManifest,
  type Compression,
} from "../repo/manifest.ts";
import { secondsSince } from "../output.ts";
import { createSnapshot, type Snapshot } from "../pipeline/snapshot.ts";
import type { Storage } from "../storage/types.ts";
import { BufferPool, createDigestStream, type Digest } from "../util/streams.ts";
import { VERSION } from "../version.ts";

export interface BackupInput {
  databasePath: string;
  /** Defaults to deriveName(databasePath). */
  name?: string;
  /**
   * False when `name` was derived from the file name: the backup then refuses to join a name whose
   * newest backup is of another file (see assertSameSource). Default true.
   */
  nameGiven?: boolean;
  compression: Compression;
  /** Encrypt the stored object with age; null or absent: not encrypted. */
  encryption?: EncryptionSettings | null;
  /** Unencrypted on purpose (--no-encryption): may follow encrypted backups. */
  plaintextChosen?: boolean;
  tmpDir: string;
  /** quick_check the snapshot first: a damaged database is refused (exit 4), never stored. */
  check?: boolean;
  /** The clock; tests pass a fixed time. */
  now?: () => Date;
  /** Compresses one block; tests pass one that fails. Defaults to blockCompressor(compression). */
  compressBlock?: BlockCompressor;
}

export interface BackupResult {
  id: string;
  name: string;
  createdAt: string;
  database: string;
  repo: string;
  manifestKey: string;
  dataKey: string;
  compression: Compression;
  encrypted: boolean;
  databaseBytes: number;
  storedBytes: number;
  /** stored / database bytes. */
  ratio: number;
  durationMs: number;
}

/**
 * Take a consistent backup of a live database. The backup becomes visible (listable, restorable)
 * only when its manifest is written, after the data object is stored and its size confirmed; on any
 * failure or interruption nothing is listed, the data object is removed when possible and the temp
 * snapshot is always removed. Throws LockedError when another backup of the database is running.
 */
export async function runBackup(storage: Storage, input: BackupInput, ctx: RunContext): Promise<BackupResult> {
  const started = performance.now();
  const name = input.name ?? deriveName(input.databasePath);
  assertValidName(name);
  const lock = acquireLock(input.databasePath, "backup");
  try {
    await storage.create?.();
    // The name's backups, listed once for every check before the snapshot. One dated beyond the time
    // it was stored (a clock that ran ahead, or planted) steers none of them.
    const listed = await listManifests(storage, name);
    const entries = listed.filter((entry) => !isFutureDated(entry));
    await assertEncryptionKept(storage, name, entries, input.encryption ?? null, input.plaintextChosen === true);
    const source = safeRealpath(resolve(input.databasePath));
    const derived = input.name === undefined || input.nameGiven === false;
    // A missing database is reported as missing (by the snapshot), not as another file's name.
    if (existsSync(source) && derived) await assertSameSource(storage, name, source, { entries });
    const createdAt = await creationTime(storage, listed, input.now ?? (() => new Date()), { log: ctx.log, signal: ctx.signal });
    const id = createBackupId(createdAt);
    // Through any symbolic link to the file itself, beside which SQLite keeps the -wal and -shm.
    const snapshot = await createSnapshot(source, input.tmpDir, ctx);
    try {
      if (input.check) {
        ctx.progress?.phase(`checking ${name} (quick_check)`);
        const problems = snapshot.quickCheck();
        if (problems.length)
          throw new VerificationError(
            `${source} is damaged: PRAGMA quick_check found ${problems.length} problem(s), the first: ${problems[0]}; nothing was backed up`,
            "integrity",
            "the backups already stored are untouched: restore the newest sound one (sqlite-vault restore --fallback), or repair the database",
          );
      }
      const result = await storeSnapshot(storage, snapshot, input, { name, id, createdAt, started, source }, ctx);
      // Another file's first backup under this name may have committed while ours ran (two hosts at
      // the same moment): then the one that came second, by id, takes its backup back. A check that
      // gets no answer (a storage error, a signal, --deadline) takes nothing back: the backup is
      // stored, and the other file's next backup still meets the guard before its snapshot.
      if (derived)
        await assertSameSource(storage, name, source, { before: id }).catch(async (error) => {
          if (!(error instanceof UsageError)) {
            const why = ctx.signal.aborted ? "it was cut short" : (error as Error).message;
            ctx.log.warn(
              `backup ${id} of ${name} is stored; whether another file's backups took the name meanwhile was not checked: ${why}`,
            );
            return;
          }
          await takeBack(storage, manifestKey(name, id), result.dataKey, ctx);
          throw error;
        });
      return result;
    } finally {
      snapshot.release();
      ctx.temp.remove(snapshot.dir);
    }
  } finally {
    ctx.progress?.end();
    lock.release();
  }
}

/** Which backup this is: its name, id and time, when the run started, and the source's real path. */
interface BackupIdentity {
  name: string;
  id: string;
  createdAt: Date;
  started: number;
  source: string;
}

/**
 * The data path, each stage once: snapshot -> compress -> encrypt -> hash -> upload -> commit.
 * Reading, compressing and uploading overlap (streams); the manifest is written only once the data
 * object is stored and both digests are known. On failure the data object (and a manifest that may
 * have been stored) is taken back; the caller removes the snapshot.
 */
async function storeSnapshot(
  storage: Storage,
  snapshot: Snapshot,
  input: BackupInput,
  backup: BackupIdentity,
  ctx: RunContext,
): Promise<BackupResult> {
  ctx.log.debug(`snapshot of ${input.databasePath}: ${snapshot.bytes} bytes by ${snapshot.method} in ${secondsSince(backup.started)} s`);
  const encryption = input.encryption ?? null;
  const key = dataKey(backup.name, backup.id, input.compression, encryption !== null);
  const parallel = defaultParallelism();
  const pool = new BufferPool(BLOCK_SIZE, parallel + 1);

  const database = readSnapshot(snapshot, pool, backup.name, ctx);
  const compressed = mapBlocks(database.blocks, input.compressBlock ?? blockCompressor(input.compression), parallel, (block) =>
    pool.release(block),
  );
  const encrypted = encryption ? await encryptStream(compressed, encryption) : compressed;
  const storedDigest = createDigestStream();
  const body = encrypted.pipeThrough(storedDigest.stream);
  // What a failure must take back: the data object once uploaded, and the manifest once committing.
  let stage: "uploading" | "uploaded" | "committing" = "uploading";
  try {
    const size = await upload(storage, key, body, snapshot.bytes, ctx);
    stage = "uploaded";
    const db = database.result();
    const stored = storedDigest.result();
    if (db.bytes !== snapshot.bytes) throw new VaultError(`read ${db.bytes} bytes of the snapshot, expected ${snapshot.bytes}`);
    if (size !== stored.bytes) throw new VaultError(`stored ${size} bytes, expected ${stored.bytes}`);
    ctx.signal.throwIfAborted();

    const manifest = describeBackup(snapshot, input, backup, db, { key, ...stored });
    stage = "committing"; // from here a failure may leave the manifest stored (a write whose answer was lost)
    await commit(storage, manifest, ctx);
    return summarize(manifest, storage, backup);
  } catch (error) {
    // Without a manifest the data object is not a backup; remove it rather than leave an orphan.
    if (stage === "committing") await takeBack(storage, manifestKey(backup.name, backup.id), key, ctx);
    else if (stage === "uploaded") await storage.delete([key]).catch(() => {});
    throw error;
  }
}

/**
 * The snapshot's blocks, counted and hashed as they go by (the database's own digest). The snapshot
 * is let go as soon as its last block is read (for a "file-read", that ends the read transaction on
 * the live database), before the last blocks are compressed and stored.
 */
function readSnapshot(
  snapshot: Snapshot,
  pool: BufferPool,
  name: string,
  ctx: RunContext,
): { blocks: AsyncGenerator<Uint8Array>; result(): Digest } {
  const digest = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  const read = async function* () {
    try {
      yield* snapshot.blocks(pool, ctx.signal);
      // The last blocks are still being compressed and stored.
      ctx.progress?.phase(`storing ${name}`);
    } finally {
      snapshot.release();
    }
  };
  ctx.progress?.phase(`backing up ${name}`, snapshot.bytes);
  const blocks = tap(read(), (block) => {
    digest.update(block);
    bytes += block.byteLength;
    ctx.progress?.advance(block.byteLength);
  });
  return { blocks, result: () => ({ bytes, sha256: digest.digest("hex") }) };
}

/** Stores the data object; its size as stored. */
async function upload(
  storage: Storage,
  key: string,
  body: ReadableStream<Uint8Array>,
  databaseBytes: number,
  ctx: RunContext,
): Promise<number> {
  const started = performance.now();
  // Compressed or not, the stored object is about the database's size at most.
  const { size } = await storage.put(key, body, { signal: ctx.signal, sizeHint: databaseBytes });
  ctx.log.debug(`compressed and stored ${size} bytes in ${secondsSince(started)} s`);
  return size;
}

/** The manifest of a backup whose data object is stored under `stored.key`. */
function describeBackup(
  snapshot: Snapshot,
  input: BackupInput,
  backup: BackupIdentity,
  db: Digest,
  stored: Digest & { key: string },
): BackupManifest {
  const encryption = input.encryption ?? null;
  return {
    format: FORMAT_NAME,
    formatVersion: FORMAT_VERSION,
    id: backup.id,
    name: backup.name,
    createdAt: backup.createdAt.toISOString(),
    host: hostname(),
    source: { path: backup.source },
    toolVersion: VERSION,
    sqliteVersion: snapshot.sqliteVersion,
    snapshot: { method: snapshot.method, journalMode: snapshot.journalMode },
    database: { pageSize: snapshot.pageSize, pageCount: snapshot.pageCount, bytes: db.bytes, sha256: db.sha256 },
    stored: {
      key: stored.key,
      bytes: stored.bytes,
      sha256: stored.sha256,
      compression: input.compression,
      ...(encryption ? { encryption: describeEncryption(encryption) } : {}),
    },
  };
}

function summarize(manifest: BackupManifest, storage: Storage, backup: BackupIdentity): BackupResult {
  const { database, stored } = manifest;
  return {
    id: manifest.id,
    name: manifest.name,
    createdAt: manifest.createdAt,
    database: backup.source,
    repo: storage.url,
    manifestKey: manifestKey(manifest.name, manifest.id),
    dataKey: stored.key,
    compression: stored.compression,
    encrypted: stored.encryption !== undefined,
    databaseBytes: database.bytes,
    storedBytes: stored.bytes,
    ratio: database.bytes === 0 ? 0 : stored.bytes / database.bytes,
    durationMs: Math.round(performance.now() - backup.started),
  };
}

async function* tap<T>(source: AsyncIterable<T>, each: (item: T) => void): AsyncGenerator<T> {
  for await (const item of source) {
    each(item);
    yield item;
  }
}
