import { defineCommand } from "citty";
import { parseSelection } from "../catalog.ts";
import { UsageError } from "../errors.ts";
import { deriveName } from "../manifest.ts";
import { formatBytes, formatDuration } from "../output.ts";
import { runRestore, type RestoreResult } from "../restore.ts";
import { databaseArgs, decryptArgs, outputArgs, repoArgs } from "./_args.ts";
import { decryptionFrom, openRepo, runCommand } from "./_run.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  latest: { type: "boolean", description: "Restore the newest backup (the default)" },
  id: { type: "string", description: "Restore the backup with this id" },
  at: { type: "string", valueHint: "TIME", description: "Restore the newest backup at or before this ISO 8601 time" },
  output: { type: "string", alias: "o", valueHint: "PATH", description: "Restore to this path instead of DB" },
  force: { type: "boolean", description: "Replace an existing database (it is moved aside, not deleted)" },
  "if-missing": { type: "boolean", description: "Do nothing when the database exists; succeed when there is no backup yet" },
  quick: { type: "boolean", description: "Run PRAGMA quick_check instead of the full integrity_check" },
  fallback: { type: "boolean", description: "If a backup fails verification, restore the next older one that passes" },
  ...decryptArgs,
  ...outputArgs,
} as const;

export default defineCommand({
  meta: { name: "restore", description: "Restore a verified backup atomically into place" },
  args,
  run: ({ args: flags, rawArgs }) =>
    runCommand<RestoreResult>({
      flags,
      rawArgs,
      argsDef: args,
      async execute(ctx) {
        const target = flags.output || flags.db;
        if (!target) throw new UsageError("where to? pass the database path, or --name NAME --output PATH", "sqlite-vault restore /var/lib/app/app.db");
        const name = flags.name || deriveName(flags.db || target);
        const selection = parseSelection({ latest: flags.latest, id: flags.id, at: flags.at });
        const { storage } = openRepo(flags, ctx.log);
        return runRestore(storage, { name, target, selection, force: flags.force, ifMissing: flags["if-missing"], quick: flags.quick, fallback: flags.fallback, decryption: decryptionFrom(flags, rawArgs, ctx.log) }, ctx);
      },
      render: (r) => {
        if (r.action === "skipped")
          return r.reason === "target-exists" ? `${r.target} exists; nothing restored` : `no backups of ${r.name} in ${r.repo}; nothing restored`;
        const aside = r.replaced.length ? `; the previous file was kept as ${r.replaced[0]}` : "";
        const skipped = r.skipped.map((s) => `skipped ${r.name} ${s.id} (${s.createdAt}): failed step ${s.step}: ${s.reason}\n`).join("");
        return `${skipped}restored ${r.name} ${r.id} (${r.createdAt}) to ${r.target}: ${formatBytes(r.databaseBytes)}, ${r.check} ok, in ${formatDuration(r.durationMs)}${aside}`;
      },
    }),
});
