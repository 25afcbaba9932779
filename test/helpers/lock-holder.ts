/**
 * Take the lock for a path, hold it a moment, and say whether it was had: "got" or "locked".
 *   bun test/helpers/lock-holder.ts TARGET LOCKDIR HOLD_MS START_AT_MS
 * It waits for START_AT_MS (epoch milliseconds), so that several of these reach for the lock at once.
 */
import { acquireLock } from "../../src/local/lock.ts";
import { LockedError } from "../../src/errors.ts";

const [target, dir, hold, startAt] = process.argv.slice(2);
while (Date.now() < Number(startAt)) {} // spin: a timer would spread the start by milliseconds
try {
  const lock = acquireLock(target!, "test", dir);
  await Bun.sleep(Number(hold));
  lock.release();
  console.log("got");
} catch (error) {
  if (!(error instanceof LockedError)) throw error;
  console.log("locked");
}
