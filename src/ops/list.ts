/**
 * list: the backups a repository holds, as rows (newest first), with the manifests it could not read.
 * It reads manifests only (and the verification markers beside them), never a byte of data.
 */
import type { RunContext } from "../context.ts";
import { futureDatedLine, readCatalog } from "../repo/catalog.ts";
import { newestFirst } from "../repo/manifest.ts";
import type { Storage } from "../storage/types.ts";

export interface ListedBackup {
  name: string;
  id: string;
  createdAt: string;
  host: string;
  databaseBytes: number;
  storedBytes: number;
  ratio: number;
  compression: string;
  encrypted: boolean;
  /** When `verify --record` last found this backup sound, or null. */
  verifiedAt: string | null;
  /** Dated beyond the time it was stored (see isFutureDated): restore --latest, retention and backups pass over it. */
  futureDated: boolean;
  /**
   * Why it cannot be restored, as the listing shows (its data object missing, or of another size
   * than recorded), or null. restore --latest fails on it; retention does not count it.
   */
  damaged: string | null;
}

export interface ListReport {
  repo: string;
  backups: ListedBackup[];
  invalid: { key: string; reason: string }[];
}

/**
 * The backups under each of `names` (undefined: every name in the repository), newest first (by
 * id, then name). Warns on ctx.log of each unreadable manifest, each future-dated backup and each
 * backup whose data object the listing shows missing or cut short. Throws
 * the storage's errors (unavailable, auth, not found for a missing local repository) as they are.
 */
export async function listBackups(storage: Storage, input: { names: (string | undefined)[] }, ctx: RunContext): Promise<ListReport> {
  const backups: ListedBackup[] = [];
  const invalid: ListReport["invalid"] = [];
  for (const name of input.names) {
    const catalog = await readCatalog(storage, name);
    for (const bad of catalog.invalid) ctx.log.warn(`ignoring ${bad.key}: ${bad.reason}`);
    const future = new Set(catalog.futureDated.map((f) => f.backup));
    for (const f of catalog.futureDated)
      ctx.log.warn(
        `${futureDatedLine({ ...f.backup, storedAt: f.storedAt }, "listing")}: restore --latest, retention and backups pass over it`,
      );
    const damaged = new Map(catalog.damaged.map((d) => [d.backup, d.reason]));
    for (const [m, reason] of damaged) ctx.log.warn(`${m.name} ${m.id} cannot be restored: ${reason}`);
    invalid.push(...catalog.invalid.map((i) => ({ key: i.key, reason: i.reason })));
    backups.push(
      ...catalog.backups.map((m) => ({
        name: m.name,
        id: m.id,
        createdAt: m.createdAt,
        host: m.host,
        databaseBytes: m.database.bytes,
        storedBytes: m.stored.bytes,
        ratio: m.database.bytes ? m.stored.bytes / m.database.bytes : 0,
        compression: m.stored.compression,
        encrypted: m.stored.encryption !== undefined,
        verifiedAt: catalog.verifiedAt[m.id] ?? null,
        futureDated: future.has(m),
        damaged: damaged.get(m) ?? null,
      })),
    );
  }
  return { repo: storage.url, backups: backups.sort(newestFirst), invalid };
}
