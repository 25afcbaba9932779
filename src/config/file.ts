/**
 * The config file: YAML (Bun's parser), found at --config FILE, else SQLITE_VAULT_CONFIG, else
 * ./sqlite-vault.yml, else /etc/sqlite-vault.yml. A file named explicitly but missing is an error; a
 * missing default file is fine. ${VAR} references in string values expand from the environment
 * (unless expandEnv is false; "$$" is a literal "$"). Every problem is reported with its key and line.
 *
 *   repo: s3://bucket/backups?endpoint=https://…     # top-level defaults for every database
 *   compression: zstd
 *   schedule: "@hourly"
 *   retention: { keep-hourly: 24, keep-daily: 7 }
 *   healthcheck-url: https://hc-ping.com/${HC_UUID}
 *   databases:
 *     - path: /var/lib/app/app.db                    # each may override any default
 *       schedule: "*\/15 * * * *"
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { deriveName, isBackupName } from "../repo/manifest.ts";
import { assertTrustedFile, readSmallFile } from "../local/small-file.ts";
import type { Env } from "../storage/credentials.ts";
import { checkDuration, describe, isObject, readSettings, RETENTION_KEYS, validateSchedule, type RetentionKey } from "./file-sections.ts";
import { formatPath, locate } from "./key-path.ts";
import { pickLayer } from "../util/layers.ts";

export { locate, RETENTION_KEYS, validateSchedule };

/** Settings a config file can give, as strings (like flag values), merged by resolveSettings. */
export interface FileSettings {
  repo?: string;
  compression?: string;
  tmpDir?: string;
  schedule?: string;
  healthcheckUrl?: string;
  retries?: string;
  timeout?: string;
  partSize?: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  /** quick_check each snapshot before storing it (backup --check). */
  check?: boolean;
  retention?: Partial<Record<RetentionKey, string>>;
  recipients?: string[];
  recipientsFile?: string;
  passphraseFile?: string;
  identityFiles?: string[];
  /** `encryption: false`: unencrypted on purpose, even after encrypted backups. */
  plaintext?: boolean;
}

export interface ConfiguredDatabase {
  path: string;
  name?: string;
  /** The database's own settings over the file's defaults. */
  settings: FileSettings;
}

export interface ConfigFile {
  path: string;
  /** cron --exec: how long the application has to stop after SIGTERM before it is killed (top level only: there is one application). */
  stopTimeout?: string;
  defaults: FileSettings;
  databases: ConfiguredDatabase[];
}

/**
 * Find and load the config file. Returns null when no file is named and no default exists.
 * Throws UsageError (exit 2) for a named file that is missing and for any invalid content.
 */
export function loadConfig(options: { path?: string; env: Env; expandEnv?: boolean; cwd?: string }): ConfigFile | null {
  const named = pickLayer([
    { from: "--config", value: options.path },
    { from: "SQLITE_VAULT_CONFIG", value: options.env.SQLITE_VAULT_CONFIG },
  ]);
  let path: string | undefined;
  let found = false;
  if (named) {
    path = resolve(options.cwd ?? process.cwd(), named.value);
    if (!existsSync(path)) throw new UsageError(`config file ${path} does not exist`, `check ${named.from}`);
  } else {
    const here = resolve(options.cwd ?? process.cwd(), "sqlite-vault.yml");
    path = [here, "/etc/sqlite-vault.yml"].find((p) => existsSync(p));
    if (!path) return null;
    found = path === here;
  }
  let text: string;
  const file = path;
  try {
    text = readSmallFile(path, undefined, (info) => assertTrustedFile("config file", file, info, { ownedHere: found }));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return parseConfig(text, path, options.env, options.expandEnv ?? true);
}

/** Pure: parse and validate config text. Throws UsageError naming the key and its line. */
export function parseConfig(text: string, path: string, env: Env, expandEnv = true): ConfigFile {
  let raw: unknown;
  try {
    raw = Bun.YAML.parse(text);
  } catch (error) {
    throw new UsageError(`${path}: invalid YAML: ${(error as Error).message.replace(/^YAML Parse error: /, "")}`);
  }
  if (raw === null || raw === undefined) raw = {};
  const fail: (keyPath: (string | number)[], problem: string) => never = (keyPath, problem) => {
    const line = locate(text, keyPath);
    throw new UsageError(`${path}${line ? `:${line}` : ""}: ${formatPath(keyPath)} ${problem}`);
  };
  const expand = (value: string, keyPath: (string | number)[]): string =>
    !expandEnv
      ? value
      : value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (match, name: string | undefined) => {
          if (match === "$$") return "$";
          const v = env[name!];
          if (v === undefined) return fail(keyPath, `uses \${${name}}, which is not set in the environment`);
          return v;
        });
  if (!isObject(raw)) return fail([], "must be a mapping of settings");
  const home = env.HOME;
  const filePath = (name: string) => resolve(dirname(path), home && (name === "~" || name.startsWith("~/")) ? home + name.slice(1) : name);
  const defaults = readSettings(raw, [], { fail, expand, allow: ["databases", "stop-timeout"], path: filePath });
  let stopTimeout: string | undefined;
  if (raw["stop-timeout"] !== undefined && raw["stop-timeout"] !== null) {
    if (typeof raw["stop-timeout"] !== "string") fail(["stop-timeout"], `must be a string, not ${describe(raw["stop-timeout"])}`);
    stopTimeout = expand(raw["stop-timeout"] as string, ["stop-timeout"]);
    checkDuration(stopTimeout, ["stop-timeout"], { fail, expand, allow: [], path: filePath }, { exact: true });
  }
  const databases: ConfiguredDatabase[] = [];
  if (raw.databases !== undefined) {
    if (!Array.isArray(raw.databases)) fail(["databases"], "must be a list");
    for (const [i, entry] of (raw.databases as unknown[]).entries()) {
      const at = ["databases", i];
      if (!isObject(entry)) fail(at, "must be a mapping with at least a path");
      if (typeof entry.path !== "string" || !entry.path) fail([...at, "path"], "is required (the database file)");
      if (entry.name !== undefined && typeof entry.name !== "string") fail([...at, "name"], "must be a string");
      if (typeof entry.name === "string" && !isBackupName(expand(entry.name, [...at, "name"])))
        fail(
          [...at, "name"],
          `"${entry.name}" cannot be a backup name: letters, digits, ".", "_" and "-", starting with a letter or digit`,
        );
      databases.push({
        // Relative paths are relative to the config file, wherever the command runs.
        path: filePath(expand(entry.path, [...at, "path"])),
        name: entry.name === undefined ? undefined : expand(entry.name, [...at, "name"]),
        settings: readSettings(entry, at, { fail, expand, allow: ["path", "name"], path: filePath }),
      });
    }
  }
  const seen = new Map<string, number>();
  const names = new Map<string, number>();
  databases.forEach((db, i) => {
    if (seen.has(db.path)) fail(["databases", i, "path"], `repeats databases[${seen.get(db.path)}] (${db.path})`);
    seen.set(db.path, i);
    // Two databases under one name would prune each other's backups and restore each other's data.
    const name = db.name ?? deriveName(db.path);
    if (names.has(name))
      fail(
        ["databases", i, db.name === undefined ? "path" : "name"],
        `gives the backup name ${name} of databases[${names.get(name)}] to another database; give each its own name`,
      );
    names.set(name, i);
  });
  return { path, ...(stopTimeout ? { stopTimeout } : {}), defaults, databases };
}
