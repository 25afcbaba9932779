/**
 * Settings shared by every command, merged in one pure function:
 *   flag > environment > config file (the database's entry, then the file's defaults) > built-in default.
 */
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { parseCompression } from "../pipeline/codec.ts";
import { UsageError } from "../errors.ts";
import type { Compression } from "../repo/manifest.ts";
import type { Env } from "../storage/credentials.ts";
import { DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS } from "../storage/retry.ts";
import { DEFAULT_PART_SIZE } from "../storage/limits.ts";
import { parseDuration } from "../repo/retention.ts";
import { RETENTION_KEYS, validateSchedule, type FileSettings } from "./file.ts";

type RetentionKey = (typeof RETENTION_KEYS)[number];

export interface SettingFlags {
  repo?: string;
  compression?: string;
  tmpDir?: string;
  retries?: string;
  timeout?: string;
  partSize?: string;
  schedule?: string;
  healthcheckUrl?: string;
  /** --check: true, --no-check: false, absent: undefined. */
  check?: boolean;
  /** --keep-… flags by their names ("keep-daily": "7"). */
  retention?: Partial<Record<RetentionKey, string | undefined>>;
}

export interface Settings {
  repo: string;
  /** Where the repo came from, so a command can say when the local default is in use. */
  repoSource: "flag" | "env" | "config" | "default";
  compression: Compression;
  tmpDir: string;
  /** Network storage: retries after a transient failure. */
  retries: number;
  /** Network storage: each request's time limit (and the longest silence in a download), in ms. */
  timeoutMs: number;
  /** S3 multipart part size in bytes. */
  partSize: number;
  /** When `cron` backs the database up. */
  schedule: string;
  healthcheckUrl?: string;
  /** Retention settings by flag name, flags over the config file; empty when none is given. */
  retention: Partial<Record<RetentionKey, string>>;
  /** quick_check each snapshot before it is stored; a damaged database is not backed up. */
  check: boolean;
}

export const DEFAULT_SCHEDULE = "@hourly";

/** Pure: merge flags, environment, the config file's settings and defaults. Throws UsageError for invalid values. */
export function resolveSettings(flags: SettingFlags, env: Env, file: FileSettings = {}): Settings {
  const repoFlag = nonEmpty(flags.repo);
  const repoEnv = nonEmpty(env.SQLITE_VAULT_REPO);
  const repoFile = nonEmpty(file.repo);
  const repo = repoFlag ?? repoEnv ?? repoFile ?? defaultRepo(env);
  // Each value with where it came from, so a bad one is reported under the name the user wrote.
  const pick = (flag: string, flagValue: string | undefined, envName: string, fileKey: string, fileValue: string | undefined) =>
    nonEmpty(flagValue) !== undefined ? { text: flagValue!, from: flag } : nonEmpty(env[envName]) !== undefined ? { text: env[envName]!, from: envName } : nonEmpty(fileValue) !== undefined ? { text: fileValue!, from: `${fileKey} in the config file` } : undefined;
  const compressionPick = pick("--compression", flags.compression, "SQLITE_VAULT_COMPRESSION", "compression", file.compression);
  const compression = parseCompression(compressionPick?.text, "gzip", compressionPick?.from);
  const tmpDir = nonEmpty(flags.tmpDir) ?? nonEmpty(env.SQLITE_VAULT_TMP_DIR) ?? nonEmpty(file.tmpDir) ?? nonEmpty(env.TMPDIR) ?? tmpdir();
  if (flags.tmpDir === "") throw new UsageError("--tmp-dir is empty");
  const retries = wholeNumber(pick("--retries", flags.retries, "SQLITE_VAULT_RETRIES", "retries", file.retries), 0, 100) ?? DEFAULT_RETRIES;
  const timeoutPick = pick("--timeout", flags.timeout, "SQLITE_VAULT_TIMEOUT", "timeout", file.timeout);
  const timeout = timeoutPick ? parseDuration(timeoutPick.text, timeoutPick.from) : undefined;
  if (timeout && (timeout.months || timeout.years)) throw new UsageError(`${timeoutPick!.from} ${timeoutPick!.text} reads as months`, `write minutes as min: ${timeoutPick!.text.replace(/(\d+)m\b/g, "$1min")}`);
  if (timeout && timeout.ms < 1000) throw new UsageError(`${timeoutPick!.from} ${timeoutPick!.text} is shorter than a second`);
  const partMiB = wholeNumber(pick("--part-size", flags.partSize, "SQLITE_VAULT_PART_SIZE", "part-size", file.partSize), 5, 5120);
  const schedulePick = pick("--schedule", flags.schedule, "SQLITE_VAULT_SCHEDULE", "schedule", file.schedule);
  const schedule = schedulePick?.text ?? DEFAULT_SCHEDULE;
  try {
    validateSchedule(schedule);
  } catch (error) {
    throw new UsageError(`${schedulePick?.from ?? "schedule"}: ${(error as Error).message}`, (error as UsageError).hint);
  }
  const retention: Partial<Record<RetentionKey, string>> = {};
  for (const key of RETENTION_KEYS) {
    const value = nonEmpty(flags.retention?.[key]) ?? nonEmpty(file.retention?.[key]);
    if (value !== undefined) retention[key] = value;
  }
  const checkEnv = nonEmpty(env.SQLITE_VAULT_CHECK);
  if (checkEnv !== undefined && !["1", "0", "true", "false"].includes(checkEnv)) throw new UsageError(`SQLITE_VAULT_CHECK must be true or false (1 or 0), not "${checkEnv}"`);
  const check = flags.check ?? (checkEnv === undefined ? undefined : checkEnv === "1" || checkEnv === "true") ?? file.check ?? false;
  return {
    check,
    repo,
    repoSource: repoFlag ? "flag" : repoEnv ? "env" : repoFile ? "config" : "default",
    compression,
    tmpDir,
    retries,
    timeoutMs: timeout?.ms ?? DEFAULT_TIMEOUT_MS,
    partSize: partMiB ? partMiB * 1024 * 1024 : DEFAULT_PART_SIZE,
    schedule,
    healthcheckUrl: nonEmpty(flags.healthcheckUrl) ?? nonEmpty(env.SQLITE_VAULT_HEALTHCHECK_URL) ?? nonEmpty(file.healthcheckUrl),
    retention,
  };
}

function wholeNumber(value: { text: string; from: string } | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value.text);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${value.from} must be a whole number from ${min} to ${max}, not "${value.text}"`);
  return n;
}

/** The embedded default: a local directory under the user's data dir. Works with no server. */
export function defaultRepo(env: Env): string {
  const data = nonEmpty(env.XDG_DATA_HOME) ?? join(nonEmpty(env.HOME) ?? homedir(), ".local", "share");
  return join(data, "sqlite-vault", "repo");
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/**
 * The current time. SQLITE_VAULT_NOW (an ISO 8601 time) replaces it: a test hook that lets the suite
 * create backups dated weeks apart and plan retention at a chosen moment. It never affects grace
 * periods, which are measured against the real clock and the storage's timestamps.
 */
export function resolveNow(env: Env): () => Date {
  const fixed = env.SQLITE_VAULT_NOW;
  if (!fixed) return () => new Date();
  const time = Date.parse(fixed);
  if (Number.isNaN(time)) throw new UsageError(`SQLITE_VAULT_NOW="${fixed}" is not an ISO 8601 time`);
  return () => new Date(time);
}
