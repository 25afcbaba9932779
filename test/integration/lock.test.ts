/**
 * The one-run-at-a-time lock under real concurrency: processes that find the same stale lock (its
 * owner killed) at the same moment take it over one at a time, never two at once.
 */
import { afterAll, expect, test, setDefaultTimeout } from "bun:test";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { removeTempDirs, tempDir } from "../helpers/db.ts";

setDefaultTimeout(120_000);
afterAll(removeTempDirs);

const HOLDER = join(import.meta.dir, "..", "helpers", "lock-holder.ts");

test("runs that find one stale lock at once: exactly one takes it, the others are refused", async () => {
  const dir = tempDir("lock-race");
  const locks = join(dir, "locks");
  mkdirSync(locks, { mode: 0o700 });
  const target = join(dir, "app.db");
  writeFileSync(target, "");
  const id = new Bun.CryptoHasher("sha256").update(target).digest("hex").slice(0, 24);
  const rounds: string[][] = [];
  for (let round = 0; round < 12; round++) {
    // A lock left by a process that no longer exists (pid 999999 on this host).
    writeFileSync(join(locks, `${id}.lock`), JSON.stringify({ purpose: "backup", pid: 999_999, host: hostname(), startedAt: "then" }));
    const startAt = String(Date.now() + 500); // all started by then, on a loaded machine too
    const procs = Array.from({ length: 8 }, () =>
      Bun.spawn([process.execPath, HOLDER, target, locks, "600", startAt], { stdout: "pipe", stderr: "inherit" }),
    );
    rounds.push((await Promise.all(procs.map((p) => new Response(p.stdout).text()))).map((t) => t.trim()).sort());
  }
  for (const outcome of rounds) expect(outcome).toEqual(["got", ...Array(7).fill("locked")]);
  expect(readdirSync(locks)).toEqual([]); // nothing moved aside is left behind
});
