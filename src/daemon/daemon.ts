/**
 * cron: pseudo-stateless SQLite in one process. On start it checks every repository, restores each
 * missing database (with --restore-if-missing), optionally starts the application (--exec), then
 * backs each database up on its own schedule (runs of one database never overlap) and prunes after
 * each successful backup. On SIGTERM/SIGINT/SIGHUP (or when the application exits) it finishes or cancels
 * the running backup, takes a final backup of each database within the shutdown timeout, logs what
 * was and was not backed up, and exits. An application that has not exited within the stop timeout
 * of the signal forwarded to it gets SIGKILL, and the final backup follows. A second signal exits at once.
 */
import type { Subprocess } from "bun";
import type { RunContext } from "../context.ts";
import type { DecryptionSettings } from "../pipeline/age.ts";
import { ContextualError, ExitCode, InterruptedError, NoSpaceError, toVaultError, VaultError, withContext } from "../errors.ts";
import { interruptedBy, onInterrupt } from "../interrupts.ts";
import { runBackupJob, type JobOutcome, type JobTarget } from "../ops/backup-job.ts";
import { Metrics } from "../monitor/metrics.ts";
import { parseDuration } from "../repo/retention.ts";
import { runRestore } from "../ops/restore.ts";

export interface DaemonTarget extends JobTarget {
  decryption: DecryptionSettings;
}

export interface DaemonOptions {
  targets: DaemonTarget[];
  restoreIfMissing: boolean;
  /** The application to run: argv. */
  exec?: string[];
  /** The application's stdout goes to this process's stderr, leaving stdout to the events (--json). */
  execStdoutToStderr?: boolean;
  listen?: { hostname: string; port: number };
  /** After a forwarded SIGTERM/SIGINT, how long the application has to exit before it gets SIGKILL (then the final backup). */
  stopTimeoutMs: number;
  shutdownTimeoutMs: number;
  now?: () => Date;
  /** One line per event: JSON objects with --json, else readable lines. */
  emit: (event: string, fields: Record<string, unknown>) => void;
  /** Aborts the daemon's work (the startup restore on a signal, backups when shutdown runs out of time); the targets' storage follows its signal. */
  work?: AbortController;
}

interface DatabaseState {
  name: string;
  schedule: string;
  running: Promise<JobOutcome> | null;
  lastBackupAt: string | null;
  lastBackupBytes: number | null;
  lastBackupId: string | null;
  nextScheduledAt: string | null;
  backupCount: number;
  restoredOnStartup: boolean;
  lastError: string | null;
  lastRunOk: boolean | null;
}

export interface DaemonHandle {
  /** Resolves with the exit code when the daemon has shut down. */
  done: Promise<number>;
  /** The address the health/metrics listener is bound to, if any. */
  url?: string;
}

/** Start the daemon. Throws (before anything is scheduled) when a repository is unreachable or a startup restore fails. */
export async function startDaemon(options: DaemonOptions, ctx: RunContext): Promise<DaemonHandle> {
  const { emit } = options;
  const metrics = new Metrics();
  const state = new Map<string, DatabaseState>();
  for (const t of options.targets) {
    metrics.declare(t.name);
    state.set(t.name, { name: t.name, schedule: t.settings.schedule, running: null, lastBackupAt: null, lastBackupBytes: null, lastBackupId: null, nextScheduledAt: null, backupCount: 0, restoredOnStartup: false, lastError: null, lastRunOk: null });
  }

  let stopping = false;
  // Work is cancelled only by a shutdown that ran out of time, never by the first signal.
  const work = options.work ?? new AbortController();
  const jobCtx: RunContext = { log: ctx.log, temp: ctx.temp, signal: work.signal };

  // Until the daemon's own handlers are installed below, a signal interrupts the startup: a restore
  // in progress stops, removes its temp file and ends the run with exit 130, as a one-shot restore does.
  const interruptStartup = (signal: NodeJS.Signals) => work.abort(new InterruptedError(signal));
  const stopInterrupting = onInterrupt(interruptStartup);
  const early = interruptedBy();
  if (early) interruptStartup(early);
  try {
    await startupChecksAndRestores();
  } finally {
    stopInterrupting();
  }
  async function startupChecksAndRestores(): Promise<void> {
    for (const t of options.targets) {
      jobCtx.signal.throwIfAborted();
      try {
        await t.storage.check({ create: true });
      } catch (error) {
        throw withContext(`repository ${t.storage.url} for ${t.name} is not usable at startup`, error);
      }
    }
    if (options.restoreIfMissing) {
      for (const t of options.targets) {
        const started = performance.now();
        try {
          const result = await runRestore(t.storage, { name: t.name, target: t.db, selection: { latest: true }, ifMissing: true, decryption: t.decryption }, jobCtx);
          const seconds = (performance.now() - started) / 1000;
          if (result.action === "restored") {
            state.get(t.name)!.restoredOnStartup = true;
            // Restored from this name (perhaps onto a new path after a rebuild): its backups go on
            // under it, even where the name comes from the file name and the old path differs.
            t.nameGiven = true;
            metrics.restored(t.name, seconds);
            emit("restored", { database: t.name, path: t.db, id: result.id, bytes: result.databaseBytes, seconds: round(seconds) });
          } else emit("restore-skipped", { database: t.name, path: t.db, reason: result.reason });
        } catch (error) {
          if (work.signal.aborted) throw work.signal.reason;
          const failure = toVaultError(error);
          const hint = startupRestoreHint(failure, t.db);
          throw new ContextualError(`startup restore of ${t.name} failed: ${failure.message}`, { exitCode: failure.exitCode, code: failure.code, hint });
        }
      }
    }
  }

  // Health and metrics: bound before the application starts, so a busy port never orphans it.
  let server: ReturnType<typeof Bun.serve> | undefined;
  if (options.listen) {
    const { hostname, port } = options.listen;
    try {
      server = Bun.serve({
      hostname: options.listen.hostname,
      port: options.listen.port,
      fetch(request) {
        const path = new URL(request.url).pathname;
        if (request.method !== "GET") return new Response("method not allowed\n", { status: 405 });
        if (path === "/health") {
          const databases = [...state.values()].map(({ running, schedule: sched, lastRunOk, ...rest }) => ({ ...rest, schedule: sched, enabled: true, running: running !== null, lastRunOk }));
          const ok = databases.every((d) => d.lastRunOk !== false);
          return Response.json({ ok, stopping, databases }, { status: ok ? 200 : 503 });
        }
        if (path === "/metrics") return new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } });
        return new Response("not found\n", { status: 404 });
      },
      });
    } catch (error) {
      throw new VaultError(`cannot listen on ${hostname}:${port}: ${(error as Error).message}`, "choose another --listen port");
    }
    emit("listening", { url: `http://${server.hostname}:${server.port}` });
  }

  let child: Subprocess | undefined;
  if (options.exec) {
    try {
      child = Bun.spawn(options.exec, { stdin: "inherit", stdout: options.execStdoutToStderr ? 2 : "inherit", stderr: "inherit" });
    } catch (error) {
      server?.stop(true);
      throw new VaultError(`could not start ${options.exec[0]}: ${(error as Error).message}`, "check --exec");
    }
    emit("exec-started", { command: options.exec[0], pid: child.pid });
  }

  // Scheduling.
  const timers: (() => void)[] = [];
  const runScheduled = async (t: DaemonTarget) => {
    const s = state.get(t.name)!;
    if (stopping) return;
    if (s.running) {
      emit("backup-skipped", { database: t.name, reason: "the previous run is still going" });
      return;
    }
    await runJob(t, "scheduled");
  };
  const runJob = (t: DaemonTarget, reason: "scheduled" | "final"): Promise<JobOutcome> => {
    const s = state.get(t.name)!;
    emit("backup-started", { database: t.name, reason });
    const started = performance.now();
    const running = runBackupJob(t, jobCtx, { metrics, now: options.now }).then(
      (outcome) => {
        record(s, outcome);
        return outcome;
      },
      (error) => {
        const e = toVaultError(error);
        const outcome: JobOutcome = { name: t.name, database: t.db, ok: false, error: { code: e.code, message: e.message, exitCode: e.exitCode }, seconds: round((performance.now() - started) / 1000) };
        record(s, outcome);
        return outcome;
      },
    );
    s.running = running.finally(() => {
      s.running = null;
    });
    return running;
  };
  const record = (s: DatabaseState, outcome: JobOutcome) => {
    s.lastRunOk = outcome.ok;
    if (outcome.ok && outcome.backup) {
      s.lastBackupAt = outcome.backup.createdAt;
      s.lastBackupBytes = outcome.backup.storedBytes;
      s.lastBackupId = outcome.backup.id;
      s.backupCount++;
      s.lastError = outcome.pruneError ? `prune: ${outcome.pruneError}` : null;
      emit("backup-done", {
        database: s.name,
        id: outcome.backup.id,
        databaseBytes: outcome.backup.databaseBytes,
        storedBytes: outcome.backup.storedBytes,
        seconds: outcome.seconds,
        pruned: outcome.prune?.names.reduce((n, x) => n + x.removed.length, 0) ?? 0,
      });
    } else {
      s.lastError = outcome.error?.message ?? "unknown error";
      emit("backup-failed", { database: s.name, error: s.lastError, seconds: outcome.seconds });
    }
  };
  for (const t of options.targets)
    timers.push(
      schedule(
        t.settings.schedule,
        () => runScheduled(t),
        (next) => (state.get(t.name)!.nextScheduledAt = next?.toISOString() ?? null),
        (at) => emit("backup-skipped", { database: t.name, at: at.toISOString(), reason: "the previous run was still going" }),
      ),
    );
  emit("scheduled", { databases: options.targets.map((t) => ({ database: t.name, schedule: t.settings.schedule, next: state.get(t.name)!.nextScheduledAt })) });

  // Shutdown.
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  let signals = 0;
  let killTimer: Timer | undefined;
  const shutdown = async (why: string, exitCode: number) => {
    if (stopping) return;
    stopping = true;
    for (const stop of timers) stop();
    emit("shutdown", { reason: why, timeoutSeconds: options.shutdownTimeoutMs / 1000 });
    const deadline = setTimeout(() => work.abort(new InterruptedError("shutdown timeout")), options.shutdownTimeoutMs);
    const backedUp: string[] = [];
    const notBackedUp: string[] = [];
    try {
      await Promise.all([...state.values()].map((s) => s.running));
      for (const t of options.targets) {
        if (work.signal.aborted) {
          notBackedUp.push(t.name);
          continue;
        }
        const outcome = await runJob(t, "final");
        (outcome.ok ? backedUp : notBackedUp).push(t.name);
      }
    } finally {
      clearTimeout(deadline);
    }
    emit("stopped", { backedUp, notBackedUp });
    server?.stop(true);
    resolveDone(notBackedUp.length && exitCode === ExitCode.ok ? ExitCode.partial : exitCode);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      emit("exit-now", { signal });
      jobCtx.temp.removeAll();
      child?.kill("SIGKILL");
      process.exit(ExitCode.interrupted);
    }
    if (child) {
      // A closed session stops the application; SIGHUP itself often means "reload" to one.
      const forwarded = signal === "SIGHUP" ? "SIGTERM" : signal;
      emit("signal-forwarded", { signal: forwarded, pid: child.pid, stopTimeoutSeconds: options.stopTimeoutMs / 1000 });
      child.kill(forwarded);
      // An application that ignores the signal must not keep cron (and the final backup) waiting for
      // ever: as container runtimes do, it gets SIGKILL once the stop timeout runs out.
      const app = child;
      killTimer = setTimeout(() => {
        emit("exec-killed", { pid: app.pid, signal: "SIGKILL", reason: `still running ${options.stopTimeoutMs / 1000}s after ${forwarded}` });
        app.kill("SIGKILL");
      }, options.stopTimeoutMs);
    } else void shutdown(signal, ExitCode.ok);
  };
  const stopListening = onInterrupt(onSignal);
  if (child) {
    child.exited.then((code) => {
      clearTimeout(killTimer);
      emit("exec-exited", { code, signal: child!.signalCode ?? null });
      void shutdown("the application exited", code ?? 1);
    });
  }
  void done.finally(stopListening);
  return { done, url: server ? `http://${server.hostname}:${server.port}` : undefined };
}

/**
 * Run `fn` on a schedule: 5-field cron expressions and @nicknames through Bun.cron (which never
 * overlaps runs), or "@every DURATION" through a timer chain. Returns a function that stops it.
 */
function schedule(expression: string, fn: () => Promise<void>, onNext: (next: Date | null) => void, onMissed?: (at: Date) => void): () => void {
  const every = /^@every\s+(\S+)$/.exec(expression.trim());
  if (every) {
    const interval = parseDuration(every[1]!).ms;
    let timer: Timer | undefined;
    let stopped = false;
    const arm = () => {
      onNext(new Date(Date.now() + interval));
      timer = setTimeout(async () => {
        await fn();
        if (!stopped) arm();
      }, interval);
    };
    arm();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }
  onNext(Bun.cron.parse(expression));
  const job = Bun.cron(expression, async () => {
    // While this run goes, the next time is the next tick; Bun.cron lets no run overlap the last, so
    // a tick that comes while it goes is skipped, and said so.
    const next = Bun.cron.parse(expression);
    onNext(next);
    await fn();
    if (next && Date.now() > next.getTime()) onMissed?.(next);
    onNext(Bun.cron.parse(expression));
  });
  return () => job.stop();
}

/** The hint for a failed startup restore: cron takes no --fallback, --force or --output, so a hint naming them is no way out. */
function startupRestoreHint(failure: VaultError, db: string): string | undefined {
  if (failure instanceof NoSpaceError) return "free some space there, then start cron again";
  if (failure.hint?.includes("--fallback")) return `restore the newest sound backup by hand (sqlite-vault restore ${db} --fallback), then start cron again`;
  if (failure.hint && /--(force|output)\b/.test(failure.hint)) return `move ${db} out of the way, or restore it by hand (sqlite-vault restore ${db}), then start cron again`;
  return failure.hint;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
