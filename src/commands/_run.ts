/**
 * The one wrapper every command runs through: it builds the logger and the run context (signals,
 * temp files), turns thrown errors into one stderr line (or one JSON object) and the documented exit
 * code, and prints the result: a human view, or the result object itself with --json.
 */
import { defineCommand, type ArgsDef, type CommandDef, type CommandMeta, type ParsedArgs } from "citty";
import { createCliContext, type RunContext } from "../context.ts";
import { DeadlineError, ExitCode, InterruptedError, toVaultError, UsageError, type VaultError } from "../errors.ts";
import { parseDuration } from "../repo/retention.ts";
import { createLogger } from "../logger.ts";
import { oneLine } from "../output.ts";
import { createTerminalProgress } from "../progress.ts";
import type { KeyFlags } from "../config/keys.ts";
import { pickLayer } from "../util/layers.ts";

export interface CommonFlags {
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
  deadline?: string;
}

export interface CommandRun<R> {
  flags: CommonFlags;
  rawArgs: string[];
  argsDef: ArgsDef;
  execute: (ctx: RunContext) => Promise<R>;
  /** The human view; `verbose` asks for the details a summary leaves out. */
  render: (result: R, view: { verbose: boolean }) => string;
  /** A result can still fail the command (for example a partial success). */
  exitCode?: (result: R) => number;
  /** "manual": the command handles SIGINT/SIGTERM/SIGHUP itself (cron). */
  signals?: "abort" | "manual";
  /** false: the result only decides the exit code; nothing is printed on stdout (cron's stdout is the application's). */
  print?: boolean;
  /** The command reports an action (backup, prune, …): with --quiet its success prints nothing, as cron mail wants. */
  quietOnSuccess?: boolean;
}

/** A command as each file defines it: its flags, its work and its view; citty, stdout and the exit code are this module's. */
export interface VaultCommand<A extends ArgsDef, R> extends Omit<CommandRun<R>, "flags" | "rawArgs" | "argsDef" | "execute"> {
  meta: CommandMeta;
  args: A;
  execute: (run: { flags: ParsedArgs<A>; rawArgs: string[]; ctx: RunContext }) => Promise<R>;
}

/** Define a subcommand that runs through runCommand. */
export function defineVaultCommand<const A extends ArgsDef, R>(def: VaultCommand<A, R>): CommandDef<A> {
  const { meta, args, execute, ...rest } = def;
  return defineCommand({
    meta,
    args,
    run: ({ args: flags, rawArgs }) =>
      runCommand<R>({ ...rest, flags: flags as CommonFlags, rawArgs, argsDef: args, execute: (ctx) => execute({ flags, rawArgs, ctx }) }),
  });
}

export async function runCommand<R>(run: CommandRun<R>): Promise<void> {
  const log = createLogger({ ...run.flags, collectWarnings: run.print !== false });
  let deadline: ReturnType<typeof parseDeadline>;
  try {
    deadline = parseDeadline(run.flags.deadline, process.env.SQLITE_VAULT_DEADLINE, run.signals === "manual");
  } catch (thrown) {
    reportError(toVaultError(thrown), thrown, run.flags, log.warnings);
    process.exitCode = toVaultError(thrown).exitCode;
    return;
  }
  const ctx = createCliContext(log, { signals: run.signals, deadline });
  // Only for a person watching; cron's terminal (print: false) belongs to the application it runs.
  if (process.stderr.isTTY && !run.flags.json && !run.flags.quiet && run.print !== false)
    ctx.progress = createTerminalProgress(process.stderr, [process.stdout]);
  try {
    assertKnownFlags(run.rawArgs, run.argsDef);
    // A signal that came while the command loaded: nothing is started.
    ctx.signal.throwIfAborted();
    const result = await run.execute(ctx);
    const exitCode = run.exitCode?.(result) ?? ExitCode.ok;
    const silent = run.print === false || (run.quietOnSuccess && run.flags.quiet && !run.flags.json && exitCode === ExitCode.ok);
    const text = silent
      ? ""
      : run.flags.json
        ? JSON.stringify(withWarnings(result, log.warnings), null, 2)
        : run.render(result, { verbose: run.flags.verbose === true });
    if (text) process.stdout.write(`${text}\n`);
    process.exitCode = exitCode;
  } catch (thrown) {
    const reason = ctx.signal.reason;
    const error = ctx.signal.aborted
      ? reason instanceof InterruptedError || reason instanceof DeadlineError
        ? reason
        : new InterruptedError()
      : toVaultError(thrown);
    // An interruption's stack is only the signal handler's: --verbose adds it for our failures alone.
    reportError(error, ctx.signal.aborted ? undefined : thrown, run.flags, log.warnings);
    process.exitCode = error.exitCode;
  } finally {
    ctx.dispose();
  }
}

/** --deadline, else SQLITE_VAULT_DEADLINE: a time limit for the whole run (none for cron, which runs until stopped). */
function parseDeadline(flag: string | undefined, env: string | undefined, daemon: boolean): { ms: number; text: string } | undefined {
  const picked = pickLayer(
    [
      { from: "--deadline", value: flag },
      { from: "SQLITE_VAULT_DEADLINE", value: env?.trim() ? env : undefined },
    ],
    () => true,
  );
  if (picked === undefined) return undefined;
  const { value: text, from: where } = picked;
  if (daemon) {
    if (flag === undefined) return undefined;
    throw new UsageError("--deadline bounds one run; cron runs until it is stopped", "give backup, restore, verify or prune a --deadline");
  }
  const duration = parseDuration(text, where);
  if (duration.months || duration.years || duration.ms < 1000)
    throw new UsageError(`${where} "${text}" must be at least a second and given in s, min, h, d or w`);
  return { ms: duration.ms, text: duration.text };
}

/**
 * The --json document with the run's warnings as `warnings`, when there were any (joined to a
 * result's own list of that name, each once).
 */
function withWarnings<R>(result: R, warnings: string[]): R {
  if (warnings.length === 0 || typeof result !== "object" || result === null || Array.isArray(result)) return result;
  const own = (result as { warnings?: unknown }).warnings;
  return { ...result, warnings: [...new Set([...(Array.isArray(own) ? own : []), ...warnings])] };
}

function reportError(error: VaultError, thrown: unknown, flags: CommonFlags, warnings: string[] = []): void {
  if (flags.json) {
    const body = {
      error: { code: error.code, exitCode: error.exitCode, message: error.message, ...(error.hint ? { hint: error.hint } : {}) },
      ...(warnings.length ? { warnings } : {}),
    };
    process.stderr.write(`${JSON.stringify(body)}\n`);
    return;
  }
  let text = `sqlite-vault: ${oneLine(error.message)}\n`;
  if (error.hint) text += `Try: ${oneLine(error.hint)}\n`;
  if (flags.verbose && thrown instanceof Error && thrown.stack) text += `${thrown.stack}\n`;
  process.stderr.write(text);
}

/** citty accepts any flag; a typo such as --forse must be a usage error, not silently ignored. */
export function assertKnownFlags(rawArgs: string[], argsDef: ArgsDef): void {
  const known = new Set<string>(["help", "h"]);
  for (const [name, def] of Object.entries(argsDef)) {
    known.add(name);
    if ("alias" in def) for (const alias of [def.alias ?? []].flat()) known.add(alias);
    if (def.type === "boolean") known.add(`no-${name}`);
  }
  for (const arg of rawArgs) {
    if (arg === "--") break;
    const match = /^--?([^=]+)/.exec(arg);
    if (!match || /^-\d/.test(arg)) continue;
    const flag = match[1]!;
    if (!known.has(flag)) throw new UsageError(`unknown option ${arg.split("=")[0]}`, "see --help");
  }
}

/** Every value of a repeatable flag (citty keeps only the last): `--name A --name=B` -> ["A", "B"]. */
function repeatedFlag(rawArgs: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") break;
    if (arg === `--${name}`) {
      const value = rawArgs[i + 1];
      // `--recipient $UNSET_VARIABLE` must not quietly mean "no recipient".
      if (value === undefined || (value.startsWith("--") && value.length > 2)) throw new UsageError(`--${name} needs a value`);
      values.push(value);
      i++;
    } else if (arg.startsWith(`--${name}=`)) values.push(arg.slice(name.length + 3));
  }
  return values;
}

/**
 * The key flags of a command line, for resolveTargets' `keys`: --recipient and --identity as often as
 * given, the others as citty read them (absent where the command has no such flag). Throws
 * UsageError for a --recipient or --identity without a value, before anything is loaded or read.
 */
export function keyFlags(
  flags: {
    "recipients-file"?: string;
    passphrase?: string;
    "passphrase-file"?: string;
    encryption?: boolean;
    "allow-unencrypted"?: boolean;
  },
  rawArgs: string[],
): KeyFlags {
  return {
    recipients: repeatedFlag(rawArgs, "recipient"),
    recipientsFile: flags["recipients-file"],
    passphrase: flags.passphrase,
    passphraseFile: flags["passphrase-file"],
    identities: repeatedFlag(rawArgs, "identity"),
    encryption: flags.encryption,
    allowUnencrypted: flags["allow-unencrypted"],
  };
}
