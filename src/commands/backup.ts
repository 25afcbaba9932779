import { resolveNow } from "../config/settings.ts";
import type { BackupResult } from "../ops/backup.ts";
import { backupExitCode, backupJobs, JobFailedError, jobOutcome, runBackupJob, type JobOutcome } from "../ops/backup-job.ts";
import { Metrics } from "../monitor/metrics.ts";
import { compressionArgs, databaseArgs, jobArgs, outputArgs, repoArgs } from "./_args.ts";
import { renderBackup, renderBackups } from "./_views.ts";
import { defineVaultCommand, keyFlags } from "./_run.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";
import { exitCodeOver, forEachTarget } from "../config/run-targets.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  ...compressionArgs,
  ...jobArgs,
  identity: {
    type: "string",
    valueHint: "FILE",
    description:
      "Encrypt to the public key of this age identity file when no recipient or passphrase is named (repeatable; env SQLITE_VAULT_IDENTITY_FILE)",
  },
  "metrics-file": {
    type: "string",
    valueHint: "PATH",
    description: "Write Prometheus metrics of this run to PATH (node_exporter textfile), atomically",
  },
  ...configArgs,
  ...outputArgs,
} as const;

/** One database: its backup (and prune). Several (from the config file): every job's outcome. */
type SingleBackup = BackupResult & { prune?: JobOutcome["prune"]; pruneError?: string };
type BackupOutput = SingleBackup | { results: JobOutcome[]; failed: string[] };

export default defineVaultCommand({
  meta: { name: "backup", description: "Take a consistent snapshot of a live SQLite database and store it in the repository" },
  args,
  async execute({ flags, rawArgs, ctx }): Promise<BackupOutput> {
    const set = resolveTargets(flags, ctx.log, {
      needsDb: { command: "backup", example: "sqlite-vault backup /var/lib/app/app.db --repo s3://bucket/prefix" },
      signal: ctx.signal,
      keys: keyFlags(flags, rawArgs),
    });
    const now = resolveNow(process.env);
    const metrics = flags["metrics-file"] ? new Metrics() : undefined;
    const jobs = await backupJobs(set.targets, ctx.log);
    const writeMetrics = () => metrics && flags["metrics-file"] && metrics.writeFile(flags["metrics-file"]);
    const outcomes = await forEachTarget(set, ctx, "backup", async (_, i) => {
      const outcome = await runBackupJob(jobs[i]!, ctx, { metrics, now });
      if (!outcome.ok) throw new JobFailedError(outcome);
      return outcome;
    }).catch((thrown) => {
      // A failed backup is a metric too; an interrupted run writes none.
      if (!ctx.signal.aborted) writeMetrics();
      throw thrown;
    });
    writeMetrics();
    if (!set.fromConfig) {
      const only = (outcomes[0] as { result: JobOutcome }).result;
      return { ...only.backup!, ...(only.prune ? { prune: only.prune } : {}), ...(only.pruneError ? { pruneError: only.pruneError } : {}) };
    }
    const results = outcomes.map(jobOutcome);
    return { results, failed: results.filter((o) => !o.ok).map((o) => o.name) };
  },
  render: (r, view) => ("results" in r ? renderBackups(r.results, r.failed, view) : renderBackup(r, view, r.prune)),
  quietOnSuccess: true,
  exitCode: (r) => ("results" in r ? exitCodeOver(r.failed.length, r.results.map(backupExitCode)) : backupExitCode(r)),
});
