/**
 * A backup's id is the time it was made, by this machine's clock, and backups are ordered by it:
 * `restore --latest` takes the greatest, and retention keeps the newest. Every backup stored was made
 * before this one, so this one must sort after them all: dated before one of them (this clock behind
 * the host that made it, or set back), it would be passed over by every later restore, which would
 * bring back the older data without a word, and `prune --keep-last` would remove it first. So such a
 * backup is refused, however far behind, unless the difference is short enough to wait out (a backup
 * in the millisecond of the last one, a clock a moment behind another host's). The one exception is a
 * backup dated beyond the time the storage stored it (catalog's isFutureDated: a clock that ran ahead,
 * or planted): restores and retention pass over it for good, so it orders nothing, and it is named in
 * a warning instead of stopping every backup.
 */
import { VaultError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { FUTURE_TOLERANCE_MS, futureDatedLine, isFutureDated, type ManifestEntry } from "../repo/catalog.ts";
import { backupIdTime } from "../repo/manifest.ts";
import type { Storage } from "../storage/types.ts";
import { sleep } from "../util/sleep.ts";

/** The longest wait for this clock to pass the newest backup's time. */
export const CLOCK_WAIT_MS = 2_000;

/** This machine's clock is behind the newest backup of the name (exit 1). */
export class ClockBehindError extends VaultError {
  override readonly code = "clock";
}

/**
 * A backup dated by this machine's clock would be future-dated by the storage's own time (catalog's
 * isFutureDated), so every restore would pass over it (exit 1): refused, before the snapshot when the
 * storage tells its time (S3's Date header), else at the commit (a local directory on NFS or SMB,
 * whose server dates the files). prune refuses too: it would plan retention by a wrong "now".
 * `outcome` ends the message ("nothing was backed up").
 */
export function assertNotAheadOfStorage(
  now: Date,
  storageTime: Date,
  outcome = "restores pass over a backup dated after it was stored, so nothing was backed up",
): void {
  if (now.getTime() <= storageTime.getTime() + FUTURE_TOLERANCE_MS) return; // as isFutureDated
  throw new ClockAheadError(
    `this machine's clock (${now.toISOString()}) is more than 15 minutes ahead of the storage's (${storageTime.toISOString()}): ${outcome}`,
    "set this machine's clock right (NTP)",
  );
}

export class ClockAheadError extends VaultError {
  override readonly code = "clock";
}

/**
 * The time to date a new backup of the name with: `now()`, once it is later than every backup in
 * `entries` (newest first, as listManifests gives them) except future-dated ones, which are named on
 * `log`. Throws ClockBehindError when the clock is more than CLOCK_WAIT_MS behind the newest; the
 * signal's reason when aborted while waiting.
 */
export async function creationTime(
  storage: Storage,
  entries: ManifestEntry[],
  now: () => Date,
  { log, signal }: { log: Logger; signal?: AbortSignal },
): Promise<Date> {
  let createdAt = now();
  const server = storage.serverNow?.();
  if (server) assertNotAheadOfStorage(createdAt, server);
  const newest = entries.find((entry) => !isFutureDated(entry));
  for (const entry of entries.slice(0, newest ? entries.indexOf(newest) : entries.length))
    log.warn(`${futureDatedLine(entry, "passing over")}: restores and retention pass over it too`);
  if (!newest) return createdAt;
  const newestAt = backupIdTime(newest.id);
  const behind = newestAt - createdAt.getTime();
  if (behind < 0) return createdAt;
  if (behind < CLOCK_WAIT_MS) {
    await sleep(behind + 1, signal);
    createdAt = now();
    if (createdAt.getTime() > newestAt) return createdAt;
  }
  throw new ClockBehindError(
    `the newest backup of ${newest.name} (${newest.id}) is dated ${new Date(newestAt).toISOString()}, after this machine's clock ` +
      `(${createdAt.toISOString()}): a backup made now would sort before it, and restore --latest would bring back that older one; nothing was backed up`,
    `backups are ordered by the time they are made: set this machine's clock right (NTP); if it is right, that backup was dated by a clock that ran ahead: backups resume once this clock passes it, or at once if its manifest ${newest.key} is removed from ${storage.url}`,
  );
}
