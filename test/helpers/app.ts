/**
 * A small application for the cron tests: it needs its database to exist when it starts (so the
 * startup restore must come first), writes a row every 100 ms, and on SIGTERM writes a last row and
 * exits with code 7.
 */
import { Database } from "bun:sqlite";
import { existsSync } from "node:fs";

const path = process.argv[2]!;
if (!existsSync(path)) {
  console.log("app: NO DATABASE");
  process.exit(42);
}
const db = new Database(path);
db.run("PRAGMA busy_timeout = 5000");
const first = db.query("SELECT what FROM log ORDER BY id LIMIT 1").get() as { what: string } | null;
console.log(`app: started with ${first?.what ?? "nothing"}`);
const insert = db.query("INSERT INTO log (what) VALUES (?)");
let n = 0;
const timer = setInterval(() => insert.run(`tick ${++n}`), 100);
process.on("SIGTERM", () => {
  clearInterval(timer);
  insert.run("last-write");
  db.close();
  console.log("app: stopped after the last write");
  process.exit(7);
});
