/**
 * What a repository holds, as far as manifests say: the only source of truth for list, restore and
 * everything else. A data object without a manifest (an interrupted upload) is never a backup; it is
 * reported as an orphan. A listing is input from the network: a key listed twice is one object.
 * A backup dated beyond the time the storage stored it (by a clock that ran ahead, or a manifest
 * planted in the bucket) is an anomaly, never the newest backup, now or later: retention does not count
 * or remove it, and --latest / --at and new backups pass over it.
 */
import { contradictedNotFound, NotFoundError, UsageError, VerificationError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import {
  backupIdTime,
  newestFirst,
  parseDataKey,
  parseManifest,
  parseManifestKey,
  parseVerifiedKey,
  type BackupManifest,
} from "./manifest.ts";
import { readAllUpTo } from "../util/streams.ts";
import type { ObjectInfo, Storage } from "../storage/types.ts";

export interface Catalog {
  /** Valid backups, newest first (by id, which sorts by creation time). */
  backups: BackupManifest[];
  /** Manifests that exist but could not be read or validated, newest first, with the reason. */
  invalid: { key: string; name: string; id: string; storedAt: Date; reason: string }[];
  /** Data objects that no manifest names (interrupted uploads), oldest first. */
  orphans: ObjectInfo[];
  /** For backups that `verify --record` found sound: manifest id -> time of the last successful check. */
  verifiedAt: Record<string, string>;
  /** Verification markers whose backup is gone (left by an interrupted prune). */
  strayMarkers: ObjectInfo[];
  /**
   * Valid manifests whose data object the listing shows missing or of another size than recorded:
   * backups that cannot be restored, found without reading a byte of data. Newest first.
   */
  damaged: { backup: BackupManifest; reason: string }[];
  /** Valid manifests dated beyond the time they were stored (see isFutureDated), with that time. Newest first. */
  futureDated: { backup: BackupManifest; storedAt: Date }[];
}

/**
 * How far beyond the time its manifest was stored a backup may be dated and still count: 15 minutes,
 * the clock difference S3 accepts in a signed request, so a host whose clock S3 accepted never makes a
 * future-dated backup.
 */
export const FUTURE_TOLERANCE_MS = 15 * 60_000;

/**
 * Whether a backup's id (the time it was made, by its host's clock) lies beyond `storedAt` plus
 * FUTURE_TOLERANCE_MS: `storedAt` is the storage's own time for its manifest (S3's LastModified, a
 * file's mtime), a second clock its host did not set. Such a backup was dated by a clock that ran
 * ahead, or planted. Unlike a test against "now", no later clock makes it right: it would otherwise
 * count again once time came near its date, over backups made after it.
 */
export function isFutureDated(backup: { id: string; storedAt: Date }): boolean {
  return backupIdTime(backup.id) > backup.storedAt.getTime() + FUTURE_TOLERANCE_MS;
}

/** The warning for a future-dated backup that `what` passes over. */
export function futureDatedLine(backup: { name: string; id: string; storedAt: Date }, what: string): string {
  return `${what} ${backup.name} ${backup.id}: it is dated ${new Date(backupIdTime(backup.id)).toISOString()}, later than the storage stored it (${backup.storedAt.toISOString()}): the clock that dated it ran ahead, or it was planted`;
}

/**
 * "Now" for telling future-dated backups: the later of `local` (this machine's clock) and the
 * storage server's, a second clock: a backup is an anomaly only when it is beyond both, so a machine
 * whose clock is behind never takes the newest real backups for future ones.
 */
export function repositoryNow(storage: Storage, local: Date = new Date()): Date {
  const server = storage.serverNow?.();
  return server && server.getTime() > local.getTime() ? server : local;
}

const READ_CONCURRENCY = 8;

/**
 * Read every manifest under `name` (or under every name when omitted). Throws the storage's errors
 * (unavailable, auth); a manifest that vanishes between list and read (a concurrent prune) is skipped.
 */
export async function readCatalog(storage: Storage, name?: string): Promise<Catalog> {
  const manifests: { key: string; name: string; id: string; storedAt: Date }[] = [];
  const data: ObjectInfo[] = [];
  const verifiedAt: Record<string, string> = {};
  const markers: ObjectInfo[] = [];
  for await (const object of listOnce(storage, name ? `${name}/` : "")) {
    const manifest = parseManifestKey(object.key);
    if (manifest && (!name || manifest.name === name)) manifests.push({ key: object.key, ...manifest, storedAt: object.lastModified });
    else if (parseDataKey(object.key)) data.push(object);
    else {
      const verified = parseVerifiedKey(object.key);
      if (verified) {
        verifiedAt[`${verified.name}/${verified.id}`] = object.lastModified.toISOString();
        markers.push(object);
      }
    }
  }
  const backups: BackupManifest[] = [];
  const invalid: Catalog["invalid"] = [];
  await mapLimit(manifests, READ_CONCURRENCY, async (entry) => {
    try {
      const manifest = await readListedManifest(storage, entry.key);
      if (manifest) backups.push(manifest);
    } catch (error) {
      if (!(error instanceof VerificationError)) throw error;
      invalid.push({ ...entry, reason: error.message });
    }
  });
  backups.sort(newestFirst);
  invalid.sort(newestFirst);
  const named = new Set(manifests.map((m) => `${m.name}/${m.id}`));
  const orphans = data.filter((object) => {
    const parsed = parseDataKey(object.key)!;
    return !named.has(`${parsed.name}/${parsed.id}`) && (!name || parsed.name === name);
  });
  const verified: Record<string, string> = {};
  for (const b of backups) {
    const at = verifiedAt[`${b.name}/${b.id}`];
    if (at) verified[b.id] = at;
  }
  const strayMarkers = markers.filter((m) => {
    const parsed = parseVerifiedKey(m.key)!;
    return !named.has(`${parsed.name}/${parsed.id}`) && (!name || parsed.name === name);
  });
  const sizes = new Map(data.map((object) => [object.key, object.size]));
  const damaged = backups.flatMap((backup) => {
    const reason = dataObjectProblem(backup, sizes.get(backup.stored.key));
    return reason ? [{ backup, reason }] : [];
  });
  const storedAt = new Map(manifests.map((m) => [`${m.name}/${m.id}`, m.storedAt]));
  const futureDated = backups.flatMap((backup) => {
    const at = storedAt.get(`${backup.name}/${backup.id}`)!;
    return isFutureDated({ id: backup.id, storedAt: at }) ? [{ backup, storedAt: at }] : [];
  });
  return { backups, invalid, orphans, verifiedAt: verified, strayMarkers, damaged, futureDated };
}

/** storage.list with each key at most once: a listing repeated by a faulty server or proxy. */
async function* listOnce(storage: Storage, prefix: string): AsyncGenerator<ObjectInfo> {
  const seen = new Set<string>();
  for await (const object of storage.list(prefix)) {
    if (seen.has(object.key)) continue;
    seen.add(object.key);
    yield object;
  }
}

/** Why a backup whose data object is `size` bytes (undefined: not there) cannot be restored; null if it looks whole. */
export function dataObjectProblem(backup: BackupManifest, size: number | undefined): string | null {
  if (size === undefined) return `its data object ${backup.stored.key} is missing`;
  if (size !== backup.stored.bytes) return `its data object is ${size} bytes, not the ${backup.stored.bytes} its manifest records`;
  return null;
}

/** A manifest's key with the name and id it encodes, and when the storage stored it. */
export interface ManifestEntry {
  key: string;
  name: string;
  id: string;
  /** The storage's time for the manifest (see isFutureDated). */
  storedAt: Date;
  /**
   * The data object listed with the same name and id, when exactly one is: a restore may begin its
   * GET while the manifest is read. Only a guess until the manifest names it (src/check/stored.ts).
   */
  dataKey?: string;
}

/** The manifest keys under `name` (every name when omitted), newest first; no manifest is read. */
export async function listManifests(storage: Storage, name?: string): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = [];
  // name/id -> its data object's key; null when several are listed (then none is a guess).
  const dataKeys = new Map<string, string | null>();
  for await (const object of listOnce(storage, name ? `${name}/` : "")) {
    const parsed = parseManifestKey(object.key);
    if (parsed && (!name || parsed.name === name)) entries.push({ key: object.key, ...parsed, storedAt: object.lastModified });
    const data = parsed ? null : parseDataKey(object.key);
    if (data) dataKeys.set(`${data.name}/${data.id}`, dataKeys.has(`${data.name}/${data.id}`) ? null : object.key);
  }
  for (const entry of entries) {
    const dataKey = dataKeys.get(`${entry.name}/${entry.id}`);
    if (dataKey) entry.dataKey = dataKey;
  }
  return entries.sort(newestFirst);
}

/** A backup a selection may pick: its manifest, or the reason its manifest cannot be used. */
export type Candidate = { ok: true; manifest: BackupManifest } | { ok: false; entry: ManifestEntry; error: VerificationError };

/**
 * The backups among `entries` that `selection` may pick, best candidate first, each manifest read
 * only when the caller asks for the next one, a few ahead: `restore --latest` and `status` read the
 * newest manifest of a name, not all of its thousands. Keys already rule out what their id (creation
 * time, to the millisecond) does not match. A manifest that cannot be read or validated is a
 * candidate that failed (the caller refuses it, or passes over it with --fallback: a newest backup
 * written by a newer version is never silently replaced by an older one); one removed since the
 * listing (a concurrent prune) is skipped. --latest and --at pass over future-dated backups (named
 * on `log` when given), so a wrong clock once never decides what is restored; --id still picks one.
 * `onRead` is told of each manifest as its read begins.
 */
export async function* readCandidates(
  storage: Storage,
  entries: ManifestEntry[],
  selection: Selection,
  options: { log?: Logger; onRead?: (entry: ManifestEntry) => void } = {},
): AsyncGenerator<Candidate> {
  const wanted = entries.filter((e) => {
    if ("id" in selection) return e.id === selection.id;
    if ("at" in selection && backupIdTime(e.id) > selection.through.getTime()) return false;
    if (!isFutureDated(e)) return true;
    options.log?.warn(futureDatedLine(e, "passing over"));
    return false;
  });
  const read = (entry: ManifestEntry): Promise<Candidate | null> => {
    options.onRead?.(entry);
    return readListedManifest(storage, entry.key).then(
      (manifest) => {
        if (manifest) return { ok: true as const, manifest };
        options.log?.warn(`passing over ${entry.name} ${entry.id}: it was removed after the listing (a prune meanwhile?)`);
        return null;
      },
      (error: unknown) => {
        if (error instanceof VerificationError) return { ok: false as const, entry, error };
        throw error;
      },
    );
  };
  // The first manifest alone (usually the only one needed), then READ_CONCURRENCY at a time.
  for (let start = 0, size = 1; start < wanted.length; start += size, size = READ_CONCURRENCY) {
    const window = wanted.slice(start, start + size).map(read);
    for (const pending of window) pending.catch(() => {}); // a failure is thrown below, in order
    for (const pending of window) {
      const candidate = await pending;
      if (candidate && (!candidate.ok || selectCandidates([candidate.manifest], selection).length)) yield candidate;
    }
  }
}

/** The newest backup among `entries` (its manifest, or why that cannot be used), reading as few manifests as it takes. */
export async function newestBackup(
  storage: Storage,
  entries: ManifestEntry[],
  options: { log?: Logger } = {},
): Promise<Candidate | undefined> {
  for await (const candidate of readCandidates(storage, entries, { latest: true }, options)) return candidate;
  return undefined;
}

/** Far more than a manifest holds (about 1 KB): a bigger object is no manifest, and is never read whole. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

export async function readManifest(storage: Storage, key: string): Promise<BackupManifest> {
  const source = await storage.get(key);
  const bytes = source.size !== undefined && source.size > MAX_MANIFEST_BYTES ? null : await readAllUpTo(source, MAX_MANIFEST_BYTES);
  if (!bytes) {
    await source.cancel().catch(() => {});
    throw new VerificationError(`manifest ${key} is larger than ${MAX_MANIFEST_BYTES} bytes, far more than a manifest holds`, "manifest");
  }
  return parseManifest(bytes, key);
}

/**
 * The manifest at `key`, which a listing showed; null when it is gone since (a concurrent prune).
 * "Not found" is taken only when a second look (stat) agrees: one wrong answer (a 404 from something
 * between here and the storage) would otherwise pass over the newest backup without a word, and a
 * restore would bring back an older one. Throws StorageUnavailableError when the two disagree.
 */
export async function readListedManifest(storage: Storage, key: string): Promise<BackupManifest | null> {
  try {
    return await readManifest(storage, key);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    if ((await storage.stat(key)) === null) return null;
    throw contradictedNotFound(key);
  }
}

/** `at`: the time as written; `through`: the last instant it covers (its whole last unit, see parseSelection). */
export type Selection = { latest: true } | { id: string } | { at: Date; through: Date };

/** Parse --latest / --id / --at into one selection; at most one may be given. Throws UsageError. */
export function parseSelection(flags: { latest?: boolean; id?: string; at?: string }): Selection {
  const given = [flags.latest ? "--latest" : "", flags.id ? "--id" : "", flags.at ? "--at" : ""].filter(Boolean);
  if (given.length > 1) throw new UsageError(`${given.join(" and ")} cannot be combined`);
  if (flags.id) return { id: flags.id };
  if (flags.at) {
    // A time without a zone is UTC, as list shows times (JavaScript would read it as local time),
    // and a space may stand for the T, as list prints them ("2026-12-05 11:00:00Z").
    const iso = flags.at.replace(/^(\d{4}-\d{2}-\d{2}) (?=\d)/, "$1T");
    const at = new Date(/T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(iso) ? `${iso}Z` : iso);
    const [, year, month, day] = (/^(\d{4})-(\d{2})-(\d{2})/.exec(flags.at) ?? []).map(Number);
    const realDay =
      year !== undefined && month! >= 1 && month! <= 12 && day! >= 1 && day! <= new Date(Date.UTC(year, month!, 0)).getUTCDate(); // not 2026-02-30
    if (!realDay || Number.isNaN(at.getTime()))
      throw new UsageError(`--at ${flags.at} is not an ISO 8601 time`, "for example --at 2026-11-22T05:00:00Z");
    // A time covers the whole of the last unit written: list prints times to the second, and a time
    // copied from it must take the backup on that line (made at 11:00:00.700), not the one before.
    const time = /T\d{2}:\d{2}(:\d{2}(\.\d+)?)?/.exec(iso);
    const span = !time ? 86_400_000 : time[2] ? 1 : time[1] ? 1000 : 60_000;
    return { at, through: new Date(at.getTime() + span - 1) };
  }
  return { latest: true };
}

/** The backups a selection may pick from, best candidate first (newest first). */
export function selectCandidates(backups: BackupManifest[], selection: Selection): BackupManifest[] {
  if ("id" in selection) return backups.filter((b) => b.id === selection.id);
  if ("at" in selection) return backups.filter((b) => Date.parse(b.createdAt) <= selection.through.getTime());
  return backups;
}

export function describeSelection(selection: Selection): string {
  if ("id" in selection) return `with id ${selection.id}`;
  if ("at" in selection) return `at or before ${selection.at.toISOString()}`;
  return "";
}

/** Run fn over items with at most `limit` in flight; rejects with the first error after all settle. */
export async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (next < items.length && failure === undefined) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure;
}
