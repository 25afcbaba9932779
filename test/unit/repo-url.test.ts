import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveRepo, redactUrl, type S3Flags } from "../../src/storage/index.ts";
import { resolveCredentials, parseIni } from "../../src/storage/credentials.ts";
import { UsageError } from "../../src/errors.ts";

describe("resolveRepo", () => {
  const cases: { repo: string; flags?: S3Flags; env?: Record<string, string>; want: unknown }[] = [
    { repo: "/var/backups/vault", want: { kind: "file", path: "/var/backups/vault" } },
    { repo: "file:///var/backups/vault", want: { kind: "file", path: "/var/backups/vault" } },
    { repo: "relative/dir", want: { kind: "file", path: "/cwd/relative/dir" } },
    {
      repo: "s3://my-bucket/some/prefix/",
      want: { kind: "s3", config: { bucket: "my-bucket", prefix: "some/prefix", endpoint: "https://s3.us-east-1.amazonaws.com", region: "us-east-1", pathStyle: false } },
    },
    {
      repo: "s3://my-bucket",
      env: { AWS_DEFAULT_REGION: "eu-west-1" },
      want: { kind: "s3", config: { bucket: "my-bucket", prefix: "", endpoint: "https://s3.eu-west-1.amazonaws.com", region: "eu-west-1", pathStyle: false } },
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
      repo: "s3://bkt",
      env: { AWS_ENDPOINT_URL: "https://nyc3.digitaloceanspaces.com", AWS_REGION: "nyc3" },
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "https://nyc3.digitaloceanspaces.com", region: "nyc3", pathStyle: true } },
    },
    {
      repo: "s3://bkt?path-style=false",
      env: { AWS_ENDPOINT_URL: "https://nyc3.digitaloceanspaces.com" },
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "https://nyc3.digitaloceanspaces.com", region: "us-east-1", pathStyle: false } },
    },
    {
      // precedence: flag > URL query > SQLITE_VAULT_S3_ENDPOINT > AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL
      repo: "s3://bkt",
      env: { SQLITE_VAULT_S3_ENDPOINT: "https://a.example", AWS_ENDPOINT_URL_S3: "https://b.example", AWS_ENDPOINT_URL: "https://c.example" },
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
      want: { kind: "s3", config: { bucket: "bkt", prefix: "", endpoint: "https://minio.internal:9000", region: "us-east-1", pathStyle: true } },
    },
  ];
  for (const c of cases)
    test(`${c.repo} ${JSON.stringify(c.flags ?? {})} ${JSON.stringify(c.env ?? {})}`, () => {
      expect(resolveRepo(c.repo, c.flags, c.env ?? {}, "/cwd")).toEqual(c.want as never);
    });

  const invalid = ["", "s3://ab", "s3://Bad_Bucket/x", "s3://bkt/a/../b", "s3://user:secret@bkt/x", "s3://bkt?bogus=1", "s3://bkt?path-style=maybe", "gs://bucket/x", "file://host/x"];
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
  const file = "[default]\naws_access_key_id = AKIDEFAULT\naws_secret_access_key = s1\n\n[profile other]\naws_access_key_id=AKIOTHER\naws_secret_access_key=s2\naws_session_token=tok\n";
  const read = (path: string) => (path === "/home/u/.aws/credentials" || path === "/custom" ? file : null);
  const cases: { env: Record<string, string>; want: unknown }[] = [
    { env: { AWS_ACCESS_KEY_ID: "AK", AWS_SECRET_ACCESS_KEY: "SK", HOME: "/home/u" }, want: { accessKeyId: "AK", secretAccessKey: "SK", sessionToken: undefined, source: "the environment" } },
    { env: { AWS_ACCESS_KEY_ID: "AK", AWS_SECRET_ACCESS_KEY: "SK", AWS_SESSION_TOKEN: "T" }, want: { accessKeyId: "AK", secretAccessKey: "SK", sessionToken: "T", source: "the environment" } },
    { env: { HOME: "/home/u" }, want: { accessKeyId: "AKIDEFAULT", secretAccessKey: "s1", sessionToken: undefined, source: "profile default in /home/u/.aws/credentials" } },
    { env: { HOME: "/home/u", AWS_PROFILE: "other" }, want: { accessKeyId: "AKIOTHER", secretAccessKey: "s2", sessionToken: "tok", source: "profile other in /home/u/.aws/credentials" } },
    { env: { HOME: "/nowhere", AWS_SHARED_CREDENTIALS_FILE: "/custom" }, want: { accessKeyId: "AKIDEFAULT", secretAccessKey: "s1", sessionToken: undefined, source: "profile default in /custom" } },
    { env: { HOME: "/nowhere" }, want: null },
  ];
  for (const c of cases)
    test(JSON.stringify(c.env), () => {
      expect(resolveCredentials(c.env, read)).toEqual(c.want as never);
    });

  test("a named profile that does not exist is a usage error", () => {
    expect(() => resolveCredentials({ HOME: "/home/u", AWS_PROFILE: "missing" }, read)).toThrow(UsageError);
  });
  test("a credentials file that is a FIFO or too big counts as none, never read (a FIFO blocked for ever)", () => {
    const dir = mkdtempSync(join(tmpdir(), "creds-"));
    try {
      const fifo = join(dir, "fifo");
      expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
      const huge = join(dir, "huge");
      writeFileSync(huge, `${file}${"#".repeat(2 * 1024 * 1024)}\n`);
      for (const path of [fifo, huge]) {
        expect(resolveCredentials({ AWS_SHARED_CREDENTIALS_FILE: path })).toBeNull();
        expect(() => resolveCredentials({ AWS_SHARED_CREDENTIALS_FILE: path, AWS_PROFILE: "other" })).toThrow(`AWS_PROFILE is other but ${path} cannot be read`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test("half a key pair is a usage error", () => {
    expect(() => resolveCredentials({ AWS_ACCESS_KEY_ID: "AK" }, read)).toThrow(UsageError);
  });
  test("parseIni ignores comments and reads profile sections", () => {
    expect(parseIni("# c\n[a]\nk = v\n; x\n[profile b]\nK2=v2")).toEqual({ a: { k: "v" }, b: { k2: "v2" } });
  });
});
