/**
 * What a restore must never do to the local file system, through the compiled binary: reuse a name
 * that keeps an old database, take an empty file for a database, follow another user's link where
 * root's files are, or be stopped by a lock directory another user made.
 */
import { afterAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { createBankDb, inspectBank, removeTempDirs, tempDir } from "../helpers/db.ts";
import { ensureBinary, runCli } from "../helpers/cli.ts";

setDefaultTimeout(120_000);
afterAll(removeTempDirs);

async function backedUp(label: string): Promise<{ dir: string; repo: string; db: string }> {
  const dir = tempDir(label);
  chmodSync(dir, 0o755);
  const repo = join(dir, "repo");
  const db = join(dir, "app.db");
  createBankDb(db);
  const r = await runCli(["backup", db, "--repo", repo]);
  expect(r.exitCode, r.stderr).toBe(0);
  return { dir, repo, db };
}

/** The aside name a restore at `ms` would take first. */
function asideAt(db: string, ms: number): string {
  return `${db}.replaced-${new Date(ms)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}`;
}

describe("restore --force keeps what it replaces", () => {
  test("an aside name is never reused or replaced, whatever the timing", async () => {
    const { repo, db } = await backedUp("safe-aside");
    // Names a restore in the next minute would pick, taken already (another restore's, or anyone's).
    const now = Date.now();
    const squatted: string[] = [];
    for (let s = -1; s < 60; s++) {
      const name = asideAt(db, now + s * 1000);
      if (!squatted.includes(name)) {
        writeFileSync(name, `kept from before ${s}`);
        squatted.push(name);
      }
    }
    writeFileSync(db, "the first original");
    const first = await runCli(["restore", db, "--repo", repo, "--force", "--json"]);
    expect(first.exitCode, first.stderr).toBe(0);
    const restoredOnce = readFileSync(db);
    const second = await runCli(["restore", db, "--repo", repo, "--force", "--json"]);
    expect(second.exitCode, second.stderr).toBe(0);
    const [a, b] = [JSON.parse(first.stdout).replaced[0], JSON.parse(second.stdout).replaced[0]];
    expect(a).not.toBe(b);
    expect(squatted).not.toContain(a);
    expect(squatted).not.toContain(b);
    expect(readFileSync(a, "utf8")).toBe("the first original");
    expect(readFileSync(b).equals(restoredOnce)).toBe(true);
    for (const [i, name] of squatted.entries()) expect(readFileSync(name, "utf8")).toBe(`kept from before ${i - 1}`);
  });
});

describe("an empty file is not a database", () => {
  test("restore --if-missing replaces a 0-byte file (what `sqlite3 app.db 'select 1'` leaves), keeping it aside", async () => {
    const { repo, db } = await backedUp("safe-empty");
    const before = inspectBank(db);
    writeFileSync(db, "");
    const r = await runCli(["restore", db, "--repo", repo, "--if-missing"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(`${db} is empty`);
    expect(r.stdout).toContain("restored app");
    expect(inspectBank(db)).toEqual(before);
    const aside = /kept as (\S+)/.exec(r.stdout)![1]!;
    expect(statSync(aside).size).toBe(0);
  });

  test("cron --restore-if-missing restores over a 0-byte file and says so", async () => {
    const { repo, db } = await backedUp("safe-empty-cron");
    const before = inspectBank(db);
    writeFileSync(db, "");
    const r = await runCli(["cron", db, "--repo", repo, "--restore-if-missing", "--exec", "true"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(`${db} is empty`);
    expect(r.stderr).toContain(" restored ");
    expect(inspectBank(db)).toEqual(before);
  });

  /** A WAL with commits in it (its writer killed) at `db`-wal. */
  function leaveWal(dir: string, db: string): void {
    const other = join(dir, "other.db");
    const writer = Bun.spawnSync([
      process.execPath,
      "-e",
      `
      const { Database } = require("bun:sqlite");
      const db = new Database(${JSON.stringify(other)});
      db.run("PRAGMA journal_mode = WAL"); db.run("PRAGMA wal_autocheckpoint = 0");
      db.run("CREATE TABLE t (x)"); db.run("INSERT INTO t VALUES (1)");
      process.kill(process.pid, "SIGKILL");`,
    ]);
    expect(writer.signalCode).toBe("SIGKILL");
    copyFileSync(`${other}-wal`, `${db}-wal`);
  }

  test("a missing database whose -wal holds data (the file deleted, its WAL left): refused, since SQLite would apply that WAL to the restored file", async () => {
    const { dir, repo, db } = await backedUp("safe-missing-wal");
    const before = inspectBank(db);
    rmSync(db);
    leaveWal(dir, db);
    const wal = readFileSync(`${db}-wal`);
    for (const args of [
      ["restore", db, "--if-missing"],
      ["restore", db],
      ["cron", db, "--restore-if-missing", "--exec", "true"],
    ]) {
      const r = await runCli([...args, "--repo", repo]);
      expect(r.exitCode, args.join(" ")).toBe(1);
      expect(r.stderr).toContain(`${db} does not exist, but ${db}-wal holds data (SQLite would apply it to the restored database)`);
      expect(existsSync(db)).toBe(false);
      expect(readFileSync(`${db}-wal`).equals(wal)).toBe(true);
    }
    // Moved aside as the hint says, the restore is the backup.
    renameSync(`${db}-wal`, join(dir, "kept-wal"));
    const r = await runCli(["restore", db, "--repo", repo]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(inspectBank(db)).toEqual(before);
  });

  test("a 0-byte file whose -wal holds data is neither missing nor replaced: refused, both untouched", async () => {
    const { dir, repo, db } = await backedUp("safe-empty-wal");
    // A WAL with commits in it (its writer killed), beside an empty main file.
    writeFileSync(db, "");
    leaveWal(dir, db);
    const wal = readFileSync(`${db}-wal`);
    for (const flags of [["--if-missing"], [], ["--force"]]) {
      const r = await runCli(["restore", db, "--repo", repo, ...flags]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`${db} is empty, but ${db}-wal holds data`);
      expect(statSync(db).size).toBe(0);
      expect(readFileSync(`${db}-wal`).equals(wal)).toBe(true);
      expect(readdirSync(dir).filter((name) => name.includes(".replaced-") || name.endsWith(".tmp"))).toEqual([]);
    }
  });
});

const AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

function asNobody(...command: string[]): void {
  const r = Bun.spawnSync([...AS_NOBODY, ...command], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${command.join(" ")} as nobody: ${r.stderr.toString()}`);
}

describe.if(process.getuid!() === 0)("root is not steered by another user's symbolic link", () => {
  /** An application directory owned by nobody, and a directory only root may enter. */
  async function setup(label: string) {
    const { dir, repo } = await backedUp(label);
    const app = join(dir, "app");
    mkdirSync(app);
    chownSync(app, 65534, 65534);
    const secret = join(dir, "root-only");
    mkdirSync(secret, { mode: 0o700 });
    return { dir, repo, app, secret };
  }

  test("restore (and --force, --output, cron's start-up restore) refuses a link of nobody's leading out of nobody's directories", async () => {
    const { repo, app, secret } = await setup("safe-link");
    asNobody("ln", "-s", join(secret, "victim.db"), join(app, "app.db"));
    const target = join(app, "app.db");
    for (const args of [
      ["restore", target, "--name", "app"],
      ["restore", "--name", "app", "--output", target],
      ["cron", target, "--name", "app", "--restore-if-missing", "--exec", "true"],
    ]) {
      const r = await runCli([...args, "--repo", repo]);
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stderr).toContain(
        `${target} is a symbolic link owned by uid 65534 leading to ${join(secret, "victim.db")}, outside the directories that user owns; refusing to follow it as root`,
      );
      expect(readdirSync(secret)).toEqual([]);
    }
    writeFileSync(join(secret, "victim.db"), "root's own file");
    const forced = await runCli(["restore", target, "--name", "app", "--repo", repo, "--force"]);
    expect(forced.exitCode).toBe(1);
    expect(readFileSync(join(secret, "victim.db"), "utf8")).toBe("root's own file");
    expect(readdirSync(secret)).toEqual(["victim.db"]);

    // A link of a directory on the way counts the same.
    asNobody("ln", "-s", secret, join(app, "data"));
    const through = await runCli(["restore", join(app, "data", "app.db"), "--name", "app", "--repo", repo]);
    expect(through.exitCode).toBe(1);
    expect(through.stderr).toContain(`${join(app, "data")} is a symbolic link owned by uid 65534`);
    expect(readdirSync(secret)).toEqual(["victim.db"]);
  });

  test("a link of nobody's into nobody's own directory (the application's volume) is followed", async () => {
    const { repo, app } = await setup("safe-link-ok");
    asNobody("mkdir", join(app, "volume"));
    asNobody("ln", "-s", "volume/app.db", join(app, "app.db"));
    const r = await runCli(["restore", join(app, "app.db"), "--name", "app", "--repo", repo]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(inspectBank(join(app, "volume", "app.db")).integrity).toBe("ok");
    expect(statSync(join(app, "volume", "app.db")).uid).toBe(65534);
  });

  test("keygen --output, --tmp-dir and a local repository refuse such a link too", async () => {
    const { dir, app, secret } = await setup("safe-link-siblings");
    asNobody("ln", "-s", secret, join(app, "keys"));
    const key = await runCli(["keygen", "--output", join(app, "keys", "id.txt")]);
    expect(key.exitCode).toBe(1);
    expect(key.stderr).toContain(`${join(app, "keys")} is a symbolic link owned by uid 65534`);
    const db = join(dir, "app.db");
    // Checked before anything is written, whether or not this snapshot needs a temp file.
    const tmp = await runCli(["backup", db, "--repo", join(dir, "repo"), "--tmp-dir", join(app, "keys"), "--compression", "none"]);
    const repo = await runCli(["backup", db, "--repo", join(app, "keys", "repo")]);
    expect(repo.exitCode).toBe(1);
    expect(repo.stderr).toContain(`${join(app, "keys")} is a symbolic link owned by uid 65534`);
    expect(tmp.exitCode).toBe(1);
    expect(tmp.stderr).toContain(`${join(app, "keys")} is a symbolic link owned by uid 65534`);
    expect(readdirSync(secret)).toEqual([]);
  });
});

describe.if(process.getuid!() === 0)("locks", () => {
  test("another user squatting the old lock directory in the temp dir does not stop root's runs", async () => {
    const { dir, repo, db } = await backedUp("safe-lock");
    const tmp = join(dir, "tmp");
    mkdirSync(tmp);
    chmodSync(tmp, 0o1777);
    asNobody("mkdir", "-m", "0700", join(tmp, "sqlite-vault-locks-0"));
    const backup = await runCli(["backup", db, "--repo", repo], { env: { TMPDIR: tmp } });
    expect(backup.exitCode, backup.stderr).toBe(0);
    const restore = await runCli(["restore", db, "--repo", repo, "--force"], { env: { TMPDIR: tmp } });
    expect(restore.exitCode, restore.stderr).toBe(0);
  });

  test("a non-root user's locks are in their own state directory, refused when others may write there", async () => {
    const { dir, repo, db } = await backedUp("safe-lock-user");
    const home = join(dir, "home");
    mkdirSync(home);
    chownSync(home, 65534, 65534);
    chownSync(dir, 65534, 65534);
    const run = () =>
      Bun.spawnSync([...AS_NOBODY, ensureBinary(), "backup", db, "--repo", repo], { env: { ...process.env, HOME: home }, stderr: "pipe" });
    for (const f of readdirSync(dir)) if (f.startsWith("app.db")) chownSync(join(dir, f), 65534, 65534);
    Bun.spawnSync(["chown", "-R", "65534:65534", repo]);
    const ok = run();
    expect(ok.exitCode, ok.stderr.toString()).toBe(0);
    const locks = join(home, ".local", "state", "sqlite-vault", "locks");
    expect([statSync(locks).uid, statSync(locks).mode & 0o777]).toEqual([65534, 0o700]);
    chmodSync(locks, 0o777);
    const open = run();
    expect(open.exitCode).toBe(1);
    expect(open.stderr.toString()).toContain(`the lock directory ${locks} is not a private directory of this user`);
  });
});
