#!/usr/bin/env bun
/**
 * The measurement behind src/pipeline/snapshot.ts's ways to copy: makes an app-like database that has seen
 * deletes (free and half-empty pages, as real ones have), then copies it with VACUUM INTO, with the
 * online backup API (node:sqlite backup(), one step) and as a plain file (what snapshot.ts does
 * when the file itself holds the snapshot), and gzips each copy.
 *
 *   bun scripts/bench-snapshot.ts [MiB=256] [runs=3]
 */
import { Database } from "bun:sqlite";
import { backup, DatabaseSync } from "node:sqlite";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { copyFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const mib = Number(process.argv[2] ?? 256);
const runs = Number(process.argv[3] ?? 3);
const dir = mkdtempSync(join(tmpdir(), "sqlite-vault-bench-snapshot-"));
const source = join(dir, "app.db");

const db = new Database(source, { create: true });
db.run("PRAGMA journal_mode = WAL");
db.run("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, user TEXT, payload TEXT, blob BLOB)");
db.run("CREATE INDEX events_user ON events(user, kind)");
const insert = db.prepare("INSERT INTO events (kind, user, payload, blob) VALUES (?, ?, ?, ?)");
const rows = Math.round((mib * 1024 * 1024) / 900);
db.transaction(() => {
  for (let i = 0; i < rows; i++)
    insert.run(
      `kind-${i % 17}`,
      `user-${i % 5000}`,
      `{"order":${i},"items":[${i % 7},${i % 11}],"note":"customer asked for delivery before noon"}`.repeat(4),
      crypto.getRandomValues(new Uint8Array(i % 10 === 0 ? 1024 : 64)),
    );
})();
insert.finalize();
db.run("DELETE FROM events WHERE id % 5 = 0"); // an app that deletes leaves free and half-empty pages
db.run("PRAGMA wal_checkpoint(TRUNCATE)");
db.close();
console.log(`source: ${(statSync(source).size / 2 ** 20).toFixed(0)} MiB, ${runs} runs each`);

async function gzipSize(path: string): Promise<number> {
  let n = 0;
  for await (const chunk of Bun.file(path).stream().pipeThrough(new CompressionStream("gzip"))) n += chunk.byteLength;
  return n;
}

async function measure(label: string, copy: (out: string) => Promise<void> | void) {
  const out = join(dir, "copy.db");
  rmSync(out, { force: true });
  const t0 = performance.now();
  await copy(out);
  const copySeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const gz = await gzipSize(out);
  const gzSeconds = (performance.now() - t1) / 1000;
  const size = statSync(out).size;
  console.log(
    `${label.padEnd(14)} copy ${copySeconds.toFixed(2)} s (${(size / 2 ** 20 / copySeconds).toFixed(0)} MiB/s)  copy ${(size / 2 ** 20).toFixed(0)} MiB  gzip ${(gz / 2 ** 20).toFixed(1)} MiB  total ${(copySeconds + gzSeconds).toFixed(2)} s`,
  );
}

for (let i = 0; i < runs; i++) {
  await measure("VACUUM INTO", (out) => {
    const ro = new Database(source, { readonly: true });
    ro.run("VACUUM INTO ?", [out]);
    ro.close();
  });
  await measure("backup API", async (out) => {
    const ro = new DatabaseSync(source, { readOnly: true });
    await backup(ro, out, { rate: -1 } as never);
    ro.close();
  });
  await measure("file copy", (out) => copyFile(source, out));
}
rmSync(dir, { recursive: true, force: true });
