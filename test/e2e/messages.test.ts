/**
 * Messages that tell the truth: what a run could not do as asked is said, in one line.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { runCli } from "../helpers/cli.ts";
import { removeTempDirs } from "../helpers/db.ts";
import { createTestBucket, s3Env, s3RepoUrl } from "../helpers/s3.ts";

setDefaultTimeout(60_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
beforeAll(async () => {
  bucket = await createTestBucket("messages");
});
afterAll(async () => {
  await bucket?.cleanup();
  removeTempDirs();
});

describe("messages", () => {
  test("--no-path-style for an IP-address endpoint is said to be ignored, and the run goes on path-style", async () => {
    for (const args of [["--no-path-style"], []]) {
      const repo = args.length ? s3RepoUrl(bucket.bucket, "ip") : `${s3RepoUrl(bucket.bucket, "ip")}&path-style=false`;
      const r = await runCli(["list", "--repo", repo, ...args], { env: s3Env() });
      expect(r.exitCode).toBe(0);
      expect(r.stderr).toContain("virtual-hosted addressing (--no-path-style) is ignored for 127.0.0.1");
    }
    const plain = await runCli(["list", "--repo", s3RepoUrl(bucket.bucket, "ip")], { env: s3Env() });
    expect(plain.stderr).not.toContain("ignored");
  });
});
