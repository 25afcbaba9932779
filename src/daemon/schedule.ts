/**
 * When a database's backups run: 5-field cron expressions and @nicknames go through Bun.cron, which
 * never lets a run overlap the last; "@every DURATION" (which Bun.cron does not know) through a
 * chain of timers, each armed only when the run before it has finished.
 */
import { parseDuration } from "../repo/retention.ts";
import { type LongTimer, setLongTimeout } from "../util/timer.ts";

export interface ScheduleHooks {
  /** The next time `fn` runs, whenever it changes; null when the expression has no next time. */
  onNext: (next: Date | null) => void;
  /** A tick that came while a run was still going, so was skipped. */
  onMissed?: (at: Date) => void;
}

/**
 * Run `fn` on `expression` (already checked by validateSchedule) until the returned function is
 * called. Runs never overlap. `fn` must not throw: a rejection would stop an @every chain.
 */
export function runOnSchedule(expression: string, fn: () => Promise<void>, hooks: ScheduleHooks): () => void {
  const every = /^@every\s+(\S+)$/.exec(expression.trim());
  if (every) return runEvery(parseDuration(every[1]!).ms, fn, hooks);
  const { onNext, onMissed } = hooks;
  onNext(Bun.cron.parse(expression));
  const job = Bun.cron(expression, async () => {
    // While this run goes, the next time is the next tick; as Bun.cron lets no run overlap the last,
    // a tick that comes while it goes is skipped, and said so.
    const next = Bun.cron.parse(expression);
    onNext(next);
    await fn();
    if (next && Date.now() > next.getTime()) onMissed?.(next);
    onNext(Bun.cron.parse(expression));
  });
  return () => job.stop();
}

function runEvery(intervalMs: number, fn: () => Promise<void>, { onNext }: ScheduleHooks): () => void {
  let timer: LongTimer | undefined;
  let stopped = false;
  const arm = () => {
    onNext(new Date(Date.now() + intervalMs));
    timer = setLongTimeout(async () => {
      await fn();
      if (!stopped) arm();
    }, intervalMs);
  };
  arm();
  return () => {
    stopped = true;
    timer?.clear();
  };
}
