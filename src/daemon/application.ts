/**
 * The application cron runs (--exec): started after the startup restore, stopped by the signal cron
 * forwards to it, and killed when it ignores that signal past the stop timeout, as container runtimes
 * do, so that it cannot keep the final backup waiting for ever.
 */
import type { Subprocess } from "bun";
import { UsageError, VaultError } from "../errors.ts";
import type { Emit } from "./events.ts";
import { type LongTimer, setLongTimeout } from "../util/timer.ts";

export class Application {
  /** Resolves with the exit code (null when a signal ended it) once the application has exited. */
  readonly exited: Promise<number | null>;
  private killTimer: LongTimer | undefined;
  private hasExited = false;

  private constructor(
    private readonly child: Subprocess,
    private readonly emit: Emit,
  ) {
    this.exited = child.exited.then((code) => {
      this.hasExited = true;
      this.killTimer?.clear();
      emit("exec-exited", { code, signal: child.signalCode ?? null });
      return code;
    });
  }

  /**
   * Spawn `argv` with this process's stdin and stderr; its stdout goes to stderr when `stdoutToStderr`
   * (stdout then holds cron's events), and our environment without the passphrase (applicationEnv). Throws VaultError when it cannot be started.
   */
  static start(argv: string[], options: { stdoutToStderr: boolean }, emit: Emit): Application {
    let child: Subprocess;
    try {
      child = Bun.spawn(argv, {
        stdin: "inherit",
        stdout: options.stdoutToStderr ? 2 : "inherit",
        stderr: "inherit",
        env: applicationEnv(process.env),
      });
    } catch (error) {
      throw new VaultError(`could not start ${argv[0]}: ${(error as Error).message}`, "check --exec");
    }
    emit("exec-started", { command: argv[0], pid: child.pid });
    return new Application(child, emit);
  }

  /**
   * Forward the signal cron received, and SIGKILL it if it is still running `stopTimeoutMs` later.
   * Nothing once it has exited: a kill timer armed then would keep cron running, its work done, for
   * the whole stop timeout, and report a kill that never happened.
   */
  stop(signal: NodeJS.Signals, stopTimeoutMs: number): void {
    const { child, emit } = this;
    if (this.hasExited) return;
    // A closed session stops the application; SIGHUP itself often means "reload" to one.
    const forwarded = signal === "SIGHUP" ? "SIGTERM" : signal;
    emit("signal-forwarded", { signal: forwarded, pid: child.pid, stopTimeoutSeconds: stopTimeoutMs / 1000 });
    child.kill(forwarded);
    this.killTimer = setLongTimeout(() => {
      emit("exec-killed", { pid: child.pid, signal: "SIGKILL", reason: `still running ${stopTimeoutMs / 1000}s after ${forwarded}` });
      child.kill("SIGKILL");
    }, stopTimeoutMs);
  }

  /** SIGKILL now. */
  kill(): void {
    this.child.kill("SIGKILL");
  }
}

/** Split a command line into argv: whitespace separates, single and double quotes group, backslash escapes. Throws UsageError. */
export function splitCommand(line: string): string[] {
  const argv: string[] = [];
  let current = "";
  let quote: "'" | '"' | null = null;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"' && i + 1 < line.length) current += line[++i];
      else current += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      has = true;
    } else if (c === "\\" && i + 1 < line.length) {
      current += line[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || current) argv.push(current);
      current = "";
      has = false;
    } else current += c;
  }
  if (quote) throw new UsageError(`--exec has an unclosed ${quote} quote`);
  if (has || current) argv.push(current);
  if (!argv.length) throw new UsageError("--exec is empty");
  return argv;
}

/**
 * The application's environment: ours, less the backup passphrase, a secret of the backups alone (the
 * application may use AWS credentials of its own, so those stay).
 */
function applicationEnv(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const { SQLITE_VAULT_PASSPHRASE: _, ...rest } = env;
  return rest;
}
