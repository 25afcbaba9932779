/**
 * cron's stop. The first SIGTERM/SIGINT/SIGHUP goes to the application when there is one (its exit
 * starts the shutdown), else starts the shutdown itself: schedules stop, the running backups finish,
 * each database gets a final backup within the shutdown timeout (past it, work is aborted), and the
 * daemon is done with an exit code. A second signal exits at once: exitNow() is the daemon's only
 * process.exit, as nothing else can end backups that are still running.
 */
import type { TempRegistry } from "../context.ts";
import { ExitCode, InterruptedError } from "../errors.ts";
import { onInterrupt } from "../interrupts.ts";
import type { Application } from "./application.ts";
import type { Emit } from "./events.ts";
import type { DatabaseRunner } from "./runner.ts";
import type { StatusServer } from "./server.ts";
import { setLongTimeout } from "../util/timer.ts";

export interface SupervisorOptions {
  runners: readonly DatabaseRunner[];
  /** Aborted only when the shutdown runs out of time: the backups then stop. */
  work: AbortController;
  temp: TempRegistry;
  emit: Emit;
  stopTimeoutMs: number;
  shutdownTimeoutMs: number;
}

export class Supervisor {
  private stoppingNow = false;
  private signals = 0;
  private app: Application | undefined;
  private server: StatusServer | undefined;
  private resolveDone!: (code: number) => void;
  /** Resolves with the exit code once the daemon has shut down. */
  readonly done = new Promise<number>((resolve) => (this.resolveDone = resolve));

  constructor(private readonly options: SupervisorOptions) {}

  /** True from the moment the shutdown starts. */
  get stopping(): boolean {
    return this.stoppingNow;
  }

  /** Take over signals and the application's exit; `server` is closed at the end of the shutdown. */
  supervise(parts: { app?: Application; server?: StatusServer }): void {
    this.app = parts.app;
    this.server = parts.server;
    const stopListening = onInterrupt((signal) => this.onSignal(signal));
    void parts.app?.exited.then((code) => this.shutdown("the application exited", code ?? 1));
    void this.done.finally(stopListening);
  }

  private onSignal(signal: NodeJS.Signals): void {
    this.signals++;
    if (this.signals > 1) this.exitNow(signal);
    if (this.app) this.app.stop(signal, this.options.stopTimeoutMs);
    else void this.shutdown(signal, ExitCode.ok);
  }

  /** The second signal: temp files go, the application is killed, and the process exits 130 now. */
  private exitNow(signal: NodeJS.Signals): never {
    this.options.emit("exit-now", { signal });
    this.options.temp.removeAll();
    this.app?.kill();
    process.exit(ExitCode.interrupted);
  }

  /** Exit code: `exitCode`, or partial (3) when it is ok but a database got no final backup. */
  private async shutdown(why: string, exitCode: number): Promise<void> {
    if (this.stoppingNow) return;
    this.stoppingNow = true;
    const { runners, work, emit, shutdownTimeoutMs } = this.options;
    for (const runner of runners) runner.stop();
    emit("shutdown", { reason: why, timeoutSeconds: shutdownTimeoutMs / 1000 });
    const deadline = setLongTimeout(() => work.abort(new InterruptedError("shutdown timeout")), shutdownTimeoutMs);
    const backedUp: string[] = [];
    const notBackedUp: string[] = [];
    try {
      await Promise.all(runners.map((runner) => runner.settled()));
      for (const runner of runners) {
        if (work.signal.aborted) {
          notBackedUp.push(runner.name);
          continue;
        }
        const outcome = await runner.run("final");
        (outcome.ok ? backedUp : notBackedUp).push(runner.name);
      }
    } finally {
      deadline.clear();
    }
    emit("stopped", { backedUp, notBackedUp });
    this.server?.stop();
    this.resolveDone(notBackedUp.length && exitCode === ExitCode.ok ? ExitCode.partial : exitCode);
  }
}
