/**
 * What the README's crontab line prints, since cron mails whatever a job prints: nothing with -q when
 * all is well, one line for the backup and one for its prune without it, and a failure in at most
 * three lines on stderr.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { runCli } from "../helpers/cli.ts";
import { createBankDb, tempDir } from "../helpers/db.ts";
import { useTestBucket, s3Env, s3RepoUrl } from "../helpers/s3.ts";

setDefaultTimeout(120_000);

const bucket = useTestBucket("crontab");

const KEEP = ["--keep-last", "2"];
const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");

for (const backend of ["local", "s3"] as const) {
  describe(`the crontab line (${backend})`, () => {
    const repo = () =>
      backend === "local" ? join(tempDir("crontab-repo"), "repo") : s3RepoUrl(bucket.bucket, `line-${Math.random().toString(36).slice(2)}`);
    const env = () => (backend === "local" ? {} : s3Env());

    test("with -q a successful backup and prune print nothing at all", async () => {
      const dir = tempDir("crontab-q");
      const db = join(dir, "app.db");
      createBankDb(db);
      const at = repo();
      for (let i = 0; i < 4; i++) {
        const r = await runCli(["backup", db, "--repo", at, ...KEEP, "-q"], { env: env() });
        expect({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }).toEqual({ exitCode: 0, stdout: "", stderr: "" });
      }
      const list = await runCli(["list", "--repo", at, "--json"], { env: env() });
      expect(JSON.parse(list.stdout).backups).toHaveLength(2);
    });

    test("without -q: one line for the backup, one summary line for the prune, nothing on stderr", async () => {
      const dir = tempDir("crontab-plain");
      const db = join(dir, "app.db");
      createBankDb(db);
      const at = repo();
      for (let i = 0; i < 3; i++) await runCli(["backup", db, "--repo", at, "-q"], { env: env() });
      const r = await runCli(["backup", db, "--repo", at, ...KEEP], { env: env() });
      expect(r.exitCode).toBe(0);
      expect(r.stderr).toBe("");
      const out = lines(r.stdout);
      expect(out).toHaveLength(2);
      expect(out[0]).toStartWith("backed up app ");
      expect(out[1]).toMatch(/^pruned app: kept 2, removed 2, freed \d+(\.\d)? KiB$/);
    });

    test("--verbose shows the whole retention plan, backup by backup", async () => {
      const dir = tempDir("crontab-verbose");
      const db = join(dir, "app.db");
      createBankDb(db);
      const at = repo();
      for (let i = 0; i < 3; i++) await runCli(["backup", db, "--repo", at, "-q"], { env: env() });
      const r = await runCli(["backup", db, "--repo", at, ...KEEP, "--verbose"], { env: env() });
      expect(r.exitCode).toBe(0);
      const out = lines(r.stdout);
      expect(out.filter((l) => / {2}keep {2}/.test(l))).toHaveLength(2);
      expect(out.filter((l) => / {2}removed( |$)/.test(l))).toHaveLength(2);
      const dry = await runCli(["prune", "--repo", at, "--name", "app", "--keep-last", "1", "--dry-run"], { env: env() });
      expect(lines(dry.stdout).filter((l) => / {2}would remove( |$)/.test(l))).toHaveLength(1);
    });
  });
}

describe("a failing crontab line", () => {
  test("a refused endpoint is at most three lines on stderr, with how many attempts were made", async () => {
    const dir = tempDir("crontab-fail");
    const db = join(dir, "app.db");
    createBankDb(db);
    const r = await runCli(["backup", db, "--repo", `s3://${bucket.bucket}/x?endpoint=http://127.0.0.1:9`, "--retries", "2", "-q"], {
      env: s3Env(),
    });
    expect(r.exitCode).toBe(10);
    expect(r.stdout).toBe("");
    const err = lines(r.stderr);
    expect(err.length).toBeGreaterThanOrEqual(1);
    expect(err.length).toBeLessThanOrEqual(3);
    expect(err[0]).toStartWith("sqlite-vault: ");
    expect(err.join("\n")).toContain("3 attempts");
  });
});
