/**
 * Damage stored backups the way storage and disks do, through the real storage backends: flip a byte,
 * truncate, rewrite a manifest, or store an internally corrupt database whose checksums are consistent.
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { manifestKey, parseManifest, serializeManifest, type BackupManifest } from "../../src/repo/manifest.ts";
import type { Storage } from "../../src/storage/types.ts";
import { readAll } from "../../src/util/streams.ts";

export async function readObject(storage: Storage, key: string): Promise<Uint8Array> {
  return readAll(await storage.get(key));
}

export async function readBackupManifest(storage: Storage, name: string, id: string): Promise<BackupManifest> {
  const key = manifestKey(name, id);
  return parseManifest(await readObject(storage, key), key);
}

/** Flip one byte in the middle of the stored data object. */
export async function flipByte(storage: Storage, manifest: BackupManifest): Promise<void> {
  const bytes = await readObject(storage, manifest.stored.key);
  bytes[bytes.length >> 1]! ^= 0xff;
  await storage.put(manifest.stored.key, bytes);
}

/** Cut the stored data object in half. */
export async function truncate(storage: Storage, manifest: BackupManifest): Promise<void> {
  const bytes = await readObject(storage, manifest.stored.key);
  await storage.put(manifest.stored.key, bytes.slice(0, bytes.length >> 1));
}

/** Rewrite the manifest with a change (the data object stays as it is). */
export async function rewriteManifest(
  storage: Storage,
  manifest: BackupManifest,
  change: (m: BackupManifest) => BackupManifest,
): Promise<void> {
  await storage.put(manifestKey(manifest.name, manifest.id), serializeManifest(change(structuredClone(manifest))));
}

/**
 * Replace a gzip backup's database with a copy whose b-tree pages are damaged (page 1 stays intact,
 * so the file still opens as SQLite), and store it with a manifest whose checksums match: only the
 * SQLite integrity check can tell.
 */
export async function storeCorruptDatabase(storage: Storage, manifest: BackupManifest): Promise<void> {
  if (manifest.stored.compression !== "gzip") throw new Error("storeCorruptDatabase expects a gzip backup");
  const db = new Uint8Array(gunzipSync(await readObject(storage, manifest.stored.key)));
  const pageSize = manifest.database.pageSize;
  const pages = db.length / pageSize;
  for (let page = 2; page < pages; page += 3) {
    const start = page * pageSize - pageSize; // page numbers are 1-based
    // Keep the page header's type byte, scramble the cell pointers and content.
    for (let i = start + 8; i < start + 64; i++) db[i] = (i * 31) & 0xff;
  }
  await replaceObject(storage, manifest, new Uint8Array(gzipSync(db)), db);
}

const sha = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");

/**
 * Store `stored` as the backup's data object, with a manifest whose stored checksums match it (and
 * whose database checksums match `database`, when given): only decompressing it can tell.
 */
export async function replaceObject(storage: Storage, manifest: BackupManifest, stored: Uint8Array, database?: Uint8Array): Promise<void> {
  await storage.put(manifest.stored.key, stored);
  await rewriteManifest(storage, manifest, (m) => ({
    ...m,
    ...(database ? { database: { ...m.database, sha256: sha(database), bytes: database.length } } : {}),
    stored: { ...m.stored, sha256: sha(stored), bytes: stored.length },
  }));
}
