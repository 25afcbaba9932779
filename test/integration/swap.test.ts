/**
 * restore --force's swap into place, failed at every file-system step: by an error (EIO) and by a
 * crash (every later call fails too, so nothing is undone). At every point the target opens as the
 * old database with all its rows (its WAL included) or as the new one, never anything in between.
 */
import { afterAll, expect, test, setDefaultTimeout } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, linkSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeTempDirs, tempDir } from "../helpers/db.ts";
import { swapIntoPlace, type SwapFs } from "../../src/local/swap.ts";

setDefaultTimeout(120_000);
afterAll(removeTempDirs);

/** The old database: 100 rows in the file and 1 more only in its -wal (its writer was killed); the new one: 5 rows. */
function setup(label: string): { dir: string; target: string; temp: string } {
  const dir = tempDir(label);
  const target = join(dir, "app.db");
  const writer = Bun.spawnSync([
    process.execPath,
    "-e",
    `
    const { Database } = require("bun:sqlite");
    const db = new Database(${JSON.stringify(target)});
    db.run("PRAGMA journal_mode = WAL"); db.run("CREATE TABLE t (x)");
    db.transaction(() => { for (let i = 0; i < 100; i++) db.run("INSERT INTO t VALUES (?)", [i]); })();
    db.run("PRAGMA wal_checkpoint(TRUNCATE)"); db.run("PRAGMA wal_autocheckpoint = 0");
    db.run("INSERT INTO t VALUES (100)");
    process.kill(process.pid, "SIGKILL");`,
  ]);
  expect(writer.signalCode).toBe("SIGKILL");
  expect(statSync(`${target}-wal`).size).toBeGreaterThan(0);
  const temp = join(dir, ".app.db.sqlite-vault-1-new.tmp");
  const db = new Database(temp, { create: true });
  db.run("PRAGMA journal_mode = WAL");
  db.run("CREATE TABLE t (x)");
  for (let i = 0; i < 5; i++) db.run("INSERT INTO t VALUES (?)", [i]);
  db.close();
  return { dir, target, temp };
}

function rows(path: string): number {
  const db = new Database(path);
  try {
    expect((db.query("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check).toBe("ok");
    return (db.query("SELECT count(*) AS n FROM t").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Real calls, until the given one fails; with `crash`, every call after it fails too. */
function failing(at: number, crash: boolean): { fs: SwapFs; calls: () => number } {
  let calls = 0;
  const step =
    <A extends unknown[]>(real: (...args: A) => void) =>
    (...args: A) => {
      calls++;
      if (calls === at || (crash && calls > at)) throw Object.assign(new Error("EIO: i/o error"), { code: "EIO" });
      real(...args);
    };
  return { fs: { link: step(linkSync), rename: step(renameSync), unlink: step(unlinkSync) }, calls: () => calls };
}

for (const crash of [false, true]) {
  test(`restore --force ${crash ? "crashing" : "failing with EIO"} at any step: the target holds the old database with its WAL's rows, or the new one`, () => {
    // Every call of a clean run, failed in turn; then one run that fails nothing.
    const { target: t0, temp: n0 } = setup("swap-count");
    const counting = failing(0, false);
    swapIntoPlace(n0, t0, true, counting.fs);
    let succeeded = false;
    for (let at = 1; at <= counting.calls() + 1; at++) {
      const { dir, target, temp } = setup(`swap-${crash ? "crash" : "eio"}-${at}`);
      const { fs } = failing(at, crash);
      let replaced: string[] = [];
      let failure: Error | undefined;
      try {
        replaced = swapIntoPlace(temp, target, true, fs);
        succeeded = true;
      } catch (error) {
        failure = error as Error;
      }
      if (succeeded) expect(at).toBe(counting.calls() + 1);
      else if (!crash) expect(failure!.message).toContain(target);
      const found = rows(target);
      if (succeeded) {
        expect(found).toBe(5);
        // The old database, kept aside, holds every row, its WAL's included.
        expect(rows(replaced[0]!)).toBe(101);
      } else {
        expect(found, `failure at call ${at}`).toBe(101);
        // An error (not a crash) leaves nothing behind: no aside name holds a stray copy.
        if (!crash) expect(readdirSync(dir).filter((name) => name.includes(".replaced-"))).toEqual([]);
      }
    }
    expect(succeeded).toBe(true);
  });
}

test("a failed final rename names the target and leaves it with all its rows", () => {
  const { target, temp } = setup("swap-final");
  const fs: SwapFs = {
    link: linkSync,
    unlink: unlinkSync,
    rename(from, to) {
      if (from === temp) throw Object.assign(new Error(`EIO: i/o error, rename '${from}' -> '${to}'`), { code: "EIO" });
      renameSync(from, to);
    },
  };
  expect(() => swapIntoPlace(temp, target, true, fs)).toThrow(target);
  expect(rows(target)).toBe(101);
  expect(existsSync(temp)).toBe(true);
});

/** What a process that opened `target` and was killed mid-write leaves: `rows` rows more, only in its -wal. */
function killedWriter(target: string, rows: number): void {
  const writer = Bun.spawnSync([
    process.execPath,
    "-e",
    `
    const { Database } = require("bun:sqlite");
    const db = new Database(${JSON.stringify(target)});
    db.run("PRAGMA journal_mode = WAL"); db.run("PRAGMA wal_autocheckpoint = 0");
    db.run("CREATE TABLE IF NOT EXISTS t (x)");
    for (let i = 0; i < ${rows}; i++) db.run("INSERT INTO t VALUES (?)", [1000 + i]);
    process.kill(process.pid, "SIGKILL");`,
  ]);
  expect(writer.signalCode).toBe("SIGKILL");
}

test("a -wal written beside the target while it is swapped (a process opened the old database) is moved beside the old one, never applied to the restored file", () => {
  const { dir, target, temp } = setup("swap-stray");
  const fs: SwapFs = {
    link: linkSync,
    unlink: unlinkSync,
    rename(from, to) {
      if (from === temp) killedWriter(target, 2); // after the last check, before the switch
      renameSync(from, to);
    },
  };
  expect(() => swapIntoPlace(temp, target, true, fs)).toThrow("appeared beside");
  expect(existsSync(`${target}-wal`)).toBe(false);
  expect(rows(target)).toBe(5);
  // The old database, kept aside, with the moved -wal beside it: every row its writer committed.
  const aside = join(dir, readdirSync(dir).find((n) => /\.replaced-\d{8}T\d{6}Z$/.test(n))!);
  expect(existsSync(`${aside}-wal`)).toBe(true);
  expect(rows(aside)).toBe(103);
});

test("a -wal left beside a new target while it is linked into place is moved aside, never applied to the restored file", () => {
  const { dir, temp } = setup("swap-stray-new");
  const target = join(dir, "fresh.db");
  const fs: SwapFs = {
    link(from, to) {
      if (from === temp) {
        // Another database's -wal, left under the target's name after the last check.
        killedWriter(`${target}.other`, 3);
        renameSync(`${target}.other-wal`, `${target}-wal`);
      }
      linkSync(from, to);
    },
    unlink: unlinkSync,
    rename: renameSync,
  };
  expect(() => swapIntoPlace(temp, target, false, fs)).toThrow("appeared beside");
  expect(existsSync(`${target}-wal`)).toBe(false);
  expect(rows(target)).toBe(5);
  expect(readdirSync(dir).some((n) => /^fresh\.db\.stray-\d{8}T\d{6}Z-wal$/.test(n))).toBe(true);
});

test("a new target's link() that fails for another reason than missing hard links is an error, and the fallback rename never replaces a file created meanwhile", () => {
  const { dir, temp } = setup("swap-link");
  const target = join(dir, "fresh.db");
  const failingLink = (code: string, before?: () => void): SwapFs => ({
    link(from, to) {
      if (from !== temp) return linkSync(from, to);
      before?.();
      throw Object.assign(new Error(`${code}: link failed`), { code });
    },
    unlink: unlinkSync,
    rename: renameSync,
  });
  expect(() => swapIntoPlace(temp, target, false, failingLink("EIO"))).toThrow("EIO");
  expect(existsSync(target)).toBe(false);
  // No hard links here, and someone created the target meanwhile: refused, their file kept.
  expect(() =>
    swapIntoPlace(
      temp,
      target,
      false,
      failingLink("EPERM", () => writeFileSync(target, "theirs")),
    ),
  ).toThrow("appeared during the restore");
  expect(readFileSync(target, "utf8")).toBe("theirs");
  expect(existsSync(temp)).toBe(true);
});
