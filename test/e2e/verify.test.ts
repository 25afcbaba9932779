/**
 * verify and restore --fallback through the compiled binary, against the local directory and the real
 * S3 server: every kind of damage is caught at the right step, named, and never restored.
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, tempDir } from "../helpers/db.ts";
import { ensureBinary, runCli, spawnCli } from "../helpers/cli.ts";
import { useTestBucket } from "../helpers/s3.ts";
import { localRepo, s3Repo, type TestRepo } from "../helpers/repos.ts";
import { flipByte, readBackupManifest, rewriteManifest, storeCorruptDatabase, truncate } from "../helpers/tamper.ts";
import { dataKey } from "../../src/repo/manifest.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

const bucket = useTestBucket("e2e-verify");

type Repo = TestRepo;

const backends: { label: string; make: () => Repo }[] = [
  { label: "local directory", make: () => localRepo("verify") },
  { label: "S3", make: () => s3Repo(bucket.bucket, "verify-s3") },
];

/** Make `count` backups of a bank database, each after a different number of transfers; newest first. */
async function makeBackups(repo: Repo, count: number): Promise<string[]> {
  createBankDb(repo.db, { fillerRows: 300 });
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await runCli(["backup", repo.db, "--repo", repo.url, "--json"], { env: repo.env });
    expect(r.exitCode).toBe(0);
    ids.unshift(JSON.parse(r.stdout).id);
  }
  return ids;
}

async function verifyAll(repo: Repo, extra: string[] = []) {
  const r = await runCli(["verify", "--all", "--repo", repo.url, "--json", ...extra], { env: repo.env });
  return { ...r, report: r.stdout ? JSON.parse(r.stdout) : null };
}

for (const backend of backends) {
  describe(`verify: ${backend.label}`, () => {
    test("a byte flipped in one stored object: verify names exactly it; restore refuses; --fallback restores the previous one", async () => {
      const repo = backend.make();
      const ids = await makeBackups(repo, 3);
      const clean = await verifyAll(repo);
      expect(clean.exitCode).toBe(0);
      expect(clean.report.results.map((r: { result: string }) => r.result)).toEqual(["pass", "pass", "pass"]);

      await flipByte(repo.storage, await readBackupManifest(repo.storage, "app", ids[0]!));
      const { exitCode, report, stderr } = await verifyAll(repo);
      expect(exitCode).toBe(4);
      expect(report.failed).toBe(1);
      const failed = report.results.filter((r: { result: string }) => r.result === "fail");
      expect(failed.map((r: { id: string; step: string }) => [r.id, r.step])).toEqual([[ids[0], "checksum"]]);
      expect(report.results.filter((r: { result: string }) => r.result === "pass").map((r: { id: string }) => r.id)).toEqual([
        ids[1],
        ids[2],
      ]);
      expect(stderr).toBe("");

      const human = await runCli(["verify", "--all", "--repo", repo.url], { env: repo.env });
      expect(human.exitCode).toBe(4);
      expect(human.stdout).toContain(`FAILED app ${ids[0]}: checksum`);
      expect(human.stdout).toContain("2 passed, 1 failed");

      const target = join(repo.dir, "restored.db");
      const refused = await runCli(["restore", "--name", "app", "-o", target, "--repo", repo.url, "--latest"], { env: repo.env });
      expect(refused.exitCode).toBe(4);
      expect(refused.stderr).toContain("failed step: checksum");
      expect(existsSync(target)).toBe(false);
      expect(readdirSync(repo.dir).filter((f) => f.startsWith("."))).toEqual([]);

      const fallback = await runCli(["restore", "--name", "app", "-o", target, "--repo", repo.url, "--latest", "--fallback", "--json"], {
        env: repo.env,
      });
      expect(fallback.exitCode).toBe(0);
      const result = JSON.parse(fallback.stdout);
      expect(result.id).toBe(ids[1]);
      expect(result.skipped.map((s: { id: string; step: string }) => [s.id, s.step])).toEqual([[ids[0], "checksum"]]);
      expect(inspectBank(target)).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE });

      const said = await runCli(["restore", "--name", "app", "-o", join(repo.dir, "again.db"), "--repo", repo.url, "--fallback"], {
        env: repo.env,
      });
      expect(said.exitCode).toBe(0);
      expect(said.stdout).toContain(`skipped app ${ids[0]}`);
      expect(said.stdout).toContain(`restored app ${ids[1]}`);
    });

    test("a truncated object fails step object; a manifest with a wrong checksum fails step checksum", async () => {
      const repo = backend.make();
      const ids = await makeBackups(repo, 3);
      await truncate(repo.storage, await readBackupManifest(repo.storage, "app", ids[1]!));
      await rewriteManifest(repo.storage, await readBackupManifest(repo.storage, "app", ids[2]!), (m) => ({
        ...m,
        database: { ...m.database, sha256: "0".repeat(64) },
      }));
      const { exitCode, report } = await verifyAll(repo);
      expect(exitCode).toBe(4);
      expect(report.results.map((r: { id: string; result: string; step: string | null }) => [r.id, r.result, r.step])).toEqual([
        [ids[0], "pass", null],
        [ids[1], "fail", "object"],
        [ids[2], "fail", "checksum"],
      ]);
    });

    test("a manifest that does not parse fails step manifest", async () => {
      const repo = backend.make();
      const ids = await makeBackups(repo, 2);
      await repo.storage.put(`app/${ids[0]}.json`, new TextEncoder().encode("{ not json"));
      const { exitCode, report } = await verifyAll(repo);
      expect(exitCode).toBe(4);
      expect(report.results.map((r: { id: string; step: string | null }) => [r.id, r.step])).toEqual([
        [ids[0], "manifest"],
        [ids[1], null],
      ]);
      // verify --latest meets the broken newest backup too
      const latest = await runCli(["verify", "app.db", "--repo", repo.url, "--json"], { env: repo.env });
      expect(latest.exitCode).toBe(4);
    });

    test("a data object with no manifest is a warning, never a failure", async () => {
      const repo = backend.make();
      await makeBackups(repo, 1);
      const orphan = dataKey("app", "20200101T000000000Z-deadbeef", "gzip");
      await repo.storage.put(orphan, new TextEncoder().encode("half an upload"));
      const { exitCode, report } = await verifyAll(repo);
      expect(exitCode).toBe(0);
      expect(report.orphans.map((o: { key: string }) => o.key)).toEqual([orphan]);
      const human = await runCli(["verify", "--all", "--repo", repo.url], { env: repo.env });
      expect(human.exitCode).toBe(0);
      expect(human.stderr).toContain(`${orphan} has no manifest`);
      expect(human.stdout).not.toContain(orphan); // named once, on stderr
      expect(human.stdout).toContain("1 data object(s) without a manifest");
      const list = await runCli(["list", "--repo", repo.url, "--json"], { env: repo.env });
      expect(JSON.parse(list.stdout).backups).toHaveLength(1);
    });

    test("an internally corrupt database with consistent checksums fails integrity_check", async () => {
      const repo = backend.make();
      const ids = await makeBackups(repo, 2);
      await storeCorruptDatabase(repo.storage, await readBackupManifest(repo.storage, "app", ids[0]!));
      const { exitCode, report } = await verifyAll(repo);
      expect(exitCode).toBe(4);
      expect(report.results[0]).toMatchObject({ id: ids[0], result: "fail", step: "integrity" });
      expect(report.results[1]).toMatchObject({ id: ids[1], result: "pass" });
      const quick = await verifyAll(repo, ["--quick"]);
      expect(quick.exitCode).toBe(4);
      expect(quick.report.results[0]).toMatchObject({ step: "integrity" });

      const original = readFileSync(repo.db);
      const restore = await runCli(["restore", repo.db, "--repo", repo.url, "--force"], { env: repo.env });
      expect(restore.exitCode).toBe(4);
      expect(restore.stderr).toContain("failed step: integrity");
      expect(readFileSync(repo.db).equals(original)).toBe(true);
    });
  });
}

describe("verify over many backups", () => {
  test("verify --all over 20 backups reports 20 results; --record shows in list", async () => {
    const repo = backends[1]!.make();
    const ids = await makeBackups(repo, 20);
    const { exitCode, report } = await verifyAll(repo, ["--record", "--concurrency", "3"]);
    expect(exitCode).toBe(0);
    expect(report.results).toHaveLength(20);
    expect(report.results.map((r: { id: string }) => r.id)).toEqual(ids);
    expect(report.passed).toBe(20);
    const list = await runCli(["list", "--repo", repo.url, "--json"], { env: repo.env });
    const backups = JSON.parse(list.stdout).backups;
    expect(backups).toHaveLength(20);
    for (const b of backups) expect(Date.parse(b.verifiedAt)).toBeGreaterThan(Date.parse(b.createdAt));
    // verify never rewrote a manifest
    const manifest = await readBackupManifest(repo.storage, "app", ids[0]!);
    expect(Object.keys(manifest)).not.toContain("verifiedAt");
  });

  test("a --record marker that cannot be written: every backup is still checked and reported, that one with a warning; exit 3", async () => {
    const repo = backends[0]!.make();
    const ids = await makeBackups(repo, 3);
    // Where the middle one's marker goes, a directory (with a file in it) that no rename replaces.
    mkdirSync(join(repo.url, "app", `${ids[1]}.verified.json`, "x"), { recursive: true });
    const { exitCode, report } = await verifyAll(repo, ["--record"]);
    expect(exitCode).toBe(3);
    expect(report.results.map((r: { id: string; result: string }) => [r.id, r.result])).toEqual(ids.map((id) => [id, "pass"]));
    expect(report.unrecorded).toBe(1);
    expect(report.results[1].warnings[0]).toStartWith("it passed, but its marker for list (--record) could not be written: ");
    const listed = JSON.parse((await runCli(["list", "--repo", repo.url, "--json"], { env: repo.env })).stdout).backups;
    expect(listed.map((b: { verifiedAt: string | null }) => b.verifiedAt !== null)).toEqual([true, false, true]);
  });

  test("verify with nothing to verify exits 1; bad flags exit 2; no temp files remain", async () => {
    const dir = tempDir("verify-empty");
    const tmp = join(dir, "tmp");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(tmp);
    const repo = join(dir, "repo");
    mkdirSync(repo);
    const none = await runCli(["verify", "--repo", repo, "--tmp-dir", tmp]);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain("no backups");
    expect((await runCli(["verify", "--all", "--id", "x", "--repo", repo])).exitCode).toBe(2);
    expect((await runCli(["verify", "--concurrency", "0", "--repo", repo])).exitCode).toBe(2);
    createBankDb(join(dir, "app.db"));
    expect((await runCli(["backup", join(dir, "app.db"), "--repo", repo])).exitCode).toBe(0);
    expect((await runCli(["verify", "--repo", repo, "--tmp-dir", tmp])).exitCode).toBe(0);
    expect(readdirSync(tmp)).toEqual([]);
  });
});

describe("verify in the foreground", () => {
  test("Ctrl-C during verify exits 130 and removes its temp files", async () => {
    const dir = tempDir("verify-sigint");
    const { mkdirSync } = await import("node:fs");
    const tmp = join(dir, "tmp");
    mkdirSync(tmp);
    const repo = join(dir, "repo");
    const db = join(dir, "big.db");
    createBankDb(db, { fillerRows: 60_000 });
    expect((await runCli(["backup", db, "--repo", repo])).exitCode).toBe(0);
    const proc = spawnCli(["verify", "--repo", repo, "--tmp-dir", tmp]);
    const work = () => readdirSync(tmp).flatMap((d) => readdirSync(join(tmp, d)));
    const deadline = Date.now() + 20_000;
    while (work().length === 0 && Date.now() < deadline) await Bun.sleep(2);
    expect(work().length).toBe(1); // the database is being downloaded
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(130);
    expect(readdirSync(tmp)).toEqual([]);
  });

  test("on a terminal, verify --all shows a progress line", async () => {
    const dir = tempDir("verify-tty");
    const repo = join(dir, "repo");
    createBankDb(join(dir, "app.db"));
    for (let i = 0; i < 2; i++) expect((await runCli(["backup", join(dir, "app.db"), "--repo", repo])).exitCode).toBe(0);
    // script(1) gives the binary a pseudo-terminal.
    const r = Bun.spawnSync(["script", "-qec", `${ensureBinary()} verify --all --repo ${repo}`, "/dev/null"]);
    expect(r.exitCode).toBe(0);
    // Drawn in place and cleared (test/e2e/progress.test.ts looks at the screen it leaves).
    expect(r.stdout.toString()).toMatch(/\r\u001b\[2Kverifying \d\/2 backup\(s\): /);
  });
});
