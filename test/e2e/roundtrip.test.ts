/**
 * End to end through the compiled binary: backup, list and restore against both backends, and the
 * recovery path that needs no sqlite-vault at all (gunzip + sqlite3).
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { Database } from "bun:sqlite";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, tempDir } from "../helpers/db.ts";
import { runCli } from "../helpers/cli.ts";
import { useTestBucket, s3Env, s3RepoUrl } from "../helpers/s3.ts";
import { overriding } from "../helpers/repos.ts";
import { runBackup } from "../../src/ops/backup.ts";
import { createContext } from "../../src/context.ts";
import { backupIdTime, parseManifestKey } from "../../src/repo/manifest.ts";
import { openStorage } from "../../src/storage/index.ts";
import type { PutOptions, Storage } from "../../src/storage/types.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

const bucket = useTestBucket("e2e-rt");

const backends = [
  { label: "local directory", repo: () => join(tempDir("e2e-repo"), "repo"), env: () => ({}) },
  { label: "local directory via file://", repo: () => `file://${join(tempDir("e2e-repo"), "repo")}`, env: () => ({}) },
  { label: "S3", repo: () => s3RepoUrl(bucket.bucket, `rt-${Math.random().toString(36).slice(2)}`), env: () => s3Env() },
];

for (const backend of backends) {
  describe(`round trip: ${backend.label}`, () => {
    test("backup, list and restore a database", async () => {
      const dir = tempDir("e2e-rt");
      const db = join(dir, "shop.sqlite3");
      createBankDb(db, { fillerRows: 3000 });
      const repo = backend.repo();
      const env = { ...backend.env(), SQLITE_VAULT_REPO: repo };

      const first = await runCli(["backup", db, "--json"], { env });
      expect(first.stderr).toBe("");
      expect(first.exitCode).toBe(0);
      const backup = JSON.parse(first.stdout);
      expect(backup).toMatchObject({ name: "shop", compression: "gzip" });
      expect(backup.storedBytes).toBeLessThan(backup.databaseBytes);

      const second = await runCli(["backup", db, "--compression", "zstd", "--name", "shop"], { env });
      expect(second.exitCode).toBe(0);
      expect(second.stdout).toContain("backed up shop");

      const list = await runCli(["list", "--json"], { env });
      expect(list.exitCode).toBe(0);
      const listed = JSON.parse(list.stdout);
      expect(listed.backups.map((b: { id: string }) => b.id)).toHaveLength(2);
      expect(listed.backups[1].id).toBe(backup.id); // newest first
      expect(listed.backups[0].compression).toBe("zstd");

      const human = await runCli(["list", db], { env });
      expect(human.stdout).toContain("NAME");
      expect(human.stdout).toContain(backup.id);

      const out = join(dir, "restored.db");
      const restored = await runCli(["restore", "--name", "shop", "--output", out, "--id", backup.id, "--json"], { env });
      expect(restored.exitCode).toBe(0);
      expect(JSON.parse(restored.stdout)).toMatchObject({ action: "restored", id: backup.id, check: "integrity_check" });
      // The header's file format bytes say WAL, as the source's do: the app reopens it in WAL mode.
      expect([...readFileSync(out).subarray(18, 20)]).toEqual([2, 2]);
      expect(inspectBank(out)).toEqual({ total: ACCOUNTS * INITIAL_BALANCE, integrity: "ok", transfers: 0 });
      expect(statSync(out).mode & 0o777).toBe(0o600);
      expect(readdirSync(dir).filter((f) => f.startsWith("."))).toEqual([]);

      // The latest (zstd) backup restores too, with quick_check.
      const out2 = join(dir, "restored2.db");
      const latest = await runCli(["restore", "--name", "shop", "-o", out2, "--quick"], { env });
      expect(latest.exitCode).toBe(0);
      expect(latest.stdout).toContain("quick_check ok");
      expect(inspectBank(out2).integrity).toBe("ok");
    });
  });
}

/** A bank database `app.db` in a new temp dir, backed up once to `repo` beside it. */
async function backedUp(label: string, options: Parameters<typeof createBankDb>[1] = {}) {
  const dir = tempDir(label);
  const repo = join(dir, "repo");
  const db = join(dir, "app.db");
  createBankDb(db, options);
  expect((await runCli(["backup", db, "--repo", repo])).exitCode).toBe(0);
  return { dir, repo, db };
}

/** Root gives files to another user (nobody); anyone else can only own them. */
const OTHER = process.getuid!() === 0 ? 65534 : process.getuid!();

describe("restore into place", () => {
  test("an existing database is never overwritten without --force; with --force it is moved aside", async () => {
    const { repo, db } = await backedUp("e2e-force", { journalMode: "wal" });

    writeFileSync(db, "the current database, different from the backup");
    writeFileSync(`${db}-wal`, "stale wal");
    chmodSync(db, 0o640);
    chownSync(db, OTHER, OTHER);
    const refused = await runCli(["restore", db, "--repo", repo]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain("already exists");
    expect(refused.stderr).toContain("Try: pass --force");
    expect(readFileSync(db, "utf8")).toBe("the current database, different from the backup");

    const forced = await runCli(["restore", db, "--repo", repo, "--force", "--json"]);
    expect(forced.exitCode).toBe(0);
    const result = JSON.parse(forced.stdout);
    const aside = result.replaced[0] as string;
    expect(aside).toStartWith(`${db}.replaced-`);
    expect(readFileSync(aside, "utf8")).toBe("the current database, different from the backup");
    // the sidecars move with it (the -shm was left by the backup's read-only connection)
    expect(result.replaced.slice(1).sort()).toEqual([`${aside}-shm`, `${aside}-wal`]);
    expect(readFileSync(`${aside}-wal`, "utf8")).toBe("stale wal");
    expect(existsSync(`${db}-wal`)).toBe(false);
    expect(inspectBank(db).integrity).toBe("ok");
    expect(statSync(db).mode & 0o777).toBe(0o640); // keeps the mode of the file it replaced
    expect([statSync(db).uid, statSync(db).gid]).toEqual([OTHER, OTHER]); // and its owner
  });

  test("a new database restored by root into an application's directory belongs to the directory's owner", async () => {
    const { dir, repo } = await backedUp("e2e-owner");
    const appDir = join(dir, "srv");
    mkdirSync(appDir);
    chownSync(appDir, OTHER, OTHER);
    const target = join(appDir, "app.db");
    const r = await runCli(["restore", target, "--name", "app", "--repo", repo]);
    expect(r.exitCode).toBe(0);
    expect([statSync(target).uid, statSync(target).gid, statSync(target).mode & 0o777]).toEqual([OTHER, OTHER, 0o600]);
    expect(inspectBank(target).integrity).toBe("ok");
  });

  test("through a symbolic link, backup reads and restore writes the file it leads to; the link stays", async () => {
    // As a container's /app/app.db -> /data/app.db on a volume: renaming over the link would leave
    // the volume's file old and the restored one in the container's own layer.
    const dir = tempDir("e2e-link");
    const repo = join(dir, "repo");
    mkdirSync(join(dir, "data"));
    const real = join(dir, "data", "app.db");
    const link = join(dir, "app.db");
    createBankDb(real);
    symlinkSync("data/app.db", link);
    const backup = await runCli(["backup", link, "--repo", repo, "--json"]);
    expect(backup.exitCode).toBe(0);
    const { id } = JSON.parse(backup.stdout);
    // Read in place (its -shm is beside the real file), not copied through the backup API.
    expect(JSON.parse(readFileSync(join(repo, "app", `${id}.json`), "utf8")).snapshot.method).toBe("file-read");

    writeFileSync(real, "the current database, different from the backup");
    const forced = await runCli(["restore", link, "--repo", repo, "--force", "--json"]);
    expect(forced.exitCode).toBe(0);
    expect(JSON.parse(forced.stdout).target).toBe(real);
    expect(readlinkSync(link)).toBe("data/app.db");
    expect(inspectBank(real).integrity).toBe("ok");
    expect(readFileSync(JSON.parse(forced.stdout).replaced[0], "utf8")).toBe("the current database, different from the backup");

    // A link whose file is missing (a fresh volume): the file is created where the link leads.
    for (const name of readdirSync(join(dir, "data"))) rmSync(join(dir, "data", name));
    const fresh = await runCli(["restore", link, "--repo", repo, "--if-missing"]);
    expect(fresh.exitCode).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(inspectBank(real).integrity).toBe("ok");
  });

  test("a database another process has open is not replaced, even with --force", async () => {
    const { dir, repo, db } = await backedUp("e2e-inuse");
    // The application: a connection that stays open, as a server's does.
    const app = Bun.spawn(
      [
        process.execPath,
        "-e",
        `const { Database } = require("bun:sqlite"); const db = new Database(${JSON.stringify(db)}); db.query("SELECT count(*) FROM accounts").get(); console.log("open"); setInterval(() => {}, 1000);`,
      ],
      { stdout: "pipe" },
    );
    try {
      expect(new TextDecoder().decode((await app.stdout.getReader().read()).value)).toContain("open");
      const before = readFileSync(db);
      const refused = await runCli(["restore", db, "--repo", repo, "--force"]);
      expect(refused.exitCode).toBe(1);
      expect(refused.stderr).toContain(
        `${db} is open in ${basename(process.execPath).slice(0, 15)} (pid ${app.pid}); refusing to replace a database in use`,
      );
      expect(refused.stderr).toContain("Try: stop the application, restore, then start it again");
      expect(readFileSync(db).equals(before)).toBe(true);
      expect(readdirSync(dir).filter((name) => name.includes("replaced") || name.includes(".tmp"))).toEqual([]);
    } finally {
      app.kill();
      await app.exited;
    }
    const forced = await runCli(["restore", db, "--repo", repo, "--force"]);
    expect(forced.exitCode).toBe(0);
  });

  test("--if-missing: nothing to do when the database exists, and success when there is no backup yet", async () => {
    const { dir, repo, db } = await backedUp("e2e-ifmissing");
    const before = readFileSync(db);
    const exists = await runCli(["restore", db, "--repo", repo, "--if-missing"]);
    expect(exists.exitCode).toBe(0);
    expect(exists.stdout).toContain("nothing restored");
    expect(readFileSync(db).equals(before)).toBe(true);

    const fresh = join(dir, "fresh.db");
    const none = await runCli(["restore", fresh, "--repo", repo, "--if-missing", "--json"]);
    expect(none.exitCode).toBe(0);
    expect(JSON.parse(none.stdout)).toMatchObject({ action: "skipped", reason: "no-backups" });
    expect(existsSync(fresh)).toBe(false);

    const missingNow = join(dir, "gone", "..", "app-copy.db");
    const restored = await runCli(["restore", "--name", "app", "-o", missingNow, "--repo", repo, "--if-missing"]);
    expect(restored.exitCode).toBe(0);
    expect(inspectBank(missingNow).integrity).toBe("ok");
  });

  test("--at picks the newest backup at or before a time", async () => {
    const dir = tempDir("e2e-at");
    const repo = join(dir, "repo");
    const db = join(dir, "app.db");
    createBankDb(db);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await runCli(["backup", db, "--repo", repo, "--json"]);
      ids.push(JSON.parse(r.stdout).id);
      const { createdAt } = JSON.parse(r.stdout);
      ids.push(createdAt);
      await Bun.sleep(20);
    }
    const at = ids[3]!; // createdAt of the second backup
    const r = await runCli(["restore", "--name", "app", "-o", join(dir, "at.db"), "--repo", repo, "--at", at, "--json"]);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).id).toBe(ids[2]!);
    const before = await runCli(["restore", "--name", "app", "-o", join(dir, "early.db"), "--repo", repo, "--at", "2000-01-01T00:00:00Z"]);
    expect(before.exitCode).toBe(1);
    expect(before.stderr).toContain("no backup of app at or before 2000-01-01");
  });
});

describe("schemas SQLite accepts", () => {
  /** A database of `statements` (and then `edit`, SQL run by the sqlite3 CLI with writable_schema on), backed up once. */
  async function backedUpSchema(label: string, statements: string[], edit?: string) {
    const dir = tempDir(label);
    const db = join(dir, "app.db");
    const sqlite = new Database(db, { create: true });
    for (const sql of statements) sqlite.run(sql);
    sqlite.close();
    if (edit) {
      const r = Bun.spawnSync(["sqlite3", db], {
        stdin: Buffer.from(`.dbconfig defensive off\nPRAGMA writable_schema = ON;\n${edit}\n`),
        stdout: "ignore",
      });
      expect(r.exitCode).toBe(0);
    }
    const repo = join(dir, "repo");
    expect((await runCli(["backup", db, "--repo", repo])).exitCode).toBe(0);
    return { dir, repo };
  }

  test("a foreign key to a parent key without a UNIQUE index restores, with a warning", async () => {
    // Accepted with foreign keys off (SQLite's default); foreign_key_check refuses to run on it.
    const { dir, repo } = await backedUpSchema("e2e-fkschema", [
      "CREATE TABLE p (id INTEGER PRIMARY KEY, code TEXT)",
      "CREATE TABLE c (id INTEGER PRIMARY KEY, pcode TEXT REFERENCES p(code))",
      "INSERT INTO p (code) VALUES ('a')",
      "INSERT INTO c (pcode) VALUES ('a')",
    ]);
    const restored = await runCli(["restore", "--name", "app", "-o", join(dir, "restored.db"), "--repo", repo]);
    expect(restored.exitCode).toBe(0);
    expect(restored.stderr).toContain(`[warn] PRAGMA foreign_key_check('c') could not run: foreign key mismatch - "c" referencing "p"`);
    expect((await runCli(["verify", "--all", "--repo", repo])).exitCode).toBe(0);
  });

  test("an index in the application's own collation: restore says it cannot check it, and how to restore by hand", async () => {
    // As an application with create_collation() leaves it (no other SQLite knows `appcoll`).
    const { dir, repo } = await backedUpSchema(
      "e2e-collation",
      ["CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)", "CREATE INDEX ia ON t(a)", "INSERT INTO t (a) VALUES ('x'), ('y')"],
      "UPDATE sqlite_schema SET sql = 'CREATE INDEX ia ON t(a COLLATE appcoll)' WHERE name = 'ia';",
    );
    const target = join(dir, "restored.db");
    const r = await runCli(["restore", "--name", "app", "-o", target, "--repo", repo]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(
      "cannot be checked here: its schema uses the collation sequence appcoll, which only the application that made it defines",
    );
    expect(r.stderr).toContain(
      'Try: the stored object is a plain database file: README, "Format and recovery without sqlite-vault", restores it by hand',
    );
    expect(existsSync(target)).toBe(false);
  });
});

/** Two different databases, a/app.db and b/app.db, whose names derive the same "app". */
function twoAppDbs(label: string): { dir: string; repo: string; a: string; b: string } {
  const dir = tempDir(label);
  for (const sub of ["a", "b"]) {
    mkdirSync(join(dir, sub));
    createBankDb(join(dir, sub, "app.db"));
  }
  return { dir, repo: join(dir, "repo"), a: join(dir, "a", "app.db"), b: join(dir, "b", "app.db") };
}

describe("one name, one database", () => {
  test("a name taken from the file name is refused for another file of the same name; --name decides", async () => {
    const { dir, repo, a, b } = twoAppDbs("e2e-samename");
    expect((await runCli(["backup", a, "--repo", repo])).exitCode).toBe(0);
    // Another app.db would join the backups of the first: retention would prune one by the other's
    // backups, and restore --latest could bring back the wrong one.
    const refused = await runCli(["backup", b, "--repo", repo]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain(`sqlite-vault: backups named app in file://${repo} are of ${a} (on `);
    expect(refused.stderr).toContain(`not of ${b}`);
    expect(refused.stderr).toContain("Try: give this database its own name with --name");
    const listed = async () => JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout).backups.length;
    expect(await listed()).toBe(1);

    // The same file through a symbolic link is the same database.
    symlinkSync(a, join(dir, "app.db"));
    expect((await runCli(["backup", join(dir, "app.db"), "--repo", repo])).exitCode).toBe(0);
    // Its own name; or the same name, given on purpose (a database that moved).
    expect((await runCli(["backup", b, "--name", "app-b", "--repo", repo])).exitCode).toBe(0);
    expect((await runCli(["backup", b, "--name", "app", "--repo", repo])).exitCode).toBe(0);
    expect(await listed()).toBe(4);
    // A config file's databases without a `name` are held to the same rule.
    const config = join(dir, "sqlite-vault.yml");
    writeFileSync(config, `repo: ${repo}\ndatabases:\n  - path: ${a}\n`);
    const fromConfig = await runCli(["backup", "--config", config]);
    expect(fromConfig.exitCode).toBe(3);
    expect(fromConfig.stderr).toContain(`backups named app in file://${repo} are of ${b}`);
  });

  test("two files' first backups under one derived name at the same moment: the second to commit takes its backup back", async () => {
    const { dir, repo, a, b } = twoAppDbs("e2e-samename-race");
    const storage = openStorage(repo);
    let raced: string | undefined;
    const racing: Storage = overriding(storage, {
      // Just before b's manifest goes up, a's first backup (begun a moment earlier) commits.
      put: async (key: string, body: Uint8Array | ReadableStream<Uint8Array>, options?: PutOptions) => {
        if (key.endsWith(".json") && !raced) {
          const first = await runBackup(
            storage,
            { databasePath: a, compression: "gzip", tmpDir: dir, now: () => new Date(backupIdTime(parseManifestKey(key)!.id) - 1) },
            createContext(),
          );
          raced = first.id;
        }
        return storage.put(key, body, options);
      },
    });
    await expect(runBackup(racing, { databasePath: b, compression: "gzip", tmpDir: dir }, createContext())).rejects.toThrow(
      `backups named app in file://${repo} are of ${a}`,
    );
    const listed = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout).backups.map((x: { id: string }) => x.id);
    expect(listed).toEqual([raced]);
    expect(readdirSync(join(repo, "app")).filter((f) => !f.startsWith(raced!))).toEqual([]); // b's data object is gone too
  });

  test("backups made before the manifest named its source join as before", async () => {
    const { repo, db } = await backedUp("e2e-nosource");
    const dir = join(repo, "app");
    for (const name of readdirSync(dir).filter((n) => n.endsWith(".json"))) {
      const manifest = JSON.parse(readFileSync(join(dir, name), "utf8"));
      expect(manifest.source).toEqual({ path: db });
      delete manifest.source;
      writeFileSync(join(dir, name), JSON.stringify(manifest));
    }
    const other = join(tempDir("e2e-nosource-other"), "app.db");
    createBankDb(other);
    expect((await runCli(["backup", other, "--repo", repo])).exitCode).toBe(0);
  });
});

describe("recovery without sqlite-vault", () => {
  test("the stored object is a plain .gz that gunzip and sqlite3 open", async () => {
    const dir = tempDir("e2e-manual");
    const repo = join(dir, "repo");
    const db = join(dir, "app.db");
    createBankDb(db, { fillerRows: 500 });
    const r = await runCli(["backup", db, "--repo", repo, "--json"]);
    const { dataKey } = JSON.parse(r.stdout);
    const object = join(repo, dataKey);
    expect(object.endsWith(".sqlite.gz")).toBe(true);
    const gunzip = Bun.spawnSync(["sh", "-c", `gunzip -c '${object}' > '${dir}/manual.db'`]);
    expect(gunzip.exitCode).toBe(0);
    const sqlite = Bun.spawnSync(["sqlite3", join(dir, "manual.db"), "PRAGMA integrity_check; SELECT SUM(balance) FROM accounts;"]);
    expect(sqlite.exitCode).toBe(0);
    expect(sqlite.stdout.toString().trim().split("\n")).toEqual(["ok", String(ACCOUNTS * INITIAL_BALANCE)]);
  });
});
