/**
 * A full disk: backup with --tmp-dir and restore with --output on a small tmpfs that the test mounts
 * (and unmounts). Clear error, exit 1, nothing half-written, temp files removed.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
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

  test("restore whose output does not fit: exit 1, no file at the target, temp removed", async () => {
    const target = join(small, "restored.db");
    const r = await runCli(["restore", "--name", "app", "--output", target, "--repo", repo]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/sqlite-vault: .*no space left on device/i);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(small)).toEqual(["occupant"]);
  });

  test("backup into a local repository on a full disk: exit 1, nothing listed", async () => {
    const fullRepo = join(small, "repo");
    const r = await runCli(["backup", db, "--repo", fullRepo]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/no space left on device/i);
    const list = await runCli(["list", "--repo", fullRepo, "--json"]);
    expect(JSON.parse(list.stdout).backups).toEqual([]);
    const leftovers = readdirSync(join(fullRepo, "app"));
    expect(leftovers).toEqual([]);
  });
});
