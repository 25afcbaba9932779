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

export interface SettingFlags {
  repo?: string;
  compression?: string;
  tmpDir?: string;
}

export interface Settings {
  repo: string;
  /** Where the repo came from, so a command can say when the local default is in use. */
  repoSource: "flag" | "env" | "default";
  compression: Compression;
  tmpDir: string;
}

/** Pure: merge flags, environment and defaults. Throws UsageError for invalid values. */
export function resolveSettings(flags: SettingFlags, env: Env): Settings {
  const repoFlag = nonEmpty(flags.repo);
  const repoEnv = nonEmpty(env.SQLITE_VAULT_REPO);
  const repo = repoFlag ?? repoEnv ?? defaultRepo(env);
  const compression = parseCompression(nonEmpty(flags.compression) ?? nonEmpty(env.SQLITE_VAULT_COMPRESSION), "gzip");
  const tmpDir = nonEmpty(flags.tmpDir) ?? nonEmpty(env.SQLITE_VAULT_TMP_DIR) ?? nonEmpty(env.TMPDIR) ?? tmpdir();
  if (flags.tmpDir === "") throw new UsageError("--tmp-dir is empty");
  return { repo, repoSource: repoFlag ? "flag" : repoEnv ? "env" : "default", compression, tmpDir };
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
