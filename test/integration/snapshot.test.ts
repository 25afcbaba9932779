/**
 * The two ways a snapshot is copied (src/snapshot.ts): a plain file copy when the database file
 * itself holds the read transaction's snapshot and nothing can write it meanwhile, else SQLite's
 * backup API through the WAL. Each case, the WAL-index reader, and many snapshots of a database
 * whose writer checkpoints after every commit (so that both ways run while it writes), each one
 * checked for the bank's invariant and integrity.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Database } from "bun:sqlite";
import { appendFileSync, copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createContext } from "../../src/context.ts";
import { createSnapshot, readWalIndex } from "../../src/snapshot.ts";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, removeTempDirs, startWriter, tempDir } from "../helpers/db.ts";

setDefaultTimeout(60_000);
afterAll(removeTempDirs);

async function snapshotOf(db: string) {
  const ctx = createContext();
  const snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
  return { snapshot, bytes: readFileSync(snapshot.path), done: () => ctx.temp.remove(snapshot.dir) };
}

function countTransfers(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.query("SELECT COUNT(*) AS n FROM transfers").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe("snapshot copy", () => {
  test("rollback-journal database: a file copy, byte for byte the database, private to us", async () => {
    const db = join(tempDir("snap-delete"), "bank.db");
    createBankDb(db, { journalMode: "delete", fillerRows: 2000 });
    const { snapshot, bytes, done } = await snapshotOf(db);
    expect(snapshot.method).toBe("file-copy");
    expect(snapshot.journalMode).toBe("delete");
    expect(bytes.equals(readFileSync(db))).toBe(true);
    expect(snapshot.bytes).toBe(snapshot.pageSize * snapshot.pageCount);
    expect((await Bun.file(snapshot.path).stat()).mode & 0o777).toBe(0o600);
    done();
  });

  test("WAL database with every frame checkpointed: a file copy", async () => {
    const db = join(tempDir("snap-wal-idle"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 2000 }); // closing checkpoints and removes the WAL
    const { snapshot, bytes, done } = await snapshotOf(db);
    expect(snapshot.method).toBe("file-copy");
    expect(snapshot.journalMode).toBe("wal");
    expect(bytes.equals(readFileSync(db))).toBe(true);
    done();
  });

  test("WAL frames not checkpointed yet: the backup API, with the committed frames; after a checkpoint, a file copy with them too", async () => {
    const db = join(tempDir("snap-wal-busy"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 2000 });
    const before = countTransfers(db);
    const app = new Database(db);
    try {
      app.run("PRAGMA wal_autocheckpoint = 0");
      const insert = app.prepare("INSERT INTO transfers (src, dst, amount, at) VALUES (1, 2, 3, 'now')");
      app.transaction(() => {
        for (let i = 0; i < 500; i++) insert.run();
      })();
      insert.finalize();
      const wal = readWalIndex(`${db}-shm`);
      expect(wal).not.toBe("absent");
      expect(wal).not.toBe("torn");
      if (typeof wal === "object") expect(wal.nBackfill).toBeLessThan(wal.mxFrame);
      const fileBefore = readFileSync(db);

      const viaWal = await snapshotOf(db);
      expect(viaWal.snapshot.method).toBe("backup-api");
      expect(countTransfers(viaWal.snapshot.path)).toBe(before + 500);
      viaWal.done();
      // The source was neither written nor checkpointed.
      expect(readFileSync(db).equals(fileBefore)).toBe(true);

      app.run("PRAGMA wal_checkpoint(PASSIVE)"); // the application checkpoints; its connection stays open
      const viaFile = await snapshotOf(db);
      expect(viaFile.snapshot.method).toBe("file-copy");
      expect(countTransfers(viaFile.snapshot.path)).toBe(before + 500);
      viaFile.done();
    } finally {
      app.close();
    }
  });

  test("a file longer than its pages: the copy keeps exactly the pages", async () => {
    const db = join(tempDir("snap-long"), "bank.db");
    createBankDb(db, { journalMode: "delete", fillerRows: 500 });
    const pages = readFileSync(db);
    appendFileSync(db, new Uint8Array(12_345).fill(7)); // trailing bytes SQLite never reads
    const { snapshot, bytes, done } = await snapshotOf(db);
    expect(snapshot.method).toBe("file-copy");
    expect(bytes.equals(pages)).toBe(true);
    done();
  });

  test("a header whose page count is not valid (written by SQLite before 3.7.0): the backup API instead", async () => {
    const db = join(tempDir("snap-stale"), "bank.db");
    createBankDb(db, { journalMode: "delete", fillerRows: 500 });
    const file = readFileSync(db);
    file.writeUInt32BE(file.readUInt32BE(24) + 1, 92); // version-valid-for no longer matches the change counter
    writeFileSync(db, file);
    const { snapshot, done } = await snapshotOf(db);
    expect(snapshot.method).toBe("backup-api");
    expect(inspectBank(snapshot.path).total).toBe(ACCOUNTS * INITIAL_BALANCE);
    done();
  });

  test("WAL-index reader: a header being rewritten (copies differ) or with a bad checksum is torn; no file is absent", () => {
    const dir = tempDir("snap-shm");
    const db = join(dir, "bank.db");
    createBankDb(db, { journalMode: "wal" });
    const app = new Database(db);
    try {
      app.run("INSERT INTO transfers (src, dst, amount, at) VALUES (1, 2, 3, 'now')");
      const shm = join(dir, "copy-shm");
      copyFileSync(`${db}-shm`, shm);
      const good = readWalIndex(shm);
      expect(typeof good).toBe("object");
      if (typeof good === "object") expect(good.mxFrame).toBeGreaterThan(0);

      const raw = readFileSync(shm);
      const differing = Buffer.from(raw);
      differing[48 + 16]! ^= 1; // mxFrame of the second copy only
      writeFileSync(shm, differing);
      expect(readWalIndex(shm)).toBe("torn");

      const badSum = Buffer.from(raw);
      badSum[16]! ^= 1; // mxFrame of both copies, checksum unchanged
      badSum[48 + 16]! ^= 1;
      writeFileSync(shm, badSum);
      expect(readWalIndex(shm)).toBe("torn");

      expect(readWalIndex(join(dir, "none-shm"))).toBe("absent");
    } finally {
      app.close();
    }
  });

  test("a writer that checkpoints after every commit: snapshots by both ways while it writes, all consistent", async () => {
    const db = join(tempDir("snap-live"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 5000 });
    const writer = startWriter(db, { autocheckpoint: 1 });
    const methods = new Map<string, number>();
    const seen = new Set<number>();
    try {
      await writer.waitForCommits(50);
      // Which way a snapshot takes depends on where the writer is: go on until both ran a few times.
      for (let i = 0; i < 300 && (i < 30 || Math.min(methods.get("file-copy") ?? 0, methods.get("backup-api") ?? 0) < 3); i++) {
        const { snapshot, done } = await snapshotOf(db);
        methods.set(snapshot.method, (methods.get(snapshot.method) ?? 0) + 1);
        const bank = inspectBank(snapshot.path);
        expect(bank.integrity).toBe("ok");
        expect(bank.total).toBe(ACCOUNTS * INITIAL_BALANCE);
        seen.add(bank.transfers);
        done();
        await Bun.sleep(5);
      }
    } finally {
      await writer.stop();
    }
    // Both ways ran against a database being written, and the snapshots caught it at many points.
    expect(methods.get("file-copy") ?? 0).toBeGreaterThanOrEqual(3);
    expect(methods.get("backup-api") ?? 0).toBeGreaterThanOrEqual(3);
    expect(seen.size).toBeGreaterThan(10);
  });
});
