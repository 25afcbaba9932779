import { describe, expect, test } from "bun:test";
import {
  createBackupId,
  dataKey,
  deriveName,
  FORMAT_NAME,
  FORMAT_VERSION,
  manifestKey,
  parseDataKey,
  parseManifest,
  parseManifestKey,
  parseVerifiedKey,
  serializeManifest,
  assertValidName,
  type BackupManifest,
} from "../../src/repo/manifest.ts";
import { UsageError, VerificationError } from "../../src/errors.ts";

const sha = "a".repeat(64);
function manifest(overrides: Partial<BackupManifest> = {}): BackupManifest {
  const id = "20261122T053247123Z-0a1b2c3d";
  return {
    format: FORMAT_NAME,
    formatVersion: FORMAT_VERSION,
    id,
    name: "app",
    createdAt: "2026-11-22T05:32:47.123Z",
    host: "h",
    toolVersion: "0.1.0",
    sqliteVersion: "3.54.1",
    snapshot: { method: "vacuum-into", journalMode: "wal" },
    database: { pageSize: 4096, pageCount: 2, bytes: 8192, sha256: sha },
    stored: { key: dataKey("app", id, "gzip"), bytes: 100, sha256: sha, compression: "gzip" },
    ...overrides,
  };
}

describe("ids and keys", () => {
  test("ids carry the UTC time to the millisecond and sort by creation time", () => {
    const a = createBackupId(new Date("2026-01-02T03:04:05.006Z"), new Uint8Array([255, 0, 1, 2]));
    expect(a).toBe("20260102T030405006Z-ff000102");
    const ids = ["2026-12-31T23:59:59.999Z", "2026-01-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z", "2026-06-01T12:00:00.001Z"].map((t) =>
      createBackupId(new Date(t)),
    );
    expect([...ids].sort()).toEqual([ids[1]!, ids[3]!, ids[0]!, ids[2]!]);
  });

  test("two ids made in the same millisecond differ", () => {
    const now = new Date();
    expect(createBackupId(now)).not.toBe(createBackupId(now));
  });

  test("manifest and data keys round-trip", () => {
    const id = "20261122T053247123Z-0a1b2c3d";
    expect(manifestKey("app", id)).toBe(`app/${id}.json`);
    expect(dataKey("app", id, "gzip")).toBe(`app/${id}.sqlite.gz`);
    expect(dataKey("app", id, "zstd")).toBe(`app/${id}.sqlite.zst`);
    expect(dataKey("app", id, "none")).toBe(`app/${id}.sqlite`);
    expect(parseManifestKey(`app/${id}.json`)).toEqual({ name: "app", id });
    expect(parseDataKey(`app/${id}.sqlite.zst`)).toEqual({ name: "app", id });
    for (const bad of [`app/${id}.sqlite.gz`, "app/notes.json", `a/b/${id}.json`, `${id}.json`]) expect(parseManifestKey(bad)).toBeNull();
    expect(parseDataKey(`app/${id}.json`)).toBeNull();
    // Under a name no backup can have (another tool's directory): neither a manifest, nor data, nor a marker.
    for (const name of ["x y", "_tmp", ".hidden", "a".repeat(129)]) {
      expect(parseManifestKey(`${name}/${id}.json`), name).toBeNull();
      expect(parseDataKey(`${name}/${id}.sqlite.gz`), name).toBeNull();
      expect(parseVerifiedKey(`${name}/${id}.verified.json`), name).toBeNull();
    }
  });
});

describe("names", () => {
  const cases: [string, string][] = [
    ["/var/lib/app/app.db", "app"],
    ["data.sqlite", "data"],
    ["x/y/store.sqlite3", "store"],
    ["plain", "plain"],
    ["archive.tar.db", "archive.tar"],
    ["UPPER.DB", "UPPER"],
  ];
  for (const [path, name] of cases) test(`${path} -> ${name}`, () => expect(deriveName(path)).toBe(name));
  test("names that cannot be a key segment are refused", () => {
    for (const bad of ["", ".hidden", "a/b", "a b", "../x", "x".repeat(129)]) expect(() => assertValidName(bad)).toThrow(UsageError);
  });
});

describe("parseManifest", () => {
  test("round-trips a valid manifest", () => {
    const m = manifest();
    expect(parseManifest(serializeManifest(m), manifestKey(m.name, m.id))).toEqual(m);
  });

  const invalid: [string, unknown][] = [
    ["not JSON", "{"],
    ["foreign JSON", { hello: 1 }],
    ["a newer format version", { ...manifest(), formatVersion: 99 }],
    ["a bad checksum", { ...manifest(), stored: { ...manifest().stored, sha256: "xyz" } }],
    ["a negative size", { ...manifest(), database: { ...manifest().database, bytes: -1 } }],
    ["an unknown compression", { ...manifest(), stored: { ...manifest().stored, compression: "lz4" } }],
    ["a data key elsewhere", { ...manifest(), stored: { ...manifest().stored, key: "other/x.sqlite.gz" } }],
    ["a bad time", { ...manifest(), createdAt: "yesterday" }],
    [
      "a time other than its id's (retention would call it newest, list and restore would not)",
      { ...manifest(), createdAt: "2027-11-22T05:32:47.123Z" },
    ],
    ["a time a millisecond off its id's", { ...manifest(), createdAt: "2026-11-22T05:32:47.124Z" }],
  ];
  for (const [what, value] of invalid)
    test(`refuses ${what}`, () => {
      const bytes = new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
      expect(() => parseManifest(bytes, manifestKey("app", "20261122T053247123Z-0a1b2c3d"))).toThrow(VerificationError);
    });

  test("the same time, written with an offset, is the id's time", () => {
    const m = manifest({ createdAt: "2026-11-22T06:32:47.123+01:00" });
    expect(parseManifest(serializeManifest(m), manifestKey(m.name, m.id)).createdAt).toBe(m.createdAt);
  });

  test("refuses a manifest stored under another key", () => {
    expect(() => parseManifest(serializeManifest(manifest()), "other/20261122T053247123Z-0a1b2c3d.json")).toThrow(VerificationError);
  });
});
