/**
 * Diagnostics go to stderr, always: stdout carries only results (a table, or one --json document).
 * consola writes info to stdout by default and drops to "warn" under NODE_ENV=test, so both are set here.
 */
import type { ConsolaInstance } from "consola";
import { createConsola as createPlain } from "consola/basic";
import { oneLine } from "./output.ts";

export type Logger = Pick<ConsolaInstance, "info" | "warn" | "error" | "success" | "debug" | "start">;

export interface LoggerOptions {
  /** --json: stderr must carry at most one JSON error object, so ordinary logs are silenced. */
  json?: boolean;
  /** With json: keep the warnings for the one JSON document (a run that ends; never a daemon's). */
  collectWarnings?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

/** The command's logger; with --json, the warnings it was given, for the JSON document (nothing else is printed). */
export type CommandLogger = Logger & { readonly warnings: string[] };

export function createLogger(options: LoggerOptions = {}): CommandLogger {
  // consola levels: 0 fatal/error, 1 warn, 3 info/success/start, 4 debug
  const level = options.json ? -999 : options.verbose ? 4 : options.quiet ? 1 : 3;
  const consolaOptions: Parameters<typeof createPlain>[0] & { fancy: boolean } = {
    level,
    // Plain "[info] …" lines unless a person is watching: stable for scripts and logs, whatever CI says.
    // (consola reads `fancy` at run time; its types omit it.)
    fancy: process.stderr.isTTY === true,
    stdout: process.stderr,
    stderr: process.stderr,
    formatOptions: { date: false, colors: process.stderr.isTTY === true, compact: true },
  };
  // consola's fancy reporter builds an Intl.Segmenter when loaded: 2-3 ms of every start. It is
  // loaded only when a terminal will show it; scripts and crontabs get the plain reporter either way.
  const createConsola: typeof createPlain = consolaOptions.fancy
    ? (require("consola") as typeof import("consola")).createConsola
    : createPlain;
  const logger = createConsola(consolaOptions);
  // Every diagnostic is one line, whatever names or paths it quotes.
  for (const method of ["info", "warn", "error", "success", "debug", "start"] as const) {
    const write = logger[method].bind(logger);
    logger[method] = ((message: unknown, ...rest: unknown[]) =>
      write(typeof message === "string" ? oneLine(message) : message, ...rest)) as never;
  }
  // A warning says something the result alone does not (a backup passed over, a file left alone):
  // with --json it goes into the document rather than nowhere.
  const warnings: string[] = [];
  if (options.json && options.collectWarnings) logger.warn = ((message: unknown) => warnings.push(oneLine(String(message)))) as never;
  return Object.assign(logger, { warnings });
}

/** A logger that drops everything; for library callers and tests that do not care. */
export const silentLogger: Logger = createPlain({ level: -999 });
