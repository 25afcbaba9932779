/**
 * Messages that tell the truth: what a run could not do as asked is said, in one line.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../helpers/cli.ts";
import { createBankDb, tempDir } from "../helpers/db.ts";
import { useTestBucket, s3Env, s3RepoUrl } from "../helpers/s3.ts";

setDefaultTimeout(60_000);

const bucket = useTestBucket("messages", { proxy: true });
const proxy = bucket.proxy;

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

  test("a stalled server: the error says no answer came within the timeout, after how many attempts over how long", async () => {
    proxy.clear();
    proxy.add({ fault: { kind: "delay", delayMs: 30_000 }, times: Infinity });
    const repo = `s3://${bucket.bucket}/stalled?endpoint=${encodeURIComponent(proxy.url)}`;
    const r = await runCli(["list", "--repo", repo, "--timeout", "1s", "--retries", "2"], { env: s3Env() });
    proxy.clear();
    expect(r.exitCode).toBe(10);
    const err = r.stderr.trimEnd().split("\n");
    expect(err).toHaveLength(2);
    expect(err[0]).toMatch(/no answer within 1s \(3 attempts over \d+\.\d s\)$/);
    expect(err[1]).toContain("--deadline");
  });

  test("--deadline bounds the whole run: a stalled server ends it when the deadline passes, exit 1, with one line", async () => {
    proxy.clear();
    proxy.add({ fault: { kind: "delay", delayMs: 30_000 }, times: Infinity });
    const repo = `s3://${bucket.bucket}/deadline?endpoint=${encodeURIComponent(proxy.url)}`;
    const started = performance.now();
    const r = await runCli(["list", "--repo", repo, "--timeout", "10s", "--retries", "5", "--deadline", "2s"], { env: s3Env() });
    const seconds = (performance.now() - started) / 1000;
    proxy.clear();
    expect(r.exitCode).toBe(1);
    expect(seconds).toBeLessThan(8);
    expect(r.stderr).toStartWith("sqlite-vault: the run did not finish within --deadline 2s");
    const env = await runCli(["list", "--repo", repo, "--timeout", "10s"], { env: { ...s3Env(), SQLITE_VAULT_DEADLINE: "2min" } });
    expect(env.exitCode).toBe(0);
    const bad = await runCli(["list", "--repo", repo, "--deadline", "2m"], { env: s3Env() });
    expect(bad.exitCode).toBe(2);
  });

  test("a path through a file (a-file/app.db) is named in one line, never a raw ENOTDIR", async () => {
    const dir = tempDir("notdir");
    const db = join(dir, "app.db");
    createBankDb(db);
    const repo = join(dir, "repo");
    expect((await runCli(["backup", db, "--repo", repo, "-q"])).exitCode).toBe(0);
    writeFileSync(join(dir, "a-file"), "");
    for (const extra of [[], ["--if-missing"]]) {
      const r = await runCli(["restore", join(dir, "a-file", "app.db"), "--name", "app", "--repo", repo, ...extra]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toStartWith(`sqlite-vault: ${join(dir, "a-file")} is not a directory\n`);
    }
    const backup = await runCli(["backup", db, "--repo", join(dir, "a-file", "repo")]);
    expect(backup.exitCode).toBe(10);
    expect(backup.stderr).not.toContain("ENOTDIR: not a directory, lstat");
  });
});
