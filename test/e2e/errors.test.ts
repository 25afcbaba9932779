/**
 * Every failure a user can cause, through the compiled binary: one clear line on stderr (plus a
 * "Try:" hint), the documented exit code, nothing half-written, nothing listed that is not complete.
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBankDb, holdOpen, tempDir } from "../helpers/db.ts";
import { ensureBinary, ROOT, runCli, spawnCli } from "../helpers/cli.ts";
import { useTestBucket, listUploads, s3Env, s3RepoUrl } from "../helpers/s3.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

const bucket = useTestBucket("e2e-err");

/** Progress lines may come first; the run ends with one error line, maybe one "Try:" line, no stack trace. */
function expectCleanError(stderr: string, message: string | RegExp): void {
  const all = stderr.trimEnd().split("\n");
  const lines = all.slice(
    Math.max(
      0,
      all.findIndex((l) => l.startsWith("sqlite-vault: ")),
    ),
  );
  expect(all.slice(0, all.length - lines.length).every((l) => /^\[(info|warn)\]/.test(l))).toBe(true);
  expect(lines.length).toBeLessThanOrEqual(2);
  expect(lines[0]).toStartWith("sqlite-vault: ");
  expect(lines[0]).toMatch(message);
  if (lines[1]) expect(lines[1]).toStartWith("Try: ");
  expect(stderr).not.toMatch(/\bat .*\.(ts|js):\d+/);
}

function setup(label: string) {
  const dir = tempDir(label);
  const db = join(dir, "app.db");
  createBankDb(db, { fillerRows: 200 });
  return { dir, db, repo: join(dir, "repo") };
}

describe("exit codes", () => {
  test("database missing: exit 1", async () => {
    const { dir, repo } = setup("err-missing");
    const r = await runCli(["backup", join(dir, "nope.db"), "--repo", repo]);
    expect(r.exitCode).toBe(1);
    expectCleanError(r.stderr, /database .*nope\.db does not exist/);
    expect(r.stdout).toBe("");
  });

  test("a database given by a relative path and since deleted is reported missing, not as another file's name", async () => {
    const { dir, repo } = setup("err-relmissing");
    createBankDb(join(dir, "del.db"));
    expect((await runCli(["backup", "del.db", "--repo", repo], { cwd: dir })).exitCode).toBe(0);
    rmSync(join(dir, "del.db"));
    const r = await runCli(["backup", "del.db", "--repo", repo], { cwd: dir });
    expect(r.exitCode).toBe(1);
    expectCleanError(r.stderr, /database .*del\.db does not exist/);
    // The same relative path, present again, is the same database as before.
    createBankDb(join(dir, "del.db"));
    expect((await runCli(["backup", "del.db", "--repo", repo], { cwd: dir })).exitCode).toBe(0);
  });

  test("--check refuses a damaged database (exit 4, nothing stored) and leaves it as it was; a sound one backs up", async () => {
    const { dir, repo } = setup("err-check");
    const damaged = (journalMode: "wal" | "delete") => {
      const path = join(dir, `damaged-${journalMode}.db`);
      createBankDb(path, { journalMode, fillerRows: 2000 });
      const bytes = readFileSync(path);
      const pageSize = bytes.readUInt16BE(16);
      for (const page of [5, 9, 13])
        for (let i = (page - 1) * pageSize + 8; i < (page - 1) * pageSize + 64; i++) bytes[i] = (i * 31) & 0xff;
      writeFileSync(path, bytes);
      return path;
    };
    // Rollback journal (checked on the snapshot's copy) and a checkpointed WAL database (checked in place).
    for (const path of [damaged("delete"), damaged("wal")]) {
      const before = readFileSync(path);
      const ways: [string[], Record<string, string>, string | undefined][] = [
        [["--check"], {}, undefined],
        [[], { SQLITE_VAULT_CHECK: "1" }, undefined],
        [
          ["--config", join(dir, "check.yml")],
          {},
          `repo: ${repo}
check: true
`,
        ],
      ];
      for (const [flags, env, config] of ways) {
        if (config) writeFileSync(join(dir, "check.yml"), config);
        const r = await runCli(["backup", path, "--repo", repo, ...flags], { env });
        expect(r.exitCode, `${flags} ${JSON.stringify(env)}: ${r.stderr}`).toBe(4);
        expectCleanError(r.stderr, /is damaged: PRAGMA quick_check found .* nothing was backed up/);
      }
      expect(readFileSync(path).equals(before)).toBe(true);
      // Without the check it is stored as it is (what verify and restore then refuse).
      expect((await runCli(["backup", path, "--repo", repo, "--no-check"], { env: { SQLITE_VAULT_CHECK: "1" } })).exitCode).toBe(0);
    }
    const list = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout);
    expect(list.backups).toHaveLength(2); // the two --no-check ones only
    // A sound database passes, with its WAL frames not checkpointed yet (checked in place, as read).
    const sound = join(dir, "sound.db");
    createBankDb(sound, { fillerRows: 200 });
    const pending = await holdOpen(sound, ["INSERT INTO transfers (src, dst, amount, at) VALUES (1, 2, 5, 'now')"]);
    try {
      const r = await runCli(["backup", sound, "--repo", repo, "--check", "--json"]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(readFileSync(join(repo, "sound", `${JSON.parse(r.stdout).id}.json`), "utf8")).snapshot.method).toBe("wal-read");
    } finally {
      await pending.stop();
    }
  });

  test("file not a SQLite database: exit 1", async () => {
    const { dir, repo } = setup("err-notdb");
    const path = join(dir, "notes.db");
    writeFileSync(path, "just some text, not a database at all; ".repeat(10));
    const r = await runCli(["backup", path, "--repo", repo]);
    expect(r.exitCode).toBe(1);
    expectCleanError(r.stderr, /is not a SQLite database/);
  });

  test("an empty file (SQLite's empty database, before any table): exit 1, saying so", async () => {
    const { dir, repo } = setup("err-empty");
    const path = join(dir, "new.db");
    writeFileSync(path, "");
    const r = await runCli(["backup", path, "--repo", repo]);
    expect(r.exitCode).toBe(1);
    expectCleanError(r.stderr, `${path} is empty: no database has been written there yet, so there is nothing to back up`);
  });

  test("wrong S3 secret: exit 12, the secret never printed", async () => {
    const { db } = setup("err-auth");
    const env = s3Env({ AWS_SECRET_ACCESS_KEY: "definitely-wrong-secret-4711" });
    const r = await runCli(["backup", db, "--repo", s3RepoUrl(bucket.bucket, "auth")], { env });
    expect(r.exitCode).toBe(12);
    expectCleanError(r.stderr, /S3 refused access/);
    expect(r.stderr + r.stdout).not.toContain("definitely-wrong-secret-4711");
    const json = await runCli(["list", "--repo", s3RepoUrl(bucket.bucket, "auth"), "--json"], { env });
    expect(json.exitCode).toBe(12);
    expect(json.stdout).toBe("");
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "auth", exitCode: 12 } });
  });

  test("bucket missing: exit 10", async () => {
    const { db } = setup("err-bucket");
    const r = await runCli(["backup", db, "--repo", s3RepoUrl("no-such-bucket-here", "x")], { env: s3Env() });
    expect(r.exitCode).toBe(10);
    expectCleanError(r.stderr, /bucket no-such-bucket-here does not exist/);
  });

  test("endpoint refusing connections: exit 10", async () => {
    const { db } = setup("err-refused");
    const r = await runCli(["backup", db, "--repo", "s3://some-bucket/x?endpoint=http://127.0.0.1:9"], { env: s3Env() });
    expect(r.exitCode).toBe(10);
    expectCleanError(r.stderr, /cannot reach S3 endpoint http:\/\/127\.0\.0\.1:9/);
  });

  test("a local repository whose parent directory is missing (a volume not mounted) is not created: exit 10 for backup, restore --if-missing and cron's start-up restore; the embedded default makes its parents", async () => {
    const { dir, db } = setup("err-noparent");
    const repo = join(dir, "mnt", "backups", "repo");
    const target = join(dir, "restored.db");
    for (const args of [
      ["backup", db],
      ["restore", target, "--name", "app", "--if-missing"],
      ["cron", target, "--name", "app", "--restore-if-missing", "--exec", "true"],
    ]) {
      const r = await runCli([...args, "--repo", repo]);
      expect(r.exitCode, `${args[0]}: ${r.stderr}`).toBe(10);
      expectCleanError(r.stderr, `${join(dir, "mnt", "backups")}, the directory that would hold repository ${repo}, does not exist`);
      expect(r.stderr).toContain(`Try: check --repo (a volume not mounted?); if the repository belongs there, create it: mkdir -p ${repo}`);
      expect(existsSync(join(dir, "mnt"))).toBe(false);
      expect(existsSync(target)).toBe(false);
    }
    // With no repository configured, the default under the data directory is made with its parents.
    const data = join(dir, "data-home");
    const r = await runCli(["backup", db], { env: { XDG_DATA_HOME: data } });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readdirSync(join(data, "sqlite-vault", "repo"))).toEqual(["app"]);
  });

  test("repository directory missing for list and restore: exit 10", async () => {
    const { dir } = setup("err-norepo");
    const r = await runCli(["list", "--repo", join(dir, "absent")]);
    expect(r.exitCode).toBe(10);
    expectCleanError(r.stderr, /repository directory .* does not exist/);
  });

  test("a regular file given as the repository: exit 10, saying it is not a directory", async () => {
    const { db } = setup("err-filerepo");
    for (const args of [["list"], ["backup", db]]) {
      const r = await runCli([...args, "--repo", db]);
      expect(r.exitCode).toBe(10);
      expectCleanError(r.stderr, /repository path .*app\.db is not a directory/);
    }
  });

  test("restore onto a directory or a special file: exit 1, --force, --if-missing or neither, and the directory stays where it was with its files", async () => {
    const { dir, db, repo } = setup("err-dirtarget");
    expect((await runCli(["backup", db, "--repo", repo])).exitCode).toBe(0);
    const data = join(dir, "data");
    mkdirSync(data);
    writeFileSync(join(data, "keep.txt"), "keep");
    for (const [target, kind] of [
      [data, "a directory"],
      ["/dev/null", "a special file"],
    ] as const)
      for (const force of [[], ["--force"], ["--if-missing"]]) {
        const r = await runCli(["restore", "--name", "app", "--output", target, ...force, "--repo", repo]);
        expect(r.exitCode).toBe(1);
        expectCleanError(r.stderr, `${target} is not a regular file (${kind}); refusing to replace it`);
      }
    expect(statSync(data).isDirectory()).toBe(true);
    expect(readFileSync(join(data, "keep.txt"), "utf8")).toBe("keep");
    expect(readdirSync(dir).filter((f) => f.startsWith("data"))).toEqual(["data"]); // nothing moved aside
    expect(statSync("/dev/null").isCharacterDevice()).toBe(true);
  });

  test("a file system error names its path in one line: keygen into a missing directory", async () => {
    const { dir } = setup("err-enoent");
    const target = join(dir, "no-such-dir", "id.txt");
    const r = await runCli(["keygen", "--output", target]);
    expect(r.exitCode).toBe(1);
    expectCleanError(r.stderr, `no such file or directory: ${target}`);
  });

  test("no backups to restore: exit 1", async () => {
    const { dir, db, repo } = setup("err-nobackup");
    expect((await runCli(["backup", db, "--repo", repo])).exitCode).toBe(0);
    const r = await runCli(["restore", "--name", "other", "--output", join(dir, "other.db"), "--repo", repo]);
    expect(r.exitCode).toBe(1);
    expectCleanError(r.stderr, /no backup of other in/);
    expect(existsSync(join(dir, "other.db"))).toBe(false);
  });

  test("a name with no backups is an empty list and exit 0", async () => {
    const { db, repo } = setup("err-emptylist");
    expect((await runCli(["backup", db, "--repo", repo])).exitCode).toBe(0);
    const r = await runCli(["list", "--name", "never-backed-up", "--repo", repo, "--json"]);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: "never-backed-up", backups: [] });
    const human = await runCli(["list", "--name", "never-backed-up", "--repo", repo]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain("no backups of never-backed-up");
  });

  test("usage errors: exit 2", async () => {
    for (const args of [
      ["backup"],
      ["backup", "x.db", "--forse"],
      ["restore"],
      ["restore", "x.db", "--latest", "--id", "y"],
      ["frobnicate"],
      ["backup", "x.db", "--compression", "lz4"],
    ]) {
      const r = await runCli(args);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toStartWith("sqlite-vault: ");
    }
  });

  test("--json errors: stdout empty, stderr one JSON object", async () => {
    const { dir, repo } = setup("err-json");
    const r = await runCli(["backup", join(dir, "nope.db"), "--repo", repo, "--json"]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(JSON.parse(r.stderr)).toMatchObject({ error: { code: "failure", exitCode: 1 } });
  });

  test("--verbose adds the stack trace", async () => {
    const { dir, repo } = setup("err-verbose");
    const r = await runCli(["backup", join(dir, "nope.db"), "--repo", repo, "--verbose"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.split("\n").length).toBeGreaterThan(3);
  });
});

describe("corrupt stored object", () => {
  for (const backend of ["local", "S3"] as const) {
    test(`${backend}: restore refuses with exit 4 and leaves the target untouched`, async () => {
      const { dir, db, repo: localRepo } = setup(`err-corrupt-${backend}`);
      const repo = backend === "local" ? localRepo : s3RepoUrl(bucket.bucket, `corrupt-${Math.random().toString(36).slice(2)}`);
      const env = backend === "local" ? {} : s3Env();
      const b = await runCli(["backup", db, "--repo", repo, "--json"], { env });
      expect(b.exitCode).toBe(0);
      const { dataKey } = JSON.parse(b.stdout);
      // Flip one byte in the middle of the stored object.
      if (backend === "local") {
        const path = join(localRepo, dataKey);
        const bytes = readFileSync(path);
        bytes[bytes.length >> 1]! ^= 0xff;
        writeFileSync(path, bytes);
      } else {
        const { adminClient } = await import("../helpers/s3.ts");
        const client = adminClient(bucket.bucket);
        const key = `${new URL(repo).pathname.slice(1)}/${dataKey}`;
        const bytes = new Uint8Array(await (await client.getObject(key)).arrayBuffer());
        bytes[bytes.length >> 1]! ^= 0xff;
        await client.putObject(key, bytes);
      }
      const target = join(dir, "restored.db");
      const r = await runCli(["restore", "--name", "app", "-o", target, "--repo", repo], { env });
      expect(r.exitCode).toBe(4);
      expectCleanError(r.stderr, /is corrupt/);
      expect(existsSync(target)).toBe(false);

      // An existing target stays byte-identical even with --force.
      const original = readFileSync(db);
      const forced = await runCli(["restore", db, "--repo", repo, "--force"], { env });
      expect(forced.exitCode).toBe(4);
      const after = readFileSync(db);
      if (!after.equals(original)) {
        const at = original.findIndex((b, i) => after[i] !== b);
        throw new Error(`target changed: ${original.length} -> ${after.length} bytes, first difference at ${at}; stderr: ${forced.stderr}`);
      }
      expect(readdirSync(dir).filter((f) => f.includes("replaced") || f.startsWith("."))).toEqual([]);
    });
  }
});

describe("interruption and locking", () => {
  for (const [backend, signal] of [
    ["local", "SIGINT"],
    ["S3", "SIGINT"],
    ["local", "SIGTERM"],
  ] as const) {
    test(`${backend}: ${signal} during backup exits 130, removes the temp files and lists nothing`, async () => {
      const dir = tempDir(`err-sigint-${backend}`);
      const db = join(dir, "big.db");
      createBankDb(db, { fillerRows: 60_000 });
      const tmp = join(dir, "tmp");
      const { mkdirSync } = await import("node:fs");
      mkdirSync(tmp);
      const prefix = `sigint-${Math.random().toString(36).slice(2)}`;
      const repo = backend === "local" ? join(dir, "repo") : s3RepoUrl(bucket.bucket, prefix);
      const env = backend === "local" ? {} : s3Env();
      const proc = spawnCli(["backup", db, "--repo", repo, "--tmp-dir", tmp], { env });
      const deadline = Date.now() + 20_000;
      while (readdirSync(tmp).length === 0 && Date.now() < deadline) await Bun.sleep(2);
      expect(readdirSync(tmp).length).toBe(1); // the snapshot is being made
      proc.kill(signal);
      const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
      expect(code).toBe(130);
      expect(stderr).toContain("interrupted");
      expect(readdirSync(tmp)).toEqual([]);
      const list = await runCli(["list", "--repo", repo, "--json"], { env });
      expect(list.exitCode).toBe(0);
      expect(JSON.parse(list.stdout).backups).toEqual([]);
      if (backend === "S3") expect((await listUploads(bucket.bucket)).filter((u) => u.key.startsWith(prefix))).toEqual([]);
    });
  }

  test("a second backup of the same database exits 11; a lock left by a killed process does not block", async () => {
    const { db, repo } = setup("err-lock");
    const holderScript = `import { acquireLock } from ${JSON.stringify(join(ROOT, "src", "local", "lock.ts"))}; acquireLock(${JSON.stringify(db)}, "backup"); console.log("held"); await Bun.sleep(60000);`;
    const holder = Bun.spawn([process.execPath, "-e", holderScript], { stdout: "pipe" });
    const reader = holder.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("held");

    const blocked = await runCli(["backup", db, "--repo", repo]);
    expect(blocked.exitCode).toBe(11);
    expectCleanError(blocked.stderr, /another backup of .* is running/);

    holder.kill("SIGKILL"); // the lock file stays behind
    await holder.exited;
    const after = await runCli(["backup", db, "--repo", repo]);
    expect(after.exitCode).toBe(0);
  });

  test('a WAL database whose -shm this user cannot create gets one line saying so, not SQLite\'s "readonly database"', async () => {
    // A backup user with read access only: the database's directory is not writable, and the
    // application is not running (no -wal, no -shm). Root writes anywhere, so root runs it as nobody.
    const dir = tempDir("err-rowal");
    chmodSync(dir, 0o755);
    const dbDir = join(dir, "data");
    mkdirSync(dbDir);
    const db = join(dbDir, "app.db");
    createBankDb(db);
    expect(existsSync(`${db}-shm`)).toBe(false);
    chmodSync(db, 0o644);
    chmodSync(dbDir, 0o555);
    const repo = join(dir, "repo");
    const tmp = join(dir, "tmp");
    for (const writable of [repo, tmp]) {
      mkdirSync(writable);
      chmodSync(writable, 0o1777);
    }
    const asOther = process.getuid!() === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    const proc = Bun.spawn([...asOther, ensureBinary(), "backup", db, "--repo", repo], {
      cwd: dir,
      env: { ...process.env, HOME: dir, TMPDIR: tmp },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stderr, exitCode] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    chmodSync(dbDir, 0o755);
    expect(exitCode).toBe(1);
    expectCleanError(
      stderr,
      `cannot snapshot ${db}: it is in WAL mode, and reading it takes its -shm file, which does not exist and which this user cannot create in ${dbDir}`,
    );
  });

  test("a hot journal (a writer killed mid-transaction) is reported in one line, and left for a writer to roll back", async () => {
    const dir = tempDir("err-hot");
    const db = join(dir, "app.db");
    const repo = join(dir, "repo");
    // A rollback-journal database whose writer dies with a big transaction half written.
    const writer = Bun.spawnSync([
      process.execPath,
      "-e",
      `
      const { Database } = require("bun:sqlite");
      const db = new Database(${JSON.stringify(db)});
      db.run("PRAGMA journal_mode = DELETE"); db.run("PRAGMA cache_size = 10");
      db.run("CREATE TABLE t (a BLOB)");
      db.transaction(() => { for (let i = 0; i < 3000; i++) db.run("INSERT INTO t VALUES (randomblob(500))"); })();
      db.run("BEGIN"); db.run("UPDATE t SET a = randomblob(500)");
      process.kill(process.pid, "SIGKILL");`,
    ]);
    expect(writer.signalCode).toBe("SIGKILL");
    expect(statSync(`${db}-journal`).size).toBeGreaterThan(0);
    const before = [readFileSync(db), readFileSync(`${db}-journal`)];
    const r = await runCli(["backup", db, "--repo", repo]);
    expect(r.exitCode).toBe(1);
    expectCleanError(r.stderr, `cannot snapshot ${db}: it has a hot journal`);
    expect(r.stderr).toContain(`Try: let the application open it, or run: sqlite3 '${db}' 'PRAGMA quick_check'; then back up`);
    // Backups never write to the database: the journal is still there for a writer to roll back.
    expect([readFileSync(db), readFileSync(`${db}-journal`)]).toEqual(before);
    expect(Bun.spawnSync(["sqlite3", db, "PRAGMA quick_check"]).stdout.toString().trim()).toBe("ok");
    expect((await runCli(["backup", db, "--repo", repo])).exitCode).toBe(0);
  });

  test("locks live in the user's own directory, mode 0700; one open to others, or not the user's, is refused", async () => {
    const { db, repo } = setup("err-lockdir");
    // Root's are in /run, which no other user can write (another user's are in their own home: see
    // restore-safety.test.ts); both refuse a directory that is not the user's own and private.
    const home = tempDir("lockdir");
    const dir = process.getuid!() === 0 ? "/run/sqlite-vault" : join(home, ".local", "state", "sqlite-vault", "locks");
    const ok = await runCli(["backup", db, "--repo", repo], { env: { HOME: home } });
    expect(ok.exitCode).toBe(0);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(dir).uid).toBe(process.getuid!());
    if (process.getuid!() !== 0) {
      chmodSync(dir, 0o777);
      const open = await runCli(["backup", db, "--repo", repo], { env: { HOME: home } });
      expect(open.exitCode).toBe(1);
      expectCleanError(open.stderr, `the lock directory ${dir} is not a private directory of this user`);
    }
  });
});
