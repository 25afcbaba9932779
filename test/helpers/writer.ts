/**
 * A writer process for the concurrency tests: commits transfers between random accounts (the total
 * never changes) as fast as it can, printing its commit count now and then, until SIGTERM.
 * `writer.ts DB [AUTOCHECKPOINT]`: a WAL auto-checkpoint threshold in pages (SQLite's default 1000;
 * 1 checkpoints after every commit).
 */
import { Database } from "bun:sqlite";

const path = process.argv[2];
if (!path) throw new Error("usage: writer.ts DB");
const db = new Database(path);
db.run("PRAGMA busy_timeout = 10000");
if (process.argv[3]) db.run(`PRAGMA wal_autocheckpoint = ${Number(process.argv[3])}`);
const accounts = (db.query("SELECT COUNT(*) AS n FROM accounts").get() as { n: number }).n;
const debit = db.prepare("UPDATE accounts SET balance = balance - ? WHERE id = ?");
const credit = db.prepare("UPDATE accounts SET balance = balance + ? WHERE id = ?");
const log = db.prepare("INSERT INTO transfers (src, dst, amount, at) VALUES (?, ?, ?, ?)");
const transfer = db.transaction((src: number, dst: number, amount: number) => {
  debit.run(amount, src);
  credit.run(amount, dst);
  log.run(src, dst, amount, new Date().toISOString());
});

let commits = 0;
let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
});
while (!stopping) {
  const src = 1 + Math.floor(Math.random() * accounts);
  const dst = 1 + Math.floor(Math.random() * accounts);
  transfer.immediate(src, dst, 1 + Math.floor(Math.random() * 50));
  commits++;
  if (commits % 50 === 0) process.stdout.write(`${commits}\n`);
  // A busy application, not a tight loop: in rollback-journal mode a writer that never pauses
  // starves every reader, ours and the application's own alike.
  await Bun.sleep(1);
}
db.close();
process.stdout.write(`${commits}\n`);
