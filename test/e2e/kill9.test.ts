/**
 * kill -9 at random moments of backup, restore and prune, through the compiled binary against the
 * real S3 server. Seeded (SQLITE_VAULT_TEST_SEED, printed on failure) and bounded in time: each kill
 * lands within the measured length of an uninterrupted run. After every kill:
 *   - the source database is byte-identical and passes integrity_check,
 *   - a restore target is either untouched or the complete restored database,
 *   - list shows only complete backups (each one's data object is there, whole),
 *   - the next run succeeds (no stale lock, no leftover in the way).
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBankDb, inspectBank, startWriter, tempDir } from "../helpers/db.ts";
import { runCli, spawnCli } from "../helpers/cli.ts";
import { useTestBucket } from "../helpers/s3.ts";
import { s3Repo, type TestRepo } from "../helpers/repos.ts";

setDefaultTimeout(300_000);

const TRIALS = 30;
const SEED = Number(process.env.SQLITE_VAULT_TEST_SEED ?? 20261122);

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const bucket = useTestBucket("kill9");

type Repo = Pick<TestRepo, "url" | "env" | "storage">;

function repo(label: string): Repo {
  return s3Repo(bucket.bucket, label);
}

const TUNING = ["--part-size", "5"];

/** Run to completion and return how long it took. */
async function timed(args: string[], env: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  const r = await runCli(args, { env });
  if (r.exitCode !== 0) throw new Error(`${args[0]} failed: ${r.stderr}`);
  return performance.now() - t0;
}

/** Start a run and kill -9 it after `delayMs` (or let it finish first). */
async function killAfter(args: string[], env: Record<string, string>, delayMs: number): Promise<number | null> {
  const proc = spawnCli(args, { env });
  const finished = await Promise.race([proc.exited.then(() => true), Bun.sleep(delayMs).then(() => false)]);
  if (!finished) proc.kill("SIGKILL");
  await proc.exited;
  return finished ? proc.exitCode : null;
}

/** Every listed backup is complete: its data object exists with the size its manifest records. */
async function expectOnlyCompleteBackups(r: Repo): Promise<string[]> {
  const list = await runCli(["list", "--repo", r.url, "--json"], { env: r.env });
  expect(list.exitCode).toBe(0);
  const { backups } = JSON.parse(list.stdout);
  for (const b of backups) {
    const data = await r.storage.stat(`${b.name}/${b.id}.sqlite.gz`);
    expect(data?.size).toBe(b.storedBytes);
  }
  return backups.map((b: { id: string }) => b.id);
}

function sha(path: string): string {
  return new Bun.CryptoHasher("sha256").update(readFileSync(path)).digest("hex");
}

describe(`kill -9 (seed ${SEED})`, () => {
  test(`backup: ${TRIALS} kills leave the source intact and only complete backups listed`, async () => {
    const random = prng(SEED);
    const dir = tempDir("kill9-backup");
    const tmp = join(dir, "tmp");
    mkdirSync(tmp);
    const db = join(dir, "app.db");
    createBankDb(db, { fillerRows: 40_000 });
    const original = sha(db);
    const r = repo("backup");
    const args = ["backup", db, "--repo", r.url, "--tmp-dir", tmp, ...TUNING];
    // The fastest of three runs: the first one is slower (cold), and kills must land within a run.
    const duration = Math.min(await timed(args, r.env), await timed(args, r.env), await timed(args, r.env));
    let killed = 0;
    // A run that finished before its kill says runs are quicker now (a machine less loaded than
    // while they were timed): later kills aim within the shorter span.
    let span = duration * 1.2;
    for (let trial = 0; trial < TRIALS; trial++) {
      const exit = await killAfter(args, r.env, random() * span);
      if (exit === null) killed++;
      else {
        expect(exit).toBe(0);
        span *= 0.8;
      }
      expect(sha(db)).toBe(original);
      await expectOnlyCompleteBackups(r);
    }
    expect(killed).toBeGreaterThan(TRIALS / 2);
    expect(inspectBank(db).integrity).toBe("ok");
    // the next run succeeds, and cleans what the killed ones left in the temp dir
    await timed(args, r.env);
    expect(readdirSync(tmp)).toEqual([]);
    const verify = await runCli(["verify", "--all", "--quick", "--repo", r.url, "--json"], { env: r.env });
    expect(verify.exitCode).toBe(0);
  });

  test(`restore: ${TRIALS} kills leave the target either untouched or completely restored`, async () => {
    const random = prng(SEED + 1);
    const dir = tempDir("kill9-restore");
    const db = join(dir, "app.db");
    createBankDb(db, { fillerRows: 40_000 });
    const r = repo("restore");
    await timed(["backup", db, "--repo", r.url, ...TUNING], r.env);
    const backupTransfers = inspectBank(db).transfers;
    // the target holds a different database that the restore replaces
    const target = join(dir, "target.db");
    const writer = startWriter(db);
    await writer.waitForCommits(30);
    await writer.stop();
    const { copyFileSync } = await import("node:fs");
    copyFileSync(db, target);
    const before = readFileSync(target);
    const args = ["restore", "--name", "app", "--output", target, "--force", "--repo", r.url, ...TUNING];
    const duration = await timed(args, r.env);
    let untouched = 0;
    let restored = 0;
    const reset = () => {
      for (const f of readdirSync(dir)) if (f.startsWith("target.db.replaced-") || f.startsWith("target.db-")) rmSync(join(dir, f));
      writeFileSync(target, before);
    };
    reset();
    for (let trial = 0; trial < TRIALS; trial++) {
      await killAfter(args, r.env, random() * duration * 1.2);
      const now = readFileSync(target);
      if (now.equals(before)) untouched++;
      else {
        const bank = inspectBank(target);
        expect(bank.integrity).toBe("ok");
        expect(bank.transfers).toBe(backupTransfers);
        restored++;
      }
      reset();
    }
    expect(untouched + restored).toBe(TRIALS);
    expect(untouched).toBeGreaterThan(0);
    // the next run succeeds and removes what the killed ones left beside the target
    await timed(args, r.env);
    expect(inspectBank(target).transfers).toBe(backupTransfers);
    expect(readdirSync(dir).filter((f) => f.startsWith("."))).toEqual([]);
  });

  test(`prune: ${TRIALS} kills never leave a listed backup without its data`, async () => {
    const random = prng(SEED + 2);
    const dir = tempDir("kill9-prune");
    const db = join(dir, "tiny.db");
    createBankDb(db, { fillerRows: 20 });
    const r = repo("prune");
    const backup = ["backup", db, "--repo", r.url];
    const prune = ["prune", "--repo", r.url, "--keep-last", "1"];
    for (let i = 0; i < 4; i++) await timed(backup, r.env);
    const duration = await timed(prune, r.env);
    for (let trial = 0; trial < TRIALS; trial++) {
      for (let i = 0; i < 3; i++) await timed(backup, r.env);
      await killAfter(prune, r.env, random() * duration * 1.5);
      const ids = await expectOnlyCompleteBackups(r);
      expect(ids.length).toBeGreaterThanOrEqual(1);
    }
    await timed(prune, r.env);
    expect(await expectOnlyCompleteBackups(r)).toHaveLength(1);
    expect(existsSync(db)).toBe(true);
  });
});
