import { describe, expect, test } from "bun:test";
import { resolveSettings, type SettingFlags } from "../../src/config/settings.ts";
import { parseSelection, selectCandidates } from "../../src/repo/catalog.ts";
import { assertKnownFlags } from "../../src/commands/_run.ts";
import { UsageError } from "../../src/errors.ts";
import { splitParts } from "../../src/storage/s3.ts";
import { formatBytes, formatTable } from "../../src/output.ts";
import type { BackupManifest } from "../../src/repo/manifest.ts";

describe("resolveSettings: flag > env > default", () => {
  const cases: { flags: SettingFlags; env: Record<string, string>; want: Record<string, unknown> }[] = [
    {
      flags: {},
      env: { HOME: "/home/u" },
      want: { repo: "/home/u/.local/share/sqlite-vault/repo", repoSource: "default", compression: "gzip" },
    },
    { flags: {}, env: { HOME: "/home/u", XDG_DATA_HOME: "/data" }, want: { repo: "/data/sqlite-vault/repo", repoSource: "default" } },
    { flags: {}, env: { SQLITE_VAULT_REPO: "s3://b/p" }, want: { repo: "s3://b/p", repoSource: "env" } },
    { flags: { repo: "/r" }, env: { SQLITE_VAULT_REPO: "s3://b/p" }, want: { repo: "/r", repoSource: "flag" } },
    { flags: { repo: "" }, env: { SQLITE_VAULT_REPO: "s3://b/p" }, want: { repo: "s3://b/p", repoSource: "env" } },
    { flags: {}, env: { SQLITE_VAULT_COMPRESSION: "zstd" }, want: { compression: "zstd" } },
    { flags: { compression: "none" }, env: { SQLITE_VAULT_COMPRESSION: "zstd" }, want: { compression: "none" } },
    { flags: {}, env: { SQLITE_VAULT_TMP_DIR: "/t1", TMPDIR: "/t2" }, want: { tmpDir: "/t1" } },
    { flags: { tmpDir: "/t0" }, env: { SQLITE_VAULT_TMP_DIR: "/t1" }, want: { tmpDir: "/t0" } },
    { flags: {}, env: { TMPDIR: "/t2" }, want: { tmpDir: "/t2" } },
    { flags: {}, env: {}, want: { retries: 5, timeoutMs: 60_000, partSize: 5 * 1024 * 1024 } },
    {
      flags: {},
      env: { SQLITE_VAULT_RETRIES: "2", SQLITE_VAULT_TIMEOUT: "30s", SQLITE_VAULT_PART_SIZE: "16" },
      want: { retries: 2, timeoutMs: 30_000, partSize: 16 * 1024 * 1024 },
    },
    {
      flags: { retries: "0", timeout: "2min", partSize: "6" },
      env: { SQLITE_VAULT_RETRIES: "2" },
      want: { retries: 0, timeoutMs: 120_000, partSize: 6 * 1024 * 1024 },
    },
  ];
  for (const c of cases)
    test(`${JSON.stringify(c.flags)} ${JSON.stringify(c.env)}`, () => {
      expect(resolveSettings(c.flags, c.env)).toMatchObject(c.want);
    });
  test("check: --check / --no-check > SQLITE_VAULT_CHECK > config > off", () => {
    expect(resolveSettings({}, {}, {}).check).toBe(false);
    expect(resolveSettings({}, {}, { check: true }).check).toBe(true);
    expect(resolveSettings({}, { SQLITE_VAULT_CHECK: "0" }, { check: true }).check).toBe(false);
    expect(resolveSettings({}, { SQLITE_VAULT_CHECK: "true" }, {}).check).toBe(true);
    expect(resolveSettings({ check: false }, { SQLITE_VAULT_CHECK: "1" }, { check: true }).check).toBe(false);
    expect(resolveSettings({ check: true }, {}, {}).check).toBe(true);
    expect(() => resolveSettings({}, { SQLITE_VAULT_CHECK: "yes" }, {})).toThrow(/SQLITE_VAULT_CHECK must be true or false/);
  });

  test("an invalid value is reported under the name it was given by: flag, variable or config key", () => {
    const cases: [SettingFlags, Record<string, string>, Record<string, string>, RegExp][] = [
      [{ retries: "abc" }, {}, {}, /^--retries must be a whole number/],
      [{}, { SQLITE_VAULT_RETRIES: "abc" }, {}, /^SQLITE_VAULT_RETRIES must be a whole number/],
      [{}, {}, { retries: "500" }, /^retries in the config file must be a whole number/],
      [{}, { SQLITE_VAULT_TIMEOUT: "10" }, {}, /^SQLITE_VAULT_TIMEOUT "10" is not a duration/],
      [{}, { SQLITE_VAULT_TIMEOUT: "2m" }, {}, /^SQLITE_VAULT_TIMEOUT 2m reads as months/],
      [{}, { SQLITE_VAULT_COMPRESSION: "lz4" }, {}, /^SQLITE_VAULT_COMPRESSION: unknown compression "lz4"/],
      [{}, {}, { partSize: "2" }, /^part-size in the config file must be a whole number from 5/],
      [{}, { SQLITE_VAULT_SCHEDULE: "bad" }, {}, /^SQLITE_VAULT_SCHEDULE: "bad" is not a schedule/],
      [{ schedule: "bad" }, {}, {}, /^--schedule: "bad" is not a schedule/],
      [{ schedule: "0 0 31 2 *" }, {}, {}, /^--schedule: "0 0 31 2 \*" never comes/], // February 31st
    ];
    for (const [flags, env, file, message] of cases) expect(() => resolveSettings(flags, env, file), message.source).toThrow(message);
    let hint: string | undefined;
    try {
      resolveSettings({}, { SQLITE_VAULT_TIMEOUT: "30m" }, {});
    } catch (error) {
      hint = (error as UsageError).hint;
    }
    expect(hint).toBe("write minutes as min: 30min");
  });

  test("only a given schedule is parsed: the default needs no time zone data at start-up", () => {
    const parse = Bun.cron.parse;
    const parsed: string[] = [];
    Bun.cron.parse = ((expression: string, ...rest: unknown[]) => {
      parsed.push(expression);
      return (parse as (...a: unknown[]) => unknown)(expression, ...rest);
    }) as typeof parse;
    try {
      expect(resolveSettings({}, {}, {}).schedule).toBe("@hourly");
      expect(parsed).toEqual([]);
      expect(resolveSettings({ schedule: "*/5 * * * *" }, {}, {}).schedule).toBe("*/5 * * * *");
      expect(parsed).toEqual(["*/5 * * * *"]);
    } finally {
      Bun.cron.parse = parse;
    }
  });

  test("invalid values are usage errors", () => {
    for (const flags of [
      { compression: "lz4" },
      { retries: "-1" },
      { retries: "x" },
      { timeout: "0s" },
      { timeout: "2m" },
      { timeout: "soon" },
      { partSize: "4" },
      { partSize: "1.5" },
    ])
      expect(() => resolveSettings(flags, {})).toThrow(UsageError);
  });
});

describe("backup selection", () => {
  const backups = ["2026-11-03T00:00:00.000Z", "2026-11-02T00:00:00.000Z", "2026-11-01T00:00:00.000Z"].map(
    (t, i) => ({ id: `id${3 - i}`, createdAt: t }) as BackupManifest,
  );
  test("--latest picks the newest", () => expect(selectCandidates(backups, parseSelection({}))[0]?.id).toBe("id3"));
  test("--id picks that one", () => expect(selectCandidates(backups, parseSelection({ id: "id2" })).map((b) => b.id)).toEqual(["id2"]));
  test("--at picks the newest at or before the time", () => {
    expect(selectCandidates(backups, parseSelection({ at: "2026-11-02T00:00:00Z" }))[0]?.id).toBe("id2");
    expect(selectCandidates(backups, parseSelection({ at: "2026-11-02T12:00:00Z" }))[0]?.id).toBe("id2");
    expect(selectCandidates(backups, parseSelection({ at: "2026-10-01T00:00:00Z" }))).toEqual([]);
  });
  test("--at without a zone is UTC, as list shows times, whatever this machine's zone; a space may stand for the T", () => {
    const zone = process.env.TZ;
    process.env.TZ = "America/New_York"; // where a time read as local would be 5 hours off
    try {
      for (const [at, want] of [
        ["2026-01-02T10:00", "2026-01-02T10:00:00.000Z"],
        ["2026-01-02T10:00:30.5", "2026-01-02T10:00:30.500Z"],
        ["2026-01-02", "2026-01-02T00:00:00.000Z"],
        ["2026-01-02T10:00:00+02:00", "2026-01-02T08:00:00.000Z"],
        ["2026-01-02 10:00", "2026-01-02T10:00:00.000Z"],
        ["2026-01-02 10:00:30", "2026-01-02T10:00:30.000Z"],
        ["2026-01-02 10:00:30Z", "2026-01-02T10:00:30.000Z"], // as list prints it
        ["2026-01-02 10:00:00+02:00", "2026-01-02T08:00:00.000Z"],
      ] as const)
        expect((parseSelection({ at }) as { at: Date }).at.toISOString(), at).toBe(want);
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
  });
  test("--at covers the whole of the last unit written: a time copied from list (to the second) takes the backup on that line", () => {
    const made = ["2026-12-01T11:00:00.700Z", "2026-12-01T10:00:00.000Z"].map(
      (t, i) => ({ id: `b${2 - i}`, createdAt: t }) as BackupManifest,
    );
    for (const [at, want] of [
      ["2026-12-01 11:00:00Z", "b2"], // as list prints the newest
      ["2026-12-01T11:00:00", "b2"],
      ["2026-12-01T11:00", "b2"],
      ["2026-12-01", "b2"],
      ["2026-12-01T11:00:00.500Z", "b1"], // to the millisecond: before it
      ["2026-12-01T10:59:59Z", "b1"],
    ] as const)
      expect(selectCandidates(made, parseSelection({ at }))[0]?.id, at).toBe(want);
  });
  test("conflicting or malformed selections are usage errors", () => {
    expect(() => parseSelection({ latest: true, id: "x" })).toThrow(UsageError);
    expect(() => parseSelection({ at: "last tuesday" })).toThrow(UsageError);
    for (const at of ["2026-02-30", "2026-02-29T10:00:00Z", "2026-13-01", "2026-04-31", "2026-00-10"])
      expect(() => parseSelection({ at }), at).toThrow(UsageError);
    for (const at of ["2024-02-29", "2026-04-30T23:59:59Z", "2026-12-31T10:00:00+02:00"])
      expect(parseSelection({ at }), at).toHaveProperty("at");
  });
});

describe("unknown flags", () => {
  const def = { force: { type: "boolean" }, output: { type: "string", alias: "o" }, db: { type: "positional" } } as const;
  test("known flags, aliases, negations and positionals pass", () => {
    assertKnownFlags(["app.db", "--force", "-o", "x", "--output=y", "--no-force", "--", "--anything"], def);
  });
  test("a typo is a usage error", () => {
    expect(() => assertKnownFlags(["--forse"], def)).toThrow(UsageError);
  });
});

describe("splitParts", () => {
  async function* chunks(sizes: number[]) {
    let v = 0;
    for (const n of sizes) yield new Uint8Array(n).map(() => v++ & 0xff);
  }
  const cases: [number[], number, number[]][] = [
    [[3, 3, 3], 4, [4, 4, 1]],
    [[10], 4, [4, 4, 2]],
    [[4, 4], 4, [4, 4]],
    [[], 4, []],
    [[1, 1, 1], 8, [3]],
  ];
  for (const [sizes, part, want] of cases)
    test(`${JSON.stringify(sizes)} in parts of ${part}`, async () => {
      const parts: Uint8Array[] = [];
      for await (const p of splitParts(chunks(sizes), part)) parts.push(p);
      expect(parts.map((p) => p.byteLength)).toEqual(want);
      const joined = Buffer.concat(parts);
      expect([...joined]).toEqual([...joined].map((_, i) => i & 0xff));
    });
});

describe("versions", () => {
  test("compareVersions orders dotted versions", async () => {
    const { compareVersions } = await import("../../src/version.ts");
    expect(compareVersions("3.51.2", "3.51.3")).toBeLessThan(0);
    expect(compareVersions("3.51.3", "3.51.3")).toBe(0);
    expect(compareVersions("3.54.1", "3.51.3")).toBeGreaterThan(0);
    expect(compareVersions("3.9", "3.51.3")).toBeLessThan(0);
  });
  test("backup warns about the WAL-reset bug only for WAL databases on SQLite before 3.51.3", async () => {
    const { walResetWarning } = await import("../../src/version.ts");
    expect(walResetWarning("3.50.4", "wal")).toContain("older than 3.51.3");
    expect(walResetWarning("3.50.4", "delete")).toBeNull();
    expect(walResetWarning("3.51.3", "wal")).toBeNull();
  });
});

describe("output", () => {
  test("formatBytes", () => {
    expect([0, 1023, 1024, 1536, 10 * 1024 * 1024, 3 * 1024 ** 3].map(formatBytes)).toEqual([
      "0 B",
      "1023 B",
      "1.0 KiB",
      "1.5 KiB",
      "10.0 MiB",
      "3.0 GiB",
    ]);
  });
  test("formatTable aligns columns and right-aligns sizes", () => {
    expect(
      formatTable(
        ["NAME", "SIZE"],
        [
          ["a", "1.0 KiB"],
          ["bbb", "10.0 MiB"],
        ],
      ),
    ).toBe("NAME      SIZE\na      1.0 KiB\nbbb   10.0 MiB");
  });
});
