/**
 * Transient and persistent faults between the compiled binary and the real S3 server, injected by
 * test/helpers/fault-proxy.ts: backups and restores ride through a few faults of every kind, fail
 * cleanly (exit 10, nothing listed, nothing left behind) on persistent ones, and permanent errors are
 * never retried.
 */
import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, removeTempDirs, tempDir } from "../helpers/db.ts";
import { runCli, spawnCli } from "../helpers/cli.ts";
import { on, startFaultProxy, type FaultProxy } from "../helpers/fault-proxy.ts";
import { createTestBucket, listUploads, s3Env, testS3 } from "../helpers/s3.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let proxy: FaultProxy;
let dir: string;
let db: string;
beforeAll(async () => {
  bucket = await createTestBucket("faults");
  proxy = await startFaultProxy(testS3().endpoint);
  dir = tempDir("faults");
  db = join(dir, "big.db");
  createBankDb(db, { fillerRows: 60_000 }); // about 20 MB stored: four or more 5 MiB parts
});
afterAll(async () => {
  await proxy?.stop();
  await bucket?.cleanup();
  removeTempDirs();
});

function repo(prefix: string): string {
  return `s3://${bucket.bucket}/${prefix}?endpoint=${encodeURIComponent(proxy.url)}`;
}
const TUNING = ["--part-size", "5", "--timeout", "2s", "--retries", "4"];

function tmpDir(label: string): string {
  const path = join(dir, label);
  mkdirSync(path, { recursive: true });
  return path;
}

describe("transient faults", () => {
  test("a backup rides through faults of every kind, and a restore through broken downloads", async () => {
    proxy.clear();
    proxy.add({ method: "PUT", match: on.partUpload, fault: { kind: "refuse" } });
    proxy.add({ method: "PUT", match: on.partUpload, fault: { kind: "reset-request", afterBytes: 100_000 }, skip: 1 });
    proxy.add({ method: "PUT", match: on.partUpload, fault: { kind: "delay", delayMs: 3000 }, skip: 2 });
    proxy.add({ method: "PUT", match: on.partUpload, fault: { kind: "status", status: 500 }, skip: 3 });
    proxy.add({ method: "POST", match: on.initiate, fault: { kind: "status", status: 503 } });
    proxy.add({ method: "POST", match: on.complete, fault: { kind: "status", status: 503, code: "SlowDown" } });
    proxy.add({ method: "POST", match: on.complete, fault: { kind: "error-200" }, skip: 1 });
    proxy.add({ method: "PUT", match: on.object(".json"), fault: { kind: "down", downMs: 1000 } }); // retries wait at least 1.5 s
    const tmp = tmpDir("t1");
    const backup = await runCli(["backup", db, "--repo", repo("transient"), "--tmp-dir", tmp, "--verbose", ...TUNING], { env: s3Env() });
    if (backup.exitCode !== 0) throw new Error(`backup failed: ${backup.stderr} (faults: ${proxy.injected.join("; ")})`);
    expect(proxy.injected.map((f) => f.split(" ")[0])).toEqual(["status", "refuse", "reset-request", "delay", "status", "status", "error-200", "down"]);
    expect(backup.stderr).toContain("retrying");
    expect(readdirSync(tmp)).toEqual([]);
    expect(await listUploads(bucket.bucket)).toEqual([]);

    proxy.clear();
    const listed = JSON.parse((await runCli(["list", "--repo", repo("transient"), "--json"], { env: s3Env() })).stdout).backups;
    expect(listed).toHaveLength(1);
    const { id, storedBytes } = listed[0];
    expect(storedBytes).toBeGreaterThan(3 * 5 * 1024 * 1024);
    proxy.add({ method: "GET", match: on.object(".sqlite.gz"), fault: { kind: "reset-response", afterBytes: 3_000_000 } });
    proxy.add({ method: "GET", match: on.object(".sqlite.gz"), fault: { kind: "reset-response", afterBytes: 1_000_000 }, skip: 1 });
    proxy.add({ method: "GET", match: on.object(".json"), fault: { kind: "status", status: 503 } });
    proxy.add({ method: "GET", match: on.list, fault: { kind: "delay", delayMs: 3000 } });
    const out = join(dir, "restored.db");
    const restore = await runCli(["restore", "--name", "big", "-o", out, "--repo", repo("transient"), ...TUNING], { env: s3Env() });
    expect(restore.exitCode).toBe(0);
    expect(restore.stdout).toContain(`restored big ${id}`);
    expect(proxy.injected).toHaveLength(4);
    expect(restore.stderr).toContain("resuming the download");
    expect(inspectBank(out)).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE });
  });
});

describe("persistent faults", () => {
  test("a backup whose parts always fail exits 10: nothing listed, no upload left, no temp files", async () => {
    proxy.clear();
    proxy.add({ method: "PUT", match: on.partUpload, fault: { kind: "status", status: 503 }, times: Infinity });
    const tmp = tmpDir("t2");
    const r = await runCli(["backup", db, "--repo", repo("persistent"), "--tmp-dir", tmp, ...TUNING], { env: s3Env() });
    expect(r.exitCode).toBe(10);
    expect(r.stderr.trimEnd().split("\n").filter((l) => l.startsWith("sqlite-vault:"))).toHaveLength(1);
    expect(readdirSync(tmp)).toEqual([]);
    expect(await listUploads(bucket.bucket)).toEqual([]);
    proxy.clear();
    const list = await runCli(["list", "--repo", repo("persistent"), "--json"], { env: s3Env() });
    expect(JSON.parse(list.stdout).backups).toEqual([]);
  });

  test("a restore whose download always breaks exits 10 and leaves the target untouched", async () => {
    proxy.clear();
    expect((await runCli(["backup", db, "--repo", repo("persistent-restore"), ...TUNING], { env: s3Env() })).exitCode).toBe(0);
    proxy.add({ method: "GET", match: on.object(".sqlite.gz"), fault: { kind: "reset-response", afterBytes: 500_000 }, times: Infinity });
    const out = join(dir, "never.db");
    const r = await runCli(["restore", "--name", "big", "-o", out, "--repo", repo("persistent-restore"), ...TUNING], { env: s3Env() });
    expect(r.exitCode).toBe(10);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith("."))).toEqual([]);
    proxy.clear();
  });

  for (const signal of ["SIGTERM", "SIGINT"] as const)
    test(`${signal} during cron's startup restore ends it with exit 130 and one line; nothing is left and the application never starts`, async () => {
      proxy.clear();
      const prefix = `cron-startup-${signal}`;
      expect((await runCli(["backup", db, "--name", "big", "--repo", repo(prefix), ...TUNING], { env: s3Env() })).exitCode).toBe(0);
      const target = join(tmpDir(`cron-startup-${signal}`), "big.db");
      const marker = `${target}.started`;
      proxy.add({ method: "GET", match: on.object(".sqlite.gz"), fault: { kind: "delay", delayMs: 20_000 } });
      const proc = spawnCli(["cron", target, "--name", "big", "--repo", repo(prefix), "--restore-if-missing", "--timeout", "60s", "--exec", `touch ${marker}`], { env: s3Env() });
      const deadline = Date.now() + 20_000;
      while (proxy.injected.length === 0 && Date.now() < deadline) await Bun.sleep(20);
      expect(proxy.injected).toHaveLength(1); // the download is being held
      proc.kill(signal);
      const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
      expect(code).toBe(130);
      expect(stderr.trimEnd().split("\n").filter((l) => l.startsWith("sqlite-vault: "))).toEqual([`sqlite-vault: interrupted by ${signal}; nothing was left half-written`]);
      expect(existsSync(target)).toBe(false);
      expect(existsSync(marker)).toBe(false);
      expect(readdirSync(join(target, "..")).filter((f) => f !== "big.db")).toEqual([]);
      proxy.clear();
    });

  test("permanent errors are not retried: access denied exits 12, a skewed clock gets a hint", async () => {
    proxy.clear();
    proxy.add({ method: "GET", match: on.list, fault: { kind: "status", status: 403, code: "AccessDenied" } });
    const denied = await runCli(["list", "--repo", repo("permanent"), ...TUNING], { env: s3Env() });
    expect(denied.exitCode).toBe(12);
    expect(proxy.injected).toHaveLength(1);
    expect(denied.stderr).not.toContain("retrying");

    proxy.clear();
    proxy.add({ method: "GET", match: on.list, fault: { kind: "status", status: 403, code: "RequestTimeTooSkewed" } });
    const skewed = await runCli(["list", "--repo", repo("permanent"), ...TUNING], { env: s3Env() });
    expect(skewed.exitCode).toBe(12);
    expect(skewed.stderr).toContain("clock");
    expect(proxy.injected).toHaveLength(1);
    proxy.clear();
  });
});
