/** cron's events: how the daemon reports what it does. */

/** Report one event; the daemon's only way of saying what it does. */
export type Emit = (event: string, fields: Record<string, unknown>) => void;

/** Seconds to the millisecond, as events report them. */
export function roundSeconds(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
