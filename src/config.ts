/**
 * Settings shared by every command, merged in one pure function: flag > environment > built-in default.
 * (A config file joins this chain later, between the environment and the defaults.)
 */
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { parseCompression } from "./codec.ts";
import { UsageError } from "./errors.ts";
import type { Compression } from "./manifest.ts";
import type { Env } from "./storage/credentials.ts";
import { DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS } from "./storage/retry.ts";
import { DEFAULT_PART_SIZE } from "./storage/s3.ts";
import { parseDuration } from "./retention.ts";

export interface SettingFlags {
  repo?: string;
  compression?: string;
  tmpDir?: string;
  retries?: string;
  timeout?: string;
  partSize?: string;
}

export interface Settings {
  repo: string;
  /** Where the repo came from, so a command can say when the local default is in use. */
  repoSource: "flag" | "env" | "default";
  compression: Compression;
  tmpDir: string;
  /** Network storage: retries after a transient failure. */
  retries: number;
  /** Network storage: each request's time limit (and the longest silence in a download), in ms. */
  timeoutMs: number;
  /** S3 multipart part size in bytes. */
  partSize: number;
}

/** Pure: merge flags, environment and defaults. Throws UsageError for invalid values. */
export function resolveSettings(flags: SettingFlags, env: Env): Settings {
  const repoFlag = nonEmpty(flags.repo);
  const repoEnv = nonEmpty(env.SQLITE_VAULT_REPO);
  const repo = repoFlag ?? repoEnv ?? defaultRepo(env);
  const compression = parseCompression(nonEmpty(flags.compression) ?? nonEmpty(env.SQLITE_VAULT_COMPRESSION), "gzip");
  const tmpDir = nonEmpty(flags.tmpDir) ?? nonEmpty(env.SQLITE_VAULT_TMP_DIR) ?? nonEmpty(env.TMPDIR) ?? tmpdir();
  if (flags.tmpDir === "") throw new UsageError("--tmp-dir is empty");
  const retries = wholeNumber(nonEmpty(flags.retries) ?? nonEmpty(env.SQLITE_VAULT_RETRIES), "--retries", 0, 100) ?? DEFAULT_RETRIES;
  const timeoutText = nonEmpty(flags.timeout) ?? nonEmpty(env.SQLITE_VAULT_TIMEOUT);
  const timeout = timeoutText ? parseDuration(timeoutText, "--timeout") : undefined;
  if (timeout && (timeout.months || timeout.years)) throw new UsageError(`--timeout ${timeoutText} reads as months`, "write minutes as min: --timeout 2min");
  if (timeout && timeout.ms < 1000) throw new UsageError(`--timeout ${timeoutText} is shorter than a second`);
  const partMiB = wholeNumber(nonEmpty(flags.partSize) ?? nonEmpty(env.SQLITE_VAULT_PART_SIZE), "--part-size", 5, 5120);
  return {
    repo,
    repoSource: repoFlag ? "flag" : repoEnv ? "env" : "default",
    compression,
    tmpDir,
    retries,
    timeoutMs: timeout?.ms ?? DEFAULT_TIMEOUT_MS,
    partSize: partMiB ? partMiB * 1024 * 1024 : DEFAULT_PART_SIZE,
  };
}

function wholeNumber(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, not "${text}"`);
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
