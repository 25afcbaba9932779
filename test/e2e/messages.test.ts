/**
 * Messages that tell the truth: what a run could not do as asked is said, in one line.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../helpers/cli.ts";
import { createBankDb, removeTempDirs, tempDir } from "../helpers/db.ts";
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

  test("a name or path with a newline or control character is quoted: an error stays one line, and so does a log line", async () => {
    const dir = tempDir("control");
    const db = join(dir, "app.db");
    createBankDb(db);
    const repo = join(dir, "repo");
    const bad = await runCli(["backup", db, "--repo", repo, "--name", "evil\nsqlite-vault: forged line\u001b[31m"]);
    expect(bad.exitCode).toBe(2);
    const err = bad.stderr.trimEnd().split("\n");
    expect(err).toHaveLength(2);
    expect(err[0]).toContain('invalid backup name "evil\\nsqlite-vault: forged line\\u001b[31m"');
    expect(err[1]).toStartWith("Try: ");

    expect((await runCli(["backup", db, "--repo", repo, "-q"])).exitCode).toBe(0);
    const odd = join(dir, "new\nline.db");
    writeFileSync(odd, "");
    createBankDb(odd);
    const info = await runCli(["restore", odd, "--name", "app", "--repo", repo, "--if-missing"]);
    expect(info.exitCode).toBe(0);
    expect(info.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(info.stderr).toContain("new\\nline.db");
  });
});

