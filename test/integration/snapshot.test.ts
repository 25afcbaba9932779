/**
 * The three ways a snapshot is taken (src/pipeline/snapshot.ts): the database file itself, read inside the
 * read transaction, when it holds that transaction's snapshot and no checkpoint can write it
 * meanwhile (WAL, every frame checkpointed); a plain file copy when our shared lock keeps writers out
 * (rollback journal); else SQLite's backup API through the WAL. Each case, the locks that keep the
 * file still while it is read (no descriptor of ours drops them), the WAL-index reader, and many
 * snapshots of a database whose writer checkpoints after every commit (so that both WAL ways run
 * while it writes), each one checked for the bank's invariant and integrity.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Database } from "bun:sqlite";
import { appendFileSync, chmodSync, closeSync, copyFileSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createContext } from "../../src/context.ts";
import { createSnapshot, type Snapshot } from "../../src/pipeline/snapshot.ts";
import { readWalIndex } from "../../src/pipeline/wal.ts";
import { BLOCK_SIZE } from "../../src/pipeline/codec.ts";
import { BufferPool } from "../../src/util/streams.ts";
import { ROOT } from "../helpers/cli.ts";
import {
  ACCOUNTS,
  createBankDb,
  holdOpen,
  INITIAL_BALANCE,
  inspectBank,
  ledgerMismatches,
  removeTempDirs,
  startCheckpointer,
  startWriter,
  tempDir,
} from "../helpers/db.ts";

setDefaultTimeout(60_000);
afterAll(removeTempDirs);

/** The snapshot's bytes, as a backup reads them (opening the live database would drop our locks). */
async function contents(snapshot: Snapshot): Promise<Buffer> {
  const pool = new BufferPool(BLOCK_SIZE, 2);
  const chunks: Buffer[] = [];
  for await (const block of snapshot.blocks(pool)) {
    chunks.push(Buffer.from(block));
    pool.release(block);
  }
  return Buffer.concat(chunks);
}

/** A snapshot's bytes, and a private copy of them to open (`path`); `done` releases the snapshot. */
async function snapshotOf(db: string) {
  const ctx = createContext();
  const snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
  const bytes = await contents(snapshot);
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

  test("a database renamed over while the snapshot waits for a writer's lock: refused, never the new file copied without a lock on it", async () => {
    const dir = tempDir("snap-renamed");
    const db = join(dir, "bank.db");
    createBankDb(db, { journalMode: "delete", fillerRows: 200 });
    const replacement = join(dir, "new.db");
    copyFileSync(db, replacement);
    // A writer holds the old file's lock for a moment (the snapshot's BEGIN waits on it, blocking this
    // thread) and meanwhile renames another file over the database.
    const holder = Bun.spawn(
      [
        process.execPath,
        "-e",
        `const { Database } = require("bun:sqlite"); const { renameSync } = require("node:fs");
        const d = new Database(${JSON.stringify(db)});
        d.run("BEGIN EXCLUSIVE"); console.log("held");
        await Bun.sleep(500); renameSync(${JSON.stringify(replacement)}, ${JSON.stringify(db)});
        await Bun.sleep(500); d.run("COMMIT");`,
      ],
      { stdout: "pipe" },
    );
    await holder.stdout.getReader().read(); // "held"
    const taking = createSnapshot(db, dir, createContext());
    await expect(taking).rejects.toThrow(`${db} was replaced by another file while the backup began; nothing was backed up`);
    await holder.exited;
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
      const before = await contents(snapshot);
      // Another process commits and asks for a full checkpoint: busy (1|...), nothing copied.
      expect(sqlite3("INSERT INTO transfers (src, dst, amount, at) VALUES (1, 2, 3, 'now'); PRAGMA wal_checkpoint(TRUNCATE);")).toMatch(
        /^1\|\d+\|0$/,
      );
      expect((await contents(snapshot)).equals(before)).toBe(true);
    } finally {
      snapshot.release();
      ctx.temp.remove(snapshot.dir);
    }
    expect(sqlite3("PRAGMA wal_checkpoint(TRUNCATE);")).toBe("0|0|0");
    expect(countTransfers(db)).toBe(transfers + 1);
  });

  test("WAL frames not checkpointed yet: the file and the frames read in place, page for page what sqlite3 .backup copies; after a checkpoint, the file itself", async () => {
    const dir = tempDir("snap-wal-busy");
    const db = join(dir, "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 2000 });
    const before = countTransfers(db);
    const app = await holdOpen(db, [
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO transfers (src, dst, amount, at) SELECT 1, 2, 3, printf('%.100c', 'x') FROM n",
      "UPDATE accounts SET balance = balance + 1 WHERE id = 1", // more commits: a page's newest frame wins
      "UPDATE accounts SET balance = balance - 1 WHERE id = 1",
    ]);
    try {
      const wal = shm(`${db}-shm`);
      expect(typeof wal).toBe("object");
      if (typeof wal === "object") expect(wal.nBackfill).toBeLessThan(wal.mxFrame);
      const files = [readFileSync(db), readFileSync(`${db}-wal`)];

      const viaWal = await snapshotOf(db);
      expect(viaWal.snapshot.method).toBe("wal-read");
      expect(viaWal.snapshot.path).toBe(db);
      // The database grew in the WAL: its last pages exist only as frames.
      expect(files[0]!.length).toBeLessThan(viaWal.snapshot.bytes);
      expect(countTransfers(viaWal.path)).toBe(before + 3000);
      expect(inspectBank(viaWal.path)).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE });
      // SQLite's own copy differs only in header fields a backup sets anew: the change counter (bytes
      // 24-27), the schema cookie (40-43), and the version-valid-for and writer's version (92-99).
      const reference = join(dir, "reference.db");
      const copied = Bun.spawnSync(["sqlite3", db, `.backup '${reference}'`], { stderr: "pipe" });
      expect(copied.stderr.toString()).toBe("");
      const theirs = readFileSync(reference);
      const ours = Buffer.from(viaWal.bytes);
      expect(ours.length).toBe(theirs.length);
      for (const [from, to] of [
        [24, 28],
        [40, 44],
        [92, 100],
      ])
        theirs.copy(ours, from, from, to);
      expect(ours.equals(theirs)).toBe(true);
      viaWal.done();
      // The source was neither written nor checkpointed.
      expect([readFileSync(db), readFileSync(`${db}-wal`)]).toEqual(files);

      expect(Bun.spawnSync(["sqlite3", db, "PRAGMA wal_checkpoint(PASSIVE);"]).stdout.toString()).toMatch(/^0\|/);
      const viaFile = await snapshotOf(db);
      expect(viaFile.snapshot.method).toBe("file-read");
      expect(countTransfers(viaFile.path)).toBe(before + 3000);
      viaFile.done();
    } finally {
      await app.stop();
    }
  });

  test("while a wal-read snapshot is held, a checkpoint may copy its frames into the file, and its bytes stay the same; no checkpoint can restart the WAL", async () => {
    const db = join(tempDir("snap-wal-held"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 2000 });
    const app = await holdOpen(db, ["UPDATE notes SET title = 'first ' || id WHERE id % 3 = 0"]); // keeps the WAL
    const sqlite3 = (sql: string) => {
      const result = Bun.spawnSync(["sqlite3", db, `PRAGMA busy_timeout = 0; ${sql}`], { stdout: "pipe", stderr: "pipe" });
      expect(result.stderr.toString()).toBe("");
      return result.stdout.toString().trim().split("\n").at(-1)!;
    };
    // Read by another process: closing a descriptor of the file here would drop our locks.
    const digest = () => Bun.spawnSync(["sha256sum", db]).stdout.toString();
    const ctx = createContext();
    let snapshot: Snapshot | undefined;
    try {
      const transfers = countTransfers(db);
      snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
      expect(snapshot.method).toBe("wal-read");
      const held = await contents(snapshot);
      const file = digest();
      // Another process commits, then checkpoints as far as it may: up to our frames, into the file.
      const [logged, done] = sqlite3("UPDATE notes SET title = 'second ' || id WHERE id % 3 = 0; PRAGMA wal_checkpoint(PASSIVE);")
        .split("|")
        .slice(1)
        .map(Number);
      expect(done).toBeGreaterThan(0);
      expect(done).toBeLessThan(logged!);
      expect(digest()).not.toBe(file);
      expect((await contents(snapshot)).equals(held)).toBe(true);
      // Restarting the WAL would overwrite our frames: busy while the snapshot is held.
      expect(sqlite3("PRAGMA wal_checkpoint(TRUNCATE);")).toMatch(/^1\|/);
      expect((await contents(snapshot)).equals(held)).toBe(true);
      const copy = join(tempDir("snap-copy"), "copy.db");
      writeFileSync(copy, held);
      expect(inspectBank(copy)).toMatchObject({ integrity: "ok", transfers });
      snapshot.release();
      expect(sqlite3("PRAGMA wal_checkpoint(TRUNCATE);")).toBe("0|0|0");
    } finally {
      snapshot?.release();
      if (snapshot) ctx.temp.remove(snapshot.dir);
      await app.stop();
    }
  });

  test("a -shm file this user cannot write: SQLite then reads the WAL by other rules, and the snapshot takes the backup API", async () => {
    const dir = tempDir("snap-wal-rdonly");
    chmodSync(dir, 0o755);
    const db = join(dir, "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 500 });
    const app = await holdOpen(db, [
      "UPDATE accounts SET balance = balance + 5 WHERE id = 1",
      "UPDATE accounts SET balance = balance - 5 WHERE id = 2",
    ]);
    const out = join(dir, "out");
    mkdirSync(out);
    chmodSync(out, 0o1777);
    // Root runs the snapshot as nobody (the -shm stays root's, 0644); anyone else takes away their own write permission.
    const asOther = process.getuid!() === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    if (!asOther.length) chmodSync(`${db}-shm`, 0o444);
    try {
      const script = `
        const { createSnapshot } = require(${JSON.stringify(join(ROOT, "src", "pipeline", "snapshot.ts"))});
        const { createContext } = require(${JSON.stringify(join(ROOT, "src", "context.ts"))});
        const { BufferPool } = require(${JSON.stringify(join(ROOT, "src", "util", "streams.ts"))});
        const snapshot = await createSnapshot(${JSON.stringify(db)}, ${JSON.stringify(out)}, createContext());
        const pool = new BufferPool(1 << 20, 2);
        const chunks = [];
        for await (const block of snapshot.blocks(pool)) { chunks.push(Buffer.from(block)); pool.release(block); }
        require("node:fs").writeFileSync(${JSON.stringify(join(out, "copy.db"))}, Buffer.concat(chunks));
        snapshot.release();
        console.log(snapshot.method);`;
      const r = Bun.spawnSync([...asOther, process.execPath, "-e", script], {
        env: { ...process.env, HOME: out, TMPDIR: out },
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(r.stderr.toString()).toBe("");
      expect(r.stdout.toString().trim()).toBe("backup-api");
      const bank = inspectBank(join(out, "copy.db"));
      expect(bank).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE });
    } finally {
      await app.stop();
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

  test("a writer that checkpoints after every commit: snapshots by both ways of reading in place while it writes, all consistent", async () => {
    const db = join(tempDir("snap-live"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 5000 });
    const writer = startWriter(db, { autocheckpoint: 1 });
    const methods = new Map<string, number>();
    const seen = new Set<number>();
    try {
      await writer.waitForCommits(50);
      // Which way a snapshot takes depends on where the writer is: go on until both ran a few times.
      for (let i = 0; i < 300 && (i < 30 || Math.min(methods.get("file-read") ?? 0, methods.get("wal-read") ?? 0) < 3); i++) {
        const ctx = createContext();
        const snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
        // Hold a snapshot read in place while the writer commits and checkpoints, then read it.
        if (snapshot.path === db) await Bun.sleep(20);
        const { path, done } = {
          path: join(tempDir("snap-copy"), "copy.db"),
          done: () => {
            snapshot.release();
            ctx.temp.remove(snapshot.dir);
          },
        };
        writeFileSync(path, await contents(snapshot));
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
    expect(methods.get("wal-read") ?? 0).toBeGreaterThanOrEqual(3);
    expect(seen.size).toBeGreaterThan(10);
  });

  test("a writer and a checkpointer at work while snapshots are read slowly: each one is a single moment of the database, across its tables", async () => {
    const db = join(tempDir("snap-wal-stress"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 3000 });
    const writer = startWriter(db); // SQLite's default auto-checkpoint: frames pending most of the time
    const checkpointer = startCheckpointer(db);
    const methods = new Map<string, number>();
    const seen = new Set<number>();
    let checkpoints = { copied: 0, restarted: 0 };
    try {
      await writer.waitForCommits(100);
      let previous = 0;
      for (let i = 0; i < 200 && (i < 40 || (methods.get("wal-read") ?? 0) < 20); i++) {
        // Every commit made before the snapshot began is in it (counted with no snapshot held: closing
        // a connection of this process drops every lock it holds on the database).
        const floor = Math.max(previous, countTransfers(db));
        const ctx = createContext();
        const snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
        // Small blocks, a pause after each: the writer commits, the database grows and the checkpointer
        // copies frames into the file between the reads of one snapshot.
        const pool = new BufferPool(64 * 1024, 2);
        const chunks: Buffer[] = [];
        for await (const block of snapshot.blocks(pool)) {
          chunks.push(Buffer.from(block));
          pool.release(block);
          await Bun.sleep(1);
        }
        snapshot.release();
        ctx.temp.remove(snapshot.dir);
        methods.set(snapshot.method, (methods.get(snapshot.method) ?? 0) + 1);
        const copy = join(tempDir("snap-copy"), "copy.db");
        writeFileSync(copy, Buffer.concat(chunks));
        expect(inspectBank(copy)).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE });
        expect(ledgerMismatches(copy)).toBe(0);
        previous = countTransfers(copy);
        expect(previous).toBeGreaterThanOrEqual(floor);
        seen.add(previous);
      }
    } finally {
      await writer.stop();
      checkpoints = await checkpointer.stop();
    }
    expect(methods.get("wal-read") ?? 0).toBeGreaterThanOrEqual(20);
    expect(seen.size).toBeGreaterThan(20);
    // The checkpointer really did copy frames and restart the WAL (between snapshots) meanwhile.
    expect(checkpoints.copied).toBeGreaterThan(10);
    expect(checkpoints.restarted).toBeGreaterThan(0);
    expect(inspectBank(db)).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE });
    expect(ledgerMismatches(db)).toBe(0);
  });

  for (const shmKept of [true, false])
    test(`an application killed in the middle of a big transaction${shmKept ? "" : ", its -shm gone too"}: its committed frames, none of the half-written ones`, async () => {
      const dir = tempDir("snap-wal-crash");
      const db = join(dir, "bank.db");
      createBankDb(db, { journalMode: "wal", fillerRows: 200 });
      // Committed, left in the WAL; then a transaction big enough to spill frames into the WAL past
      // the last commit, and a kill -9 before it commits.
      const script = `
        const { Database } = require("bun:sqlite");
        const db = new Database(${JSON.stringify(db)});
        db.run("PRAGMA wal_autocheckpoint = 0");
        db.run("PRAGMA cache_size = 10");
        db.run("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO transfers (src, dst, amount, at) SELECT 1, 1, 0, 'committed' FROM n");
        db.run("BEGIN");
        db.run("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO transfers (src, dst, amount, at) SELECT 1, 1, 0, printf('%.200c', 'x') FROM n");
        process.kill(process.pid, "SIGKILL");`;
      const killed = Bun.spawnSync([process.execPath, "-e", script]);
      expect(killed.signalCode).toBe("SIGKILL");
      const walBytes = readFileSync(`${db}-wal`).length;
      const index = shm(`${db}-shm`);
      expect(typeof index).toBe("object");
      // The half-written transaction's frames are in the WAL, past the last committed one.
      if (typeof index === "object") expect(walBytes).toBeGreaterThan(32 + (index.mxFrame + 100) * (24 + 4096));
      if (!shmKept) rmSync(`${db}-shm`);
      const { snapshot, path, done } = await snapshotOf(db);
      try {
        expect(snapshot.method).toBe("wal-read");
        expect(inspectBank(path)).toMatchObject({ integrity: "ok", total: ACCOUNTS * INITIAL_BALANCE, transfers: 500 });
      } finally {
        done();
      }
    });

  test("a WAL restarted under a wal-read snapshot (what its read mark rules out) fails the read rather than yield other frames", async () => {
    const db = join(tempDir("snap-wal-restart"), "bank.db");
    createBankDb(db, { journalMode: "wal", fillerRows: 500 });
    const app = await holdOpen(db, ["UPDATE notes SET title = 'changed ' || id"]);
    const ctx = createContext();
    const snapshot = await createSnapshot(db, tempDir("snap-tmp"), ctx);
    try {
      expect(snapshot.method).toBe("wal-read");
      // What a restart writes first: the WAL header with new salts (by another process: a descriptor
      // of the WAL closed here would drop our locks).
      const salt = Bun.spawnSync(["sh", "-c", `printf 'XXXXXXXX' | dd of='${db}-wal' bs=1 seek=16 conv=notrunc status=none`]);
      expect(salt.exitCode).toBe(0);
      await expect(contents(snapshot)).rejects.toThrow(/WAL was restarted while the backup read it/);
    } finally {
      snapshot.release();
      ctx.temp.remove(snapshot.dir);
      await app.stop();
    }
  });
});
