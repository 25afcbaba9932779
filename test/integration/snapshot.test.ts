/**
 * The three ways a snapshot is taken (src/snapshot.ts): the database file itself, read inside the
 * read transaction, when it holds that transaction's snapshot and no checkpoint can write it
 * meanwhile (WAL, every frame checkpointed); a plain file copy when our shared lock keeps writers out
 * (rollback journal); else SQLite's backup API through the WAL. Each case, the locks that keep the
 * file still while it is read (no descriptor of ours drops them), the WAL-index reader, and many
 * snapshots of a database whose writer checkpoints after every commit (so that both WAL ways run
 * while it writes), each one checked for the bank's invariant and integrity.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Database } from "bun:sqlite";
import { appendFileSync, closeSync, copyFileSync, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createContext } from "../../src/context.ts";
import { createSnapshot, readWalIndex, type Snapshot } from "../../src/snapshot.ts";
import { ACCOUNTS, createBankDb, INITIAL_BALANCE, inspectBank, removeTempDirs, startWriter, tempDir } from "../helpers/db.ts";

setDefaultTimeout(60_000);
afterAll(removeTempDirs);

/** The snapshot's bytes, read through its descriptor (opening the live database would drop our locks). */
function contents(snapshot: Snapshot): Buffer {
  const bytes = Buffer.alloc(snapshot.bytes);
  for (let at = 0; at < bytes.length; ) at += readSync(snapshot.fd, bytes, at, bytes.length - at, at);
  return bytes;
}

/** A snapshot's bytes, and a private copy of them to open (`path`); `done` releases the snapshot. */
async function snapshotOf(db: string) {
  const ctx = createContext();
  const snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
  const bytes = contents(snapshot);
  const path = join(tempDir("snap-copy"), "copy.db");
  writeFileSync(path, bytes);
  return {
    snapshot,
    bytes,
    path,
    done: () => {
      snapshot.release();
      ctx.temp.remove(snapshot.dir);
    },
  };
}

function shm(path: string) {
  const fd = openSync(path, "r");
  try {
    return readWalIndex(fd);
  } finally {
    closeSync(fd);
  }
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

  test("WAL database with every frame checkpointed: the file itself, read in place", async () => {
    const db = join(tempDir("snap-wal-idle"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 2000 }); // closing checkpoints and removes the WAL
    const { snapshot, bytes, done } = await snapshotOf(db);
    expect(snapshot.method).toBe("file-read");
    expect(snapshot.journalMode).toBe("wal");
    expect(snapshot.path).toBe(db);
    done();
    expect(bytes.equals(readFileSync(db))).toBe(true);
  });

  test("while a file-read snapshot is held, writers commit but no checkpoint can write the file; after it, one can", async () => {
    const db = join(tempDir("snap-held"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 2000 });
    const transfers = countTransfers(db);
    const ctx = createContext();
    const snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
    const sqlite3 = (sql: string) => {
      const result = Bun.spawnSync(["sqlite3", db, `PRAGMA busy_timeout = 0; ${sql}`], { stdout: "pipe", stderr: "pipe" });
      expect(result.stderr.toString()).toBe("");
      return result.stdout.toString().trim().split("\n").at(-1);
    };
    try {
      expect(snapshot.method).toBe("file-read");
      const before = contents(snapshot);
      // Another process commits and asks for a full checkpoint: busy (1|...), nothing copied.
      expect(sqlite3("INSERT INTO transfers (src, dst, amount, at) VALUES (1, 2, 3, 'now'); PRAGMA wal_checkpoint(TRUNCATE);")).toMatch(/^1\|\d+\|0$/);
      expect(contents(snapshot).equals(before)).toBe(true);
    } finally {
      snapshot.release();
      ctx.temp.remove(snapshot.dir);
    }
    expect(sqlite3("PRAGMA wal_checkpoint(TRUNCATE);")).toBe("0|0|0");
    expect(countTransfers(db)).toBe(transfers + 1);
  });

  test("WAL frames not checkpointed yet: the backup API, with the committed frames; after a checkpoint, the file itself with them too", async () => {
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
      const wal = shm(`${db}-shm`);
      expect(wal).not.toBe("absent");
      expect(wal).not.toBe("torn");
      if (typeof wal === "object") expect(wal.nBackfill).toBeLessThan(wal.mxFrame);
      const fileBefore = readFileSync(db);

      const viaWal = await snapshotOf(db);
      expect(viaWal.snapshot.method).toBe("backup-api");
      expect(countTransfers(viaWal.path)).toBe(before + 500);
      viaWal.done();
      // The source was neither written nor checkpointed.
      expect(readFileSync(db).equals(fileBefore)).toBe(true);

      app.run("PRAGMA wal_checkpoint(PASSIVE)"); // the application checkpoints; its connection stays open
      const viaFile = await snapshotOf(db);
      expect(viaFile.snapshot.method).toBe("file-read");
      expect(countTransfers(viaFile.path)).toBe(before + 500);
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
    const { snapshot, path, done } = await snapshotOf(db);
    expect(snapshot.method).toBe("backup-api");
    expect(inspectBank(path).total).toBe(ACCOUNTS * INITIAL_BALANCE);
    done();
  });

  test("WAL-index reader: a header being rewritten (copies differ) or with a bad checksum is torn; a short file is absent", () => {
    const dir = tempDir("snap-shm");
    const db = join(dir, "bank.db");
    createBankDb(db, { journalMode: "wal" });
    const app = new Database(db);
    try {
      app.run("INSERT INTO transfers (src, dst, amount, at) VALUES (1, 2, 3, 'now')");
      const copy = join(dir, "copy-shm");
      copyFileSync(`${db}-shm`, copy);
      const good = shm(copy);
      expect(typeof good).toBe("object");
      if (typeof good === "object") expect(good.mxFrame).toBeGreaterThan(0);

      const raw = readFileSync(copy);
      const differing = Buffer.from(raw);
      differing[48 + 16]! ^= 1; // mxFrame of the second copy only
      writeFileSync(copy, differing);
      expect(shm(copy)).toBe("torn");

      const badSum = Buffer.from(raw);
      badSum[16]! ^= 1; // mxFrame of both copies, checksum unchanged
      badSum[48 + 16]! ^= 1;
      writeFileSync(copy, badSum);
      expect(shm(copy)).toBe("torn");

      writeFileSync(copy, raw.subarray(0, 100));
      expect(shm(copy)).toBe("absent");
    } finally {
      app.close();
    }
  });

  test("a writer that checkpoints after every commit: snapshots by both WAL ways while it writes, all consistent", async () => {
    const db = join(tempDir("snap-live"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 5000 });
    const writer = startWriter(db, { autocheckpoint: 1 });
    const methods = new Map<string, number>();
    const seen = new Set<number>();
    try {
      await writer.waitForCommits(50);
      // Which way a snapshot takes depends on where the writer is: go on until both ran a few times.
      for (let i = 0; i < 300 && (i < 30 || Math.min(methods.get("file-read") ?? 0, methods.get("backup-api") ?? 0) < 3); i++) {
        const ctx = createContext();
        const snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
        // Hold a file-read snapshot while the writer commits and tries to checkpoint, then read it.
        if (snapshot.method === "file-read") await Bun.sleep(20);
        const { path, done } = { path: join(tempDir("snap-copy"), "copy.db"), done: () => (snapshot.release(), ctx.temp.remove(snapshot.dir)) };
        writeFileSync(path, contents(snapshot));
        methods.set(snapshot.method, (methods.get(snapshot.method) ?? 0) + 1);
        const bank = inspectBank(path);
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
    expect(methods.get("file-read") ?? 0).toBeGreaterThanOrEqual(3);
    expect(methods.get("backup-api") ?? 0).toBeGreaterThanOrEqual(3);
    expect(seen.size).toBeGreaterThan(10);
  });
});
