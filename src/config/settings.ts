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
import { type Layer, type Picked, pickLayer } from "../util/layers.ts";
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

/**
 * How the user names each setting given as text: its flag, its variable, its key in the config file.
 * The three are layered in that order, and a bad value is reported under the name it was given by.
 */
const NAMES = {
  compression: ["--compression", "SQLITE_VAULT_COMPRESSION", "compression"],
  tmpDir: ["--tmp-dir", "SQLITE_VAULT_TMP_DIR", "tmp-dir"],
  retries: ["--retries", "SQLITE_VAULT_RETRIES", "retries"],
  timeout: ["--timeout", "SQLITE_VAULT_TIMEOUT", "timeout"],
  partSize: ["--part-size", "SQLITE_VAULT_PART_SIZE", "part-size"],
  schedule: ["--schedule", "SQLITE_VAULT_SCHEDULE", "schedule"],
  healthcheckUrl: ["--healthcheck-url", "SQLITE_VAULT_HEALTHCHECK_URL", "healthcheck-url"],
} as const satisfies Partial<Record<keyof SettingFlags & keyof FileSettings, readonly [flag: string, variable: string, fileKey: string]>>;

function layersOf(key: keyof typeof NAMES, flags: SettingFlags, env: Env, file: FileSettings): Layer<string>[] {
  const [flag, variable, fileKey] = NAMES[key];
  return [
    { from: flag, value: flags[key] },
    { from: variable, value: env[variable] },
    { from: `${fileKey} in the config file`, value: file[key] },
  ];
}

/** Pure: merge flags, environment, the config file's settings and defaults. Throws UsageError for invalid values. */
export function resolveSettings(flags: SettingFlags, env: Env, file: FileSettings = {}): Settings {
  const repo = pickLayer([
    { from: "flag", value: flags.repo },
    { from: "env", value: env.SQLITE_VAULT_REPO },
    { from: "config", value: file.repo },
  ]);
  const layered = (key: keyof typeof NAMES) => pickLayer(layersOf(key, flags, env, file));
  const compressionPick = layered("compression");
  const compression = parseCompression(compressionPick?.value, "gzip", compressionPick?.from);
  const tmpDir = pickLayer([...layersOf("tmpDir", flags, env, file), { from: "TMPDIR", value: env.TMPDIR }])?.value ?? tmpdir();
  if (flags.tmpDir === "") throw new UsageError("--tmp-dir is empty");
  const retries = wholeNumber(layered("retries"), 0, 100) ?? DEFAULT_RETRIES;
  const timeoutPick = layered("timeout");
  const timeout = timeoutPick ? parseDuration(timeoutPick.value, timeoutPick.from) : undefined;
  if (timeout && (timeout.months || timeout.years))
    throw new UsageError(
      `${timeoutPick!.from} ${timeoutPick!.value} reads as months`,
      `write minutes as min: ${timeoutPick!.value.replace(/(\d+)m\b/g, "$1min")}`,
    );
  if (timeout && timeout.ms < 1000) throw new UsageError(`${timeoutPick!.from} ${timeoutPick!.value} is shorter than a second`);
  const partMiB = wholeNumber(layered("partSize"), 5, 5120);
  const schedulePick = layered("schedule");
  const schedule = schedulePick?.value ?? DEFAULT_SCHEDULE;
  // Only a given schedule: the first parse loads the time zone data, 4-7 ms of every command's start.
  if (schedulePick)
    try {
      validateSchedule(schedule);
    } catch (error) {
      throw new UsageError(`${schedulePick.from}: ${(error as Error).message}`, (error as UsageError).hint);
    }
  // Retention has no variables: only flags and the config file give it.
  const retention: Partial<Record<RetentionKey, string>> = {};
  for (const key of RETENTION_KEYS) {
    const value = pickLayer([
      { from: `--${key}`, value: flags.retention?.[key] },
      { from: `${key} in the config file`, value: file.retention?.[key] },
    ])?.value;
    if (value !== undefined) retention[key] = value;
  }
  const check =
    pickLayer([
      { from: "--check", value: flags.check },
      { from: "SQLITE_VAULT_CHECK", value: checkFromEnv(env) },
      { from: "check in the config file", value: file.check },
    ])?.value ?? false;
  return {
    check,
    repo: repo?.value ?? defaultRepo(env),
    repoSource: repo?.from ?? "default",
    compression,
    tmpDir,
    retries,
    timeoutMs: timeout?.ms ?? DEFAULT_TIMEOUT_MS,
    partSize: partMiB ? partMiB * 1024 * 1024 : DEFAULT_PART_SIZE,
    schedule,
    healthcheckUrl: layered("healthcheckUrl")?.value,
    retention,
  };
}

/** SQLITE_VAULT_CHECK: true or false (1 or 0); undefined when unset or empty. */
function checkFromEnv(env: Env): boolean | undefined {
  const value = env.SQLITE_VAULT_CHECK;
  if (value === undefined || value === "") return undefined;
  if (!["1", "0", "true", "false"].includes(value))
    throw new UsageError(`SQLITE_VAULT_CHECK must be true or false (1 or 0), not "${value}"`);
  return value === "1" || value === "true";
}

function wholeNumber(value: Picked<string> | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value.value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${value.from} must be a whole number from ${min} to ${max}, not "${value.value}"`);
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

/** --stop-timeout > SQLITE_VAULT_STOP_TIMEOUT > the config file's stop-timeout > 30s, in ms. Throws UsageError naming the source of a bad value. */
export function resolveStopTimeout(flag: string | undefined, env: string | undefined, file: string | undefined): number {
  const { value: text, from } = pickLayer(
    [
      { from: "--stop-timeout", value: flag },
      { from: "SQLITE_VAULT_STOP_TIMEOUT", value: env || undefined },
      { from: "stop-timeout", value: file ?? "30s" },
    ],
    () => true,
  )!;
  const duration = parseDuration(text, from);
  if (duration.months || duration.years) throw new UsageError(`${from} ${text} reads as months`, "write minutes as min");
  return duration.ms;
}
