import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveRepo, redactUrl, type S3Flags } from "../../src/storage/index.ts";
import { parseIni, readProfileSettings, resolveCredentials } from "../../src/storage/credentials.ts";
import { UsageError } from "../../src/errors.ts";

describe("resolveRepo", () => {
  const cases: { repo: string; flags?: S3Flags; env?: Record<string, string>; want: unknown }[] = [
    { repo: "/var/backups/vault", want: { kind: "file", path: "/var/backups/vault" } },
    { repo: "file:///var/backups/vault", want: { kind: "file", path: "/var/backups/vault" } },
    { repo: "relative/dir", want: { kind: "file", path: "/cwd/relative/dir" } },
    {
      repo: "s3://my-bucket/some/prefix/",
      want: {
        kind: "s3",
        config: {
          bucket: "my-bucket",
          prefix: "some/prefix",
          endpoint: "https://s3.us-east-1.amazonaws.com",
          region: "us-east-1",
          pathStyle: false,
        },
      },
    },
    {
      repo: "s3://my-bucket",
      env: { AWS_DEFAULT_REGION: "eu-west-1" },
      want: {
        kind: "s3",
        config: { bucket: "my-bucket", prefix: "", endpoint: "https://s3.eu-west-1.amazonaws.com", region: "eu-west-1", pathStyle: false },
      },
    },
    {
      repo: "s3://bkt/p?endpoint=http://127.0.0.1:7480&region=us-east-1",
      want: { kind: "s3", config: { bucket: "bkt", prefix: "p", endpoint: "http://127.0.0.1:7480", region: "us-east-1", pathStyle: true } },
    },
    {
      // an IP address is always path-style, even when asked otherwise
      repo: "s3://bkt?endpoint=http://127.0.0.1:7480&path-style=false",
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "http://127.0.0.1:7480", region: "us-east-1", pathStyle: true } },
    },
    {
      // IPv6, and IPv4 in a short form (URL() reads it as 127.0.0.1): path-style too
      repo: "s3://bkt?endpoint=http://[::1]:7480&path-style=false",
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "http://[::1]:7480", region: "us-east-1", pathStyle: true } },
    },
    {
      repo: "s3://bkt?endpoint=http://127.1:7480&path-style=false",
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "http://127.0.0.1:7480", region: "us-east-1", pathStyle: true } },
    },
    {
      // a host name that starts with an address is a host name
      repo: "s3://bkt?endpoint=https://10.0.0.1.nip.io&path-style=false",
      want: {
        kind: "s3",
        config: { bucket: "bkt", prefix: "", endpoint: "https://10.0.0.1.nip.io", region: "us-east-1", pathStyle: false },
      },
    },
    {
      repo: "s3://bkt",
      env: { AWS_ENDPOINT_URL: "https://nyc3.digitaloceanspaces.com", AWS_REGION: "nyc3" },
      want: {
        kind: "s3",
        config: { bucket: "bkt", prefix: "", endpoint: "https://nyc3.digitaloceanspaces.com", region: "nyc3", pathStyle: true },
      },
    },
    {
      repo: "s3://bkt?path-style=false",
      env: { AWS_ENDPOINT_URL: "https://nyc3.digitaloceanspaces.com" },
      want: {
        kind: "s3",
        config: { bucket: "bkt", prefix: "", endpoint: "https://nyc3.digitaloceanspaces.com", region: "us-east-1", pathStyle: false },
      },
    },
    {
      // precedence: flag > URL query > SQLITE_VAULT_S3_ENDPOINT > AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL
      repo: "s3://bkt",
      env: {
        SQLITE_VAULT_S3_ENDPOINT: "https://a.example",
        AWS_ENDPOINT_URL_S3: "https://b.example",
        AWS_ENDPOINT_URL: "https://c.example",
      },
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "https://a.example", region: "us-east-1", pathStyle: true } },
    },
    {
      repo: "s3://bkt",
      env: { AWS_ENDPOINT_URL_S3: "https://b.example", AWS_ENDPOINT_URL: "https://c.example" },
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "https://b.example", region: "us-east-1", pathStyle: true } },
    },
    {
      repo: "s3://bkt?endpoint=https://url.example&region=r1",
      flags: { endpoint: "https://flag.example", region: "r2", pathStyle: false },
      env: { SQLITE_VAULT_S3_ENDPOINT: "https://env.example", AWS_REGION: "r3" },
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "https://flag.example", region: "r2", pathStyle: false } },
    },
    {
      repo: "s3://bkt",
      flags: { endpoint: "minio.internal:9000" },
      want: {
        kind: "s3",
        config: { bucket: "bkt", prefix: "", endpoint: "https://minio.internal:9000", region: "us-east-1", pathStyle: true },
      },
    },
  ];
  for (const c of cases)
    test(`${c.repo} ${JSON.stringify(c.flags ?? {})} ${JSON.stringify(c.env ?? {})}`, () => {
      expect(resolveRepo(c.repo, c.flags, c.env ?? {}, "/cwd")).toEqual(c.want as never);
    });

  const invalid = [
    "",
    "s3://ab",
    "s3://Bad_Bucket/x",
    "s3://bkt/a/../b",
    "s3://user:secret@bkt/x",
    "s3://bkt?bogus=1",
    "s3://bkt?path-style=maybe",
    "gs://bucket/x",
    "file://host/x",
  ];
  for (const repo of invalid)
    test(`rejects ${JSON.stringify(repo)} as a usage error`, () => {
      expect(() => resolveRepo(repo, {}, {}, "/cwd")).toThrow(UsageError);
    });

  test("a rejected URL with credentials does not echo them", () => {
    const error = (() => {
      try {
        resolveRepo("s3://user:hunter2@bkt/x", {}, {}, "/cwd");
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error?.message).not.toContain("hunter2");
    expect(redactUrl("gs://user:hunter2@b/x")).toBe("gs://b/x");
  });
});

describe("resolveCredentials", () => {
  const config = "[profile other]\nregion = eu-west-1\n";
  const read = (path: string) => (path === "/home/u/.aws/config" ? config : null);
  test("static keys in the environment are used as they are, session token included", async () => {
    expect(await resolveCredentials({ AWS_ACCESS_KEY_ID: "AK", AWS_SECRET_ACCESS_KEY: "SK", AWS_SESSION_TOKEN: "T" }, read).get()).toEqual({
      accessKeyId: "AK",
      secretAccessKey: "SK",
      sessionToken: "T",
      source: "the environment",
    });
  });
  test("a named profile that neither shared file defines is a usage error", () => {
    expect(() => resolveCredentials({ HOME: "/home/u", AWS_PROFILE: "missing" }, read)).toThrow(UsageError);
    expect(() => resolveCredentials({ HOME: "/home/u", AWS_PROFILE: "other" }, read)).not.toThrow();
  });
  test("a shared file that is a FIFO or too big counts as none, never read (a FIFO blocked for ever)", () => {
    const dir = mkdtempSync(join(tmpdir(), "creds-"));
    try {
      const fifo = join(dir, "fifo");
      expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
      const huge = join(dir, "huge");
      writeFileSync(huge, `${config}${"#".repeat(2 * 1024 * 1024)}\n`);
      for (const path of [fifo, huge]) {
        const env = { HOME: "/nowhere", AWS_CONFIG_FILE: path, AWS_SHARED_CREDENTIALS_FILE: path };
        expect(readProfileSettings({ ...env, AWS_PROFILE: "other" })).toEqual({});
        // The SDK's chain would read it whole too: refused before it is asked.
        expect(() => resolveCredentials(env)).toThrow(`cannot read ${path}: it is`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test("half a key pair is a usage error", () => {
    expect(() => resolveCredentials({ AWS_ACCESS_KEY_ID: "AK" }, read)).toThrow(UsageError);
  });
  test("/dev/null as a shared file means none", () => {
    expect(() =>
      resolveCredentials({ HOME: "/nowhere", AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null" }),
    ).not.toThrow();
  });
});

describe("readProfileSettings", () => {
  const file = [
    "[default]",
    "region = eu-central-1",
    "endpoint_url = https://default.example",
    "",
    "[profile r2]",
    "region = auto",
    "endpoint_url = https://generic.example",
    "services = r2-services",
    "",
    "[services r2-services]",
    "s3 =",
    "  endpoint_url = https://account.r2.example",
    "sts =",
    "  endpoint_url = https://sts.example",
  ].join("\n");
  const read = (path: string) => (path === "/home/u/.aws/config" || path === "/custom" ? file : null);
  const cases: { env: Record<string, string>; want: unknown }[] = [
    { env: { HOME: "/home/u" }, want: { endpoint: "https://default.example", region: "eu-central-1", file: "/home/u/.aws/config" } },
    {
      env: { HOME: "/home/u", AWS_PROFILE: "r2" },
      want: { endpoint: "https://account.r2.example", region: "auto", file: "/home/u/.aws/config" },
    },
    {
      env: { HOME: "/nowhere", AWS_CONFIG_FILE: "/custom", AWS_PROFILE: "r2" },
      want: { endpoint: "https://account.r2.example", region: "auto", file: "/custom" },
    },
    {
      env: { HOME: "/home/u", AWS_PROFILE: "r2", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "true" },
      want: { endpoint: undefined, region: "auto", file: "/home/u/.aws/config" },
    },
    { env: { HOME: "/home/u", AWS_PROFILE: "none" }, want: {} },
    { env: { HOME: "/nowhere" }, want: {} },
  ];
  for (const c of cases)
    test(JSON.stringify(c.env), () => {
      expect(readProfileSettings(c.env, read)).toEqual(c.want as never);
    });

  test("a profile's settings come after flags, the URL, the environment and the config file", () => {
    const profile = { endpoint: "https://profile.example", region: "auto" };
    const at = (flags: S3Flags, env: Record<string, string>, fallback: S3Flags = {}) => {
      const r = resolveRepo("s3://bkt/p", flags, env, "/cwd", fallback, profile);
      return r.kind === "s3" ? [r.config.endpoint, r.config.region] : [];
    };
    expect(at({}, {})).toEqual(["https://profile.example", "auto"]);
    expect(at({}, {}, { endpoint: "https://file.example", region: "r1" })).toEqual(["https://file.example", "r1"]);
    expect(at({}, { AWS_ENDPOINT_URL_S3: "https://env.example", AWS_REGION: "r2" })).toEqual(["https://env.example", "r2"]);
    expect(at({}, { AWS_ENDPOINT_URL: "https://env.example", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "true" })).toEqual([
      "https://profile.example",
      "auto",
    ]);
    expect(at({ endpoint: "https://flag.example" }, { AWS_ENDPOINT_URL_S3: "https://env.example" })).toEqual([
      "https://flag.example",
      "auto",
    ]);
  });

  test("parseIni ignores comments, reads profile sections and indented sub-keys", () => {
    expect(parseIni("# c\n[a]\nk = v\n; x\n[profile b]\nK2=v2\ns3 =\n  endpoint_url = e\nafter = 1")).toEqual({
      a: { k: "v" },
      b: { k2: "v2", s3: "", "s3.endpoint_url": "e", after: "1" },
    });
  });
});
