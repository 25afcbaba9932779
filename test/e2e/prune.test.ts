/**
 * prune and backup --keep-… through the compiled binary, against the real S3 server and the local
 * directory. Backups dated weeks apart are made with the SQLITE_VAULT_NOW test hook, which sets the
 * clock backup and prune plan with (never the grace period, which uses the real clock).
 */
import { describe, expect, test, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { runPrune } from "../../src/ops/prune.ts";
import { createContext } from "../../src/context.ts";
import { createBackupId, dataKey, manifestKey, parseDataKey, serializeManifest, type BackupManifest } from "../../src/repo/manifest.ts";
import { runBackup } from "../../src/ops/backup.ts";
import { readBackupManifest, readObject } from "../helpers/tamper.ts";
import { parseDuration, parsePolicy, planRetention } from "../../src/repo/retention.ts";
import type { PutOptions, Storage } from "../../src/storage/types.ts";
import { createBankDb, inspectBank } from "../helpers/db.ts";
import { runCli } from "../helpers/cli.ts";
import { useTestBucket, abandonUpload, adminClient } from "../helpers/s3.ts";
import { localRepo as localRepoIn, overriding, s3Repo as s3RepoIn, type TestRepo } from "../helpers/repos.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

const bucket = useTestBucket("e2e-prune");

type Repo = TestRepo;
const s3Repo = () => s3RepoIn(bucket.bucket, "prune-s3");
const localRepo = () => localRepoIn("prune-local");

/** Backups of one database at the given (fake) times; returns { id, createdAt } newest first. */
async function backupsAt(repo: Repo, times: string[]): Promise<{ id: string; createdAt: string }[]> {
  createBankDb(repo.db, { fillerRows: 50 });
  const made: { id: string; createdAt: string }[] = [];
  for (const time of times) {
    const r = await runCli(["backup", repo.db, "--repo", repo.url, "--json"], { env: { ...repo.env, SQLITE_VAULT_NOW: time } });
    expect(r.exitCode).toBe(0);
    const { id, createdAt } = JSON.parse(r.stdout);
    made.unshift({ id, createdAt });
  }
  return made;
}

async function listIds(repo: Repo): Promise<string[]> {
  const r = await runCli(["list", "--repo", repo.url, "--json"], { env: repo.env });
  expect(r.exitCode).toBe(0);
  return JSON.parse(r.stdout).backups.map((b: { id: string }) => b.id);
}

/** Every fourth day from 2026-09-01 to 2026-11-20, at uneven hours: 21 backups over 12 weeks. */
const SPAN = Array.from({ length: 21 }, (_, i) => new Date(Date.UTC(2026, 8, 1 + 4 * i, (i * 7) % 24, 13)).toISOString());
const NOW = "2026-11-21T12:00:00.000Z";
const POLICY = ["--keep-daily", "3", "--keep-weekly", "4", "--keep-monthly", "6"];

for (const [label, make] of [
  ["S3", s3Repo],
  ["local directory", localRepo],
] as const) {
  describe(`prune: ${label}`, () => {
    test("exactly the planned backups remain, and every remaining one restores", async () => {
      const repo = make();
      const made = await backupsAt(repo, SPAN);
      const expected = planRetention(made, parsePolicy({ "keep-daily": "3", "keep-weekly": "4", "keep-monthly": "6" }), new Date(NOW));
      expect(expected.remove.length).toBeGreaterThan(5);

      const dry = await runCli(["prune", "--repo", repo.url, ...POLICY, "--dry-run", "--json"], {
        env: { ...repo.env, SQLITE_VAULT_NOW: NOW },
      });
      expect(dry.exitCode).toBe(0);
      const plan = JSON.parse(dry.stdout);
      expect(plan.names[0].keep.map((k: { id: string }) => k.id)).toEqual(expected.keep.map((k) => k.backup.id));
      expect(plan.names[0].removed).toEqual([]);
      expect(await listIds(repo)).toHaveLength(SPAN.length); // a dry run deletes nothing

      const human = await runCli(["prune", "--repo", repo.url, ...POLICY, "--dry-run"], { env: { ...repo.env, SQLITE_VAULT_NOW: NOW } });
      expect(human.stdout).toContain("would remove");
      expect(human.stdout).toContain("newest, daily, weekly, monthly");

      const real = await runCli(["prune", "--repo", repo.url, ...POLICY, "--json"], { env: { ...repo.env, SQLITE_VAULT_NOW: NOW } });
      expect(real.exitCode).toBe(0);
      expect(JSON.parse(real.stdout).names[0].removed).toEqual(expected.remove.map((b) => b.id));
      expect(await listIds(repo)).toEqual(expected.keep.map((k) => k.backup.id));
      // nothing of a removed backup is left behind
      for (const b of expected.remove) {
        expect(await repo.storage.stat(manifestKey("app", b.id))).toBeNull();
        expect(await repo.storage.stat(dataKey("app", b.id, "gzip"))).toBeNull();
      }
      const verify = await runCli(["verify", "--all", "--repo", repo.url, "--json"], { env: repo.env });
      expect(verify.exitCode).toBe(0);
      expect(JSON.parse(verify.stdout).passed).toBe(expected.keep.length);
      const oldest = expected.keep.at(-1)!.backup.id;
      const out = join(repo.dir, "oldest.db");
      expect((await runCli(["restore", "--name", "app", "--id", oldest, "-o", out, "--repo", repo.url], { env: repo.env })).exitCode).toBe(
        0,
      );
      expect(inspectBank(out).integrity).toBe("ok");
    });

    test("prune without a policy is a usage error; the newest backup always stays", async () => {
      const repo = make();
      const made = await backupsAt(repo, ["2020-01-01T00:00:00.000Z", "2020-02-01T00:00:00.000Z"]);
      const none = await runCli(["prune", "--repo", repo.url], { env: repo.env });
      expect(none.exitCode).toBe(2);
      expect(none.stderr).toContain("prune needs a retention policy");
      const r = await runCli(["prune", "--repo", repo.url, "--keep-within", "1d"], { env: repo.env });
      expect(r.exitCode).toBe(0);
      expect(await listIds(repo)).toEqual([made[0]!.id]);
    });

    test("a broken newest backup (data object missing or cut short) does not count: --keep-last 1 keeps the newest one that restores, and leaves the broken one alone", async () => {
      const times = ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z", "2026-01-04T00:00:00.000Z"];
      for (const damage of ["missing", "cut short"] as const) {
        const repo = make();
        const made = await backupsAt(repo, times);
        const key = dataKey("app", made[0]!.id, "gzip");
        if (damage === "missing") await repo.storage.delete([key]);
        else await repo.storage.put(key, new Uint8Array(100));
        const env = { ...repo.env, SQLITE_VAULT_NOW: "2026-01-05T00:00:00.000Z" };

        const dry = await runCli(["prune", "--repo", repo.url, "--keep-last", "1", "--dry-run", "--json"], { env });
        expect(dry.exitCode, damage).toBe(0);
        const plan = JSON.parse(dry.stdout).names[0];
        expect(
          plan.keep.map((k: { id: string }) => k.id),
          damage,
        ).toEqual([made[1]!.id]);
        expect(plan.keep[0].reasons).toContain("newest");
        expect(plan.remove.map((b: { id: string }) => b.id)).toEqual([made[2]!.id, made[3]!.id]);
        expect(plan.damaged.map((d: { id: string }) => d.id)).toEqual([made[0]!.id]);

        const real = await runCli(["prune", "--repo", repo.url, "--keep-last", "1"], { env });
        expect(real.exitCode, damage).toBe(0);
        expect(real.stdout).toContain("left alone");
        expect(real.stderr).toContain(`app ${made[0]!.id} cannot be restored`);
        // status calls such a newest backup what it is, too: not a usable one.
        const status = await runCli(["status", "--name", "app", "--repo", repo.url], { env: repo.env });
        expect(status.exitCode, damage).toBe(1);
        expect(status.stderr).toContain(`the newest backup of app, ${made[0]!.id}, cannot be restored`);
        expect(await listIds(repo)).toEqual([made[0]!.id, made[1]!.id]);
        const restored = join(repo.dir, "restored.db");
        const restore = await runCli(["restore", "--name", "app", "--output", restored, "--fallback", "--repo", repo.url], {
          env: repo.env,
        });
        expect(restore.exitCode, restore.stderr).toBe(0);
        expect(inspectBank(restored).integrity).toBe("ok");
      }
    });

    test("backup --keep-last prunes after its own backup succeeded; a failed backup never prunes", async () => {
      const repo = make();
      await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"]);
      const failed = await runCli(["backup", join(repo.dir, "missing.db"), "--name", "app", "--repo", repo.url, "--keep-last", "1"], {
        env: repo.env,
      });
      expect(failed.exitCode).toBe(1);
      expect(await listIds(repo)).toHaveLength(3);
      const ok = await runCli(["backup", repo.db, "--repo", repo.url, "--keep-last", "2", "--json"], {
        env: { ...repo.env, SQLITE_VAULT_NOW: "2026-01-04T00:00:00.000Z" },
      });
      expect(ok.exitCode).toBe(0);
      const result = JSON.parse(ok.stdout);
      expect(result.prune.names[0].removed).toHaveLength(2);
      expect(await listIds(repo)).toEqual([result.id, result.prune.names[0].keep[1].id]);
    });
  });
}

describe("prune order and failures", () => {
  test("each backup's manifest is deleted before its data object", async () => {
    const repo = localRepo();
    const made = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"]);
    const deletes: string[] = [];
    const storage = repo.storage;
    const recording: Storage = overriding(storage, {
      delete: async (keys: string[]) => {
        deletes.push(...keys);
        return storage.delete(keys);
      },
    });
    await runPrune(recording, { policy: parsePolicy({ "keep-last": "1" }), grace: parseDuration("24h"), now: new Date() }, createContext());
    for (const b of made.slice(1)) {
      const m = deletes.indexOf(manifestKey("app", b.id));
      const d = deletes.indexOf(dataKey("app", b.id, "gzip"));
      expect(m).toBeGreaterThanOrEqual(0);
      expect(d).toBeGreaterThan(m);
    }
  });

  test("a backup that commits while prune runs keeps its data: leftovers are judged as of the listing, and looked at again before they go", async () => {
    for (const backend of ["local", "S3"] as const) {
      const repo = backend === "local" ? localRepo() : s3Repo();
      const made = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]);
      // A third backup caught between its data upload and its manifest: its data object, no manifest yet.
      const original = await readBackupManifest(repo.storage, "app", made[0]!.id);
      const id = createBackupId(new Date("2026-01-03T00:00:00.000Z"));
      const late: BackupManifest = { ...structuredClone(original), id, createdAt: "2026-01-03T00:00:00.000Z" };
      late.stored.key = dataKey("app", id, "gzip");
      await repo.storage.put(late.stored.key, await readObject(repo.storage, original.stored.key));
      await Bun.sleep(2100); // older than the grace below by the time prune lists it
      const storage = repo.storage;
      let committed = false;
      const racing: Storage = overriding(storage, {
        // The first delete (retention removing the oldest backup) is when the late backup commits.
        delete: async (keys: string[]) => {
          if (!committed) {
            committed = true;
            await storage.put(manifestKey("app", id), serializeManifest(late));
          }
          return storage.delete(keys);
        },
      });
      const report = await runPrune(
        racing,
        { policy: parsePolicy({ "keep-last": "1" }), grace: parseDuration("2s"), now: new Date("2026-01-04T00:00:00.000Z") },
        createContext(),
      );
      expect(committed).toBe(true);
      expect(report.housekeeping.removed, backend).toEqual([]);
      expect(await storage.stat(late.stored.key), backend).not.toBeNull();
      const restored = join(repo.dir, `late-${backend}.db`);
      const r = await runCli(["restore", "--name", "app", "--id", id, "-o", restored, "--repo", repo.url], { env: repo.env });
      expect(r.exitCode, r.stderr).toBe(0);
    }
  });

  test("a leftover young at the listing stays young however long prune's deletes take", async () => {
    const repo = localRepo();
    await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]);
    const leftover = dataKey("app", createBackupId(new Date("2026-01-03T00:00:00.000Z")), "gzip");
    await repo.storage.put(leftover, new Uint8Array(10));
    const storage = repo.storage;
    const slow: Storage = overriding(storage, {
      delete: async (keys: string[]) => {
        await Bun.sleep(1500);
        return storage.delete(keys);
      },
    });
    const report = await runPrune(
      slow,
      { policy: parsePolicy({ "keep-last": "1" }), grace: parseDuration("1s"), now: new Date("2026-01-04T00:00:00.000Z") },
      createContext(),
    );
    expect(report.housekeeping.young).toContain(leftover);
    expect(await storage.stat(leftover)).not.toBeNull();
  });

  test("a backup whose data object is removed while its manifest is written fails, and lists nothing", async () => {
    const repo = localRepo();
    createBankDb(repo.db);
    const storage = repo.storage;
    const pruning: Storage = overriding(storage, {
      // A prune elsewhere with a short --grace takes the data object for a leftover, just then.
      put: async (key: string, body: Uint8Array | ReadableStream<Uint8Array>, options?: PutOptions) => {
        if (key.endsWith(".json")) for await (const o of storage.list("app/")) if (parseDataKey(o.key)) await storage.delete([o.key]);
        return storage.put(key, body, options);
      },
    });
    const run = runBackup(pruning, { databasePath: repo.db, compression: "gzip", tmpDir: repo.dir }, createContext());
    await expect(run).rejects.toThrow(/was removed while its manifest was written; nothing was backed up/);
    expect(await listIds(repo)).toEqual([]);
  });

  test("S3 refusing some deletes: exit 3, and what remains is listed and restorable", async () => {
    const repo = s3Repo();
    const made = await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"]);
    const protectedId = made[2]!.id;
    await setDenyDelete([`${repo.prefix}/${manifestKey("app", protectedId)}`]);
    try {
      const r = await runCli(["prune", "--repo", repo.url, "--keep-last", "1"], { env: repo.env });
      expect(r.exitCode).toBe(3);
      expect(r.stdout).toContain(`could not remove app ${protectedId}`);
      expect(await listIds(repo)).toEqual([made[0]!.id, protectedId]);
    } finally {
      await clearPolicy();
    }
    expect(
      (await runCli(["restore", "--name", "app", "--id", protectedId, "-o", join(repo.dir, "p.db"), "--repo", repo.url], { env: repo.env }))
        .exitCode,
    ).toBe(0);
  });

  test("S3 refusing every delete: exit 12 with a hint about backup-only credentials", async () => {
    const repo = s3Repo();
    await backupsAt(repo, ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]);
    await setDenyDelete([`${repo.prefix}/*`]);
    try {
      const r = await runCli(["prune", "--repo", repo.url, "--keep-last", "1"], { env: repo.env });
      expect(r.exitCode).toBe(12);
      expect(r.stderr).toContain("a backup-only credential cannot prune");
      expect(await listIds(repo)).toHaveLength(2);
    } finally {
      await clearPolicy();
    }
  });
});

describe("housekeeping", () => {
  for (const [label, make] of [
    ["S3", s3Repo],
    ["local directory", localRepo],
  ] as const) {
    test(`${label}: leftovers older than the grace period are removed, younger ones are not`, async () => {
      const repo = make();
      const [kept] = await backupsAt(repo, ["2026-01-01T00:00:00.000Z"]);
      const oldOrphan = dataKey("app", "20250101T000000000Z-0000aaaa", "gzip");
      await repo.storage.put(oldOrphan, new TextEncoder().encode("interrupted upload"));
      await abandon(repo, "app/20250101T000000000Z-0000bbbb.sqlite.gz");
      // Another tool's upload where the repository is (a bucket's root shared with it): never ours to abort.
      if (repo.prefix) await abandonUpload(repo.storage, "other-tool/report.csv");
      await Bun.sleep(3500);
      const youngOrphan = dataKey("app", "20250101T000000000Z-0000cccc", "gzip");
      await repo.storage.put(youngOrphan, new TextEncoder().encode("a backup in progress elsewhere"));
      await abandon(repo, "app/20250101T000000000Z-0000dddd.sqlite.gz");

      const r = await runCli(["prune", "--repo", repo.url, "--keep-last", "5", "--grace", "2s", "--json"], { env: repo.env });
      expect(r.exitCode).toBe(0);
      const { housekeeping } = JSON.parse(r.stdout);
      expect(housekeeping.removed).toEqual([oldOrphan]);
      expect(housekeeping.aborted).toHaveLength(1);
      expect(housekeeping.young).toHaveLength(2);
      expect(await repo.storage.stat(oldOrphan)).toBeNull();
      expect(await repo.storage.stat(youngOrphan)).not.toBeNull();
      const partial: string[] = [];
      for await (const w of repo.storage.listPartialWrites("")) partial.push(w.key);
      expect(partial).toHaveLength(repo.prefix ? 2 : 1);
      if (repo.prefix) expect(partial).toContain("other-tool/report.csv");
      expect(await listIds(repo)).toEqual([kept!.id]);

      // with the default grace of 24h, nothing of the kind is touched
      const again = await runCli(["prune", "--repo", repo.url, "--keep-last", "5", "--json"], { env: repo.env });
      expect(JSON.parse(again.stdout).housekeeping).toMatchObject({ removed: [], aborted: [] });
    });
  }
});

async function abandon(repo: Repo, key: string): Promise<void> {
  if (repo.prefix) return abandonUpload(repo.storage, key);
  const { mkdirSync, writeFileSync } = await import("node:fs");
  const { TEMP_MARK } = await import("../../src/storage/file.ts");
  const dir = join(repo.url, key.split("/")[0]!);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${TEMP_MARK}${crypto.randomUUID()}`), "half a write");
}

async function setDenyDelete(resources: string[]): Promise<void> {
  const policy = {
    Version: "2012-10-17",
    Statement: [
      { Effect: "Deny", Principal: "*", Action: ["s3:DeleteObject"], Resource: resources.map((r) => `arn:aws:s3:::${bucket.bucket}/${r}`) },
    ],
  };
  await adminClient(bucket.bucket).makeRequest({
    method: "PUT",
    objectName: "",
    query: { policy: "" },
    payload: JSON.stringify(policy),
    statusCode: 204,
  });
}

async function clearPolicy(): Promise<void> {
  await adminClient(bucket.bucket)
    .makeRequest({ method: "DELETE", objectName: "", query: { policy: "" }, statusCode: 204 })
    .catch(() => {});
}
