import { resolveNow } from "../config/settings.ts";
import type { BackupResult } from "../ops/backup.ts";
import { backupExitCode, backupJobs, JobFailedError, jobOutcome, runBackupJob, type JobOutcome } from "../ops/backup-job.ts";
import { assertMetricsPath, Metrics } from "../monitor/metrics.ts";
import { ExitCode } from "../errors.ts";
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
type SingleBackup = BackupResult & { prune?: JobOutcome["prune"]; pruneError?: string; metricsError?: string };
type BackupOutput = SingleBackup | { results: JobOutcome[]; failed: string[]; metricsError?: string };

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
    const metricsFile = flags["metrics-file"];
    if (metricsFile) assertMetricsPath(metricsFile);
    const metrics = metricsFile ? new Metrics() : undefined;
    const jobs = await backupJobs(set.targets, ctx.log);
    // The backups are stored by now: a metrics file that cannot be written is said, never their failure.
    const writeMetrics = (): { metricsError?: string } => {
      if (!metrics || !metricsFile) return {};
      try {
        metrics.writeFile(metricsFile);
        return {};
      } catch (error) {
        const message = `could not write the metrics file ${metricsFile}: ${(error as Error).message}`;
        ctx.log.error(message);
        return { metricsError: message };
      }
    };
    const outcomes = await forEachTarget(set, ctx, "backup", async (_, i) => {
      const outcome = await runBackupJob(jobs[i]!, ctx, { metrics, now });
      if (!outcome.ok) throw new JobFailedError(outcome);
      return outcome;
    }).catch((thrown) => {
      // A failed backup is a metric too; an interrupted run writes none.
      if (!ctx.signal.aborted) writeMetrics();
      throw thrown;
    });
    const written = writeMetrics();
    if (!set.fromConfig) {
      const only = (outcomes[0] as { result: JobOutcome }).result;
      return {
        ...only.backup!,
        ...(only.prune ? { prune: only.prune } : {}),
        ...(only.pruneError ? { pruneError: only.pruneError } : {}),
        ...written,
      };
    }
    const results = outcomes.map(jobOutcome);
    return { results, failed: results.filter((o) => !o.ok).map((o) => o.name), ...written };
  },
  render: (r, view) => ("results" in r ? renderBackups(r.results, r.failed, view) : renderBackup(r, view, r.prune)),
  quietOnSuccess: true,
  exitCode: (r) => {
    const code = "results" in r ? exitCodeOver(r.failed.length, r.results.map(backupExitCode)) : backupExitCode(r);
    return code === ExitCode.ok && r.metricsError ? ExitCode.partial : code;
  },
});
