/**
 * One database's backups under cron: on its schedule, and a final one on shutdown. Runs of one
 * database never overlap (a tick that finds the last run going is skipped, and said so); each
 * outcome is an event and updates what /health reports. A failed run is an outcome, not a throw.
 */
import type { RunContext } from "../context.ts";
import { toVaultError } from "../errors.ts";
import type { Metrics } from "../monitor/metrics.ts";
import { runBackupJob, type JobOutcome, type JobTarget } from "../ops/backup-job.ts";
import { roundSeconds, type Emit } from "./events.ts";
import { runOnSchedule } from "./schedule.ts";

/** One database as GET /health shows it. */
export interface DatabaseHealth {
  name: string;
  lastBackupAt: string | null;
  lastBackupBytes: number | null;
  lastBackupId: string | null;
  nextScheduledAt: string | null;
  backupCount: number;
  restoredOnStartup: boolean;
  lastError: string | null;
  schedule: string;
  enabled: true;
  running: boolean;
  lastRunOk: boolean | null;
}

export interface RunnerDeps {
  /** The daemon's work context: its signal aborts only when shutdown runs out of time. */
  ctx: RunContext;
  metrics: Metrics;
  now?: () => Date;
  emit: Emit;
}

export class DatabaseRunner {
  readonly name: string;
  private running: Promise<JobOutcome> | null = null;
  private stopSchedule: (() => void) | undefined;
  private stopped = false;
  private lastBackupAt: string | null = null;
  private lastBackupBytes: number | null = null;
  private lastBackupId: string | null = null;
  private nextScheduledAt: string | null = null;
  private backupCount = 0;
  private lastError: string | null = null;
  private lastRunOk: boolean | null = null;

  constructor(
    private readonly target: JobTarget,
    private readonly restoredOnStartup: boolean,
    private readonly deps: RunnerDeps,
  ) {
    this.name = target.name;
  }

  get schedule(): string {
    return this.target.settings.schedule;
  }

  /** The next scheduled run as an ISO time, once start() has armed the schedule. */
  get next(): string | null {
    return this.nextScheduledAt;
  }

  /** Arm the schedule. */
  start(): void {
    const { name } = this;
    this.stopSchedule = runOnSchedule(this.schedule, () => this.runScheduled(), {
      onNext: (next) => (this.nextScheduledAt = next?.toISOString() ?? null),
      onMissed: (at) =>
        this.deps.emit("backup-skipped", { database: name, at: at.toISOString(), reason: "the previous run was still going" }),
    });
  }

  /** Disarm the schedule: no scheduled run starts after this; a running one goes on (see settled()). */
  stop(): void {
    this.stopped = true;
    this.stopSchedule?.();
  }

  /** The run now going, settled (it never rejects), or null when none is. */
  settled(): Promise<JobOutcome> | null {
    return this.running;
  }

  /** Back up now. Never rejects: a failure is an outcome (and a backup-failed event). */
  run(reason: "scheduled" | "final"): Promise<JobOutcome> {
    const { target, deps } = this;
    deps.emit("backup-started", { database: this.name, reason });
    const started = performance.now();
    const running = runBackupJob(target, deps.ctx, { metrics: deps.metrics, now: deps.now }).then(
      (outcome) => this.record(outcome),
      (error) => {
        const e = toVaultError(error);
        const seconds = roundSeconds((performance.now() - started) / 1000);
        return this.record({
          name: this.name,
          database: target.db,
          ok: false,
          error: { code: e.code, message: e.message, exitCode: e.exitCode },
          seconds,
        });
      },
    );
    this.running = running.finally(() => {
      this.running = null;
    });
    return running;
  }

  health(): DatabaseHealth {
    // The key order is /health's output order.
    return {
      name: this.name,
      lastBackupAt: this.lastBackupAt,
      lastBackupBytes: this.lastBackupBytes,
      lastBackupId: this.lastBackupId,
      nextScheduledAt: this.nextScheduledAt,
      backupCount: this.backupCount,
      restoredOnStartup: this.restoredOnStartup,
      lastError: this.lastError,
      schedule: this.schedule,
      enabled: true,
      running: this.running !== null,
      lastRunOk: this.lastRunOk,
    };
  }

  private async runScheduled(): Promise<void> {
    if (this.stopped) return;
    if (this.running) {
      this.deps.emit("backup-skipped", { database: this.name, reason: "the previous run is still going" });
      return;
    }
    await this.run("scheduled");
  }

  private record(outcome: JobOutcome): JobOutcome {
    const { emit } = this.deps;
    this.lastRunOk = outcome.ok;
    if (outcome.ok && outcome.backup) {
      this.lastBackupAt = outcome.backup.createdAt;
      this.lastBackupBytes = outcome.backup.storedBytes;
      this.lastBackupId = outcome.backup.id;
      this.backupCount++;
      this.lastError = outcome.pruneError ? `prune: ${outcome.pruneError}` : null;
      emit("backup-done", {
        database: this.name,
        id: outcome.backup.id,
        databaseBytes: outcome.backup.databaseBytes,
        storedBytes: outcome.backup.storedBytes,
        seconds: outcome.seconds,
        pruned: outcome.prune?.names.reduce((n, x) => n + x.removed.length, 0) ?? 0,
        ...(outcome.pruneError ? { pruneError: outcome.pruneError } : {}),
      });
    } else {
      this.lastError = outcome.error?.message ?? "unknown error";
      emit("backup-failed", { database: this.name, error: this.lastError, seconds: outcome.seconds });
    }
    return outcome;
  }
}
