/**
 * status: is the newest backup of each name recent enough and, as far as a look can tell, restorable?
 * For monitoring: it reads manifests and stats data objects, and never downloads a backup.
 */
import type { RunContext } from "../context.ts";
import { UsageError, VaultError } from "../errors.ts";
import {
  dataObjectProblem,
  FUTURE_TOLERANCE_MS,
  isFutureDated,
  listManifests,
  newestBackup,
  repositoryNow,
  type ManifestEntry,
} from "../repo/catalog.ts";
import { parseDuration, subtractDuration, type Duration } from "../repo/retention.ts";
import type { Storage } from "../storage/types.ts";

export interface StatusEntry {
  name: string;
  newest: { id: string; createdAt: string; ageSeconds: number } | null;
  ok: boolean;
  reason: string | null;
  /** Backups dated beyond the time they were stored (catalog's isFutureDated): reported, never taken as newest. */
  futureDated: string[];
}

export interface StatusResult {
  repo: string;
  maxAgeSeconds: number | null;
  databases: StatusEntry[];
  ok: boolean;
}

/** When a status check runs and how old its newest backups may be. */
export interface StatusLimit {
  now: Date;
  maxAge?: Duration;
  /** Backups created before this time (ms) are stale. */
  limit?: number;
}

/** --max-age read at `now`. Throws UsageError for a bad duration or one in months or years. */
export function statusLimit(maxAgeText: string | undefined, now = new Date()): StatusLimit {
  const maxAge = maxAgeText ? parseDuration(maxAgeText, "--max-age") : undefined;
  // "30m" is months in retention; for a freshness check it would never fail.
  if (maxAge && (maxAge.months || maxAge.years))
    throw new UsageError(
      `--max-age ${maxAge.text} reads as months or years`,
      "write minutes as min, hours as h, days as d: --max-age 90min",
    );
  return { now, maxAge, limit: maxAge ? subtractDuration(now, maxAge).getTime() : undefined };
}

/** The status of each name in one repository (of `name` only, when given), sorted by name. Throws only for storage failures. */
export async function checkStatus(storage: Storage, name: string | undefined, at: StatusLimit, ctx: RunContext): Promise<StatusEntry[]> {
  const entries = await listManifests(storage, name);
  const names = name ? [name] : [...new Set(entries.map((e) => e.name))].sort();
  if (names.length === 0) return [{ name: "(any)", newest: null, ok: false, reason: `no backups in ${storage.url}`, futureDated: [] }];
  const databases: StatusEntry[] = [];
  for (const each of names)
    databases.push(
      await statusOfName(
        storage,
        each,
        entries.filter((e) => e.name === each),
        at,
        ctx,
      ),
    );
  return databases;
}

async function statusOfName(storage: Storage, name: string, own: ManifestEntry[], at: StatusLimit, ctx: RunContext): Promise<StatusEntry> {
  const { now, limit, maxAge } = at;
  const futureDated = own.filter(isFutureDated).map((e) => e.id);
  const unusable = (reason: string): StatusEntry => ({ name, newest: null, ok: false, reason, futureDated });
  const candidate = await newestBackup(storage, own, { log: ctx.log });
  if (!candidate)
    return unusable(
      futureDated.length
        ? `no backups of ${name} in ${storage.url} that a restore would take (${futureDated.length} dated after the storage stored them)`
        : `no backups of ${name} in ${storage.url}`,
    );
  // What restore --latest would refuse is no recent backup.
  if (!candidate.ok) return unusable(`the newest backup of ${name}, ${candidate.entry.id}, cannot be used: ${candidate.error.message}`);
  const newest = candidate.manifest;
  // Usable means restorable as far as a look can tell: its data object is there, whole.
  const why = dataObjectProblem(newest, (await storage.stat(newest.stored.key))?.size);
  if (why) return unusable(`the newest backup of ${name}, ${newest.id}, cannot be restored: ${why}`);
  const created = Date.parse(newest.createdAt);
  // Backups are refused while this clock is behind the newest one (src/ops/clock-guard.ts): that is no fresh backup.
  const clock = repositoryNow(storage, now);
  const ahead =
    created > clock.getTime() + FUTURE_TOLERANCE_MS
      ? `the newest backup of ${name}, ${newest.id}, is dated ${newest.createdAt}, after this machine's clock (${clock.toISOString()}): backups are refused until the clock passes it`
      : null;
  // Within the tolerance a backup may be dated a little ahead (another host's clock): age 0.
  const ageSeconds = Math.max(0, Math.round((now.getTime() - created) / 1000));
  const stale = limit !== undefined && created < limit;
  return {
    name,
    newest: { id: newest.id, createdAt: newest.createdAt, ageSeconds },
    ok: !stale && !ahead,
    reason: ahead ?? (stale ? `the newest backup of ${name} is ${describeAge(ageSeconds)} old, older than ${maxAge!.text}` : null),
    futureDated,
  };
}

/** The result over every repository checked. Throws VaultError (exit 1) naming every database that is not ok. */
export function statusResult(repos: string[], databases: StatusEntry[], at: StatusLimit): StatusResult {
  const failing = databases.filter((d) => !d.ok);
  if (failing.length)
    throw new VaultError(
      failing.map((d) => d.reason).join("; "),
      at.maxAge ? "check that the backup job runs (cron, sqlite-vault cron) and succeeds" : undefined,
    );
  return {
    repo: [...new Set(repos)].join(", "),
    maxAgeSeconds: at.maxAge ? (at.now.getTime() - at.limit!) / 1000 : null,
    databases,
    ok: true,
  };
}

/** An age as a person reads it: 90s, 45min, 5h, 3d. */
export function describeAge(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}
