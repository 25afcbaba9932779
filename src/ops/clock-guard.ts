/**
 * A backup's id is the time it was made, by this machine's clock, and backups are ordered by it:
 * `restore --latest` takes the greatest. A backup dated before the newest one already stored (this
 * clock behind the host that made that one, or set back) would be passed over by every later restore,
 * which would bring back the older data without a word. So such a backup is refused, unless the
 * difference is short enough to wait out (a backup in the millisecond of the last one, a clock a
 * moment behind another host's). A backup dated beyond the tolerance (src/repo/catalog.ts) is named in
 * a warning instead: restores pass over it today, and refusing would let one wrong clock or one
 * planted manifest stop every backup. (Known limit: once time comes within the tolerance of its date,
 * restores take it again, over the backups made meanwhile.)
 */
import { VaultError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { isFutureDated, repositoryNow, type ManifestEntry } from "../repo/catalog.ts";
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
 * The time to date a new backup of the name with: `now()`, once it is later than the newest backup in
 * `entries` (newest first, as listManifests gives them) that a restore would take; future-dated ones
 * are named on `log`. Throws ClockBehindError when the clock is more than CLOCK_WAIT_MS behind that
 * backup; the signal's reason when aborted while waiting.
 */
export async function creationTime(
  storage: Storage,
  entries: ManifestEntry[],
  now: () => Date,
  { log, signal }: { log: Logger; signal?: AbortSignal },
): Promise<Date> {
  let createdAt = now();
  const repoNow = repositoryNow(storage, createdAt);
  const newest = entries.find((entry) => !isFutureDated(entry.id, repoNow));
  const future = entries.slice(0, newest ? entries.indexOf(newest) : entries.length);
  if (future.length)
    log.warn(
      `${future.length === 1 ? `backup ${future[0]!.name} ${future[0]!.id} is` : `${future.length} backups of ${future[0]!.name}, the newest ${future[0]!.id}, are`} ` +
        `dated beyond this machine's clock (${repoNow.toISOString()}): restore --latest passes over ${future.length === 1 ? "it" : "them"}; if this clock is behind, set it right`,
    );
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
    "backups are ordered by the time they are made: set this machine's clock right (NTP); if it is right, the newer backup came from a clock that ran ahead, and backups resume once this one passes it",
  );
}
