/**
 * What a lost answer may leave in a repository: a manifest stored whose answer never came. Through the compiled binary where the outcome is the user's, and
 * the fault proxy in front of the real S3 server for the network's part.
 */
import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { runBackup } from "../../src/backup.ts";
import { createContext } from "../../src/context.ts";
import type { PutOptions, Storage } from "../../src/storage/types.ts";
import { runCli } from "../helpers/cli.ts";
import { createBankDb, removeTempDirs } from "../helpers/db.ts";
import { on, startFaultProxy, type FaultProxy } from "../helpers/fault-proxy.ts";
import { localRepo, overriding, type TestRepo } from "../helpers/repos.ts";
import { createTestBucket, s3Env, s3RepoUrl, testS3 } from "../helpers/s3.ts";
import { openStorage } from "../../src/storage/index.ts";

setDefaultTimeout(120_000);

let bucket: Awaited<ReturnType<typeof createTestBucket>>;
let proxy: FaultProxy;
beforeAll(async () => {
  bucket = await createTestBucket("e2e-anomalies");
  proxy = await startFaultProxy(testS3().endpoint);
});
afterAll(async () => {
  await proxy?.stop();
  await bucket?.cleanup();
  removeTempDirs();
});

/** A repository on the real S3 server, reached through the fault proxy (its `storage`: directly). */
function proxiedRepo(label: string): TestRepo {
  const repo = localRepo(label);
  const prefix = `${label}-${Math.random().toString(36).slice(2, 10)}`;
  const env = s3Env();
  return { ...repo, url: `s3://${bucket.bucket}/${prefix}?endpoint=${encodeURIComponent(proxy.url)}`, env, storage: openStorage(s3RepoUrl(bucket.bucket, prefix), { env }), prefix };
}

async function keys(storage: Storage): Promise<string[]> {
  const all: string[] = [];
  for await (const object of storage.list("")) all.push(object.key);
  return all;
}

async function listed(repo: TestRepo): Promise<{ id: string; futureDated: boolean }[]> {
  const r = await runCli(["list", "--repo", repo.url, "--json"], { env: repo.env });
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout).backups;
}

describe("a manifest stored whose answer was lost", () => {
  test("the backup fails, and leaves no listed backup without data: restore --if-missing starts fresh, nothing is left behind", async () => {
    const repo = proxiedRepo("lost-manifest");
    createBankDb(repo.db, { fillerRows: 20 });
    proxy.clear();
    proxy.add({ method: "PUT", match: on.object(".json"), times: 1000, fault: { kind: "drop-response" } });
    let backup;
    try {
      backup = await runCli(["backup", repo.db, "--repo", repo.url, "--timeout", "2s", "--retries", "1"], { env: repo.env });
      expect(proxy.injected.length).toBeGreaterThan(0);
    } finally {
      proxy.clear();
    }
    expect(backup.exitCode).toBe(10);
    expect(await listed(repo)).toEqual([]);
    const target = join(repo.dir, "fresh.db");
    const start = await runCli(["restore", "--name", "app", "-o", target, "--if-missing", "--repo", repo.url], { env: repo.env });
    expect(start.exitCode, start.stderr).toBe(0);
    expect(start.stderr).toContain("no backups of app");
    expect(await keys(repo.storage)).toEqual([]); // the manifest went first, then the data
  });

  test("when the manifest cannot be removed either, its data object stays: the backup that may be listed restores", async () => {
    const repo = localRepo("e2e-lost-manifest-undeletable");
    createBankDb(repo.db, { fillerRows: 20 });
    const storage = repo.storage;
    const lossy: Storage = overriding(storage, {
      // The manifest is stored, but its answer is lost; so is the answer to deleting it.
      put: async (key: string, body: Uint8Array | ReadableStream<Uint8Array>, options?: PutOptions) => {
        const result = await storage.put(key, body, options);
        if (key.endsWith(".json")) throw new Error("connection reset");
        return result;
      },
      delete: async (keys: string[]) => {
        if (keys.some((k) => k.endsWith(".json"))) throw new Error("connection reset");
        return storage.delete(keys);
      },
    });
    await expect(runBackup(lossy, { databasePath: repo.db, compression: "gzip", tmpDir: repo.dir }, createContext())).rejects.toThrow("connection reset");
    const [only] = await listed(repo);
    expect(only).toBeDefined();
    const out = join(repo.dir, "restored.db");
    const r = await runCli(["restore", "--name", "app", "--id", only!.id, "-o", out, "--repo", repo.url], { env: repo.env });
    expect(r.exitCode, r.stderr).toBe(0);
  });

  test("a failure after the manifest is stored (the data check's request fails) takes the manifest back before the data", async () => {
    const repo = localRepo("e2e-after-commit");
    createBankDb(repo.db, { fillerRows: 20 });
    const storage = repo.storage;
    const deletes: string[] = [];
    const failing: Storage = overriding(storage, {
      stat: async () => {
        throw new Error("connection reset");
      },
      delete: async (keys: string[]) => {
        deletes.push(...keys);
        return storage.delete(keys);
      },
    });
    await expect(runBackup(failing, { databasePath: repo.db, compression: "gzip", tmpDir: repo.dir }, createContext())).rejects.toThrow("connection reset");
    expect(await listed(repo)).toEqual([]);
    expect(deletes.findIndex((k) => k.endsWith(".json"))).toBe(0);
    expect(deletes.some((k) => k.endsWith(".sqlite.gz"))).toBe(true);
    expect(await keys(storage)).toEqual([]);
  });
});
