/**
 * cron through the compiled binary against the real S3 server: the startup restore before the
 * application starts, scheduled backups, /health and /metrics, healthcheck pings in order, and a
 * SIGTERM that ends in a final backup holding the application's last write and the child's exit code.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBankDb, removeTempDirs, tempDir } from "../helpers/db.ts";
import { assertNoSecrets, ROOT, runCli, spawnCli } from "../helpers/cli.ts";
import { createTestBucket, s3Env, s3RepoUrl } from "../helpers/s3.ts";

setDefaultTimeout(120_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
const pings: string[] = [];
let pingServer: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  bucket = await createTestBucket("cron");
  pingServer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      pings.push(`${request.method} ${new URL(request.url).pathname} ${await request.text()}`);
      return new Response("OK");
    },
  });
});
/** Daemons a failed test may have left running. */
const running: { kill(signal?: NodeJS.Signals | number): void }[] = [];

afterAll(async () => {
  for (const proc of running) proc.kill("SIGKILL");
  pingServer?.stop(true);
  await bucket?.cleanup();
  removeTempDirs();
});

/** Read a process's stream line by line into `lines`, as it arrives. */
function collectLines(stream: ReadableStream<Uint8Array>, lines: string[]): Promise<void> {
  return (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
    }
    if (rest) lines.push(rest);
  })();
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

const events = (lines: string[]) =>
  lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { event: string; [k: string]: unknown });

describe("cron", () => {
  test("restore on start, then the app; scheduled backups; SIGTERM gives a final backup with the last write and the app's exit code", async () => {
    const dir = tempDir("cron-app");
    const db = join(dir, "app.db");
    createBankDb(db, { fillerRows: 100 });
    const setup = new Database(db);
    setup.run("CREATE TABLE log (id INTEGER PRIMARY KEY, what TEXT)");
    setup.run("INSERT INTO log (what) VALUES ('from-backup')");
    setup.close();
    const repo = s3RepoUrl(bucket.bucket, "cron-app");
    expect((await runCli(["backup", db, "--repo", repo], { env: s3Env() })).exitCode).toBe(0);
    rmSync(db);
    for (const suffix of ["-wal", "-shm"]) rmSync(db + suffix, { force: true });

    const config = join(dir, "sqlite-vault.yml");
    writeFileSync(
      config,
      [
        `repo: "${repo}"`,
        'schedule: "@every 1s"',
        "retention:",
        "  keep-last: 20",
        `healthcheck-url: "http://127.0.0.1:${pingServer.port}/hc"`,
        "databases:",
        "  - path: ./app.db",
      ].join("\n"),
    );
    pings.length = 0;
    const port = 20000 + Math.floor(Math.random() * 20000);
    const proc = spawnCli(
      [
        "cron",
        "--config",
        config,
        "--restore-if-missing",
        "--exec",
        `${process.execPath} ${join(ROOT, "test", "helpers", "app.ts")} ${db}`,
        "--listen",
        `127.0.0.1:${port}`,
        "--json",
      ],
      {
        env: s3Env(),
      },
    );
    // --json: the events on stdout, one object a line, and the application's stdout on stderr
    const out: string[] = [];
    const app: string[] = [];
    const reading = Promise.all([collectLines(proc.stdout, out), collectLines(proc.stderr, app)]);
    running.push(proc);

    await waitFor("the app to start", () => app.some((l) => l.startsWith("app:")));
    expect(app[0]).toBe("app: started with from-backup"); // the restore came first
    const startup = events(out).map((e) => e.event);
    expect(startup.indexOf("restored")).toBeGreaterThanOrEqual(0);
    expect(startup.indexOf("restored")).toBeLessThan(startup.indexOf("exec-started"));

    await waitFor("two scheduled backups", () => events(out).filter((e) => e.event === "backup-done").length >= 2);
    const done = events(out).find((e) => e.event === "backup-done")!;
    expect(done).toMatchObject({ database: "app" });
    expect(typeof done.id).toBe("string");
    expect(done.storedBytes).toBeGreaterThan(0);

    const health = await fetch(`http://127.0.0.1:${port}/health`);
    expect(health.status).toBe(200);
    const body = (await health.json()) as {
      ok: boolean;
      databases: { name: string; backupCount: number; restoredOnStartup: boolean; lastBackupAt: string; nextScheduledAt: string }[];
    };
    expect(body.ok).toBe(true);
    expect(body.databases[0]).toMatchObject({ name: "app", restoredOnStartup: true });
    expect(body.databases[0]!.backupCount).toBeGreaterThanOrEqual(2);
    expect(Date.parse(body.databases[0]!.nextScheduledAt)).toBeGreaterThan(Date.parse(body.databases[0]!.lastBackupAt));
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const successes = (text: string) => Number(/sqlite_vault_backups_total\{database="app",result="success"\} (\d+)/.exec(text)![1]);
    expect(successes(metrics)).toBeGreaterThanOrEqual(2);
    // both change after the next run
    const seen = events(out).filter((e) => e.event === "backup-done").length;
    await waitFor("one more backup", () => events(out).filter((e) => e.event === "backup-done").length > seen);
    expect(successes(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())).toBeGreaterThan(successes(metrics));
    const later = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as typeof body;
    expect(later.databases[0]!.backupCount).toBeGreaterThan(body.databases[0]!.backupCount);
    expect(later.databases[0]!.lastBackupAt > body.databases[0]!.lastBackupAt).toBe(true);
    // nothing the daemon says or sends carries a secret
    assertNoSecrets(JSON.stringify(later) + metrics + pings.join("\n"), ["cron"]);
    expect(metrics).toContain('sqlite_vault_restore_duration_seconds_count{database="app"} 1');
    expect(metrics).toContain("# TYPE sqlite_vault_backup_duration_seconds histogram");

    // the pings come in pairs: start, then success
    const kinds = pings.map((p) => p.split(" ")[1]);
    expect(kinds.slice(0, 4)).toEqual(["/hc/start", "/hc", "/hc/start", "/hc"]);
    expect(pings[1]).toContain("backup of app");

    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(7);
    await reading;
    expect(app).toContain("app: stopped after the last write");
    expect(out.length).toBeGreaterThan(5);
    for (const line of out) expect(() => JSON.parse(line), line).not.toThrow();
    const final = events(out);
    expect(final.map((e) => e.event)).toContain("exec-exited");
    const stopped = final.find((e) => e.event === "stopped")!;
    expect(stopped).toMatchObject({ backedUp: ["app"], notBackedUp: [] });

    const restored = join(dir, "after.db");
    expect((await runCli(["restore", "--name", "app", "-o", restored, "--repo", repo], { env: s3Env() })).exitCode).toBe(0);
    const check = new Database(restored, { readonly: true });
    expect((check.query("SELECT what FROM log ORDER BY id DESC LIMIT 1").get() as { what: string }).what).toBe("last-write");
    check.close();
  });

  test("a failing backup turns /health to 503 and pings /fail; an unreachable repository is fatal at startup", async () => {
    const dir = tempDir("cron-fail");
    const bad = join(dir, "broken.db");
    writeFileSync(bad, "this is not a database ".repeat(20));
    pings.length = 0;
    const port = 20000 + Math.floor(Math.random() * 20000);
    const proc = spawnCli(
      [
        "cron",
        bad,
        "--repo",
        join(dir, "repo"),
        "--schedule",
        "@every 1s",
        "--listen",
        `127.0.0.1:${port}`,
        "--healthcheck-url",
        `http://127.0.0.1:${pingServer.port}/hc2`,
        "--shutdown-timeout",
        "5s",
      ],
      {},
    );
    const err: string[] = [];
    const reading = collectLines(proc.stderr, err);
    running.push(proc);
    await waitFor("a failed run", () => err.some((l) => l.includes("backup-failed")));
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    expect(health.status).toBe(503);
    const body = (await health.json()) as { databases: { lastError: string }[] };
    expect(body.databases[0]!.lastError).toContain("not a SQLite database");
    await waitFor("the fail ping", () => pings.some((p) => p.startsWith("POST /hc2/fail")));
    expect(pings.filter((p) => p.includes("/hc2"))[0]).toStartWith("POST /hc2/start");
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(3); // the final backup failed too
    await reading;
    expect(err.some((l) => l.includes("stopped") && l.includes("broken"))).toBe(true);

    const unreachable = await runCli(["cron", bad, "--repo", "s3://some-bucket/x?endpoint=http://127.0.0.1:9", "--retries", "0"], {
      env: s3Env(),
    });
    expect(unreachable.exitCode).toBe(10);
    expect(unreachable.stderr).toContain("not usable at startup");
  });

  test("a startup restore that fails is fatal and the app never starts", async () => {
    const dir = tempDir("cron-badrestore");
    const db = join(dir, "app.db");
    createBankDb(db);
    const repo = join(dir, "repo");
    const b = await runCli(["backup", db, "--repo", repo, "--json"]);
    const { dataKey } = JSON.parse(b.stdout);
    writeFileSync(join(repo, dataKey), "damaged");
    rmSync(db);
    rmSync(`${db}-wal`, { force: true });
    rmSync(`${db}-shm`, { force: true });
    const marker = join(dir, "started");
    const r = await runCli(["cron", db, "--repo", repo, "--restore-if-missing", "--exec", `touch ${marker}`]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain("startup restore of app failed");
    expect(r.stderr).toContain(
      `Try: restore the newest sound backup by hand (sqlite-vault restore ${db} --fallback), then start cron again`,
    );
    expect(r.stderr).not.toContain("pass --fallback");
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(db)).toBe(false);
  });

  test("a second signal exits at once", async () => {
    const dir = tempDir("cron-twice");
    const db = join(dir, "app.db");
    createBankDb(db);
    // an application that ignores SIGTERM: the first signal is forwarded and changes nothing
    const proc = spawnCli(["cron", db, "--repo", join(dir, "repo"), "--exec", "sh -c 'trap \"\" TERM; exec sleep 60'", "--json"]);
    const out: string[] = [];
    const reading = collectLines(proc.stdout, out);
    await waitFor("the app to start", () => out.some((l) => l.includes("exec-started")));
    proc.kill("SIGTERM");
    await waitFor("the signal to be forwarded", () => out.some((l) => l.includes("signal-forwarded")));
    const t0 = performance.now();
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(130);
    expect(performance.now() - t0).toBeLessThan(5000);
    await reading;
    expect(out.some((l) => l.includes("exit-now"))).toBe(true);
  });

  test("an application that ignores SIGTERM is killed at the stop timeout, and the final backup follows", async () => {
    const dir = tempDir("cron-stop");
    const db = join(dir, "app.db");
    createBankDb(db);
    const repo = join(dir, "repo");
    const ignoresTerm = "sh -c 'trap \"\" TERM; echo ready; while :; do sleep 0.1; done'";
    const stop = async (args: string[], env: Record<string, string> = {}, cwd?: string) => {
      const proc = spawnCli(["cron", ...args, "--repo", repo, "--exec", ignoresTerm, "--json"], { env, cwd });
      running.push(proc);
      const out: string[] = [];
      const app: string[] = [];
      const reading = Promise.all([collectLines(proc.stdout, out), collectLines(proc.stderr, app)]);
      await waitFor("the app to ignore TERM", () => app.includes("ready")); // its stdout, on stderr with --json
      const t0 = performance.now();
      proc.kill("SIGTERM"); // one signal only
      const code = await proc.exited;
      await reading;
      return { code, seconds: (performance.now() - t0) / 1000, events: events(out) };
    };
    const flag = await stop([db, "--stop-timeout", "1s"]);
    expect(flag.code).toBe(137); // the application's status: killed by SIGKILL, as a shell reports it
    expect(flag.seconds).toBeGreaterThan(0.9);
    expect(flag.seconds).toBeLessThan(15);
    expect(flag.events.map((e) => e.event)).toEqual(
      expect.arrayContaining(["signal-forwarded", "exec-killed", "exec-exited", "backup-done", "stopped"]),
    );
    expect(flag.events.find((e) => e.event === "exec-killed")).toMatchObject({
      signal: "SIGKILL",
      reason: "still running 1s after SIGTERM",
    });
    expect(flag.events.find((e) => e.event === "stopped")).toMatchObject({ backedUp: ["app"], notBackedUp: [] });
    const names = flag.events.map((e) => e.event);
    expect(names.indexOf("exec-killed")).toBeLessThan(names.lastIndexOf("backup-done"));

    const env = await stop([db], { SQLITE_VAULT_STOP_TIMEOUT: "1s" });
    expect(env.code).toBe(137);
    expect(env.events.find((e) => e.event === "exec-killed")).toMatchObject({ reason: "still running 1s after SIGTERM" });
    writeFileSync(join(dir, "sqlite-vault.yml"), 'stop-timeout: "2s"\ndatabases:\n  - path: ./app.db\n');
    const file = await stop([], {}, dir);
    expect(file.code).toBe(137);
    expect(file.events.find((e) => e.event === "exec-killed")).toMatchObject({ reason: "still running 2s after SIGTERM" });
    expect(file.events.find((e) => e.event === "stopped")).toMatchObject({ backedUp: ["app"] });

    const bad = await runCli(["cron", db, "--repo", repo, "--exec", "true", "--stop-timeout", "5m"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("--stop-timeout 5m reads as months");
    writeFileSync(join(dir, "per-db.yml"), 'databases:\n  - path: ./app.db\n    stop-timeout: "2s"\n');
    const perDb = await runCli(["cron", "--config", join(dir, "per-db.yml"), "--exec", "true"]);
    expect(perDb.exitCode).toBe(2);
    expect(perDb.stderr).toContain("stop-timeout is not a known setting");
  });

  test("a database restored on startup onto a new path (a rebuilt machine) goes on backing up under its name", async () => {
    const dir = tempDir("cron-newpath");
    const repo = join(dir, "repo");
    mkdirSync(join(dir, "old"));
    mkdirSync(join(dir, "new"));
    const [before, after] = [join(dir, "old", "app.db"), join(dir, "new", "app.db")];
    createBankDb(before);
    expect((await runCli(["backup", before, "--repo", repo])).exitCode).toBe(0);
    const r = await runCli(["cron", after, "--repo", repo, "--restore-if-missing", "--exec", "true"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(" restored ");
    expect(r.stderr).toContain(" backup-done ");
    const list = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout);
    const sources = list.backups.map(
      (b: { id: string }) => JSON.parse(readFileSync(join(repo, "app", `${b.id}.json`), "utf8")).source.path,
    );
    expect(sources).toEqual([after, before]);
  });

  test("--quiet prints only what went wrong", async () => {
    const dir = tempDir("cron-quiet");
    const db = join(dir, "app.db");
    createBankDb(db);
    const loud = await runCli(["cron", db, "--repo", join(dir, "repo"), "--exec", "true"]);
    expect(loud.exitCode).toBe(0);
    expect(loud.stderr).toContain(" backup-done ");
    const quiet = await runCli(["cron", db, "--repo", join(dir, "repo"), "--exec", "true", "--quiet"]);
    expect(quiet.exitCode).toBe(0);
    expect(quiet.stderr).toBe("");
    // The final backup fails (the database is gone): that is printed.
    const gone = join(dir, "gone.db");
    createBankDb(gone);
    const failing = await runCli(["cron", gone, "--repo", join(dir, "repo"), "--exec", `rm ${gone}`, "--quiet"]);
    expect(failing.exitCode).toBe(3);
    expect(failing.stderr).toContain(" backup-failed ");
    expect(failing.stderr).not.toContain(" backup-started ");
  });

  test("without a database or a config file, cron (and restore --if-missing) say what they need, with a command line of their own", async () => {
    const dir = tempDir("cron-nodb");
    const cron = await runCli(["cron", "--restore-if-missing", "--exec", "node server.js"], { cwd: dir });
    expect(cron.exitCode).toBe(2);
    expect(cron.stderr).toBe(
      "sqlite-vault: which database? cron needs a database path, or a config file listing databases (--config FILE, ./sqlite-vault.yml or /etc/sqlite-vault.yml)\n" +
        'Try: sqlite-vault cron /var/lib/app/app.db --repo s3://bucket/prefix --restore-if-missing --exec "node server.js"\n',
    );
    const restore = await runCli(["restore", "--if-missing"], { cwd: dir });
    expect(restore.exitCode).toBe(2);
    expect(restore.stderr).toContain("restore needs a database path");
    expect(restore.stderr).toContain("Try: sqlite-vault restore /var/lib/app/app.db");
    const config = join(dir, "sqlite-vault.yml");
    writeFileSync(config, `repo: ${join(dir, "repo")}\n`);
    const empty = await runCli(["cron", "--exec", "true"], { cwd: dir });
    expect(empty.exitCode).toBe(2);
    expect(empty.stderr).toContain(`${config} lists no databases; cron needs a database path`);
    expect(empty.stderr).toContain("Try: sqlite-vault cron /var/lib/app/app.db");
    for (const r of [cron, restore, empty]) expect(r.stderr).not.toContain("sqlite-vault backup");
  });

  test("--json: the events on stdout, one JSON object a line, as its help says; the application's stdout goes to stderr", async () => {
    const dir = tempDir("cron-json");
    const db = join(dir, "app.db");
    createBankDb(db);
    const json = await runCli(["cron", db, "--repo", join(dir, "repo"), "--exec", "echo hello from the app", "--json"]);
    expect(json.exitCode).toBe(0);
    const lines = json.stdout.trimEnd().split("\n");
    const parsed = lines.map((line) => JSON.parse(line) as { event: string; time: string });
    expect(parsed.map((e) => e.event)).toEqual(expect.arrayContaining(["exec-started", "exec-exited", "backup-done", "stopped"]));
    for (const e of parsed) expect(Date.parse(e.time)).toBeGreaterThan(0);
    expect(json.stderr).toBe("hello from the app\n");
    const help = (await runCli(["cron", "--help"])).stdout.replace(/\s+/g, " ");
    expect(help).toContain("--json Events on stdout, one JSON object a line");

    const plain = await runCli(["cron", db, "--repo", join(dir, "repo"), "--exec", "echo hello from the app"]);
    expect(plain.exitCode).toBe(0);
    expect(plain.stdout).toBe("hello from the app\n");
    expect(plain.stderr).toContain(" backup-done ");
  });

  test("an application that cannot start is an error", async () => {
    const dir = tempDir("cron-noexec");
    const db = join(dir, "app.db");
    createBankDb(db);
    const r = await runCli(["cron", db, "--repo", join(dir, "repo"), "--exec", join(dir, "no-such-program")]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("could not start");
    expect(r.stdout).toBe("");
  });
});

describe("one-shot observability", () => {
  test("backup pings start then success (or fail), and writes a metrics file", async () => {
    const dir = tempDir("oneshot");
    const db = join(dir, "app.db");
    createBankDb(db);
    pings.length = 0;
    const metricsFile = join(dir, "vault.prom");
    const ok = await runCli([
      "backup",
      db,
      "--repo",
      join(dir, "repo"),
      "--healthcheck-url",
      `http://127.0.0.1:${pingServer.port}/one`,
      "--metrics-file",
      metricsFile,
    ]);
    expect(ok.exitCode).toBe(0);
    expect(pings.map((p) => p.split(" ")[1])).toEqual(["/one/start", "/one"]);
    const text = await Bun.file(metricsFile).text();
    expect(text).toContain('sqlite_vault_backups_total{database="app",result="success"} 1');
    expect(text).toMatch(/sqlite_vault_last_backup_size_bytes\{database="app"\} \d+/);

    pings.length = 0;
    const failed = await runCli([
      "backup",
      join(dir, "missing.db"),
      "--repo",
      join(dir, "repo"),
      "--healthcheck-url",
      `http://127.0.0.1:${pingServer.port}/one`,
    ]);
    expect(failed.exitCode).toBe(1);
    expect(pings.map((p) => p.split(" ")[1])).toEqual(["/one/start", "/one/fail"]);
    expect(pings[1]).toContain("does not exist");

    const unreachablePing = await runCli(["backup", db, "--repo", join(dir, "repo"), "--healthcheck-url", "http://127.0.0.1:9/hc"]);
    expect(unreachablePing.exitCode).toBe(0); // a ping that fails never fails the backup
    expect(unreachablePing.stderr).toContain("healthcheck ping (start) to 127.0.0.1:9 failed: ECONNREFUSED");
    expect(unreachablePing.stderr).not.toContain("127.0.0.1:9/hc");
  });

  test("a --metrics-file that cannot be written: refused before the backup (exit 2); one that fails after it leaves the backup reported (exit 3)", async () => {
    const dir = tempDir("metrics-fail");
    const db = join(dir, "app.db");
    createBankDb(db);
    const repo = join(dir, "repo");
    const refused = await runCli(["backup", db, "--repo", repo, "--metrics-file", join(dir, "missing", "vault.prom")]);
    expect(refused.exitCode, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`--metrics-file ${join(dir, "missing", "vault.prom")}: ${join(dir, "missing")} is not a directory`);
    expect(existsSync(repo)).toBe(false);
    // The directory goes while the backup runs (removed when the success ping comes, after the backup is stored).
    const metricsDir = join(dir, "textfiles");
    mkdirSync(metricsDir);
    const hook = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request) {
        if (!new URL(request.url).pathname.endsWith("/start")) rmSync(metricsDir, { recursive: true });
        return new Response("OK");
      },
    });
    try {
      const r = await runCli([
        "backup",
        db,
        "--repo",
        repo,
        "--json",
        "--healthcheck-url",
        `http://127.0.0.1:${hook.port}/hc`,
        "--metrics-file",
        join(metricsDir, "vault.prom"),
      ]);
      expect(r.exitCode, r.stderr).toBe(3);
      const out = JSON.parse(r.stdout);
      expect(out.metricsError).toContain(`could not write the metrics file ${join(metricsDir, "vault.prom")}`);
      const listed = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout).backups;
      expect(listed.map((b: { id: string }) => b.id)).toEqual([out.id]);
    } finally {
      hook.stop(true);
    }
  });

  test("cron --exec: the application gets cron's environment without the backup passphrase", async () => {
    const dir = tempDir("exec-env");
    const db = join(dir, "app.db");
    createBankDb(db);
    const seen = join(dir, "env.txt");
    const r = await runCli(["cron", db, "--repo", join(dir, "repo"), "--exec", `sh -c 'env > ${seen}'`], {
      env: { SQLITE_VAULT_PASSPHRASE: "backups-only-secret", AWS_ACCESS_KEY_ID: "the-apps-own" },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const env = readFileSync(seen, "utf8");
    expect(env).not.toContain("backups-only-secret");
    expect(env).toContain("AWS_ACCESS_KEY_ID=the-apps-own");
  });

  test("durations past 24.8 days (a timer's 32-bit limit): @every 4w waits, --deadline 30d and --shutdown-timeout 30d never fire at once", async () => {
    const dir = tempDir("long-timers");
    const db = join(dir, "app.db");
    createBankDb(db);
    const repo = join(dir, "repo");
    const cron = await runCli(["cron", db, "--repo", repo, "--schedule", "@every 4w", "--shutdown-timeout", "30d", "--exec", "sleep 2"]);
    expect(cron.exitCode, cron.stderr).toBe(0);
    expect(cron.stderr.split("\n").filter((l) => l.includes("backup-started"))).toHaveLength(1); // the final one
    const backup = await runCli(["backup", db, "--repo", repo, "--deadline", "30d"]);
    expect(backup.exitCode, backup.stderr).toBe(0);
    expect(backup.stderr).not.toContain("TimeoutOverflowWarning");
  });

  test("status --max-age fails when the newest backup is too old", async () => {
    const dir = tempDir("status");
    const db = join(dir, "app.db");
    createBankDb(db);
    const repo = join(dir, "repo");
    expect(
      (await runCli(["backup", db, "--repo", repo], { env: { SQLITE_VAULT_NOW: new Date(Date.now() - 3 * 3600_000).toISOString() } }))
        .exitCode,
    ).toBe(0);
    const fresh = await runCli(["status", db, "--repo", repo, "--max-age", "4h"]);
    expect(fresh.exitCode).toBe(0);
    expect(fresh.stdout).toContain("app: newest backup");
    const stale = await runCli(["status", db, "--repo", repo, "--max-age", "2h"]);
    expect(stale.exitCode).toBe(1);
    expect(stale.stderr.trim().split("\n")[0]).toMatch(/^sqlite-vault: the newest backup of app is 3h old, older than 2h$/);
    const none = await runCli(["status", "--name", "other", "--repo", repo, "--max-age", "2h"]);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain("no backups of other");
    // "30m" is months in retention; as a freshness limit it would never fail, so it is refused.
    for (const maxAge of ["30m", "1y"]) {
      const months = await runCli(["status", db, "--repo", repo, "--max-age", maxAge]);
      expect(months.exitCode).toBe(2);
      expect(months.stderr).toContain(`--max-age ${maxAge} reads as months or years`);
    }
    expect((await runCli(["status", db, "--repo", repo, "--max-age", "240min"])).exitCode).toBe(0);
  });
});
