/**
 * Transient and persistent faults between the compiled binary and the real S3 server, injected by
 * test/helpers/fault-proxy.ts: backups and restores ride through a few faults of every kind, fail
 * cleanly (exit 10, nothing listed, nothing left behind) on persistent ones, and permanent errors are
 * never retried.
 */
import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, removeTempDirs, tempDir } from "../helpers/db.ts";
import { ensureBinary, runCli, spawnCli } from "../helpers/cli.ts";
import { listings, on, startFaultProxy, type FaultProxy } from "../helpers/fault-proxy.ts";
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
    expect(proxy.injected.map((f) => f.split(" ")[0])).toEqual([
      "status",
      "refuse",
      "reset-request",
      "delay",
      "status",
      "status",
      "error-200",
      "down",
    ]);
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
    const restore = await runCli(["restore", "--name", "big", "-o", out, "--repo", repo("transient"), "--verbose", ...TUNING], {
      env: s3Env(),
    });
    expect(restore.exitCode).toBe(0);
    expect(restore.stdout).toContain(`restored big ${id}`);
    expect(proxy.injected).toHaveLength(4);
    expect(restore.stderr).toContain("resuming the download");
    // It came down in 4 parts (src/storage/s3/download.ts): three ranges besides the first GET's.
    const partEnds = proxy.requests.map((r) => /^GET .*\.sqlite\.gz bytes=\d+-(\d+)$/.exec(r)?.[1]).filter((end) => end !== undefined);
    expect(new Set(partEnds).size).toBeGreaterThanOrEqual(3);
    expect(inspectBank(out)).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE });
  });
});

describe("round trips", () => {
  test("a backup lists its name once before the snapshot, and a start-up restore asks for the listing, the manifest and the data, nothing more", async () => {
    proxy.clear();
    const small = join(tmpDir("round-trips"), "app.db");
    createBankDb(small);
    const url = repo("round-trips");
    const backup = await runCli(["backup", small, "--name", "app", "--repo", url, "--json"], { env: s3Env() });
    expect(backup.exitCode, backup.stderr).toBe(0);
    const { id } = JSON.parse(backup.stdout);
    // Its guards share one listing; nothing checks the bucket besides it.
    expect(proxy.requests.filter((r) => on.list(r))).toEqual([expect.stringContaining("prefix=round-trips%2Fapp%2F")]);
    proxy.clear();
    const out = join(tmpDir("round-trips"), "restored.db");
    const restore = await runCli(["restore", "--name", "app", "-o", out, "--if-missing", "--repo", url], { env: s3Env() });
    expect(restore.exitCode, restore.stderr).toBe(0);
    // The data's GET is begun while the manifest is read: either may be asked for first.
    const asked = proxy.requests.map((r) =>
      on.list(r)
        ? `LIST ${new URL(r.split(" ")[1]!, "http://x").searchParams.get("prefix")}`
        : r.replace(/^(\w+) .*\//, "$1 ").replace(id, "ID"),
    );
    expect(asked.sort()).toEqual(["GET ID.json", "GET ID.sqlite.gz", "LIST round-trips/app/"]);
    expect(inspectBank(out).integrity).toBe("ok");
  });
});

describe("persistent faults", () => {
  test("a backup whose parts always fail exits 10: nothing listed, no upload left, no temp files", async () => {
    proxy.clear();
    proxy.add({ method: "PUT", match: on.partUpload, fault: { kind: "status", status: 503 }, times: Infinity });
    const tmp = tmpDir("t2");
    const r = await runCli(["backup", db, "--repo", repo("persistent"), "--tmp-dir", tmp, ...TUNING], { env: s3Env() });
    expect(r.exitCode).toBe(10);
    expect(
      r.stderr
        .trimEnd()
        .split("\n")
        .filter((l) => l.startsWith("sqlite-vault:")),
    ).toHaveLength(1);
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
      const proc = spawnCli(
        ["cron", target, "--name", "big", "--repo", repo(prefix), "--restore-if-missing", "--timeout", "60s", "--exec", `touch ${marker}`],
        { env: s3Env() },
      );
      const deadline = Date.now() + 20_000;
      while (proxy.injected.length === 0 && Date.now() < deadline) await Bun.sleep(20);
      expect(proxy.injected).toHaveLength(1); // the download is being held
      proc.kill(signal);
      const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
      expect(code).toBe(130);
      expect(
        stderr
          .trimEnd()
          .split("\n")
          .filter((l) => l.startsWith("sqlite-vault: ")),
      ).toEqual([`sqlite-vault: interrupted by ${signal}; nothing was left half-written`]);
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

describe("answers that are not what was asked for", () => {
  let small: string;
  beforeAll(() => {
    small = join(tmpDir("answers"), "small.db");
    createBankDb(small);
  });
  const html = () => ({ status: 200, body: "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>", contentType: "text/html" });
  const QUICK = ["--timeout", "5s", "--retries", "2"];

  test("a listing that repeats every entry: prune --keep-last 3 keeps 3 of 5 backups", async () => {
    proxy.clear();
    for (let day = 1; day <= 5; day++)
      expect(
        (
          await runCli(["backup", small, "--repo", repo("dup"), ...QUICK], {
            env: s3Env({ SQLITE_VAULT_NOW: `2026-01-0${day}T00:00:00Z` }),
          })
        ).exitCode,
      ).toBe(0);
    proxy.add(listings.repeatingEntries());
    const prune = await runCli(["prune", "--repo", repo("dup"), "--keep-last", "3", "--json", ...QUICK], {
      env: s3Env({ SQLITE_VAULT_NOW: "2026-01-06T00:00:00Z" }),
    });
    expect(proxy.injected.length).toBeGreaterThan(0);
    proxy.clear();
    expect(prune.exitCode).toBe(0);
    const listed = JSON.parse((await runCli(["list", "--repo", repo("dup"), "--json"], { env: s3Env() })).stdout).backups;
    expect(listed).toHaveLength(3);
  });

  for (const [what, fault] of [
    ["an HTML page", { kind: "rewrite", rewrite: html }],
    ["an <Error> with status 200", { kind: "error-200" }],
  ] as const)
    test(`a listing answered with ${what}: restore --if-missing and cron --restore-if-missing exit 10, never "no backups"`, async () => {
      proxy.clear();
      expect((await runCli(["backup", small, "--repo", repo("not-a-listing"), ...QUICK], { env: s3Env() })).exitCode).toBe(0);
      proxy.add({ method: "GET", match: on.list, times: Infinity, fault });
      const target = join(tmpDir(`not-a-listing-${what.length}`), "small.db");
      const restore = await runCli(["restore", target, "--name", "small", "--if-missing", "--repo", repo("not-a-listing"), ...QUICK], {
        env: s3Env(),
      });
      expect(restore.exitCode).toBe(10);
      expect(restore.stderr).not.toContain("no backups");
      expect(
        restore.stderr
          .trimEnd()
          .split("\n")
          .filter((l) => l.startsWith("sqlite-vault:")),
      ).toHaveLength(1);
      const marker = `${target}.started`;
      const cron = await runCli(
        ["cron", target, "--name", "small", "--restore-if-missing", "--exec", `touch ${marker}`, "--repo", repo("not-a-listing"), ...QUICK],
        { env: s3Env() },
      );
      expect(cron.exitCode).toBe(10);
      expect(existsSync(marker)).toBe(false);
      expect(existsSync(target)).toBe(false);
      proxy.clear();
    });

  test("a restore takes the data object's size from its GET (no HEAD), and an answer that states no size is measured as it is read", async () => {
    proxy.clear();
    expect((await runCli(["backup", small, "--repo", repo("sized"), ...QUICK], { env: s3Env() })).exitCode).toBe(0);
    // Every HEAD is recorded (the identity rewrite of its headers); the data GET's answer loses its Content-Length.
    proxy.add({ method: "HEAD", times: Infinity, fault: { kind: "headers", headers: (h) => h } });
    proxy.add({
      method: "GET",
      match: (path) => /\.sqlite\.(gz|zst)$/.test(path.split("?")[0]!),
      times: Infinity,
      fault: { kind: "headers", headers: ({ "content-length": _, ...rest }) => rest },
    });
    const target = join(tmpDir("sized"), "small.db");
    const r = await runCli(["restore", target, "--name", "small", "--repo", repo("sized"), ...QUICK], { env: s3Env() });
    expect(r.stderr).not.toMatch(/\[warn\]|sqlite-vault:/);
    expect(r.exitCode).toBe(0);
    expect(proxy.injected.map((f) => f.split(" ").slice(0, 2).join(" "))).toEqual(["headers GET"]);
    expect(inspectBank(target).total).toBe(ACCOUNTS * INITIAL_BALANCE);
    proxy.clear();
  });

  test("a manifest GET answered 200 with an <Error> exits 10 (a server error), not 4, and --fallback restores nothing older", async () => {
    proxy.clear();
    for (let day = 1; day <= 2; day++)
      expect(
        (
          await runCli(["backup", small, "--repo", repo("error-manifest"), ...QUICK], {
            env: s3Env({ SQLITE_VAULT_NOW: `2026-02-0${day}T00:00:00Z` }),
          })
        ).exitCode,
      ).toBe(0);
    proxy.add({ method: "GET", match: on.object(".json"), times: Infinity, fault: { kind: "error-200" } });
    const target = join(tmpDir("error-manifest"), "small.db");
    const r = await runCli(["restore", target, "--name", "small", "--fallback", "--repo", repo("error-manifest"), ...QUICK], {
      env: s3Env(),
    });
    expect(r.exitCode).toBe(10);
    expect(existsSync(target)).toBe(false);
    proxy.clear();
  });

  test("a listing whose continuation token never changes: list exits 10 at once instead of looping", async () => {
    proxy.clear();
    expect((await runCli(["backup", small, "--repo", repo("loop"), ...QUICK], { env: s3Env() })).exitCode).toBe(0);
    proxy.add(listings.neverEnding());
    const proc = spawnCli(["list", "--repo", repo("loop"), ...QUICK], { env: s3Env() });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    const code = await proc.exited;
    clearTimeout(timer);
    expect(code).toBe(10);
    expect(proxy.injected.length).toBeLessThan(5);
    proxy.clear();
  });
});

describe("signals against a stalled S3 server", () => {
  let small: string;
  beforeAll(() => {
    small = join(tmpDir("signals"), "small.db");
    createBankDb(small);
  });

  async function interrupt(args: string[], signal: NodeJS.Signals, stall: Parameters<FaultProxy["add"]>[0]) {
    proxy.add(stall);
    const proc = spawnCli(args, { env: s3Env() });
    const deadline = Date.now() + 20_000;
    while (proxy.injected.length === 0 && Date.now() < deadline) await Bun.sleep(20);
    expect(proxy.injected.length).toBeGreaterThan(0); // the request is being held
    const sent = performance.now();
    proc.kill(signal);
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    return { code, stderr, seconds: (performance.now() - sent) / 1000 };
  }

  test("SIGTERM while a listing stalls ends restore within seconds with 130", async () => {
    proxy.clear();
    expect((await runCli(["backup", small, "--repo", repo("stall"), ...TUNING], { env: s3Env() })).exitCode).toBe(0);
    const target = join(tmpDir("stall-list"), "small.db");
    const r = await interrupt(["restore", target, "--name", "small", "--repo", repo("stall"), "--timeout", "60s"], "SIGTERM", {
      method: "GET",
      match: on.list,
      fault: { kind: "delay", delayMs: 30_000 },
    });
    expect(r.code).toBe(130);
    expect(r.seconds).toBeLessThan(3);
    expect(readdirSync(join(target, ".."))).toEqual([]);
    proxy.clear();
  });

  test("SIGTERM while the stored size is confirmed (HEAD stalls) ends backup within seconds with 130; nothing is listed", async () => {
    proxy.clear();
    const tmp = tmpDir("stall-head");
    const r = await interrupt(["backup", small, "--repo", repo("stall-head"), "--tmp-dir", tmp, "--timeout", "60s"], "SIGTERM", {
      method: "HEAD",
      fault: { kind: "delay", delayMs: 30_000 },
    });
    expect(r.code).toBe(130);
    expect(r.seconds).toBeLessThan(3);
    expect(readdirSync(tmp)).toEqual([]);
    proxy.clear();
    expect(JSON.parse((await runCli(["list", "--repo", repo("stall-head"), "--json"], { env: s3Env() })).stdout).backups).toEqual([]);
  });

  test("SIGHUP (a closed terminal) during a restore's download exits 130 and leaves no temp file", async () => {
    proxy.clear();
    expect((await runCli(["backup", small, "--repo", repo("hup"), ...TUNING], { env: s3Env() })).exitCode).toBe(0);
    const target = join(tmpDir("hup"), "small.db");
    const r = await interrupt(["restore", target, "--name", "small", "--repo", repo("hup"), "--timeout", "60s", "--verbose"], "SIGHUP", {
      method: "GET",
      match: on.object(".sqlite.gz"),
      fault: { kind: "delay", delayMs: 30_000 },
    });
    expect(r.code).toBe(130);
    expect(r.stderr).toContain("interrupted by SIGHUP");
    // Even with --verbose, an interruption is its one line: no stack of the signal handler.
    expect(r.stderr.trim().split("\n").at(-1)).toBe("sqlite-vault: interrupted by SIGHUP; nothing was left half-written");
    expect(r.stderr).not.toContain("    at ");
    expect(readdirSync(join(target, ".."))).toEqual([]);
    proxy.clear();
  });

  /** Two backups of `small` under `prefix` (their ids), and a rule that holds every DELETE of the older one's objects. */
  async function twoBackupsAndStalledPrune(prefix: string): Promise<string[]> {
    proxy.clear();
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const b = await runCli(["backup", small, "--repo", repo(prefix), "--json", ...TUNING], { env: s3Env() });
      expect(b.exitCode, b.stderr).toBe(0);
      ids.push(JSON.parse(b.stdout).id);
    }
    proxy.add({ method: "DELETE", match: (path) => path.includes(ids[0]!), fault: { kind: "delay", delayMs: 30_000 }, times: Infinity });
    return ids;
  }

  test("a shutdown timeout during the final backup's prune: the backup is stored and counts as backed up (exit 0), the prune as failed", async () => {
    await twoBackupsAndStalledPrune("cut-prune-cron");
    const r = await runCli(
      [
        "cron",
        small,
        "--repo",
        repo("cut-prune-cron"),
        "--keep-last",
        "1",
        "--shutdown-timeout",
        "5s",
        "--exec",
        "true",
        "--json",
        ...TUNING,
      ],
      { env: s3Env() },
    );
    expect(proxy.injected.length, r.stderr).toBeGreaterThan(0); // the prune was held
    expect(r.exitCode, r.stderr).toBe(0);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    const done = events.find((e) => e.event === "backup-done");
    expect(done, r.stdout).toBeDefined();
    expect(events.some((e) => e.event === "backup-failed")).toBe(false);
    expect(events.find((e) => e.event === "stopped")).toMatchObject({ backedUp: ["small"], notBackedUp: [] });
    expect(done.pruneError).toContain("interrupted by shutdown timeout");
    proxy.clear();
    const listed = JSON.parse((await runCli(["list", "--repo", repo("cut-prune-cron"), "--json"], { env: s3Env() })).stdout).backups;
    expect(listed[0].id).toBe(done.id);
  });

  test("SIGTERM during backup's prune: the backup is stored and reported, the prune failed (exit 3), not 'nothing was done'", async () => {
    const [first, second] = await twoBackupsAndStalledPrune("cut-prune-backup");
    const r = await interrupt(
      ["backup", small, "--repo", repo("cut-prune-backup"), "--keep-last", "1", ...TUNING],
      "SIGTERM",
      { match: () => false, fault: { kind: "refuse" } }, // the prune's DELETE is held by the rule above
    );
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toContain("succeeded, but pruning failed: interrupted by SIGTERM");
    const listed = JSON.parse((await runCli(["list", "--repo", repo("cut-prune-backup"), "--json"], { env: s3Env() })).stdout).backups;
    // The prune removed the second backup, then was held on the first: the new one is listed first.
    expect(listed.map((b: { id: string }) => b.id).slice(1)).toEqual([first]);
    expect(listed[0].id > second!).toBe(true);
  });

  test("--deadline during the check after the commit: the backup stays stored and is reported so (exit 0, a warning), not 'stopped, nothing done'", async () => {
    proxy.clear();
    expect((await runCli(["backup", small, "--repo", repo("cut-check"), ...TUNING], { env: s3Env() })).exitCode).toBe(0);
    // The second backup's second listing is the one after its commit.
    proxy.add({ method: "GET", match: on.list, skip: 1, fault: { kind: "delay", delayMs: 30_000 } });
    const r = await runCli(["backup", small, "--repo", repo("cut-check"), "--deadline", "4s", "--timeout", "60s", "--json"], {
      env: s3Env(),
    });
    expect(proxy.injected.length, r.stderr).toBe(1);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.warnings).toEqual([
      `backup ${out.id} of small is stored; whether another file's backups took the name meanwhile was not checked: it was cut short`,
    ]);
    proxy.clear();
    const listed = JSON.parse((await runCli(["list", "--repo", repo("cut-check"), "--json"], { env: s3Env() })).stdout).backups;
    expect(listed[0].id).toBe(out.id);
  });

  // The process catches these from the first lines of its code, before the command loads: a signal
  // sent as soon as it does (seen in /proc) is remembered and ends the command with 130.
  for (const [signal, bit] of [
    ["SIGTERM", 15],
    ["SIGHUP", 1],
  ] as const)
    test(`${signal} right after the start exits 130, not ${128 + bit}`, async () => {
      for (let run = 0; run < 3; run++) {
        const proc = Bun.spawn([ensureBinary(), "list", "--repo", repo("early")], {
          env: { ...process.env, ...s3Env() },
          stdout: "ignore",
          stderr: "pipe",
        });
        const deadline = Date.now() + 5000;
        while (!catches(proc.pid, bit) && proc.exitCode === null && Date.now() < deadline) await Bun.sleep(1);
        proc.kill(signal);
        expect(await proc.exited).toBe(130);
        expect(await new Response(proc.stderr).text()).toContain(`interrupted by ${signal}`);
      }
    });
});

/** Whether a process has a handler for signal number `bit` (its SigCgt mask in /proc). */
function catches(pid: number, bit: number): boolean {
  try {
    const mask = /SigCgt:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return mask !== undefined && (BigInt(`0x${mask}`) & (1n << BigInt(bit - 1))) !== 0n;
  } catch {
    return false;
  }
}
