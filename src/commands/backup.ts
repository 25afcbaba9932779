import { resolveNow } from "../config/settings.ts";
import { ContextualError, ExitCode } from "../errors.ts";
import type { BackupResult } from "../ops/backup.ts";
import { describeError, runBackupJob, type JobOutcome, type JobTarget } from "../ops/backup-job.ts";
import { DEFAULT_GRACE } from "../ops/prune.ts";
import { parseDuration, parsePolicy } from "../repo/retention.ts";
import { Metrics } from "../monitor/metrics.ts";
import { formatBytes, formatDuration, formatRatio } from "../output.ts";
import { checkArgs, databaseArgs, encryptArgs, outputArgs, policyArgs, repoArgs, tmpDirArgs } from "./_args.ts";
import { renderPrune } from "./_views.ts";
import { defineVaultCommand, keyFlags } from "./_run.ts";
import { configArgs, resolveTargets } from "../config/targets.ts";
import { exitCodeOver, forEachTarget } from "../config/run-targets.ts";

const args = {
  ...databaseArgs,
  ...repoArgs,
  compression: {
    type: "string",
    valueHint: "gzip|zstd|none",
    description: "Compression of the stored object (env SQLITE_VAULT_COMPRESSION; default gzip)",
  },
  ...tmpDirArgs,
  ...encryptArgs,
  identity: {
    type: "string",
    valueHint: "FILE",
    description:
      "Encrypt to the public key of this age identity file when no recipient or passphrase is named (repeatable; env SQLITE_VAULT_IDENTITY_FILE)",
  },
  ...checkArgs,
  ...policyArgs,
  "healthcheck-url": {
    type: "string",
    valueHint: "URL",
    description: "Ping URL/start, URL and URL/fail (healthchecks.io style; env SQLITE_VAULT_HEALTHCHECK_URL)",
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
    const jobs: JobTarget[] = [];
    // Keys and policies first: a usage error stops the command before any database is backed up.
    for (const t of set.targets) {
      if (t.settings.repoSource === "default")
        ctx.log.warn(
          `no --repo, SQLITE_VAULT_REPO or config repo: storing in the local default ${t.settings.repo}, which does not survive losing this machine`,
        );
      parsePolicy(t.settings.retention);
      parseDuration(t.settings.retention.grace ?? DEFAULT_GRACE, "grace");
      jobs.push({
        db: t.db!,
        name: t.name!,
        nameGiven: t.nameGiven,
        settings: t.settings,
        storage: t.storage,
        ...(await t.keys.encryption()),
      });
    }
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
    const results = outcomes.map((o) =>
      o.ok
        ? o.result
        : o.error instanceof JobFailedError
          ? o.error.outcome
          : { name: o.target.name!, database: o.target.db!, ok: false, error: describeError(o.error), seconds: 0 },
    );
    return { results, failed: results.filter((o) => !o.ok).map((o) => o.name) };
  },
  render: (r, view) =>
    "results" in r
      ? [
          ...r.results.map((o) => (o.ok ? renderBackup(o.backup!, view, o.prune) : `FAILED ${o.name}: ${o.error!.message}`)),
          r.failed.length ? `failed: ${r.failed.join(", ")}` : "",
        ]
          .filter(Boolean)
          .join("\n")
      : renderBackup(r, view, r.prune),
  quietOnSuccess: true,
  exitCode: (r) => ("results" in r ? exitCodeOver(r.failed.length, r.results.map(pruneExitCode)) : pruneExitCode(r)),
});

/** A job that reported its failure, thrown for the runner to record; it keeps the job's outcome for the report. */
class JobFailedError extends ContextualError {
  constructor(readonly outcome: JobOutcome) {
    super(outcome.error!.message, outcome.error!);
  }
}

/** A backup whose prune failed, wholly or in part, is a partial success. */
function pruneExitCode(o: { pruneError?: string; prune?: { failures: number } }): number {
  return o.pruneError || (o.prune?.failures ?? 0) > 0 ? ExitCode.partial : ExitCode.ok;
}

function renderBackup(b: BackupResult, view: { verbose: boolean }, prune?: JobOutcome["prune"]): string {
  const line = `backed up ${b.name} ${b.id}: ${formatBytes(b.databaseBytes)} -> ${formatBytes(b.storedBytes)} (${formatRatio(b.ratio)}, ${b.compression}${b.encrypted ? ", encrypted" : ""}) in ${formatDuration(b.durationMs)} to ${b.repo}`;
  return prune ? `${line}\n${renderPrune(prune, view)}` : line;
}
