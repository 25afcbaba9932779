/**
 * What every core operation receives: a logger, an AbortSignal that fires on SIGINT/SIGTERM/SIGHUP, and a
 * registry of temp files that are removed however the run ends (success, failure, signal, or a
 * second signal that exits at once).
 */
import { rmSync } from "node:fs";
import { DeadlineError, InterruptedError } from "./errors.ts";
import { interruptedBy, onInterrupt } from "./interrupts.ts";
import { silentLogger, type Logger } from "./logger.ts";
import { setLongTimeout } from "./util/timer.ts";

/** What a long run reports for a person watching (src/progress.ts draws it on a terminal). */
export interface ProgressReporter {
  /**
   * A new phase: what is being done, and the bytes it will go through (undefined when that cannot be
   * measured: only the time it has taken is shown). The count starts again at 0.
   */
  phase(name: string, total?: number): void;
  /** A new name for the phase, keeping its count ("verifying 2/5"). */
  rename(name: string): void;
  /** `bytes` more of the phase are done. Called for every block, so it only adds. */
  advance(bytes: number): void;
  /** Nothing is in progress any more: no frame remains on the screen. */
  end(): void;
}

export interface RunContext {
  log: Logger;
  signal: AbortSignal;
  temp: TempRegistry;
  /** Progress for a person watching; absent (nothing is drawn) unless the CLI installs a renderer. */
  progress?: ProgressReporter;
}

export class TempRegistry {
  private readonly paths = new Set<string>();

  /** Remember a path to remove when the run ends; returns it. */
  add(path: string): string {
    this.paths.add(path);
    return path;
  }

  /** Forget a path (it was renamed into place or already removed). */
  keep(path: string): void {
    this.paths.delete(path);
  }

  /**
   * Remove one path now, and forget it. Never throws: it runs in `finally` blocks, where its error
   * (EROFS for a temp file never made on a read-only file system) would replace the one that
   * matters. A path it could not remove stays registered, for removeAll at exit.
   */
  remove(path: string): void {
    try {
      rmSync(path, { force: true, recursive: true });
      this.paths.delete(path);
    } catch {}
  }

  /** Remove everything still registered. Synchronous, so it can run from an exit handler. */
  removeAll(): void {
    for (const path of this.paths) {
      try {
        rmSync(path, { force: true, recursive: true });
      } catch {}
    }
    this.paths.clear();
  }
}

/** A context for library callers and tests: no signal handling. */
export function createContext(options: { log?: Logger; signal?: AbortSignal } = {}): RunContext {
  return { log: options.log ?? silentLogger, signal: options.signal ?? new AbortController().signal, temp: new TempRegistry() };
}

/**
 * A context for one CLI run: the first SIGINT/SIGTERM/SIGHUP aborts the signal (the run cleans up
 * and exits 130); a second one removes temp files and exits at once. A signal that came before the
 * context existed (while the command loaded) aborts it from the start, in either mode. With
 * `signals: "manual"` the run handles later signals itself (cron's graceful shutdown) and only the
 * exit-time clean-up is installed. Call dispose() when the run ends.
 */
export function createCliContext(
  log: Logger,
  options: { signals?: "abort" | "manual"; deadline?: { ms: number; text: string } } = {},
): RunContext & { dispose(): void } {
  const controller = new AbortController();
  const deadline = options.deadline;
  const timer = deadline ? setLongTimeout(() => controller.abort(new DeadlineError(deadline.text)), deadline.ms).unref() : undefined;
  const temp = new TempRegistry();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      temp.removeAll();
      process.exit(130);
    }
    controller.abort(new InterruptedError(signal));
  };
  const onExit = () => temp.removeAll();
  const early = interruptedBy();
  if (early) controller.abort(new InterruptedError(early));
  const stopListening = options.signals === "manual" ? () => {} : onInterrupt(onSignal);
  process.on("exit", onExit);
  return {
    log,
    signal: controller.signal,
    temp,
    dispose() {
      timer?.clear();
      temp.removeAll();
      stopListening();
      process.off("exit", onExit);
    },
  };
}
