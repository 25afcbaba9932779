import { describe, expect, test } from "bun:test";
import { BusyTime } from "../../src/util/busy.ts";

describe("BusyTime", () => {
  test("sums every call's duration, calls at the same time each in full, and counts a call that fails", async () => {
    const busy = new BusyTime();
    const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    await Promise.all([busy.time(() => wait(40)), busy.time(() => wait(40))]);
    expect(busy.ms).toBeGreaterThanOrEqual(75);
    const failing = busy.time(async () => {
      await wait(20);
      throw new Error("refused");
    });
    await expect(failing).rejects.toThrow("refused");
    expect(busy.ms).toBeGreaterThanOrEqual(95);
  });
});
