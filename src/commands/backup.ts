import { defineCommand } from "citty";
import { runBackup, type BackupResult } from "../backup.ts";
import { UsageError } from "../errors.ts";
import { formatBytes, formatDuration, formatRatio } from "../output.ts";
import { databaseArgs, outputArgs, repoArgs, tmpDirArgs } from "./_args.ts";
import { openRepo, runCommand } from "./_run.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  compression: { type: "string", valueHint: "gzip|zstd|none", description: "Compression of the stored object (env SQLITE_VAULT_COMPRESSION; default gzip)" },
  ...tmpDirArgs,
  ...outputArgs,
} as const;

export default defineCommand({
  meta: { name: "backup", description: "Take a consistent snapshot of a live SQLite database and store it in the repository" },
  args,
  run: ({ args: flags, rawArgs }) =>
    runCommand<BackupResult>({
      flags,
      rawArgs,
      argsDef: args,
      async execute(ctx) {
        if (!flags.db) throw new UsageError("which database? pass its path", "sqlite-vault backup /var/lib/app/app.db --repo s3://bucket/prefix");
        const { settings, storage } = openRepo(flags);
        if (settings.repoSource === "default") ctx.log.warn(`no --repo or SQLITE_VAULT_REPO: storing in the local default ${settings.repo}, which does not survive losing this machine`);
        return runBackup(storage, { databasePath: flags.db, name: flags.name, compression: settings.compression, tmpDir: settings.tmpDir }, ctx);
      },
      render: (r) =>
        `backed up ${r.name} ${r.id}: ${formatBytes(r.databaseBytes)} -> ${formatBytes(r.storedBytes)} (${formatRatio(r.ratio)}, ${r.compression}) in ${formatDuration(r.durationMs)} to ${r.repo}`,
    }),
});
