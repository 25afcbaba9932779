/**
 * planRetention against golden files (test/golden/retention/*.json). To regenerate after an intended
 * change: UPDATE_GOLDEN=1 bun test test/unit/retention.test.ts, then review the diff of the goldens.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../../src/errors.ts";
import { isoWeek, parseDuration, parsePolicy, planRetention, subtractDuration, type RetentionPolicy } from "../../src/repo/retention.ts";

const GOLDEN = join(import.meta.dir, "..", "golden", "retention");

interface Case {
  name: string;
  times: string[];
  flags: Parameters<typeof parsePolicy>[0];
  now: string;
}

/** Backups at these times, with ids that sort like real ones (ties broken by a suffix). */
function backupsAt(times: string[]) {
  return times.map((t, i) => ({ id: `${t.replace(/[-:.]/g, "")}-${String(i).padStart(8, "0")}`, createdAt: t }));
}

function hourlyYear(): string[] {
  const times: string[] = [];
  const start = Date.UTC(2025, 10, 22, 0, 17); // a year of hourly backups at :17, ending 2026-11-21
  for (let h = 0; h < 365 * 24; h++) times.push(new Date(start + h * 3_600_000).toISOString());
  return times;
}

const cases: Case[] = [
  {
    name: "keep-last-3",
    times: [
      "2026-11-01T10:00:00.000Z",
      "2026-11-02T10:00:00.000Z",
      "2026-11-03T10:00:00.000Z",
      "2026-11-04T10:00:00.000Z",
      "2026-11-05T10:00:00.000Z",
    ],
    flags: { "keep-last": "3" },
    now: "2026-11-05T12:00:00.000Z",
  },
  {
    name: "realistic-year-hourly",
    times: hourlyYear(),
    flags: { "keep-hourly": "24", "keep-daily": "7", "keep-weekly": "4", "keep-monthly": "12" },
    now: "2026-11-22T00:30:00.000Z",
  },
  {
    name: "uneven-spacing-daily",
    times: [
      "2026-03-01T00:05:00.000Z",
      "2026-03-01T08:00:00.000Z",
      "2026-03-01T23:59:59.999Z",
      "2026-03-02T00:00:00.000Z",
      "2026-03-04T13:00:00.000Z",
      "2026-03-04T13:30:00.000Z",
      "2026-03-09T02:00:00.000Z",
      "2026-03-10T22:00:00.000Z",
    ],
    flags: { "keep-daily": "4" },
    now: "2026-03-11T00:00:00.000Z",
  },
  {
    name: "gaps-of-months-monthly",
    times: [
      "2025-01-15T00:00:00.000Z",
      "2025-01-20T00:00:00.000Z",
      "2025-02-01T00:00:00.000Z",
      "2025-07-31T23:00:00.000Z",
      "2026-01-01T00:00:00.000Z",
      "2026-06-30T12:00:00.000Z",
    ],
    flags: { "keep-monthly": "3" },
    now: "2026-07-01T00:00:00.000Z",
  },
  {
    name: "duplicate-timestamps",
    times: [
      "2026-05-05T05:05:05.000Z",
      "2026-05-05T05:05:05.000Z",
      "2026-05-05T05:05:05.000Z",
      "2026-05-04T05:05:05.000Z",
      "2026-05-04T05:05:05.000Z",
    ],
    flags: { "keep-daily": "2", "keep-last": "1" },
    now: "2026-05-06T00:00:00.000Z",
  },
  {
    name: "utc-boundaries-hourly-daily-yearly",
    times: [
      "2025-12-31T22:59:59.999Z",
      "2025-12-31T23:00:00.000Z",
      "2025-12-31T23:59:59.999Z",
      "2026-01-01T00:00:00.000Z",
      "2026-01-01T00:59:59.999Z",
      "2026-01-01T01:00:00.000Z",
    ],
    flags: { "keep-hourly": "3", "keep-yearly": "5" },
    now: "2026-01-01T02:00:00.000Z",
  },
  {
    name: "leap-years-weekly-and-within",
    times: [
      "2024-02-28T12:00:00.000Z",
      "2024-02-29T12:00:00.000Z",
      "2024-03-01T12:00:00.000Z",
      "2024-03-04T12:00:00.000Z",
      "2028-02-27T12:00:00.000Z",
      "2028-02-29T12:00:00.000Z",
      "2028-03-01T12:00:00.000Z",
    ],
    flags: { "keep-weekly": "3", "keep-within": "1y" },
    now: "2029-02-28T12:00:00.000Z",
  },
  {
    name: "iso-week-53-across-new-year",
    times: [
      "2026-12-27T10:00:00.000Z",
      "2026-12-28T10:00:00.000Z",
      "2027-01-01T10:00:00.000Z",
      "2027-01-03T10:00:00.000Z",
      "2027-01-04T10:00:00.000Z",
    ],
    flags: { "keep-weekly": "10" },
    now: "2027-01-05T00:00:00.000Z",
  },
  {
    name: "overlapping-policies",
    times: [
      "2026-06-01T00:00:00.000Z",
      "2026-06-10T00:00:00.000Z",
      "2026-06-20T00:00:00.000Z",
      "2026-06-28T00:00:00.000Z",
      "2026-06-29T00:00:00.000Z",
      "2026-06-30T06:00:00.000Z",
      "2026-06-30T18:00:00.000Z",
    ],
    flags: { "keep-last": "2", "keep-daily": "3", "keep-weekly": "2", "keep-within": "36h" },
    now: "2026-07-01T00:00:00.000Z",
  },
  {
    name: "newest-always-kept",
    times: ["2020-01-01T00:00:00.000Z", "2020-06-01T00:00:00.000Z"],
    flags: { "keep-within": "7d" },
    now: "2026-01-01T00:00:00.000Z",
  },
  {
    name: "timezone-daily-new-york",
    times: ["2026-07-01T03:00:00.000Z", "2026-07-01T05:00:00.000Z", "2026-07-02T03:30:00.000Z", "2026-07-02T04:30:00.000Z"],
    flags: { "keep-daily": "5", timezone: "America/New_York" },
    now: "2026-07-03T00:00:00.000Z",
  },
];

/** The plan as a golden file holds it: kept ids with reasons; removed ids (or their count and ends, when many). */
function summarise(c: Case) {
  const plan = planRetention(backupsAt(c.times), parsePolicy(c.flags), new Date(c.now));
  const removed = plan.remove.map((b) => b.createdAt);
  return {
    policy: c.flags,
    now: c.now,
    backups: c.times.length,
    keep: plan.keep.map((k) => ({ createdAt: k.backup.createdAt, reasons: k.reasons })),
    remove: removed.length > 40 ? { count: removed.length, newest: removed[0], oldest: removed.at(-1) } : removed,
  };
}

describe("planRetention golden files", () => {
  for (const c of cases)
    test(c.name, () => {
      const path = join(GOLDEN, `${c.name}.json`);
      const actual = summarise(c);
      if (process.env.UPDATE_GOLDEN) writeFileSync(path, `${JSON.stringify(actual, null, 2)}\n`);
      expect(existsSync(path)).toBe(true);
      expect(actual).toEqual(JSON.parse(readFileSync(path, "utf8")));
    });
});

describe("planRetention invariants", () => {
  test("the realistic year keeps 24 hourly + 7 daily + 4 weekly + 12 monthly, overlapping, and nothing else", () => {
    const plan = planRetention(
      backupsAt(hourlyYear()),
      parsePolicy({ "keep-hourly": "24", "keep-daily": "7", "keep-weekly": "4", "keep-monthly": "12" }),
      new Date("2026-11-22T00:30:00Z"),
    );
    const count = (reason: string) => plan.keep.filter((k) => k.reasons.includes(reason as never)).length;
    expect([count("hourly"), count("daily"), count("weekly"), count("monthly")]).toEqual([24, 7, 4, 12]);
    expect(plan.keep.length + plan.remove.length).toBe(365 * 24);
    // every kept daily backup is the newest of its UTC day
    for (const k of plan.keep.filter((k) => k.reasons.includes("daily"))) expect(k.backup.createdAt.slice(11, 16)).toBe("23:17");
    expect(plan.keep[0]!.backup.createdAt).toBe("2026-11-21T23:17:00.000Z");
  });

  test("keep and remove partition the input, whatever its order", () => {
    const backups = backupsAt(hourlyYear().filter((_, i) => i % 7 === 0));
    const shuffled = [...backups].sort(() => Math.random() - 0.5);
    const policy: RetentionPolicy = parsePolicy({ "keep-daily": "10", "keep-monthly": "6", "keep-last": "5" });
    const a = planRetention(backups, policy, new Date("2026-11-22T00:00:00Z"));
    const b = planRetention(shuffled, policy, new Date("2026-11-22T00:00:00Z"));
    expect(b.keep.map((k) => k.backup.id)).toEqual(a.keep.map((k) => k.backup.id));
    const ids = new Set([...a.keep.map((k) => k.backup.id), ...a.remove.map((r) => r.id)]);
    expect(ids.size).toBe(backups.length);
  });

  test("an empty policy is a usage error; no backups is an empty plan", () => {
    expect(() => planRetention(backupsAt(["2026-01-01T00:00:00.000Z"]), {}, new Date())).toThrow(UsageError);
    expect(planRetention([], parsePolicy({ "keep-last": "1" }), new Date())).toEqual({ keep: [], remove: [] });
  });
});

describe("policy parsing", () => {
  test("durations", () => {
    expect(parseDuration("36h")).toEqual({ text: "36h", years: 0, months: 0, ms: 36 * 3_600_000 });
    expect(parseDuration("2w").ms).toBe(14 * 86_400_000);
    expect(parseDuration("1y6m")).toMatchObject({ years: 1, months: 6, ms: 0 });
    expect(parseDuration("5min").ms).toBe(300_000);
    expect(parseDuration("1h30min").ms).toBe(5_400_000);
    for (const bad of ["", "7", "d", "1.5d", "-1d", "7 days"]) expect(() => parseDuration(bad)).toThrow(UsageError);
  });
  test("calendar subtraction clamps to the end of shorter months", () => {
    expect(subtractDuration(new Date("2024-03-31T10:00:00Z"), parseDuration("1m")).toISOString()).toBe("2024-02-29T10:00:00.000Z");
    expect(subtractDuration(new Date("2025-02-28T00:00:00Z"), parseDuration("1y")).toISOString()).toBe("2024-02-28T00:00:00.000Z");
  });
  test("counts must be whole numbers of at least 1; time zones must exist", () => {
    for (const bad of ["0", "-2", "1.5", "x"]) expect(() => parsePolicy({ "keep-last": bad })).toThrow(UsageError);
    expect(() => parsePolicy({ "keep-daily": "1", timezone: "Mars/Olympus" })).toThrow(UsageError);
  });
  test("ISO weeks", () => {
    expect(isoWeek(2026, 12, 31)).toBe("2026-W53");
    expect(isoWeek(2027, 1, 3)).toBe("2026-W53");
    expect(isoWeek(2027, 1, 4)).toBe("2027-W01");
    expect(isoWeek(2024, 12, 30)).toBe("2025-W01");
    expect(isoWeek(2024, 2, 29)).toBe("2024-W09");
  });
});
