/**
 * A full disk: backup with --tmp-dir and restore with --output on a small tmpfs that the test mounts
 * (and unmounts). Clear error, exit 1, nothing half-written, temp files removed.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBankDb, removeTempDirs, tempDir } from "../helpers/db.ts";
import { runCli } from "../helpers/cli.ts";

setDefaultTimeout(120_000);

let dir: string;
let small: string;
let db: string;
let repo: string;

beforeAll(async () => {
  dir = tempDir("diskfull");
  small = join(dir, "small");
  mkdirSync(small);
  // A 4 MiB filesystem; the database is about 15 MiB. Needs root, as CI and developers here have.
  const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", small]);
  if (mount.exitCode !== 0) throw new Error(`cannot mount a small tmpfs for the disk-full tests: ${mount.stderr.toString()}`);
  db = join(dir, "app.db");
  createBankDb(db, { fillerRows: 15_000 });
  repo = join(dir, "repo");
  expect((await runCli(["backup", db, "--repo", repo])).exitCode).toBe(0);
});

afterAll(() => {
  Bun.spawnSync(["umount", small]);
  removeTempDirs();
});

describe("disk full", () => {
  test("backup whose snapshot does not fit in --tmp-dir: exit 1, nothing listed, temp removed", async () => {
    writeFileSync(join(small, "occupant"), "x"); // the filesystem is otherwise empty
    // A rollback-journal database is copied to --tmp-dir before it is compressed.
    const rollback = join(dir, "rollback.db");
    createBankDb(rollback, { fillerRows: 15_000, journalMode: "delete" });
    const r = await runCli(["backup", rollback, "--name", "app", "--repo", repo, "--tmp-dir", small]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/sqlite-vault: no space left for the snapshot/);
    expect(r.stderr).toContain("Try: the snapshot needs as much free space as the database");
    expect(readdirSync(small)).toEqual(["occupant"]);
    const list = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout);
    expect(list.backups).toHaveLength(1);
  });

  test("a checkpointed WAL database is read in place: its backup needs no room in --tmp-dir", async () => {
    const r = await runCli(["backup", db, "--repo", repo, "--tmp-dir", small, "--verbose"]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain("by file-read");
    expect(readdirSync(small)).toEqual(["occupant"]);
    const list = JSON.parse((await runCli(["list", "--repo", repo, "--json"])).stdout);
    expect(list.backups).toHaveLength(2);
  });

  test("restore whose output does not fit: exit 1 before a byte is written (the disk it shares is never filled), no file at the target", async () => {
    const target = join(small, "restored.db");
    const created: string[] = [];
    const watcher = watch(small, (_event, name) => name && created.push(name));
    const r = await runCli(["restore", "--name", "app", "--output", target, "--repo", repo]);
    await Bun.sleep(100);
    watcher.close();
    expect(created).toEqual([]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/sqlite-vault: .*no space left on device/i);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(small).filter((name) => name !== "occupant")).toEqual([]);
  });

  test("a restore that does not fit names the place, the space it needs and the space free, and suggests only its own flags", async () => {
    const target = join(small, "restored.db");
    const r = await runCli(["restore", "--name", "app", "--output", target, "--repo", repo]);
    expect(r.exitCode).toBe(1);
    const lines = r.stderr.trimEnd().split("\n");
    const at = lines.findIndex((l) => l.startsWith("sqlite-vault: "));
    const [error, hint, ...rest] = lines.slice(at);
    expect(rest).toEqual([]);
    const needed = JSON.parse((await runCli(["list", "--name", "app", "--repo", repo, "--json"])).stdout).backups[0]
      .databaseBytes as number;
    expect(error).toMatch(
      new RegExp(
        `^sqlite-vault: no space left on device in ${small} to restore app: it needs (\\d+\\.\\d) MiB, (\\d+\\.\\d) MiB free; nothing was left half-written$`,
      ),
    );
    const [, need, free] = /needs (\S+) MiB, (\S+) MiB free/.exec(error!)!;
    expect(Number(need)).toBeCloseTo(needed / 2 ** 20, 1);
    expect(Number(free)).toBeGreaterThan(3); // the 4 MiB file system, empty but for a byte
    expect(Number(free)).toBeLessThanOrEqual(4);
    expect(hint).toBe("Try: free some space there, or restore to a larger disk with --output PATH");
    expect(r.stderr).not.toContain("--tmp-dir");
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(small)).toEqual(["occupant"]);
    // restore has no --tmp-dir (the hint of old suggested it)
    expect((await runCli(["restore", "--name", "app", "--output", target, "--repo", repo, "--tmp-dir", dir])).exitCode).toBe(2);
  });

  test("verify and cron's startup restore on a full disk say so with their own flags", async () => {
    const verify = await runCli(["verify", "--name", "app", "--repo", repo, "--tmp-dir", small]);
    expect(verify.exitCode).toBe(1);
    expect(verify.stderr).toMatch(
      new RegExp(`sqlite-vault: no space left on device in ${small} to verify app \\S+: it needs \\d+\\.\\d MiB, \\d\\.\\d MiB free`),
    );
    expect(verify.stderr).toContain(
      "Try: free some space there, or check in a larger directory with --tmp-dir DIR (or one backup at a time: --concurrency 1)\n",
    );
    expect(readdirSync(small)).toEqual(["occupant"]);

    const marker = join(dir, "started");
    const cron = await runCli([
      "cron",
      join(small, "app.db"),
      "--name",
      "app",
      "--repo",
      repo,
      "--restore-if-missing",
      "--exec",
      `touch ${marker}`,
    ]);
    expect(cron.exitCode).toBe(1);
    expect(cron.stderr).toMatch(
      new RegExp(
        `sqlite-vault: startup restore of app failed: no space left on device in ${small} to restore app: it needs \\d+\\.\\d MiB, \\d\\.\\d MiB free`,
      ),
    );
    expect(cron.stderr).toContain("Try: free some space there, then start cron again\n");
    expect(cron.stderr).not.toContain("--output");
    expect(existsSync(marker)).toBe(false);
    expect(readdirSync(small)).toEqual(["occupant"]);
  });

  test("keygen --output on a full disk: exit 1, no empty identity left to block the retry, which then writes it whole", async () => {
    const before = readdirSync(small).sort();
    const filler = join(small, "filler");
    Bun.spawnSync(["dd", "if=/dev/zero", `of=${filler}`, "bs=64k"]); // until the file system is full
    const identity = join(small, "identity.txt");
    const r = await runCli(["keygen", "--output", identity]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/no space left on device/);
    expect(readdirSync(small).sort()).toEqual([...before, "filler"].sort());
    rmSync(filler);
    const again = await runCli(["keygen", "--output", identity]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(readFileSync(identity, "utf8")).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]+$/m);
    rmSync(identity);
  });

  test("backup into a local repository on a full disk: exit 1, nothing listed", async () => {
    const fullRepo = join(small, "repo");
    const r = await runCli(["backup", db, "--repo", fullRepo]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/no space left on device/i);
    // backup has no --output, and its --tmp-dir is no help for a full repository
    expect(r.stderr).not.toContain("--output");
    expect(r.stderr).not.toContain("--tmp-dir");
    const list = await runCli(["list", "--repo", fullRepo, "--json"]);
    expect(JSON.parse(list.stdout).backups).toEqual([]);
    const leftovers = readdirSync(join(fullRepo, "app"));
    expect(leftovers).toEqual([]);
  });
});
