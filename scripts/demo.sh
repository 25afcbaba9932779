#!/usr/bin/env bash
# The main job on a fresh machine, end to end: build the binary, make a sample database, back it up
# into a local directory, list the backups, restore the latest into a new file and check it.
#
#   scripts/demo.sh [WORKDIR]        (default: ./demo)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v bun >/dev/null 2>&1 || npm install -g bun >/dev/null
bun install --frozen-lockfile >/dev/null
bun run build >/dev/null

work="${1:-demo}"
rm -rf "$work" && mkdir -p "$work" && work="$(cd "$work" && pwd)"
vault="$PWD/dist/sqlite-vault"

# A sample app database, in WAL mode like most apps use.
bun -e '
  import { Database } from "bun:sqlite";
  const db = new Database(process.argv[1], { create: true });
  db.run("PRAGMA journal_mode = WAL");
  db.run("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total INTEGER)");
  const insert = db.prepare("INSERT INTO orders (customer, total) VALUES (?, ?)");
  db.transaction(() => { for (let i = 0; i < 50000; i++) insert.run(`customer ${i % 500}`, i % 997); })();
  db.close();
' "$work/app.db"

export SQLITE_VAULT_REPO="$work/backups"
set -x
"$vault" backup "$work/app.db"
"$vault" list
"$vault" restore --name app --output "$work/restored.db"
set +x
orig=$(bun -e 'import { Database } from "bun:sqlite"; console.log(new Database(process.argv[1], { readonly: true }).query("SELECT COUNT(*) || \" \" || SUM(total) AS v FROM orders").get().v)' "$work/app.db")
back=$(bun -e 'import { Database } from "bun:sqlite"; console.log(new Database(process.argv[1], { readonly: true }).query("SELECT COUNT(*) || \" \" || SUM(total) AS v FROM orders").get().v)' "$work/restored.db")
echo "original: $orig rows/total; restored: $back rows/total"
[ "$orig" = "$back" ] && echo "demo ok: the restored database matches the original"
