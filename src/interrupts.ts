/**
 * The process's SIGINT, SIGTERM and SIGHUP handlers. cli.ts installs them before it loads anything
 * else, so a signal that arrives while a command is still loading is remembered (and the run's
 * context starts out aborted) instead of killing the process uncleanly with 143 or 129. SIGHUP (a
 * closed terminal or SSH session) is an interruption like the others.
 */
export const INTERRUPT_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const satisfies readonly NodeJS.Signals[];

let installed = false;
let first: NodeJS.Signals | undefined;
const listeners = new Set<(signal: NodeJS.Signals) => void>();

/** Install the handlers once; idempotent. */
export function installInterruptHandlers(): void {
  if (installed) return;
  installed = true;
  for (const name of INTERRUPT_SIGNALS)
    process.on(name, (signal: NodeJS.Signals) => {
      first ??= signal;
      for (const listener of [...listeners]) listener(signal);
    });
}

/** The first interrupting signal this process received, if any. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return first;
}

/** Be told of every interrupting signal from now on; returns the function that stops it. */
export function onInterrupt(listener: (signal: NodeJS.Signals) => void): () => void {
  installInterruptHandlers();
  listeners.add(listener);
  return () => listeners.delete(listener);
}
