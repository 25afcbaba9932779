/**
 * Which databases a command acts on, and with which settings: the DB argument or --name, else every
 * database in the config file. Each target carries its merged settings (flag > env > the database's
 * config entry > the config file's defaults > built-in defaults), its opened storage and its keys.
 */
import type { ArgsDef } from "citty";
import { resolve } from "node:path";
import { resolveSettings, type Settings } from "./settings.ts";
import { loadConfig, RETENTION_KEYS, type ConfigFile, type FileSettings } from "./file.ts";
import { UsageError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { NO_KEY_FLAGS, targetKeys, type KeyFlags, type TargetKeys } from "./keys.ts";
import { assertValidName, deriveName } from "../repo/manifest.ts";
import type { Env } from "../storage/credentials.ts";
import { openStorage, type Storage } from "../storage/index.ts";

export const configArgs = {
  config: {
    type: "string",
    valueHint: "FILE",
    description: "Config file (env SQLITE_VAULT_CONFIG; default ./sqlite-vault.yml, then /etc/sqlite-vault.yml)",
  },
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
  storage: Storage;
  /**
   * Which repository the storage opens: its URL with the endpoint, region and addressing asked for.
   * Targets with equal ones share a repository. Never printed (print `storage.url`).
   */
  repository: string;
  /** Its age keys, flag > env > its config entry, each resolved (and its files read) on first use. */
  keys: TargetKeys;
}

export interface TargetSet {
  config: ConfigFile | null;
  targets: Target[];
  /** True when the targets came from the config file's database list (not from arguments). */
  fromConfig: boolean;
}

/** One database a command acts on, before its settings are merged: from the arguments or a config entry. */
export interface TargetPick {
  db?: string;
  name?: string;
  nameGiven: boolean;
  /** The config file's settings for it: its entry over the file's defaults. */
  file: FileSettings;
}

/**
 * Pure: which databases the command acts on. The DB argument (with its config entry, if any), else
 * --name, else every configured database, else one target for the whole repository. `needsDb`: every
 * target must have a database path (backup, cron); without one, a UsageError says what `command`
 * needs and suggests `example`, a command line of its own.
 */
export function selectTargets(
  flags: Pick<TargetFlags, "db" | "name">,
  config: ConfigFile | null,
  needsDb?: { command: string; example: string },
): { fromConfig: boolean; picks: TargetPick[] } {
  const configured = config?.databases ?? [];
  const defaults = config?.defaults ?? {};
  if (flags.db) {
    const path = resolve(flags.db);
    const entry = configured.find((d) => d.path === path);
    const given = flags.name || entry?.name;
    return {
      fromConfig: false,
      picks: [
        {
          db: flags.db,
          name: given || deriveName(flags.db),
          nameGiven: Boolean(given),
          file: mergeFileSettings(defaults, entry?.settings),
        },
      ],
    };
  }
  if (flags.name) {
    const entry = configured.find((d) => (d.name ?? deriveName(d.path)) === flags.name);
    return {
      fromConfig: false,
      picks: [{ db: entry?.path, name: flags.name, nameGiven: true, file: mergeFileSettings(defaults, entry?.settings) }],
    };
  }
  if (configured.length)
    return {
      fromConfig: true,
      picks: configured.map((d) => ({
        db: d.path,
        name: d.name ?? deriveName(d.path),
        nameGiven: d.name !== undefined,
        file: mergeFileSettings(defaults, d.settings),
      })),
    };
  if (needsDb) {
    const { command, example } = needsDb;
    throw new UsageError(
      config
        ? `${config.path} lists no databases; ${command} needs a database path`
        : `which database? ${command} needs a database path, or a config file listing databases (--config FILE, ./sqlite-vault.yml or /etc/sqlite-vault.yml)`,
      example,
    );
  }
  return { fromConfig: false, picks: [{ db: undefined, name: undefined, nameGiven: true, file: defaults }] };
}

/** Pure: a picked database's settings, merged flag > env > its config entry > the file's defaults > built-in defaults. Throws UsageError. */
export function resolveTargetSettings(flags: TargetFlags, env: Env, pick: TargetPick): Settings {
  if (pick.name) assertValidName(pick.name);
  const byName = flags as Record<string, unknown>;
  return resolveSettings(
    {
      repo: flags.repo,
      compression: flags.compression,
      tmpDir: flags["tmp-dir"],
      retries: flags.retries,
      timeout: flags.timeout,
      partSize: flags["part-size"],
      schedule: flags.schedule,
      healthcheckUrl: flags["healthcheck-url"],
      check: typeof byName.check === "boolean" ? byName.check : undefined,
      retention: Object.fromEntries(RETENTION_KEYS.map((k) => [k, stringFlag(byName[k])])),
    },
    env,
    pick.file,
  );
}

/**
 * Resolve the targets: load the config file, pick the databases, merge each one's settings, open its
 * storage (which contacts nothing) and give it its keys from `options.keys` (the command's key flags;
 * none by default), the environment and its config entry, read only when the command asks for them.
 * Throws UsageError for a bad config file, flag or URL.
 */
export function resolveTargets(
  flags: TargetFlags,
  log: Logger,
  options: { needsDb?: { command: string; example: string }; signal?: AbortSignal; keys?: KeyFlags } = {},
): TargetSet {
  const config = loadConfig({ path: flags.config, env: process.env, expandEnv: flags["expand-env"] !== false });
  const { fromConfig, picks } = selectTargets(flags, config, options.needsDb);
  const targets = picks.map((pick): Target => {
    const { file, ...picked } = pick;
    const settings = resolveTargetSettings(flags, process.env, pick);
    const where = { endpoint: flags.endpoint, region: flags.region, pathStyle: flags["path-style"] };
    const fallback = { endpoint: file.endpoint, region: file.region, pathStyle: file.pathStyle };
    const storage = openStorage(settings.repo, {
      ...where,
      createParents: settings.repoSource === "default",
      fallback,
      retries: settings.retries,
      timeoutMs: settings.timeoutMs,
      partSize: settings.partSize,
      onRetry: (message) => log.debug(message),
      onWarning: (message) => log.warn(message),
      signal: options.signal,
    });
    const repository = JSON.stringify([settings.repo, where, fallback]);
    const keys = targetKeys(options.keys ?? NO_KEY_FLAGS, process.env, log, file);
    return { ...picked, settings, storage, repository, keys };
  });
  return { config, fromConfig, targets };
}

/**
 * The target's S3 repository addressed the other way (path-style for virtual-hosted and back), with
 * no retries: doctor asks it whether the other addressing works. Undefined for storage without addressing.
 */
export function openOtherAddressing(flags: TargetFlags, target: Target, signal: AbortSignal): (() => Storage) | undefined {
  const { settings, storage } = target;
  if (storage.addressing === undefined) return undefined;
  return () =>
    openStorage(settings.repo, {
      endpoint: flags.endpoint,
      region: flags.region,
      pathStyle: storage.addressing !== "path-style",
      retries: 0,
      timeoutMs: settings.timeoutMs,
      signal,
    });
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
