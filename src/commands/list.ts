import { defineCommand } from "citty";
import { readCatalog } from "../catalog.ts";
import { assertValidName, deriveName } from "../manifest.ts";
import { formatBytes, formatRatio, formatTable, formatTime } from "../output.ts";
import { databaseArgs, outputArgs, repoArgs } from "./_args.ts";
import { openRepo, runCommand } from "./_run.ts";

const args = { ...databaseArgs, ...repoArgs, ...outputArgs } as const;

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
  }[];
  invalid: { key: string; reason: string }[];
}

export default defineCommand({
  meta: { name: "list", description: "List the backups in the repository, newest first" },
  args,
  run: ({ args: flags, rawArgs }) =>
    runCommand<ListResult>({
      flags,
      rawArgs,
      argsDef: args,
      async execute(ctx) {
        const { storage } = openRepo(flags, ctx.log);
        const name = flags.name || (flags.db ? deriveName(flags.db) : undefined);
        if (name) assertValidName(name);
        const catalog = await readCatalog(storage, name);
        for (const bad of catalog.invalid) ctx.log.warn(`ignoring ${bad.key}: ${bad.reason}`);
        return {
          repo: storage.url,
          name: name ?? null,
          backups: catalog.backups.map((m) => ({
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
          })),
          invalid: catalog.invalid,
        };
      },
      render: (r) => {
        if (r.backups.length === 0) return `no backups${r.name ? ` of ${r.name}` : ""} in ${r.repo}`;
        return formatTable(
          ["NAME", "ID", "TIME (UTC)", "DATABASE", "STORED", "RATIO", "FORMAT", "VERIFIED (UTC)"],
          r.backups.map((b) => [
            b.name,
            b.id,
            formatTime(b.createdAt),
            formatBytes(b.databaseBytes),
            formatBytes(b.storedBytes),
            formatRatio(b.ratio),
            `${b.compression}${b.encrypted ? "+age" : ""}`,
            b.verifiedAt ? formatTime(b.verifiedAt) : "-",
          ]),
        );
      },
    }),
});
