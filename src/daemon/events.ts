/**
 * cron's events: one line each, on stdout as JSON objects with --json (stdout is then the events
 * and nothing else), else as readable lines on stderr, where they are diagnostics.
 */

/** Report one event; the daemon's only way of saying what it does. */
export type Emit = (event: string, fields: Record<string, unknown>) => void;

/**
 * Events --quiet still prints: failures, an exit forced by a second signal, an application killed at
 * the stop timeout, a stop that left a database without its final backup.
 */
export function isFailureEvent(event: string, fields: Record<string, unknown>): boolean {
  if (event === "backup-failed" || event === "exit-now" || event === "exec-killed") return true;
  return event === "stopped" && Array.isArray(fields.notBackedUp) && fields.notBackedUp.length > 0;
}

/** One event as a line (no newline): `{"time":…,"event":…,…}` with json, else `TIME EVENT key=value…`. */
export function formatEvent(event: string, fields: Record<string, unknown>, json: boolean, time = new Date()): string {
  const iso = time.toISOString();
  if (json) return JSON.stringify({ time: iso, event, ...fields });
  const pairs = Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  return `${iso} ${event}${pairs.join("")}`;
}

interface TextSink {
  write(text: string): unknown;
}

/** An Emit that writes each event as a line: on `stdout` with json, else on `stderr`; with quiet only failures. */
export function createEventWriter(view: { json: boolean; quiet: boolean }, out: { stdout: TextSink; stderr: TextSink }): Emit {
  const stream = view.json ? out.stdout : out.stderr;
  return (event, fields) => {
    if (view.quiet && !isFailureEvent(event, fields)) return;
    stream.write(`${formatEvent(event, fields, view.json)}\n`);
  };
}

/** Seconds to the millisecond, as events report them. */
export function roundSeconds(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
