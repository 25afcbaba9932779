/**
 * A backup's commit point and its undo: the manifest is written only after the data object, and a
 * backup taken back loses its manifest before its data, so a listed backup always has its data.
 */
import type { RunContext } from "../context.ts";
import { StorageUnavailableError, VaultError } from "../errors.ts";
import { manifestKey, serializeManifest, type BackupManifest } from "../repo/manifest.ts";
import type { Storage } from "../storage/types.ts";
import { assertNotAheadOfStorage } from "./clock-guard.ts";

/**
 * Writes the manifest (the commit point), then confirms its data object is still there: a prune
 * elsewhere, run with a --grace shorter than this upload, may have taken it for a leftover. Then
 * this is no backup: throws VaultError.
 */
export async function commit(storage: Storage, manifest: BackupManifest, ctx: RunContext): Promise<void> {
  const { key, bytes } = manifest.stored;
  await storage.put(manifestKey(manifest.name, manifest.id), serializeManifest(manifest), { signal: ctx.signal });
  const after = await storage.stat(key);
  if (after?.size !== bytes) {
    throw new VaultError(
      `the data object ${key} was removed while its manifest was written; nothing was backed up`,
      "a prune with a short --grace ran meanwhile; keep --grace longer than a backup takes (default 24h)",
    );
  }
  // Stored before the manifest, the data object is dated no later than it: a backup that passes here
  // is not future-dated by its manifest's time either.
  assertNotAheadOfStorage(new Date(manifest.createdAt), after.lastModified);
}

/**
 * Delete a backup's manifest, its commit point, and make sure it is gone: only then may its data
 * object go. A delete answered as done (a 404 from something between here and the storage, which
 * the storage contract takes for "already gone") is not proof. Throws StorageUnavailableError when
 * the manifest is still there.
 */
export async function removeCommitPoint(storage: Storage, manifest: string): Promise<void> {
  await storage.delete([manifest]);
  if (await storage.stat(manifest))
    throw new StorageUnavailableError(
      `${manifest} is still there after its delete was answered as done`,
      "retry; if it persists, check what stands between this machine and the storage (a proxy or gateway)",
    );
}

/**
 * Undo a backup whose manifest may be stored: the manifest goes first, and the data object only once
 * that delete succeeded, so a manifest never outlives its data (as prune's order). When the manifest
 * cannot be deleted, the data object stays: the backup may be listed, and then it still restores;
 * otherwise it is an orphan, which prune's housekeeping removes once no manifest names it.
 */
export async function takeBack(storage: Storage, manifest: string, data: string, ctx: RunContext): Promise<void> {
  try {
    await removeCommitPoint(storage, manifest);
  } catch (error) {
    ctx.log.warn(
      `could not remove ${manifest} (${(error as Error).message}): left ${data} in place, so that if the manifest was stored, its backup still restores`,
    );
    return;
  }
  await storage.delete([data]).catch(() => {});
}
