/**
 * prune: apply a retention policy, then clear away what interrupted runs left behind.
 *
 * - The plan comes from planRetention; the newest backup is always kept, and a plan that would remove
 *   every backup of a name is refused.
 * - Only backups whose data object is there, at the size its manifest records, count for the policy:
 *   a broken newest backup must not take the place of a sound one, or `--keep-last 1` would delete
 *   every backup that can still be restored. Broken ones are left alone and reported.
 * - Backups dated beyond the time they were stored (catalog's isFutureDated) do not count either, and
 *   are never removed by policy: a wrong clock once, or a planted manifest, must not make every real
 *   backup look old.
 * - No key that a kept, left-alone or protected backup uses is ever deleted: asserted before the
 *   first delete, whatever the plan says (a listing that repeats a backup once made it do so).
 * - Each removed backup loses its manifest first, then its data object and verification marker, so an
 *   interrupted prune never leaves a listed backup whose data is gone (at worst an orphan data object,
 *   which the next prune's housekeeping removes).
 * - Housekeeping: data objects no manifest names, stray verification markers and partial writes
 *   (incomplete multipart uploads, local temp files) older than the grace period are removed. Nothing
 *   younger is touched, so a backup in progress on another host is safe.
 */
import { futureDatedLine, readCatalog, type Catalog } from "../repo/catalog.ts";
import type { RunContext } from "../context.ts";
import { AuthError, VaultError } from "../errors.ts";
import { manifestKey, parseDataKey, parseManifestKey, verifiedKey, type BackupManifest } from "../repo/manifest.ts";
import {
  describePolicy,
  planRetention,
  subtractDuration,
  type Duration,
  type KeepReason,
  type RetentionPolicy,
} from "../repo/retention.ts";
import type { Storage } from "../storage/types.ts";
import { assertNotAheadOfStorage } from "./clock-guard.ts";
import { removeCommitPoint } from "./commit.ts";

export const DEFAULT_GRACE = "24h";

export interface PruneInput {
  /** Only this name; every name in the repository when omitted. */
  name?: string;
  policy: RetentionPolicy;
  dryRun?: boolean;
  /** Leftovers younger than this are never touched. */
  grace: Duration;
  /** The time retention is planned at (keep-within); backups dated beyond it are future-dated. */
  now: Date;
  /** Backups that must not be removed whatever the plan says (the one a backup has just made). */
  protect?: { name: string; id: string }[];
}

export interface PrunedName {
  name: string;
  keep: { id: string; createdAt: string; reasons: KeepReason[] }[];
  /** Backups the policy removes, with the stored bytes each frees. */
  remove: { id: string; createdAt: string; bytes: number }[];
  /** Ids actually removed (empty in a dry run). */
  removed: string[];
  /** Backups whose removal failed; they remain listed and restorable. */
  failed: { id: string; error: string }[];
  /** Backups whose data object is missing or of the wrong size: outside the policy, left alone. */
  damaged: { id: string; createdAt: string; reason: string }[];
  /** Backups dated beyond the time the storage stored them (catalog's isFutureDated): outside the policy, left alone. */
  futureDated: { id: string; createdAt: string }[];
}

export interface PruneReport {
  repo: string;
  dryRun: boolean;
  policy: string;
  names: PrunedName[];
  housekeeping: {
    /** Keys removed (or, in a dry run, that would be). */
    removed: string[];
    /** Partial writes aborted (or that would be). */
    aborted: string[];
    /** Leftovers younger than the grace period, left alone. */
    young: string[];
    failed: { key: string; error: string }[];
  };
  /** Deletes that failed, in all. */
  failures: number;
}

/**
 * Each name's retention plan, names in order; damaged and future-dated backups are left out of the
 * policy (and said so). Throws VaultError when a plan would remove every backup of a name.
 */
function planNames(catalog: Catalog, input: PruneInput, ctx: RunContext) {
  for (const bad of catalog.invalid) ctx.log.warn(`leaving ${bad.key} alone: ${bad.reason}`);
  const broken = new Map(catalog.damaged.map((d) => [d.backup, d.reason]));
  for (const [backup, reason] of broken)
    ctx.log.warn(`${backup.name} ${backup.id} cannot be restored (${reason}): the policy does not count it, and prune leaves it alone`);
  const future = new Set(catalog.futureDated.map((f) => f.backup));
  for (const f of catalog.futureDated)
    ctx.log.warn(`${futureDatedLine({ ...f.backup, storedAt: f.storedAt }, "leaving alone")}: the policy does not count it`);
  const byName = new Map<string, BackupManifest[]>();
  for (const backup of catalog.backups) byName.set(backup.name, [...(byName.get(backup.name) ?? []), backup]);

  return [...byName]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, backups]) => {
      const sound = backups.filter((b) => !broken.has(b) && !future.has(b));
      const plan = planRetention(sound, input.policy, input.now);
      if (sound.length > 0 && plan.keep.length === 0)
        throw new VaultError(`refusing to prune: the policy would remove every backup of ${name}`);
      const damaged = backups.filter((b) => broken.has(b)).map((b) => ({ id: b.id, createdAt: b.createdAt, reason: broken.get(b)! }));
      const futureDated = backups.filter((b) => future.has(b) && !broken.has(b)).map((b) => ({ id: b.id, createdAt: b.createdAt }));
      return { name, plan, damaged, futureDated };
    });
}

/**
 * Prune the repository. Throws UsageError for an empty policy, VaultError when a plan would remove
 * every backup of a name, and AuthError when the storage refuses every delete (a backup-only
 * credential). Other per-object failures are reported in the result (`failures`).
 */
export async function runPrune(storage: Storage, input: PruneInput, ctx: RunContext): Promise<PruneReport> {
  if (!input.grace.months && !input.grace.years && input.grace.ms < 3_600_000)
    ctx.log.warn(
      `--grace ${input.grace.text} is under an hour: an upload in progress elsewhere that takes longer may be removed as a leftover (such a backup then fails, and lists nothing)`,
    );
  const listedAt = new Date();
  const catalog = await readCatalog(storage, input.name);
  const server = storage.serverNow?.();
  if (server)
    assertNotAheadOfStorage(input.now, server, "retention planned by it could take recent backups for old ones, so nothing was removed");
  const plans = planNames(catalog, input, ctx);
  assertRemovesNothingInUse(plans, catalog, input.protect ?? []);

  let deleted = 0;
  let authFailure: AuthError | undefined;
  const names: PrunedName[] = [];
  for (const { name, plan, damaged, futureDated } of plans) {
    const entry: PrunedName = {
      name,
      keep: plan.keep.map((k) => ({ id: k.backup.id, createdAt: k.backup.createdAt, reasons: k.reasons })),
      remove: plan.remove.map((b) => ({ id: b.id, createdAt: b.createdAt, bytes: b.stored.bytes })),
      removed: [],
      failed: [],
      damaged,
      futureDated,
    };
    names.push(entry);
    if (input.dryRun) continue;
    for (const backup of plan.remove) {
      ctx.signal.throwIfAborted();
      try {
        await removeCommitPoint(storage, manifestKey(backup.name, backup.id)); // goes first, and is confirmed gone
        entry.removed.push(backup.id);
        deleted++;
      } catch (error) {
        if (error instanceof AuthError) authFailure ??= error;
        entry.failed.push({ id: backup.id, error: (error as Error).message });
        continue;
      }
      // The backup is gone; what follows only frees space. A failure leaves an orphan for housekeeping.
      await storage.delete([backup.stored.key, verifiedKey(backup.name, backup.id)]).catch((error) => {
        ctx.log.warn(`removed backup ${backup.id}, but not its data yet (${(error as Error).message}); the next prune removes it`);
      });
      ctx.log.debug(`removed ${backup.name} ${backup.id} (${backup.createdAt})`);
    }
  }
  const failedBackups = names.reduce((n, e) => n + e.failed.length, 0);
  if (authFailure && deleted === 0 && failedBackups > 0)
    throw new AuthError(
      `${authFailure.message}: the storage refused to delete`,
      "a backup-only credential cannot prune; run prune with credentials that may delete objects",
    );

  const housekeeping = await keepHouse(storage, catalog, listedAt, input, ctx);
  return {
    repo: storage.url,
    dryRun: input.dryRun === true,
    policy: describePolicy(input.policy),
    names,
    housekeeping,
    failures: failedBackups + housekeeping.failed.length,
  };
}

/**
 * Throws VaultError, before anything is deleted, when a planned removal would delete a key that a
 * backup staying in the repository uses (kept, left alone, or protected): a plan is only as sound as
 * the listing it came from.
 */
function assertRemovesNothingInUse(
  plans: { plan: { keep: { backup: BackupManifest }[]; remove: BackupManifest[] } }[],
  catalog: Catalog,
  protect: { name: string; id: string }[],
): void {
  const keysOf = (b: { name: string; id: string }) => [manifestKey(b.name, b.id), verifiedKey(b.name, b.id)];
  const removed = new Set(plans.flatMap(({ plan }) => plan.remove));
  const staying = catalog.backups.filter((b) => !removed.has(b));
  const inUse = new Map<string, string>();
  for (const b of staying) for (const key of [...keysOf(b), b.stored.key]) inUse.set(key, `${b.name} ${b.id}, which stays`);
  for (const b of protect) for (const key of keysOf(b)) inUse.set(key, `${b.name} ${b.id}, the backup just made`);
  for (const b of removed)
    for (const key of [...keysOf(b), b.stored.key]) {
      const user = inUse.get(key);
      if (user)
        throw new VaultError(
          `refusing to prune: the plan would delete ${key}, which belongs to ${user}; nothing was deleted`,
          "list the repository (sqlite-vault list) and report this",
        );
    }
}

async function keepHouse(
  storage: Storage,
  catalog: Catalog,
  listedAt: Date,
  input: PruneInput,
  ctx: RunContext,
): Promise<PruneReport["housekeeping"]> {
  // Grace is measured against the real clock and the storage's own timestamps, never a planning time.
  // An orphan is one as of the listing: its age counts to then, however long the deletes took since,
  // and its manifest is looked for once more just before it goes (its backup may have committed).
  const cutoff = subtractDuration(listedAt, input.grace).getTime();
  const result: PruneReport["housekeeping"] = { removed: [], aborted: [], young: [], failed: [] };
  for (const object of [...catalog.orphans, ...catalog.strayMarkers]) {
    if (object.lastModified.getTime() > cutoff) {
      result.young.push(object.key);
      continue;
    }
    try {
      const data = parseDataKey(object.key);
      if (data && (await storage.stat(manifestKey(data.name, data.id)))) continue; // committed meanwhile: a backup
      if (!input.dryRun) await storage.delete([object.key]);
      result.removed.push(object.key);
    } catch (error) {
      result.failed.push({ key: object.key, error: (error as Error).message });
    }
  }
  const writesCutoff = subtractDuration(new Date(), input.grace).getTime(); // listed now
  for await (const write of storage.listPartialWrites(input.name ? `${input.name}/` : "")) {
    // Another tool's upload in the same bucket (a repository at its root) is not ours to abort.
    if (write.named && !parseDataKey(write.key) && !parseManifestKey(write.key)) continue;
    if (write.startedAt.getTime() > writesCutoff) {
      result.young.push(write.key);
      continue;
    }
    try {
      if (!input.dryRun) await storage.abortPartialWrite(write);
      result.aborted.push(write.key);
    } catch (error) {
      result.failed.push({ key: write.key, error: (error as Error).message });
    }
  }
  for (const key of result.removed) ctx.log.info(`${input.dryRun ? "would remove" : "removed"} leftover ${key}`);
  for (const key of result.aborted) ctx.log.info(`${input.dryRun ? "would abort" : "aborted"} abandoned upload of ${key}`);
  return result;
}
