import { describe, expect, test } from "bun:test";
import { exitCodeOver, forEachTarget, mergeReports } from "../../src/config/run-targets.ts";
import type { Target, TargetSet } from "../../src/config/targets.ts";
import { createContext } from "../../src/context.ts";
import { AuthError, InterruptedError, UsageError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";

const targets = ["a", "b", "c"].map((name) => ({ name }) as Target);
const fromConfig: TargetSet = { config: null, targets, fromConfig: true };
const named: TargetSet = { config: null, targets: targets.slice(0, 1), fromConfig: false };

function recordingContext(signal?: AbortSignal) {
  const errors: string[] = [];
  const log = {
    error: (m: string) => errors.push(m),
    warn: () => {},
    info: () => {},
    debug: () => {},
    success: () => {},
  } as unknown as Logger;
  return { ctx: createContext({ log, signal }), errors };
}

describe("forEachTarget", () => {
  test("from a config file: a failure is logged and recorded, and the others still run, in order", async () => {
    const { ctx, errors } = recordingContext();
    const ran: string[] = [];
    const outcomes = await forEachTarget(fromConfig, ctx, "verify", async (t) => {
      ran.push(t.name!);
      if (t.name === "b") throw new AuthError("access denied");
      return t.name;
    });
    expect(ran).toEqual(["a", "b", "c"]);
    expect(outcomes.map((o) => [o.target.name, o.ok])).toEqual([
      ["a", true],
      ["b", false],
      ["c", true],
    ]);
    expect(errors).toEqual(["verify of b failed: access denied"]);
  });

  test("a target named on the command line: its error is thrown as it is", async () => {
    const { ctx, errors } = recordingContext();
    const error = new UsageError("bad");
    await expect(forEachTarget(named, ctx, "prune", () => Promise.reject(error))).rejects.toBe(error);
    expect(errors).toEqual([]);
  });

  test("an interruption ends the run at once, from a config file too", async () => {
    const abort = new AbortController();
    const { ctx } = recordingContext(abort.signal);
    const ran: string[] = [];
    const run = forEachTarget(fromConfig, ctx, "backup", async (t) => {
      ran.push(t.name!);
      abort.abort(new InterruptedError());
      throw new Error("stopped");
    });
    await expect(run).rejects.toBeInstanceOf(InterruptedError);
    expect(ran).toEqual(["a"]);
  });
});

describe("exitCodeOver", () => {
  const cases: [failed: number, codes: number[], want: number][] = [
    [0, [], 0],
    [0, [0, 0], 0],
    [0, [0, 4, 3], 4],
    [1, [4], 3],
    [2, [], 3],
  ];
  for (const [failed, codes, want] of cases)
    test(`${failed} failed, codes ${codes}: ${want}`, () => {
      expect(exitCodeOver(failed, codes)).toBe(want);
    });
});

describe("mergeReports", () => {
  const empty = { repo: "", dry: false, policy: "", items: [] as number[], nested: { keys: [] as string[] }, count: 0 };
  test("none gives the empty report; one is returned as it is", () => {
    const one = { ...empty, repo: "r" };
    expect(mergeReports([], empty)).toBe(empty);
    expect(mergeReports([one], empty)).toBe(one);
  });
  test("arrays concatenated in order, numbers summed, nested objects merged, distinct strings joined", () => {
    const a = { repo: "r1", dry: true, policy: "p", items: [1], nested: { keys: ["x"] }, count: 1 };
    const b = { repo: "r1", dry: true, policy: "q", items: [2, 3], nested: { keys: ["y"] }, count: 2 };
    const c = { repo: "r2", dry: true, policy: "q", items: [], nested: { keys: [] }, count: 0 };
    expect(mergeReports([a, b, c], empty, { policy: "; " })).toEqual({
      repo: "r1, r2",
      dry: true,
      policy: "p; q",
      items: [1, 2, 3],
      nested: { keys: ["x", "y"] },
      count: 3,
    });
  });
});
