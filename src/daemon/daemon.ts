/**
 * cron: pseudo-stateless SQLite in one process. On start it checks every repository, restores each
 * missing database (with --restore-if-missing), optionally starts the application (--exec), then
 * backs each database up on its own schedule (runs of one database never overlap) and prunes after
 * each successful backup. On SIGTERM/SIGINT/SIGHUP (or when the application exits) it finishes or cancels
 * the running backup, takes a final backup of each database within the shutdown timeout, logs what
 * was and was not backed up, and exits. An application that has not exited within the stop timeout
 * of the signal forwarded to it gets SIGKILL, and the final backup follows. A second signal exits at once.
 *
 * This file puts the parts together in their order: startup.ts, server.ts, application.ts, runner.ts
 * (each on schedule.ts), supervisor.ts.
 */
import type { RunContext } from "../context.ts";
import { Metrics } from "../monitor/metrics.ts";
import { Application } from "./application.ts";
import type { Emit } from "./events.ts";
import { DatabaseRunner } from "./runner.ts";
import { startStatusServer, type ListenAddress, type StatusServer } from "./server.ts";
import { prepareTargets, type DaemonTarget } from "./startup.ts";
import { Supervisor } from "./supervisor.ts";

export type { DaemonTarget } from "./startup.ts";

export interface DaemonOptions {
  targets: readonly DaemonTarget[];
  restoreIfMissing: boolean;
  /** The application to run: argv. */
  exec?: string[];
  /** The application's stdout goes to this process's stderr, leaving stdout to the events (--json). */
  execStdoutToStderr?: boolean;
  listen?: ListenAddress;
  /** After a forwarded SIGTERM/SIGINT, how long the application has to exit before it gets SIGKILL (then the final backup). */
  stopTimeoutMs: number;
  shutdownTimeoutMs: number;
  now?: () => Date;
  /** One line per event: JSON objects with --json, else readable lines. */
  emit: Emit;
  /** Aborts the daemon's work (the startup restore on a signal, backups when shutdown runs out of time); the targets' storage follows its signal. */
  work?: AbortController;
}

export interface DaemonHandle {
  /** Resolves with the exit code when the daemon has shut down. */
  done: Promise<number>;
  /** The address the health/metrics listener is bound to, if any. */
  url?: string;
}

/**
 * Start the daemon; `options` is not changed. Throws (before anything is scheduled) when a repository
 * is unreachable, a startup restore fails, the listener cannot be bound or the application cannot start.
 */
export async function startDaemon(options: DaemonOptions, ctx: RunContext): Promise<DaemonHandle> {
  const { emit } = options;
  const metrics = new Metrics();
  for (const t of options.targets) metrics.declare(t.name);
  // Work is cancelled by a signal during the start, then only by a shutdown that ran out of time.
  const work = options.work ?? new AbortController();
  const jobCtx: RunContext = { log: ctx.log, temp: ctx.temp, signal: work.signal };

  const prepared = await prepareTargets(options.targets, { restoreIfMissing: options.restoreIfMissing, work, ctx: jobCtx, metrics, emit });
  const runnerDeps = { ctx: jobCtx, metrics, now: options.now, emit };
  const runners = prepared.map(({ target, restoredOnStartup }) => new DatabaseRunner(target, restoredOnStartup, runnerDeps));
  const { stopTimeoutMs, shutdownTimeoutMs } = options;
  const supervisor = new Supervisor({ runners, work, temp: ctx.temp, emit, stopTimeoutMs, shutdownTimeoutMs });

  // Bound before the application starts, so a busy port never orphans it.
  let server: StatusServer | undefined;
  if (options.listen) {
    server = startStatusServer(options.listen, {
      health: () => ({ stopping: supervisor.stopping, databases: runners.map((r) => r.health()) }),
      metrics: () => metrics.render(),
    });
    emit("listening", { url: server.url });
  }
  let app: Application | undefined;
  if (options.exec) {
    try {
      app = Application.start(options.exec, { stdoutToStderr: options.execStdoutToStderr === true }, emit);
    } catch (error) {
      server?.stop();
      throw error;
    }
  }

  try {
    for (const runner of runners) runner.start();
  } catch (error) {
    // Nothing may outlive a start that failed: not the listener, not an application left unsupervised.
    for (const runner of runners) runner.stop();
    server?.stop();
    app?.kill();
    throw error;
  }
  emit("scheduled", { databases: runners.map((r) => ({ database: r.name, schedule: r.schedule, next: r.next })) });
  supervisor.supervise({ app, server });
  return { done: supervisor.done, url: server?.url };
}
