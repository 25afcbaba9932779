import { describe, expect, test } from "bun:test";
import { exitCodeOver, forEachTarget, groupByRepository, mergeReports, redactMessage } from "../../src/config/run-targets.ts";
import type { Target, TargetSet } from "../../src/config/targets.ts";
import { createContext } from "../../src/context.ts";
import { AuthError, InterruptedError, UsageError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { Storage } from "../../src/storage/types.ts";

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

describe("groupByRepository", () => {
  const at = (name: string | undefined, repository: string, url = repository) =>
    ({ name, repository, storage: { url } as Storage }) as Target;
  test("targets that share a repository are one, with their names, in the order each repository first appears", () => {
    const set: TargetSet = {
      config: null,
      fromConfig: true,
      targets: [at("a", "r1", "file:///r1"), at("b", "r2", "s3://bucket/p"), at("c", "r1", "file:///r1"), at("a", "r1", "file:///r1")],
    };
    const { targets, fromConfig } = groupByRepository(set);
    expect(fromConfig).toBe(true);
    expect(targets.map((t) => [t.name, t.repo, t.names])).toEqual([
      ["file:///r1 (a, c)", "file:///r1", ["a", "c"]],
      ["s3://bucket/p (b)", "s3://bucket/p", ["b"]],
    ]);
    expect(targets[0]!.storage).toBe(set.targets[0]!.storage);
  });
  test("one repository keeps the rule of one target (its error is the command's), from a config file too", () => {
    const one = groupByRepository({ config: null, fromConfig: true, targets: [at("a", "r"), at("b", "r")] });
    expect(one.fromConfig).toBe(false);
    expect(one.targets.map((t) => t.names)).toEqual([["a", "b"]]);
    const whole = groupByRepository({ config: null, fromConfig: false, targets: [at(undefined, "r", "file:///r")] });
    expect(whole.targets.map((t) => [t.name, t.names])).toEqual([["file:///r", [undefined]]]);
  });
  test("a target for every name covers the named ones of its repository, in either order", () => {
    for (const order of [
      [at("a", "r", "file:///r"), at(undefined, "r", "file:///r")],
      [at(undefined, "r", "file:///r"), at("a", "r", "file:///r")],
    ])
      expect(groupByRepository({ config: null, fromConfig: false, targets: order }).targets.map((t) => t.names)).toEqual([[undefined]]);
  });
  test("the same URL through another endpoint is another repository", () => {
    const set: TargetSet = { config: null, fromConfig: true, targets: [at("a", "r|e1", "s3://b/p"), at("b", "r|e2", "s3://b/p")] };
    expect(groupByRepository(set).targets).toHaveLength(2);
  });
});

describe("redactMessage", () => {
  test("no credentials in a URL and no age secret key survive", () => {
    const message = "cannot reach https://AKIAX:s3cr3t@host/x; key AGE-SECRET-KEY-1QQQQQQQQQQQQQQQ is bad";
    const redacted = redactMessage(message);
    expect(redacted).not.toContain("s3cr3t");
    expect(redacted).not.toContain("QQQQQQQQ");
    expect(redacted).toContain("https://host/x");
  });
});
