/**
 * Consistent snapshots of live databases: a writer process keeps committing transfers that preserve
 * the total balance while backups run; every restored copy passes integrity_check and holds the total.
 * Both journal modes, both backends (the local directory and the real S3 server).
 */
import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { runBackup } from "../../src/ops/backup.ts";
import { readCatalog } from "../../src/repo/catalog.ts";
import { createContext } from "../../src/context.ts";
import { runRestore } from "../../src/ops/restore.ts";
import { FileStorage } from "../../src/storage/file.ts";
import { openStorage } from "../../src/storage/index.ts";
import type { Storage } from "../../src/storage/types.ts";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, removeTempDirs, startWriter, tempDir } from "../helpers/db.ts";
import { createTestBucket, s3Env, s3RepoUrl } from "../helpers/s3.ts";

// Real databases through a real S3 server (and retries with backoff) take more than the default 5 s.
setDefaultTimeout(120_000);

const backends: { label: string; open: () => Promise<Storage> }[] = [
  { label: "local directory", open: async () => new FileStorage(join(tempDir("live-repo"), "repo")) },
  {
    label: "S3",
    open: async () => {
      bucket ??= await createTestBucket("live");
      return openStorage(s3RepoUrl(bucket.bucket, `live-${Math.random().toString(36).slice(2)}`), { env: s3Env() });
    },
  },
];
let bucket: Awaited<ReturnType<typeof createTestBucket>> | undefined;

afterAll(async () => {
  await bucket?.cleanup();
  removeTempDirs();
});

for (const backend of backends) {
  for (const journalMode of ["wal", "delete"] as const) {
    describe(`${backend.label}, ${journalMode} journal mode`, () => {
      let dir: string;
      let db: string;
      beforeAll(() => {
        dir = tempDir(`live-${journalMode}`);
        db = join(dir, "bank.db");
        createBankDb(db, { journalMode, fillerRows: 20_000 });
      });

      test("backups taken while a writer commits restore to consistent databases", async () => {
        const storage = await backend.open();
        const ctx = createContext();
        const writer = startWriter(db);
        try {
          await writer.waitForCommits(100);
          for (let i = 0; i < 3; i++) {
            await runBackup(storage, { databasePath: db, compression: i === 1 ? "zstd" : "gzip", tmpDir: dir }, ctx);
            await writer.waitForCommits(100 * (i + 2));
          }
        } finally {
          const commits = await writer.stop();
          expect(commits).toBeGreaterThan(300);
        }
        const { backups } = await readCatalog(storage, "bank");
        expect(backups).toHaveLength(3);
        const seen = new Set<number>();
        for (const backup of backups) {
          const out = join(dir, `restored-${backup.id}.db`);
          const result = await runRestore(storage, { name: "bank", target: out, selection: { id: backup.id } }, ctx);
          expect(result.action).toBe("restored");
          const bank = inspectBank(out);
          expect(bank.integrity).toBe("ok");
          expect(bank.total).toBe(ACCOUNTS * INITIAL_BALANCE);
          seen.add(bank.transfers);
        }
        // Each backup caught the writer at a different point: they are real snapshots of a live database.
        expect(seen.size).toBe(3);
        // The live database itself is still whole.
        expect(inspectBank(db).total).toBe(ACCOUNTS * INITIAL_BALANCE);
        // No snapshot temp files remain.
        expect(readdirSync(dir).filter((f) => f.startsWith("sqlite-vault-"))).toEqual([]);
      });

      test("backup never modifies the source database", async () => {
        const storage = await backend.open();
        const before = readFileSync(db);
        const mtime = statSync(db).mtimeMs;
        await runBackup(storage, { databasePath: db, compression: "gzip", tmpDir: dir }, createContext());
        expect(readFileSync(db).equals(before)).toBe(true);
        expect(statSync(db).mtimeMs).toBe(mtime);
      });
    });
  }
}
