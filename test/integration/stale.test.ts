/** Leftovers of killed runs (src/local/stale.ts): removed when they are this user's, never anything else. */
import { afterAll, expect, test } from "bun:test";
import { chownSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeStale } from "../../src/local/stale.ts";
import { removeTempDirs, tempDir } from "../helpers/db.ts";

afterAll(removeTempDirs);

test("a dead run's leftover of this user's is removed; a link, or (as root) another user's tree of the same name, is left alone", () => {
  const dir = tempDir("stale");
  const gone = Bun.spawnSync(["true"]).pid; // a process that has exited
  const prefix = "sqlite-vault-verify-";
  const own = join(dir, `${prefix}${gone}-aaaa`);
  mkdirSync(own);
  writeFileSync(join(own, "0.sqlite"), "x");
  const elsewhere = join(dir, "elsewhere");
  mkdirSync(elsewhere);
  writeFileSync(join(elsewhere, "keep"), "x");
  const link = join(dir, `${prefix}${gone}-bbbb`);
  symlinkSync(elsewhere, link);
  const others = join(dir, `${prefix}${gone}-cccc`);
  if (process.getuid!() === 0) {
    mkdirSync(others);
    chownSync(others, 65534, 65534);
  }
  expect(removeStale(dir, prefix)).toEqual([own]);
  expect(existsSync(own)).toBe(false);
  expect(readdirSync(elsewhere)).toEqual(["keep"]);
  expect(existsSync(link)).toBe(true);
  if (process.getuid!() === 0) expect(existsSync(others)).toBe(true);
});
