/**
 * cron's start, before anything is scheduled or the application runs: every repository must be
 * usable, and with --restore-if-missing each missing database is restored. The daemon's own signal
 * handling is not installed yet, so a signal here interrupts the start as it does a one-shot restore:
 * the restore stops, removes its temp file, and the run ends with exit 130.
 */
import type { RunContext } from "../context.ts";
import { ContextualError, InterruptedError, NoSpaceError, toVaultError, withContext, type VaultError } from "../errors.ts";
import { interruptedBy, onInterrupt } from "../interrupts.ts";
import type { Metrics } from "../monitor/metrics.ts";
import type { JobTarget } from "../ops/backup-job.ts";
import { runRestore } from "../ops/restore.ts";
import type { DecryptionSettings } from "../pipeline/age.ts";
import { roundSeconds, type Emit } from "./events.ts";

export interface DaemonTarget extends JobTarget {
  decryption: DecryptionSettings;
}

/** A database as the daemon goes on to back it up. */
export interface PreparedTarget {
  target: JobTarget;
  restoredOnStartup: boolean;
}

export interface StartupDeps {
  restoreIfMissing: boolean;
  /** Aborted by a signal during the start; `ctx.signal` is its signal. */
  work: AbortController;
  ctx: RunContext;
  metrics: Metrics;
  emit: Emit;
}

/**
 * Check every repository, then restore the missing databases, in the targets' order. Returns the
 * targets to back up, in the same order, without changing `targets`. Throws when a repository is not
 * usable or a restore fails (ContextualError with a hint cron's user can follow), or the abort reason
 * (InterruptedError) when a signal came.
 */
export async function prepareTargets(targets: readonly DaemonTarget[], deps: StartupDeps): Promise<PreparedTarget[]> {
  const interrupt = (signal: NodeJS.Signals) => deps.work.abort(new InterruptedError(signal));
  const stopInterrupting = onInterrupt(interrupt);
  const early = interruptedBy();
  if (early) interrupt(early);
  try {
    await checkRepositories(targets, deps.ctx.signal);
    const prepared: PreparedTarget[] = [];
    for (const t of targets)
      prepared.push(deps.restoreIfMissing ? await restoreIfMissing(t, deps) : { target: t, restoredOnStartup: false });
    return prepared;
  } finally {
    stopInterrupting();
  }
}

async function checkRepositories(targets: readonly DaemonTarget[], signal: AbortSignal): Promise<void> {
  for (const t of targets) {
    signal.throwIfAborted();
    try {
      await (t.storage.create?.() ?? t.storage.check());
    } catch (error) {
      throw withContext(`repository ${t.storage.url} for ${t.name} is not usable at startup`, error);
    }
  }
}

async function restoreIfMissing(t: DaemonTarget, { work, ctx, metrics, emit }: StartupDeps): Promise<PreparedTarget> {
  const { decryption, ...target } = t;
  const started = performance.now();
  try {
    const result = await runRestore(
      t.storage,
      { name: t.name, target: t.db, selection: { latest: true }, ifMissing: true, decryption },
      ctx,
    );
    if (result.action !== "restored") {
      emit("restore-skipped", { database: t.name, path: t.db, reason: result.reason });
      return { target, restoredOnStartup: false };
    }
    const seconds = (performance.now() - started) / 1000;
    metrics.restored(t.name, seconds);
    emit("restored", { database: t.name, path: t.db, id: result.id, bytes: result.databaseBytes, seconds: roundSeconds(seconds) });
    // Restored from this name (perhaps onto a new path after a rebuild): its backups go on under it,
    // even where the name comes from the file name and the old path differs.
    return { target: { ...target, nameGiven: true }, restoredOnStartup: true };
  } catch (error) {
    if (work.signal.aborted) throw work.signal.reason;
    const failure = toVaultError(error);
    const hint = startupRestoreHint(failure, t.db);
    throw new ContextualError(`startup restore of ${t.name} failed: ${failure.message}`, {
      exitCode: failure.exitCode,
      code: failure.code,
      hint,
    });
  }
}

/** The hint for a failed startup restore: cron takes no --fallback, --force or --output, so a hint naming them is no way out. */
function startupRestoreHint(failure: VaultError, db: string): string | undefined {
  if (failure instanceof NoSpaceError) return "free some space there, then start cron again";
  if (failure.hint?.includes("--fallback"))
    return `restore the newest sound backup by hand (sqlite-vault restore ${db} --fallback), then start cron again`;
  if (failure.hint && /--(force|output)\b/.test(failure.hint))
    return `move ${db} out of the way, or restore it by hand (sqlite-vault restore ${db}), then start cron again`;
  return failure.hint;
}
