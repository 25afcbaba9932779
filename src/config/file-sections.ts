/**
 * The config file's sections, read and checked key by key: every value is refused at its key and
 * line when it is of the wrong kind, out of range, or not a schedule, duration or time zone.
 */
import { UsageError } from "../errors.ts";
import { COMPRESSIONS } from "../repo/manifest.ts";
import { parseDuration } from "../repo/retention.ts";
import type { FileSettings } from "./file.ts";

export const RETENTION_KEYS = [
  "keep-last",
  "keep-hourly",
  "keep-daily",
  "keep-weekly",
  "keep-monthly",
  "keep-yearly",
  "keep-within",
  "timezone",
  "grace",
] as const;
export type RetentionKey = (typeof RETENTION_KEYS)[number];

type Kind = "string" | "path" | "number" | "boolean" | "schedule" | "duration" | "strings" | "retention" | "encryption";
/** What a setting is; `min`/`max` bound numbers, `choices` strings, so a bad value is refused at its line. */
const SETTING_KEYS: Record<string, { kind: Kind; field: keyof FileSettings; min?: number; max?: number; choices?: readonly string[] }> = {
  repo: { kind: "path", field: "repo" },
  compression: { kind: "string", field: "compression", choices: COMPRESSIONS },
  "tmp-dir": { kind: "path", field: "tmpDir" },
  schedule: { kind: "schedule", field: "schedule" },
  "healthcheck-url": { kind: "string", field: "healthcheckUrl" },
  retries: { kind: "number", field: "retries", min: 0, max: 100 },
  timeout: { kind: "duration", field: "timeout" },
  "part-size": { kind: "number", field: "partSize", min: 5, max: 5120 },
  endpoint: { kind: "string", field: "endpoint" },
  region: { kind: "string", field: "region" },
  "path-style": { kind: "boolean", field: "pathStyle" },
  check: { kind: "boolean", field: "check" },
  retention: { kind: "retention", field: "retention" },
  encryption: { kind: "encryption", field: "recipients" },
};
const ENCRYPTION_KEYS = ["recipients", "recipients-file", "passphrase-file", "identity-files"] as const;

export interface Readers {
  fail: (keyPath: (string | number)[], problem: string) => never;
  expand: (value: string, keyPath: (string | number)[]) => string;
  allow: string[];
  /** A file name from the config file: `~/` is the home directory; relative is relative to the file. */
  path: (name: string) => string;
}

export function readSettings(source: Record<string, unknown>, at: (string | number)[], r: Readers): FileSettings {
  const settings: FileSettings = {};
  for (const [key, value] of Object.entries(source)) {
    if (r.allow.includes(key)) continue;
    const spec = SETTING_KEYS[key];
    const keyPath = [...at, key];
    if (!spec) r.fail(keyPath, `is not a known setting (known: ${[...Object.keys(SETTING_KEYS), ...r.allow].join(", ")})`);
    // An `encryption:` left empty (its only key commented out) must not mean unencrypted backups.
    if ((value === null || value === undefined) && spec!.kind === "encryption")
      r.fail(keyPath, `is empty (known: ${ENCRYPTION_KEYS.join(", ")}); leave it out for unencrypted backups`);
    if (value === null || value === undefined) continue;
    switch (spec!.kind) {
      case "string":
      case "path":
      case "schedule":
      case "duration": {
        if (typeof value !== "string") r.fail(keyPath, `must be a string, not ${describe(value)}`);
        let text = r.expand(value as string, keyPath);
        // A local repository or directory: relative to the config file (a URL stays as it is).
        if (spec!.kind === "path" && text && !/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) text = r.path(text);
        if (spec!.kind === "schedule") checkSchedule(text, keyPath, r);
        if (spec!.kind === "duration") checkDuration(text, keyPath, r, { exact: true });
        if (spec!.choices && !spec!.choices.includes(text)) r.fail(keyPath, `must be one of ${spec!.choices.join(", ")}, not "${text}"`);
        (settings as Record<string, unknown>)[spec!.field] = text;
        break;
      }
      case "number":
        if (typeof value !== "number" || !Number.isInteger(value) || value < 0)
          r.fail(keyPath, `must be a whole number, not ${describe(value)}`);
        if ((spec!.min !== undefined && (value as number) < spec!.min) || (spec!.max !== undefined && (value as number) > spec!.max))
          r.fail(keyPath, `must be from ${spec!.min} to ${spec!.max}, not ${value}`);
        (settings as Record<string, unknown>)[spec!.field] = String(value);
        break;
      case "boolean":
        if (typeof value !== "boolean") r.fail(keyPath, `must be true or false, not ${describe(value)}`);
        (settings as Record<string, unknown>)[spec!.field] = value;
        break;
      case "retention":
        settings.retention = readRetention(value, keyPath, r);
        break;
      case "encryption":
        Object.assign(settings, readEncryption(value, keyPath, r));
        break;
    }
  }
  return settings;
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

function readRetention(value: unknown, at: (string | number)[], r: Readers): FileSettings["retention"] {
  if (!isObject(value)) return r.fail(at, "must be a mapping such as { keep-daily: 7 }");
  const out: Partial<Record<RetentionKey, string>> = {};
  for (const [key, v] of Object.entries(value)) {
    const keyPath = [...at, key];
    if (!(RETENTION_KEYS as readonly string[]).includes(key))
      r.fail(keyPath, `is not a retention setting (known: ${RETENTION_KEYS.join(", ")})`);
    if (key === "keep-within" || key === "grace" || key === "timezone") {
      if (typeof v !== "string") r.fail(keyPath, `must be a string, not ${describe(v)}`);
      const text = r.expand(v as string, keyPath);
      if (key !== "timezone") checkDuration(text, keyPath, r);
      else if (!isTimeZone(text)) r.fail(keyPath, `"${text}" is not an IANA time zone (such as UTC or Europe/Berlin)`);
      out[key as RetentionKey] = text;
    } else {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1)
        r.fail(keyPath, `must be a whole number of at least 1, not ${describe(v)}`);
      out[key as RetentionKey] = String(v);
    }
  }
  return out;
}

function readEncryption(value: unknown, at: (string | number)[], r: Readers): Partial<FileSettings> {
  if (value === false) return { plaintext: true };
  if (!isObject(value)) return r.fail(at, "must be a mapping such as { recipients: [age1…] }, or false for unencrypted backups");
  const out: Partial<FileSettings> = {};
  if (Object.keys(value).length === 0)
    r.fail(at, `names no key (known: ${ENCRYPTION_KEYS.join(", ")}); leave it out for unencrypted backups`);
  for (const [key, v] of Object.entries(value)) {
    const keyPath = [...at, key];
    if (!(ENCRYPTION_KEYS as readonly string[]).includes(key))
      r.fail(keyPath, `is not an encryption setting (known: ${ENCRYPTION_KEYS.join(", ")}; secrets belong in files or the environment)`);
    if (key === "recipients" || key === "identity-files") {
      if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) r.fail(keyPath, "must be a list of strings");
      const list = (v as string[]).map((x, i) => r.expand(x, [...keyPath, i]));
      // An empty list, or one whose variables expand to nothing, would mean unencrypted backups.
      if (!list.length || list.some((x) => !x.trim())) r.fail(keyPath, "must list at least one key, and no empty one");
      if (key === "recipients") out.recipients = list;
      else out.identityFiles = list.map(r.path);
    } else {
      if (typeof v !== "string") r.fail(keyPath, `must be a string, not ${describe(v)}`);
      const text = r.expand(v as string, keyPath);
      if (!text.trim()) r.fail(keyPath, "is empty: it must name a file");
      if (key === "recipients-file") out.recipientsFile = r.path(text);
      else out.passphraseFile = r.path(text);
    }
  }
  return out;
}

/** Throws UsageError unless `schedule` is a 5-field cron expression, a nickname, or "@every DURATION". */
export function validateSchedule(schedule: string): void {
  const every = /^@every\s+(\S+)$/.exec(schedule.trim());
  if (every) {
    const d = parseDuration(every[1]!, "@every");
    if (d.months || d.years || d.ms < 1000)
      throw new UsageError(`"${schedule}": @every takes seconds to weeks, such as @every 30s or @every 6h`);
    return;
  }
  let next: Date | null;
  try {
    next = Bun.cron.parse(schedule);
  } catch (error) {
    throw new UsageError(
      `"${schedule}" is not a schedule: ${(error as Error).message}`,
      'use 5 cron fields ("*/15 * * * *"), a nickname (@hourly, @daily) or @every 30min',
    );
  }
  // "0 0 31 2 *" parses, and never comes: cron would back up only on stop.
  if (next === null)
    throw new UsageError(
      `"${schedule}" never comes (no such day)`,
      'use 5 cron fields ("*/15 * * * *"), a nickname (@hourly, @daily) or @every 30min',
    );
}

function checkSchedule(text: string, keyPath: (string | number)[], r: Readers): void {
  try {
    validateSchedule(text);
  } catch (error) {
    r.fail(keyPath, `is invalid: ${(error as Error).message}`);
  }
}

/** A duration; `exact` ones (a timeout) may not be months or years, which `m` would otherwise mean. */
export function checkDuration(text: string, keyPath: (string | number)[], r: Readers, options: { exact?: boolean } = {}): void {
  let duration: ReturnType<typeof parseDuration>;
  try {
    duration = parseDuration(text);
  } catch {
    r.fail(keyPath, `"${text}" is not a duration (such as 90s, 5min, 36h, 7d, 2w)`);
  }
  if (options.exact && (duration.months || duration.years))
    r.fail(keyPath, `"${text}" reads as months or years; write minutes as min (such as 2min)`);
  if (options.exact && duration.ms < 1000) r.fail(keyPath, `"${text}" is shorter than a second`);
}

export function describe(value: unknown): string {
  return Array.isArray(value)
    ? "a list"
    : value === null
      ? "null"
      : typeof value === "object"
        ? "a mapping"
        : `${typeof value} ${JSON.stringify(value)}`;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
