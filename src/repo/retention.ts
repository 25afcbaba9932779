/**
 * Retention: which backups a policy keeps, and why. One pure function, planRetention, with the
 * grandfather-father-son rules people know from restic:
 *
 * - keep-last N        the N newest backups
 * - keep-hourly N ...  for each of the N most recent hours (days, ISO weeks, months, years) that have
 *   keep-yearly N      backups, the newest backup in it. Periods without backups do not count, so a
 *                      gap of months never empties the plan. Calendar periods are UTC unless a time
 *                      zone is given.
 * - keep-within D      every backup made within D before `now` (as borg's --keep-within)
 *
 * A backup is kept when any rule keeps it; all its reasons are reported. The newest backup is always
 * kept (reason "newest"), so no plan removes everything.
 */
import { UsageError } from "../errors.ts";
import { newestFirst } from "./manifest.ts";

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** Keep everything newer than now minus this duration. */
  within?: Duration;
  /** IANA time zone for calendar periods (default UTC). */
  timezone?: string;
}

/** A calendar duration: months and years are calendar units, the rest are exact milliseconds. */
export interface Duration {
  text: string;
  years: number;
  months: number;
  ms: number;
}

export interface RetentionInput {
  id: string;
  createdAt: string;
}

export type KeepReason = "newest" | "last" | "hourly" | "daily" | "weekly" | "monthly" | "yearly" | `within ${string}`;

export interface RetentionPlan<T extends RetentionInput = RetentionInput> {
  /** Kept backups, newest first, each with every rule that keeps it. */
  keep: { backup: T; reasons: KeepReason[] }[];
  /** Backups no rule keeps, newest first. */
  remove: T[];
}

const BUCKET_RULES = ["hourly", "daily", "weekly", "monthly", "yearly"] as const;
type BucketRule = (typeof BUCKET_RULES)[number];

export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return policy.last === undefined && policy.within === undefined && BUCKET_RULES.every((rule) => policy[rule] === undefined);
}

/**
 * Pure: plan which backups `policy` keeps at time `now`. Order of the input does not matter; ties in
 * time are broken by id, so the plan is deterministic. Throws UsageError for an empty policy or an
 * unknown time zone.
 */
export function planRetention<T extends RetentionInput>(backups: readonly T[], policy: RetentionPolicy, now: Date): RetentionPlan<T> {
  if (isEmptyPolicy(policy)) throw new UsageError("no retention policy given", "pass at least one --keep-… option");
  const sorted = [...backups].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || newestFirst(a, b));
  const bucketOf = createBucketer(policy.timezone ?? "UTC");
  const reasons = new Map<T, KeepReason[]>();
  const add = (backup: T, reason: KeepReason) => {
    const list = reasons.get(backup) ?? [];
    list.push(reason);
    reasons.set(backup, list);
  };

  if (sorted[0]) add(sorted[0], "newest");
  for (const b of sorted.slice(0, policy.last ?? 0)) add(b, "last");
  for (const rule of BUCKET_RULES) {
    const count = policy[rule];
    if (!count) continue;
    let lastBucket: string | undefined;
    let kept = 0;
    for (const backup of sorted) {
      if (kept >= count) break;
      const bucket = bucketOf(rule, new Date(backup.createdAt));
      if (bucket === lastBucket) continue;
      lastBucket = bucket;
      kept++;
      add(backup, rule);
    }
  }
  if (policy.within) {
    const cutoff = subtractDuration(now, policy.within).getTime();
    for (const backup of sorted) if (Date.parse(backup.createdAt) >= cutoff) add(backup, `within ${policy.within.text}`);
  }
  return {
    keep: sorted.filter((b) => reasons.has(b)).map((backup) => ({ backup, reasons: reasons.get(backup)! })),
    remove: sorted.filter((b) => !reasons.has(b)),
  };
}

/** Calendar period keys in a time zone: "2026-11-22T05" (hour), "2026-11-22", "2026-W47", "2026-11", "2026". */
function createBucketer(timeZone: string): (rule: BucketRule, date: Date) => string {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat("en-CA", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      hourCycle: "h23",
    });
  } catch {
    throw new UsageError(`unknown time zone "${timeZone}"`, "use an IANA name such as Europe/Berlin, or UTC");
  }
  return (rule, date) => {
    const parts = Object.fromEntries(format.formatToParts(date).map((p) => [p.type, p.value]));
    const { year, month, day, hour } = parts as Record<string, string>;
    switch (rule) {
      case "hourly":
        return `${year}-${month}-${day}T${hour}`;
      case "daily":
        return `${year}-${month}-${day}`;
      case "weekly":
        return isoWeek(Number(year), Number(month), Number(day));
      case "monthly":
        return `${year}-${month}`;
      case "yearly":
        return `${year}`;
    }
  };
}

/** ISO 8601 week of a calendar date, as "YYYY-Www" (weeks start on Monday; week 1 holds a Thursday). */
export function isoWeek(year: number, month: number, day: number): string {
  const date = new Date(Date.UTC(year, month - 1, day));
  const weekday = date.getUTCDay() || 7; // Monday 1 … Sunday 7
  date.setUTCDate(date.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const weekYear = date.getUTCFullYear();
  const week = Math.ceil(((date.getTime() - Date.UTC(weekYear, 0, 1)) / 86_400_000 + 1) / 7);
  return `${weekYear}-W${String(week).padStart(2, "0")}`;
}

const UNIT_MS: Record<string, number> = { s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** Parse "36h", "7d", "2w", "6m" (months), "1y", "1y6m", "90s", "5min". Throws UsageError. */
export function parseDuration(text: string, flag = "duration"): Duration {
  const trimmed = text.trim();
  if (!/^(\d+(min|[smhdwy]))+$/.test(trimmed))
    throw new UsageError(
      `${flag} "${text}" is not a duration`,
      "use a number and a unit: 90s, 5min, 36h, 7d, 2w, 6m (months), 1y, or combinations such as 1y6m",
    );
  const duration: Duration = { text: trimmed, years: 0, months: 0, ms: 0 };
  for (const [, n, unit] of trimmed.matchAll(/(\d+)(min|[smhdwy])/g)) {
    const value = Number(n);
    if (unit === "y") duration.years += value;
    else if (unit === "m") duration.months += value;
    else duration.ms += value * UNIT_MS[unit!]!;
  }
  return duration;
}

/** `date` minus `duration`, with months and years in calendar terms (UTC). */
export function subtractDuration(date: Date, duration: Duration): Date {
  const result = new Date(date.getTime() - duration.ms);
  if (duration.years || duration.months) {
    const day = result.getUTCDate();
    result.setUTCDate(1);
    result.setUTCMonth(result.getUTCMonth() - duration.months - 12 * duration.years);
    const lastDay = new Date(Date.UTC(result.getUTCFullYear(), result.getUTCMonth() + 1, 0)).getUTCDate();
    result.setUTCDate(Math.min(day, lastDay));
  }
  return result;
}

/** Build a policy from --keep-… flag values (strings, as citty gives them). Throws UsageError. */
export function parsePolicy(flags: {
  "keep-last"?: string;
  "keep-hourly"?: string;
  "keep-daily"?: string;
  "keep-weekly"?: string;
  "keep-monthly"?: string;
  "keep-yearly"?: string;
  "keep-within"?: string;
  timezone?: string;
}): RetentionPolicy {
  const count = (flag: keyof typeof flags): number | undefined => {
    const value = flags[flag];
    if (value === undefined || value === "") return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} must be a whole number of at least 1, not "${value}"`);
    return n;
  };
  const policy: RetentionPolicy = {
    last: count("keep-last"),
    hourly: count("keep-hourly"),
    daily: count("keep-daily"),
    weekly: count("keep-weekly"),
    monthly: count("keep-monthly"),
    yearly: count("keep-yearly"),
    within: flags["keep-within"] ? parseDuration(flags["keep-within"], "--keep-within") : undefined,
    timezone: flags.timezone || undefined,
  };
  if (policy.timezone) createBucketer(policy.timezone); // validate now, with a clear message
  return policy;
}

/** A short description of a policy, for logs: "last 3, daily 7, within 2w". */
export function describePolicy(policy: RetentionPolicy): string {
  const parts: string[] = [];
  if (policy.last) parts.push(`last ${policy.last}`);
  for (const rule of BUCKET_RULES) if (policy[rule]) parts.push(`${rule} ${policy[rule]}`);
  if (policy.within) parts.push(`within ${policy.within.text}`);
  if (policy.timezone) parts.push(`in ${policy.timezone}`);
  return parts.join(", ");
}
