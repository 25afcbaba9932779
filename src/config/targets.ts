/**
 * Which databases a command acts on, and with which settings: the DB argument or --name, else every
 * database in the config file. Each target carries its merged settings (flag > env > the database's
 * config entry > the config file's defaults > built-in defaults) and its opened storage.
 */
import type { ArgsDef } from "citty";
import { resolve } from "node:path";
import { resolveSettings, type Settings } from "./settings.ts";
import { loadConfig, RETENTION_KEYS, type ConfigFile, type FileSettings } from "./file.ts";
import { UsageError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { assertValidName, deriveName } from "../repo/manifest.ts";
import { openStorage, type Storage } from "../storage/index.ts";

export const configArgs = {
  config: { type: "string", valueHint: "FILE", description: "Config file (env SQLITE_VAULT_CONFIG; default ./sqlite-vault.yml, then /etc/sqlite-vault.yml)" },
  "expand-env": { type: "boolean", description: "Expand ${VAR} in the config file (default on; --no-expand-env turns it off)" },
} as const satisfies ArgsDef;

export interface TargetFlags {
  db?: string;
  name?: string;
  config?: string;
  "expand-env"?: boolean;
  repo?: string;
  endpoint?: string;
  region?: string;
  "path-style"?: boolean;
  "tmp-dir"?: string;
  compression?: string;
  retries?: string;
  timeout?: string;
  "part-size"?: string;
  schedule?: string;
  "healthcheck-url"?: string;
  timezone?: string;
  grace?: string;
}

export interface Target {
  /** The database file, when known (always for backup). */
  db?: string;
  /** The backup name; undefined means every name in the repository. */
  name?: string;
  /** Whether the name was given (--name, or the config's `name`) rather than derived from the file name. */
  nameGiven: boolean;
  settings: Settings;
  /** The config file's settings for this database (for encryption keys and the like). */
  file: FileSettings;
  storage: Storage;
}

export interface TargetSet {
  config: ConfigFile | null;
  targets: Target[];
  /** True when the targets came from the config file's database list (not from arguments). */
  fromConfig: boolean;
}

/**
 * Resolve the targets. `needsDb`: every target must have a database path (backup, cron); without
 * one, a UsageError says what `command` needs and suggests `example`, a command line of its own.
 * With neither arguments nor configured databases: one target for the whole repository, unless needsDb.
 */
export function resolveTargets(flags: TargetFlags, log: Logger | undefined, options: { needsDb?: { command: string; example: string }; signal?: AbortSignal } = {}): TargetSet {
  const config = loadConfig({ path: flags.config, env: process.env, expandEnv: flags["expand-env"] !== false });
  const configured = config?.databases ?? [];
  const make = (db: string | undefined, name: string | undefined, file: FileSettings, nameGiven = true): Target => {
    if (name) assertValidName(name);
    const settings = resolveSettings(
      {
        repo: flags.repo,
        compression: flags.compression,
        tmpDir: flags["tmp-dir"],
        retries: flags.retries,
        timeout: flags.timeout,
        partSize: flags["part-size"],
        schedule: flags.schedule,
        healthcheckUrl: flags["healthcheck-url"],
        check: typeof (flags as Record<string, unknown>).check === "boolean" ? ((flags as Record<string, unknown>).check as boolean) : undefined,
        retention: Object.fromEntries(RETENTION_KEYS.map((k) => [k, stringFlag((flags as Record<string, unknown>)[k])])),
      },
      process.env,
      file,
    );
    const storage = openStorage(settings.repo, {
      endpoint: flags.endpoint,
      region: flags.region,
      pathStyle: flags["path-style"],
      fallback: { endpoint: file.endpoint, region: file.region, pathStyle: file.pathStyle },
      retries: settings.retries,
      timeoutMs: settings.timeoutMs,
      partSize: settings.partSize,
      onRetry: log ? (message) => log.debug(message) : undefined,
      onWarning: log ? (message) => log.warn(message) : undefined,
      signal: options.signal,
    });
    return { db, name, nameGiven, settings, file, storage };
  };
  const defaults = config?.defaults ?? {};

  if (flags.db) {
    const path = resolve(flags.db);
    const entry = configured.find((d) => d.path === path);
    const given = flags.name || entry?.name;
    return { config, fromConfig: false, targets: [make(flags.db, given || deriveName(flags.db), mergeFileSettings(defaults, entry?.settings), Boolean(given))] };
  }
  if (flags.name) {
    const entry = configured.find((d) => (d.name ?? deriveName(d.path)) === flags.name);
    return { config, fromConfig: false, targets: [make(entry?.path, flags.name, mergeFileSettings(defaults, entry?.settings))] };
  }
  if (configured.length)
    return { config, fromConfig: true, targets: configured.map((d) => make(d.path, d.name ?? deriveName(d.path), mergeFileSettings(defaults, d.settings), d.name !== undefined)) };
  if (options.needsDb) {
    const { command, example } = options.needsDb;
    throw new UsageError(
      config ? `${config.path} lists no databases; ${command} needs a database path` : `which database? ${command} needs a database path, or a config file listing databases (--config FILE, ./sqlite-vault.yml or /etc/sqlite-vault.yml)`,
      example,
    );
  }
  return { config, fromConfig: false, targets: [make(undefined, undefined, defaults)] };
}

const ENCRYPTION_FIELDS = ["recipients", "recipientsFile", "passphraseFile", "identityFiles", "plaintext"] as const;

/**
 * A database's config entry over the file's defaults; retention merges key by key. An entry's
 * `encryption` replaces the defaults' whole: a passphrase for one database must not be joined by the
 * recipients every other database uses.
 */
export function mergeFileSettings(defaults: FileSettings, entry: FileSettings = {}): FileSettings {
  const base = { ...defaults };
  if (ENCRYPTION_FIELDS.some((field) => entry[field] !== undefined)) for (const field of ENCRYPTION_FIELDS) delete base[field];
  return { ...base, ...entry, retention: { ...defaults.retention, ...entry.retention } };
}

function stringFlag(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
