/**
 * The backup manifest and the repository layout (docs/FORMAT.md is the user-facing description).
 *
 *   {name}/{id}.json                  the manifest: the commit point, written after the data
 *   {name}/{id}.sqlite[.gz|.zst][.age] the data object: the database, compressed (and encrypted) as named
 *   {name}/{id}.verified.json         optional: when `verify --record` last found the backup sound
 *
 * Ids are "YYYYMMDDTHHMMSSmmmZ-xxxxxxxx": UTC creation time to the millisecond, then 32 random bits,
 * so keys sort by creation time and two hosts backing up the same name never collide.
 * Readers trust only what a manifest names: a data object without a manifest is never a backup.
 */
import type { ManifestEncryption } from "../pipeline/age.ts";
import { VerificationError, UsageError } from "../errors.ts";

export const FORMAT_VERSION = 1;
export const FORMAT_NAME = "sqlite-vault-backup";

export type Compression = "gzip" | "zstd" | "none";
export const COMPRESSIONS: readonly Compression[] = ["gzip", "zstd", "none"];

export interface BackupManifest {
  format: typeof FORMAT_NAME;
  formatVersion: number;
  id: string;
  name: string;
  /** ISO 8601 UTC, when the snapshot was taken. */
  createdAt: string;
  host: string;
  /** The database file backed up (its real path on `host`); absent in backups made before 0.2. */
  source?: { path: string };
  toolVersion: string;
  sqliteVersion: string;
  /** How the consistent snapshot was taken (src/pipeline/snapshot.ts); "vacuum-into" in backups made before 0.2. */
  snapshot: { method: "file-read" | "wal-read" | "file-copy" | "backup-api" | "vacuum-into"; journalMode: string };
  database: {
    pageSize: number;
    pageCount: number;
    bytes: number;
    sha256: string;
  };
  stored: {
    /** Data object key, relative to the repository root. */
    key: string;
    bytes: number;
    sha256: string;
    compression: Compression;
    /** Present when the stored object is encrypted: how, and to which public keys. */
    encryption?: ManifestEncryption;
  };
}

const ID_PATTERN = /^(\d{8}T\d{9}Z)-([0-9a-f]{8})$/;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MANIFEST_SUFFIX = ".json";

/** A new backup id for a creation time. Ids sort lexicographically in creation order. */
export function createBackupId(createdAt: Date, random: Uint8Array = crypto.getRandomValues(new Uint8Array(4))): string {
  const stamp = createdAt.toISOString().replace(/[-:]/g, "").replace(".", ""); // 20261122T053247123Z
  return `${stamp}-${Buffer.from(random).toString("hex")}`;
}

export function isBackupId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** The creation time an id was made from (createBackupId), to the millisecond; NaN for a non-id. */
export function backupIdTime(id: string): number {
  const stamp = ID_PATTERN.exec(id)?.[1];
  if (!stamp) return Number.NaN;
  const [, y, mo, d, h, mi, s, ms] = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/.exec(stamp)!;
  return Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`);
}

export function isBackupName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

/** Throws UsageError when a name cannot be used as a key segment. */
export function assertValidName(name: string): void {
  if (!NAME_PATTERN.test(name))
    throw new UsageError(
      `invalid backup name ${JSON.stringify(name)}`,
      "names are up to 128 letters, digits, '.', '_' and '-', starting with a letter or digit; pass --name",
    );
}

/** The backup name for a database path: its basename without .db/.sqlite/.sqlite3. */
export function deriveName(databasePath: string): string {
  const base = databasePath.split(/[\\/]/).pop() ?? "";
  return base.replace(/\.(db|sqlite3?|db3)$/i, "") || base;
}

export function extensionFor(compression: Compression): string {
  return compression === "gzip" ? ".sqlite.gz" : compression === "zstd" ? ".sqlite.zst" : ".sqlite";
}

export function manifestKey(name: string, id: string): string {
  return `${name}/${id}${MANIFEST_SUFFIX}`;
}

export function dataKey(name: string, id: string, compression: Compression, encrypted = false): string {
  return `${name}/${id}${extensionFor(compression)}${encrypted ? ".age" : ""}`;
}

/** For a listed key, the (name, id) of the manifest it is, or null. */
export function parseManifestKey(key: string): { name: string; id: string } | null {
  const match = /^([^/]+)\/([^/]+)\.json$/.exec(key);
  if (!match || !isBackupName(match[1]!) || !isBackupId(match[2]!)) return null;
  return { name: match[1]!, id: match[2]! };
}

/** The marker `verify --record` writes beside a backup that passed every check (never the manifest itself). */
export function verifiedKey(name: string, id: string): string {
  return `${name}/${id}.verified.json`;
}

export function parseVerifiedKey(key: string): { name: string; id: string } | null {
  const match = /^([^/]+)\/([^/]+)\.verified\.json$/.exec(key);
  if (!match || !isBackupName(match[1]!) || !isBackupId(match[2]!)) return null;
  return { name: match[1]!, id: match[2]! };
}

/** For a listed key, the (name, id) of the data object it is, or null. */
export function parseDataKey(key: string): { name: string; id: string } | null {
  const match = /^([^/]+)\/([^/]+?)\.sqlite(\.gz|\.zst)?(\.age)?$/.exec(key);
  if (!match || !isBackupName(match[1]!) || !isBackupId(match[2]!)) return null;
  return { name: match[1]!, id: match[2]! };
}

export function serializeManifest(manifest: BackupManifest): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
}

/**
 * Parse and validate a manifest. Throws VerificationError naming what is wrong, so a damaged or
 * foreign manifest is never mistaken for a backup.
 */
export function parseManifest(bytes: Uint8Array, key: string): BackupManifest {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new VerificationError(`manifest ${key} is not valid JSON`, "manifest");
  }
  const m = value as BackupManifest;
  const fail = (what: string) => new VerificationError(`manifest ${key} is invalid: ${what}`, "manifest");
  if (typeof m !== "object" || m === null || m.format !== FORMAT_NAME) throw fail("not a sqlite-vault manifest");
  if (m.formatVersion !== FORMAT_VERSION)
    throw fail(
      `format version ${String(m.formatVersion)} is not supported by this version (knows ${FORMAT_VERSION}); upgrade sqlite-vault`,
    );
  if (!isBackupId(m.id) || typeof m.name !== "string" || !NAME_PATTERN.test(m.name)) throw fail("bad id or name");
  if (manifestKey(m.name, m.id) !== key) throw fail("id and name do not match its key");
  if (Number.isNaN(Date.parse(m.createdAt))) throw fail("bad createdAt");
  // The id is made from createdAt; list and restore order by id, retention by createdAt: they must agree.
  if (Date.parse(m.createdAt) !== backupIdTime(m.id)) throw fail("createdAt does not match the time in its id");
  if (m.source !== undefined && (typeof m.source !== "object" || m.source === null || typeof m.source.path !== "string"))
    throw fail("bad source");
  const db = m.database;
  const stored = m.stored;
  if (!db || !isCount(db.pageSize) || !isCount(db.pageCount) || !isCount(db.bytes) || !isSha256(db.sha256))
    throw fail("bad database section");
  if (!stored || !isCount(stored.bytes) || !isSha256(stored.sha256) || !COMPRESSIONS.includes(stored.compression))
    throw fail("bad stored section");
  const enc = stored.encryption;
  if (
    enc !== undefined &&
    (typeof enc !== "object" ||
      enc === null ||
      enc.method !== "age" ||
      !["recipients", "passphrase"].includes(enc.mode) ||
      !Array.isArray(enc.recipients))
  )
    throw fail("bad stored.encryption");
  if (stored.key !== dataKey(m.name, m.id, stored.compression, enc !== undefined))
    throw fail("stored.key does not match id, compression and encryption");
  return m;
}

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

function isSha256(s: unknown): s is string {
  return typeof s === "string" && /^[0-9a-f]{64}$/.test(s);
}

/**
 * Newest first, for anything with a backup id (its creation time, to the millisecond): by id
 * descending, then by name, so one order holds wherever backups are listed, planned or chosen.
 */
export function newestFirst(a: { id: string; name?: string }, b: { id: string; name?: string }): number {
  return a.id < b.id ? 1 : a.id > b.id ? -1 : (a.name ?? "").localeCompare(b.name ?? "");
}
