/**
 * doctor through the compiled binary: against the real S3 server, a wrong secret, a missing bucket,
 * a storage that acknowledges deletes without deleting (the fault proxy), and a local directory.
 * It always cleans up what it wrote.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/db.ts";
import { runCli } from "../helpers/cli.ts";
import { useTestBucket, adminClient, listUploads, s3Env, s3RepoUrl } from "../helpers/s3.ts";

setDefaultTimeout(120_000);

const bucket = useTestBucket("doctor", { proxy: true });
const proxy = bucket.proxy;

async function bucketKeys(): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of adminClient(bucket.bucket).listObjects()) keys.push(o.key);
  return keys;
}

describe("doctor", () => {
  test("a working S3 repository passes every check and nothing is left behind", async () => {
    const r = await runCli(["doctor", "--repo", s3RepoUrl(bucket.bucket, "ok"), "--json"], { env: s3Env() });
    expect(r.exitCode).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.ok).toBe(true);
    expect(report.checks.map((c: { name: string }) => c.name)).toEqual([
      "endpoint reachable",
      "credentials accepted",
      "bucket exists",
      "addressing",
      "clock",
      "put",
      "head",
      "get",
      "list",
      "multipart upload",
      "delete really deletes",
    ]);
    expect(await bucketKeys()).toEqual([]);
    expect(await listUploads(bucket.bucket)).toEqual([]);
    const human = await runCli(["doctor", "--repo", s3RepoUrl(bucket.bucket, "ok")], { env: s3Env() });
    expect(human.stdout).toContain("a backup to this repository would work");
  });

  test("a wrong secret fails the credentials check with a fix, exit 12", async () => {
    const r = await runCli(["doctor", "--repo", s3RepoUrl(bucket.bucket, "auth")], {
      env: s3Env({ AWS_SECRET_ACCESS_KEY: "not-the-secret-1234" }),
    });
    expect(r.exitCode).toBe(12);
    expect(r.stdout).toContain("FAIL credentials accepted");
    expect(r.stdout).toContain("fix: check the access key and secret");
    expect(r.stdout + r.stderr).not.toContain("not-the-secret-1234");
  });

  test("a missing bucket fails the bucket check, exit 10", async () => {
    const r = await runCli(["doctor", "--repo", s3RepoUrl("no-such-bucket-doctor", "x")], { env: s3Env() });
    expect(r.exitCode).toBe(10);
    expect(r.stdout).toContain("FAIL bucket exists");
  });

  test("a storage that acknowledges deletes without deleting is caught", async () => {
    proxy.clear();
    proxy.add({ method: "DELETE", match: (p) => p.includes("probe.bin") && !p.includes("uploadId"), fault: { kind: "fake-204" } });
    const repo = `s3://${bucket.bucket}/faked?endpoint=${encodeURIComponent(proxy.url)}`;
    const r = await runCli(["doctor", "--repo", repo, "--json"], { env: s3Env() });
    expect(r.exitCode).toBe(1);
    const failed = JSON.parse(r.stdout).checks.filter((c: { ok: boolean }) => !c.ok);
    expect(failed.map((c: { name: string }) => c.name)).toEqual(["delete really deletes"]);
    expect(proxy.injected).toHaveLength(1);
    expect(await bucketKeys()).toEqual([]); // the clean-up delete went through
    proxy.clear();
  });

  test("a local directory passes and is left as it was", async () => {
    const dir = tempDir("doctor-local");
    const r = await runCli(["doctor", "--repo", dir]);
    expect(r.exitCode).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
    // One not created yet is created, as the first backup would; one that cannot be is a failure.
    const fresh = await runCli(["doctor", "--repo", join(dir, "absent")]);
    expect(fresh.exitCode, fresh.stdout).toBe(0);
    expect(fresh.stdout).toContain("does not exist yet; the first backup creates it");
    expect(existsSync(join(dir, "absent"))).toBe(false); // left as it was found
    writeFileSync(join(dir, "a-file"), "");
    const impossible = await runCli(["doctor", "--repo", join(dir, "a-file", "repo")]);
    expect(impossible.exitCode).toBe(10);
    expect(impossible.stdout).toContain("FAIL repository directory exists");
  });
});
