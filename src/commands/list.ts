import { readCatalog } from "../repo/catalog.ts";
import { newestFirst } from "../repo/manifest.ts";
import { formatBytes, formatRatio, formatTable, formatTime } from "../output.ts";
import { databaseArgs, outputArgs, repoArgs } from "./_args.ts";
import { defineVaultCommand } from "./_run.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";

const args = { ...databaseArgs, ...repoArgs, ...configArgs, ...outputArgs } as const;

export interface ListResult {
  repo: string;
  name: string | null;
  backups: {
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
    /** Dated beyond this machine's clock: restore --latest and retention pass over it. */
    futureDated: boolean;
  }[];
  invalid: { key: string; reason: string }[];
}

export default defineVaultCommand({
  meta: { name: "list", description: "List the backups in the repository, newest first" },
  args,
  async execute({ flags, ctx }): Promise<ListResult> {
    const { targets } = resolveTargets(flags, ctx.log, { signal: ctx.signal });
    const backups: ListResult["backups"] = [];
    const invalid: ListResult["invalid"] = [];
    for (const { storage, name } of targets) {
      const catalog = await readCatalog(storage, name);
      for (const bad of catalog.invalid) ctx.log.warn(`ignoring ${bad.key}: ${bad.reason}`);
      const future = new Set(catalog.futureDated);
      for (const m of future)
        ctx.log.warn(`${m.name} ${m.id} is dated ${m.createdAt}, beyond this machine's clock: restore --latest and retention pass over it`);
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
        })),
      );
    }
    backups.sort(newestFirst);
    const repos = [...new Set(targets.map((t) => t.storage.url))];
    return { repo: repos.join(", "), name: targets.length === 1 ? (targets[0]!.name ?? null) : null, backups, invalid };
  },
  render: (r) => {
    if (r.backups.length === 0) return `no backups${r.name ? ` of ${r.name}` : ""} in ${r.repo}`;
    return formatTable(
      ["NAME", "ID", "TIME (UTC)", "DATABASE", "STORED", "RATIO", "FORMAT", "VERIFIED (UTC)"],
      r.backups.map((b) => [
        b.name,
        b.id,
        `${formatTime(b.createdAt)}${b.futureDated ? " (future)" : ""}`,
        formatBytes(b.databaseBytes),
        formatBytes(b.storedBytes),
        formatRatio(b.ratio),
        `${b.compression}${b.encrypted ? "+age" : ""}`,
        b.verifiedAt ? formatTime(b.verifiedAt) : "-",
      ]),
    );
  },
});
