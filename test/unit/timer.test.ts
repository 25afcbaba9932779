import { expect, test } from "bun:test";
import { setLongTimeout } from "../../src/util/timer.ts";

test("a timer longer than 2^31-1 ms (24.8 days) does not fire at once; a short one fires on time; clear stops either", async () => {
  let long = 0;
  const timer = setLongTimeout(() => long++, 28 * 24 * 3600_000); // 4 weeks
  let short = 0;
  const started = performance.now();
  let firedAfter = 0;
  setLongTimeout(() => {
    short++;
    firedAfter = performance.now() - started;
  }, 30);
  const cleared = setLongTimeout(() => short++, 10);
  cleared.clear();
  await Bun.sleep(150);
  expect(long).toBe(0);
  expect(short).toBe(1);
  expect(firedAfter).toBeGreaterThanOrEqual(29);
  timer.clear();
});
