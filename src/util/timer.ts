/**
 * setTimeout for any delay. Bun and Node fire a timer of more than 2^31-1 ms (24.8 days) at once, so
 * `cron --schedule "@every 4w"` backed up in a loop and `--deadline 30d` stopped a run at its start;
 * a longer delay is a chain of shorter timers.
 */
const LONGEST_MS = 2 ** 31 - 1;

export interface LongTimer {
  clear(): void;
  /** Let the process exit while only this timer is left. */
  unref(): LongTimer;
}

export function setLongTimeout(fn: () => void, ms: number): LongTimer {
  const due = performance.now() + ms;
  let timer: Timer;
  let unref = false;
  const arm = (left: number) => {
    timer = setTimeout(
      () => {
        const rest = due - performance.now();
        if (rest >= 1) arm(rest);
        else fn();
      },
      Math.min(Math.max(left, 0), LONGEST_MS),
    );
    if (unref) timer.unref();
  };
  arm(ms);
  const handle: LongTimer = {
    clear: () => clearTimeout(timer),
    unref: () => {
      unref = true;
      timer.unref();
      return handle;
    },
  };
  return handle;
}
