import { defineCommand } from "citty";
import { runBackup, type BackupResult } from "../backup.ts";
import { resolveNow } from "../config.ts";
import { ExitCode, toVaultError, UsageError } from "../errors.ts";
import { formatBytes, formatDuration, formatRatio } from "../output.ts";
import { DEFAULT_GRACE, runPrune, type PruneReport } from "../prune.ts";
import { isEmptyPolicy, parseDuration, parsePolicy } from "../retention.ts";
import { databaseArgs, encryptArgs, outputArgs, policyArgs, repoArgs, tmpDirArgs } from "./_args.ts";
import { resolveEncryption } from "../encryption.ts";
import { renderPrune } from "./prune.ts";
import { openRepo, repeatedFlag, runCommand } from "./_run.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  compression: { type: "string", valueHint: "gzip|zstd|none", description: "Compression of the stored object (env SQLITE_VAULT_COMPRESSION; default gzip)" },
  ...tmpDirArgs,
  ...encryptArgs,
  ...policyArgs,
  ...outputArgs,
} as const;

type BackupOutcome = BackupResult & { prune?: PruneReport; pruneError?: string };

export default defineCommand({
  meta: { name: "backup", description: "Take a consistent snapshot of a live SQLite database and store it in the repository" },
  args,
  run: ({ args: flags, rawArgs }) =>
    runCommand<BackupOutcome>({
      flags,
      rawArgs,
      argsDef: args,
      async execute(ctx) {
        if (!flags.db) throw new UsageError("which database? pass its path", "sqlite-vault backup /var/lib/app/app.db --repo s3://bucket/prefix");
        const policy = parsePolicy(flags);
        const grace = parseDuration(flags.grace ?? DEFAULT_GRACE, "--grace");
        const now = resolveNow(process.env);
        const encryption = resolveEncryption(
          { recipients: repeatedFlag(rawArgs, "recipient"), recipientsFile: flags["recipients-file"], passphrase: flags.passphrase, passphraseFile: flags["passphrase-file"] },
          process.env,
          ctx.log,
        );
        const { settings, storage } = openRepo(flags, ctx.log);
        if (settings.repoSource === "default") ctx.log.warn(`no --repo or SQLITE_VAULT_REPO: storing in the local default ${settings.repo}, which does not survive losing this machine`);
        const backup = await runBackup(storage, { databasePath: flags.db, name: flags.name, compression: settings.compression, encryption, tmpDir: settings.tmpDir, now }, ctx);
        if (isEmptyPolicy(policy)) return backup;
        // Only a backup that succeeded ever leads to a prune.
        try {
          return { ...backup, prune: await runPrune(storage, { name: backup.name, policy, grace, now: now() }, ctx) };
        } catch (error) {
          const failure = toVaultError(error);
          ctx.log.error(`the backup succeeded, but pruning failed: ${failure.message}${failure.hint ? ` (${failure.hint})` : ""}`);
          return { ...backup, pruneError: failure.message };
        }
      },
      render: (r) => {
        const line = `backed up ${r.name} ${r.id}: ${formatBytes(r.databaseBytes)} -> ${formatBytes(r.storedBytes)} (${formatRatio(r.ratio)}, ${r.compression}${r.encrypted ? ", encrypted" : ""}) in ${formatDuration(r.durationMs)} to ${r.repo}`;
        return r.prune ? `${line}\n${renderPrune(r.prune)}` : line;
      },
      exitCode: (r) => (r.pruneError || (r.prune?.failures ?? 0) > 0 ? ExitCode.partial : ExitCode.ok),
    }),
});
