/**
 * One backup of one database as a job: healthcheck "start" ping, the backup, then (only when the
 * backup succeeded and a policy is set) the prune, metrics, and a "success" or "fail" ping. A job
 * reports its outcome instead of throwing, except for an interruption before the backup committed,
 * which ends the whole run.
 */
import { runBackup, type BackupResult } from "./backup.ts";
import type { RunContext } from "../context.ts";
import type { EncryptionSettings } from "../pipeline/age.ts";
import { ContextualError, ExitCode, InterruptedError, toVaultError, type VaultError } from "../errors.ts";
import { ping } from "../monitor/healthcheck.ts";
import type { Metrics } from "../monitor/metrics.ts";
import { formatBytes, formatDuration } from "../output.ts";
import { DEFAULT_GRACE, runPrune, type PruneReport } from "./prune.ts";
import { isEmptyPolicy, parseDuration, parsePolicy } from "../repo/retention.ts";
import type { Settings } from "../config/settings.ts";
import type { Target } from "../config/targets.ts";
import type { TargetOutcome } from "../config/run-targets.ts";
import type { Logger } from "../logger.ts";
import type { Storage } from "../storage/types.ts";

export interface JobTarget {
  db: string;
  name: string;
  /** False when the name was derived from the file name (see BackupInput.nameGiven). */
  nameGiven?: boolean;
  settings: Settings;
  storage: Storage;
  encryption: EncryptionSettings | null;
  /** Unencrypted on purpose (see BackupInput.plaintextChosen). */
  plaintextChosen?: boolean;
}

export interface JobOutcome {
  name: string;
  database: string;
  ok: boolean;
  backup?: BackupResult;
  prune?: PruneReport;
  /** The backup succeeded but its prune did not. */
  pruneError?: string;
  error?: { code: string; message: string; hint?: string; exitCode: number };
  seconds: number;
}

export async function runBackupJob(
  target: JobTarget,
  ctx: RunContext,
  hooks: { metrics?: Metrics; now?: () => Date } = {},
): Promise<JobOutcome> {
  const started = performance.now();
  const seconds = () => Math.round(performance.now() - started) / 1000;
  const { name, settings } = target;
  // Parse the policy before anything runs: a bad policy is a usage error, not a failed backup.
  const policy = parsePolicy(settings.retention);
  const grace = parseDuration(settings.retention.grace ?? DEFAULT_GRACE, "grace");
  await ping(settings.healthcheckUrl, "start", `backup of ${name} starting`, ctx.log);
  let backup: BackupResult;
  try {
    backup = await runBackup(
      target.storage,
      {
        databasePath: target.db,
        name,
        nameGiven: target.nameGiven ?? true,
        compression: settings.compression,
        encryption: target.encryption,
        plaintextChosen: target.plaintextChosen,
        tmpDir: settings.tmpDir,
        check: settings.check,
        now: hooks.now,
      },
      ctx,
    );
  } catch (thrown) {
    const error = toVaultError(thrown);
    if (error instanceof InterruptedError || ctx.signal.aborted) throw ctx.signal.aborted ? ctx.signal.reason : error;
    hooks.metrics?.backupFailed(name, seconds());
    await ping(settings.healthcheckUrl, "fail", `backup of ${name} failed: ${error.message}`, ctx.log);
    return { name, database: target.db, ok: false, error: describeError(error), seconds: seconds() };
  }
  hooks.metrics?.backupSucceeded(name, backup.durationMs / 1000, backup.storedBytes);
  const outcome: JobOutcome = { name, database: target.db, ok: true, backup, seconds: seconds() };
  if (!isEmptyPolicy(policy)) {
    try {
      outcome.prune = await runPrune(
        target.storage,
        { name, policy, grace, now: hooks.now?.() ?? new Date(), protect: [{ name, id: backup.id }] },
        ctx,
      );
    } catch (thrown) {
      // Cut short by a signal or a shutdown timeout, the backup is still committed: it counts as done,
      // its prune as failed (the next run prunes); the caller's next check of the signal ends the run.
      const error = toVaultError(ctx.signal.aborted ? ctx.signal.reason : thrown);
      ctx.log.error(`the backup of ${name} succeeded, but pruning failed: ${error.message}${error.hint ? ` (${error.hint})` : ""}`);
      outcome.pruneError = error.message;
    }
  }
  outcome.seconds = seconds();
  const summary = `backup of ${name} ${backup.id}: ${formatBytes(backup.databaseBytes)} -> ${formatBytes(backup.storedBytes)} in ${formatDuration(backup.durationMs)}`;
  await ping(settings.healthcheckUrl, "success", outcome.pruneError ? `${summary}; prune failed: ${outcome.pruneError}` : summary, ctx.log);
  return outcome;
}

export function describeError(error: VaultError): JobOutcome["error"] {
  return { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}), exitCode: error.exitCode };
}

/** A target as a backup job, its encryption keys read now. */
export async function jobTarget(t: Target): Promise<JobTarget> {
  return { db: t.db!, name: t.name!, nameGiven: t.nameGiven, settings: t.settings, storage: t.storage, ...(await t.keys.encryption()) };
}

/**
 * Every target as a backup job, its policy and keys checked first: a usage error stops the command
 * before any database is backed up.
 */
export async function backupJobs(targets: Target[], log: Logger): Promise<JobTarget[]> {
  const jobs: JobTarget[] = [];
  for (const t of targets) {
    if (t.settings.repoSource === "default")
      log.warn(
        `no --repo, SQLITE_VAULT_REPO or config repo: storing in the local default ${t.settings.repo}, which does not survive losing this machine`,
      );
    parsePolicy(t.settings.retention);
    parseDuration(t.settings.retention.grace ?? DEFAULT_GRACE, "grace");
    jobs.push(await jobTarget(t));
  }
  return jobs;
}

/** A job that reported its failure, thrown for the runner to record; it keeps the job's outcome for the report. */
export class JobFailedError extends ContextualError {
  constructor(readonly outcome: JobOutcome) {
    super(outcome.error!.message, outcome.error!);
  }
}

/** A backup whose prune failed, wholly or in part, is a partial success. */
export function backupExitCode(o: { pruneError?: string; prune?: { failures: number } }): number {
  return o.pruneError || (o.prune?.failures ?? 0) > 0 ? ExitCode.partial : ExitCode.ok;
}

/** A job's outcome as the runner recorded it: a failure the job did not report itself is described here. */
export function jobOutcome(o: TargetOutcome<JobOutcome>): JobOutcome {
  if (o.ok) return o.result;
  if (o.error instanceof JobFailedError) return o.error.outcome;
  return { name: o.target.name!, database: o.target.db!, ok: false, error: describeError(o.error), seconds: 0 };
}
