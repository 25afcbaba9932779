/**
 * Choosing a backup without reading every manifest: `restore --latest` and `status` over a name with
 * many backups read the newest manifest (a few more when it is damaged), `--at` and `--id` read only
 * manifests whose key can match, and the choice is the one reading the whole catalog would make.
 * Counted through a real repository on both backends, by wrapping its get().
 */
import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runBackup } from "../../src/ops/backup.ts";
import { listManifests, newestBackup, readCandidates, readCatalog } from "../../src/repo/catalog.ts";
import { createContext } from "../../src/context.ts";
import { VerificationError } from "../../src/errors.ts";
import { createBackupId, dataKey, manifestKey, parseDataKey, serializeManifest, type BackupManifest } from "../../src/repo/manifest.ts";
import { runVerify } from "../../src/ops/verify.ts";
import { runRestore } from "../../src/ops/restore.ts";
import type { GetOptions, Storage } from "../../src/storage/types.ts";
import { runCli } from "../helpers/cli.ts";
import { createBankDb, removeTempDirs } from "../helpers/db.ts";
import { localRepo, overriding, s3Repo, type TestRepo } from "../helpers/repos.ts";
import { createTestBucket } from "../helpers/s3.ts";
import { readObject } from "../helpers/tamper.ts";

setDefaultTimeout(120_000);

const COPIES = 40;
const HOUR = 3_600_000;

let bucket: Awaited<ReturnType<typeof createTestBucket>> | undefined;
afterAll(async () => {
  await bucket?.cleanup();
  removeTempDirs();
});

/** The same storage, counting the manifests it is asked for. */
function counting(storage: Storage): { storage: Storage; manifestReads: () => number; reset: () => void } {
  let reads = 0;
  const wrapped = new Proxy(storage, {
    get(target, prop, receiver) {
      if (prop === "get")
        return (key: string, options?: unknown) => {
          if (key.endsWith(".json")) reads++;
          return target.get(key, options as never);
        };
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { storage: wrapped, manifestReads: () => reads, reset: () => (reads = 0) };
}

/**
 * One real backup, then COPIES more of it an hour apart going back in time (data object and manifest
 * under each new id, as backups taken then would be). Returns the manifests newest first.
 */
async function manyBackups(repo: TestRepo): Promise<BackupManifest[]> {
  createBankDb(repo.db, { journalMode: "wal" });
  const first = await runBackup(repo.storage, { databasePath: repo.db, compression: "gzip", tmpDir: repo.dir }, createContext());
  const original = JSON.parse(new TextDecoder().decode(await readObject(repo.storage, manifestKey("app", first.id)))) as BackupManifest;
  const data = await readObject(repo.storage, original.stored.key);
  const made: BackupManifest[] = [original];
  const newest = Date.parse(original.createdAt);
  for (let i = 1; i <= COPIES; i++) {
    const createdAt = new Date(newest - i * HOUR);
    const id = createBackupId(createdAt);
    const copy: BackupManifest = { ...structuredClone(original), id, createdAt: createdAt.toISOString() };
    copy.stored.key = dataKey("app", id, "gzip");
    await repo.storage.put(copy.stored.key, data);
    await repo.storage.put(manifestKey("app", id), serializeManifest(copy));
    made.push(copy);
  }
  return made;
}

const backends: [string, () => TestRepo][] = [
  ["local", () => localRepo("catalog")],
  ["S3", () => s3Repo(bucket!.bucket, "catalog")],
];

for (const [backend, makeRepo] of backends) {
  describe(`choosing a backup among many, ${backend}`, () => {
    let repo: TestRepo;
    let made: BackupManifest[];
    beforeAll(async () => {
      if (backend === "S3") bucket ??= await createTestBucket("catalog");
      repo = makeRepo();
      made = await manyBackups(repo);
    });

    test("restore --latest reads one manifest of many and restores the newest", async () => {
      const { storage, manifestReads } = counting(repo.storage);
      const output = join(repo.dir, "latest.db");
      const result = await runRestore(storage, { name: "app", target: output, selection: { latest: true } }, createContext());
      expect(result.action === "restored" && result.id).toBe(made[0]!.id);
      expect(manifestReads()).toBe(1);
      expect(readFileSync(output).length).toBe(made[0]!.database.bytes);
    });

    test("restore asks for the data object the listing shows beside the manifest while it reads the manifest; an answer it does not use is cancelled", async () => {
      const entries = await listManifests(repo.storage, "app");
      expect(entries.map((e) => e.dataKey)).toEqual(made.map((m) => m.stored.key));
      const asked: string[] = [];
      const cancelled: string[] = [];
      let dataAsked!: () => void;
      const askedForData = new Promise<void>((resolve) => (dataAsked = resolve));
      const storage = overriding(repo.storage, {
        get: async (key: string, options?: GetOptions) => {
          asked.push(key);
          // A manifest's answer waits until the data object has been asked for, or 3 s.
          if (key.endsWith(".json"))
            asked.push(
              await Promise.race([
                askedForData.then(() => "released by the data GET"),
                Bun.sleep(3000).then(() => "released by the timer"),
              ]),
            );
          else dataAsked();
          const stream = await repo.storage.get(key, options);
          const cancel = stream.cancel.bind(stream);
          return Object.assign(stream, {
            cancel: (reason?: unknown) => {
              cancelled.push(key);
              return cancel(reason);
            },
          });
        },
      });
      const output = join(repo.dir, "prefetched.db");
      const result = await runRestore(storage, { name: "app", target: output, selection: { latest: true } }, createContext());
      expect(result.action === "restored" && result.id).toBe(made[0]!.id);
      expect(asked).toEqual([made[0]!.stored.key, manifestKey("app", made[0]!.id), "released by the data GET"]);
      expect(cancelled).toEqual([]);
      rmSync(output);

      // The newest manifest is damaged: --fallback restores the one before, and the newest's data GET is cancelled.
      const newestKey = manifestKey("app", made[0]!.id);
      const saved = await readObject(repo.storage, newestKey);
      await repo.storage.put(newestKey, new TextEncoder().encode("{ not json"));
      try {
        asked.length = 0;
        const fellBack = await runRestore(
          storage,
          { name: "app", target: output, selection: { latest: true }, fallback: true },
          createContext(),
        );
        expect(fellBack.action === "restored" && fellBack.id).toBe(made[1]!.id);
        expect(asked.slice(0, 3)).toEqual([made[0]!.stored.key, newestKey, "released by the data GET"]);
        expect(asked).toContain(made[1]!.stored.key);
        expect(cancelled).toEqual([made[0]!.stored.key]);
        rmSync(output);
      } finally {
        await repo.storage.put(newestKey, saved);
      }

      // Two data objects listed under one id: no guess, the manifest says which.
      const other = dataKey("app", made[0]!.id, "zstd");
      await repo.storage.put(other, new Uint8Array(8));
      try {
        expect((await listManifests(repo.storage, "app"))[0]!.dataKey).toBeUndefined();
      } finally {
        await repo.storage.delete([other]);
      }
    });

    test("--at and --id read only the manifests whose key can match, and pick what the whole catalog would", async () => {
      const { storage, manifestReads, reset } = counting(repo.storage);
      const catalog = await readCatalog(repo.storage, "app");
      expect(catalog.backups.map((b) => b.id)).toEqual(made.map((m) => m.id));
      const entries = await listManifests(storage, "app");
      expect(entries.map((e) => e.id)).toEqual(made.map((m) => m.id));
      const at = (time: Date) => ({ at: time, through: time });
      const first = async (selection: Parameters<typeof readCandidates>[2]) => {
        for await (const candidate of readCandidates(storage, entries, selection))
          return candidate.ok ? candidate.manifest.id : `invalid ${candidate.entry.id}`;
        return undefined;
      };
      reset();
      // Half an hour after the 10th copy: the 10th copy, whose id is the newest not after that time.
      expect(await first(at(new Date(Date.parse(made[10]!.createdAt) + HOUR / 2)))).toBe(made[10]!.id);
      expect(manifestReads()).toBe(1);
      reset();
      expect(await first(at(new Date(made[25]!.createdAt)))).toBe(made[25]!.id); // at exactly its time
      expect(await first({ id: made[33]!.id })).toBe(made[33]!.id);
      expect(manifestReads()).toBe(2);
      reset();
      expect(await first(at(new Date(Date.parse(made.at(-1)!.createdAt) - 1)))).toBeUndefined();
      expect(await first({ id: createBackupId(new Date()) })).toBeUndefined();
      expect(manifestReads()).toBe(0);
    });

    test("a damaged newest manifest (or one of a newer format) is refused, never silently replaced by an older backup; --fallback passes over it", async () => {
      const { storage, manifestReads, reset } = counting(repo.storage);
      const newestKey = manifestKey("app", made[0]!.id);
      const saved = await readObject(repo.storage, newestKey);
      const damages: [string, Uint8Array][] = [
        ["not JSON", new TextEncoder().encode("{ not json")],
        ["a newer format", new TextEncoder().encode(new TextDecoder().decode(saved).replace('"formatVersion": 1', '"formatVersion": 2'))],
      ];
      try {
        for (const [what, bytes] of damages) {
          await repo.storage.put(newestKey, bytes);
          reset();
          const newest = await newestBackup(storage, await listManifests(storage, "app"));
          expect(newest?.ok === false && newest.entry.id, what).toBe(made[0]!.id);
          expect(manifestReads()).toBe(1);

          const output = join(repo.dir, "refused.db");
          for (const selection of [{ latest: true as const }, { id: made[0]!.id }]) {
            const refused = runRestore(storage, { name: "app", target: output, selection }, createContext());
            await expect(refused, what).rejects.toBeInstanceOf(VerificationError);
            await expect(refused, what).rejects.toMatchObject({ step: "manifest" });
            expect(existsSync(output)).toBe(false);
          }

          reset();
          const fellBack = await runRestore(
            storage,
            { name: "app", target: output, selection: { latest: true }, fallback: true },
            createContext(),
          );
          expect(fellBack.action === "restored" && fellBack.id, what).toBe(made[1]!.id);
          expect(fellBack.action === "restored" && fellBack.skipped.map((s) => [s.id, s.step, s.createdAt]), what).toEqual([
            [made[0]!.id, "manifest", made[0]!.createdAt],
          ]);
          expect(manifestReads()).toBeLessThan(COPIES / 2);
          rmSync(output);

          const status = await runCli(["status", "--name", "app", "--repo", repo.url], { env: repo.env });
          expect(status.exitCode, what).toBe(1);
          expect(status.stderr).toContain(`the newest backup of app, ${made[0]!.id}, cannot be used`);
        }
      } finally {
        await repo.storage.put(newestKey, saved);
      }
    });

    test("verify --all while a prune removes backups: the removed ones are not counted as failures", async () => {
      const doomed = new Set([made[5]!.id, made[6]!.id]);
      const storage = repo.storage;
      const pruning: Storage = overriding(storage, {
        // A prune elsewhere removes these two (manifest, then data) just as verify comes to their data.
        get: async (key: string, options?: GetOptions) => {
          const id = parseDataKey(key)?.id;
          if (id && doomed.has(id)) await storage.delete([manifestKey("app", id), key]);
          return storage.get(key, options);
        },
      });
      try {
        const report = await runVerify(pruning, { name: "app", selection: "all", tmpDir: repo.dir, concurrency: 4 }, createContext());
        expect(report.failed).toBe(0);
        expect(report.results.map((r) => r.id)).toEqual(made.map((m) => m.id).filter((id) => !doomed.has(id)));
      } finally {
        // Put them back for the tests that follow.
        const data = await readObject(storage, made[0]!.stored.key);
        for (const m of made.filter((m) => doomed.has(m.id))) {
          await storage.put(m.stored.key, data);
          await storage.put(manifestKey("app", m.id), serializeManifest(m));
        }
      }
    });

    test("restore --if-missing does not start empty when backups exist but no manifest is valid; a repository not created yet is a fresh start", async () => {
      const other = makeRepo();
      const id = createBackupId(new Date());
      await other.storage.put(manifestKey("app", id), new TextEncoder().encode("{ not json"));
      const run = runRestore(
        other.storage,
        { name: "app", target: other.db, selection: { latest: true }, ifMissing: true },
        createContext(),
      );
      await expect(run).rejects.toBeInstanceOf(VerificationError);
      await expect(run).rejects.toMatchObject({ step: "manifest" });
      expect(existsSync(other.db)).toBe(false);
      // With no manifest at all, --if-missing is a fresh start, also where the repository is yet to be created.
      const empty = makeRepo();
      const fresh = await runRestore(
        empty.storage,
        { name: "app", target: empty.db, selection: { latest: true }, ifMissing: true },
        createContext(),
      );
      expect(fresh.action === "skipped" && fresh.reason).toBe("no-backups");
      const cli = await runCli(
        ["restore", join(empty.dir, "cli.db"), "--repo", backend === "local" ? join(empty.dir, "not-yet") : empty.url, "--if-missing"],
        { env: empty.env },
      );
      expect(cli.exitCode).toBe(0);
      expect(cli.stderr).toContain("starting without one");
    });
  });
}
