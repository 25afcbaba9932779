#!/usr/bin/env bash
# Smoke test of one built executable on the machine it runs on, with nothing but the `sqlite3` CLI:
# start-up, a backup of a live-looking WAL database with gzip and zstd into a local directory, list,
# verify --all (which runs the split integrity check on worker threads), restore, and a row-for-row
# comparison; then both ways a snapshot is read in place while an application holds the database open.
# The release workflow runs it on macOS and Linux arm64, where the test suite does not run.
#
#   scripts/smoke.sh BINARY
set -euo pipefail
vault="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work="$(mktemp -d "${TMPDIR:-/tmp}/sqlite-vault-smoke-XXXXXX")"
trap 'rm -rf "$work"' EXIT
export SQLITE_VAULT_REPO="$work/backups"

"$vault" --version
"$vault" version --json

sqlite3 "$work/app.db" <<'SQL'
PRAGMA journal_mode = WAL;
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), total INTEGER, note TEXT);
CREATE INDEX orders_user ON orders(user_id, total);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
  INSERT INTO users (email) SELECT 'user' || i || '@example.com' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
  INSERT INTO orders (user_id, total, note) SELECT 1 + i % 2000, i % 997, hex(randomblob(16)) || ' order note ' || i FROM n;
SQL

"$vault" backup "$work/app.db" --compression gzip
"$vault" backup "$work/app.db" --compression zstd
"$vault" list
"$vault" verify --all
"$vault" restore --name app --latest --output "$work/restored.db"

dump() { sqlite3 "$1" "SELECT COUNT(*), SUM(total), SUM(length(note)) FROM orders; SELECT COUNT(*) FROM users; PRAGMA integrity_check;"; }
orig="$(dump "$work/app.db")"
back="$(dump "$work/restored.db")"
if [ "$orig" != "$back" ]; then
  echo "smoke: the restored database differs: $orig / $back" >&2
  exit 1
fi
# A live application: a sqlite3 process holds a commit in the WAL, not checkpointed. The snapshot must
# read the file and that frame in place and include it; once the application checkpoints (its
# connection still open), the file alone. Both need this machine's WAL-index and WAL read right.
mkfifo "$work/app-input"
sqlite3 "$work/app.db" < "$work/app-input" > /dev/null &
app=$!
exec 3> "$work/app-input"
echo "PRAGMA wal_autocheckpoint = 0; INSERT INTO users (email) VALUES ('pending@example.com');" >&3
pending() { sqlite3 "$1" "SELECT COUNT(*) FROM users WHERE email = 'pending@example.com'"; }
for _ in $(seq 100); do [ "$(pending "$work/app.db")" = 1 ] && break; sleep 0.1; done
"$vault" backup "$work/app.db" --name live --verbose 2> "$work/live1.log"
grep -q "by wal-read" "$work/live1.log" || { echo "smoke: a WAL with pending frames was not read in place:" >&2; cat "$work/live1.log" >&2; exit 1; }
echo "PRAGMA wal_checkpoint(PASSIVE);" >&3
echo ".shell touch '$work/checkpointed'" >&3
for _ in $(seq 100); do [ -e "$work/checkpointed" ] && break; sleep 0.1; done
"$vault" backup "$work/app.db" --name live --verbose 2> "$work/live2.log"
grep -q "by file-read" "$work/live2.log" || { echo "smoke: a checkpointed WAL was not read in place:" >&2; cat "$work/live2.log" >&2; exit 1; }
exec 3>&-
wait "$app"
for n in 1 2; do
  id="$("$vault" list --name live --json | sed -n 's/.*"id": "\([^"]*\)".*/\1/p' | sed -n "${n}p")"
  rm -f "$work/live.db"
  "$vault" restore --name live --id "$id" --output "$work/live.db"
  [ "$(pending "$work/live.db")" = 1 ] || { echo "smoke: live backup $n lacks the pending commit" >&2; exit 1; }
done

echo "smoke ok: $("$vault" --version) backs up, verifies and restores on $(uname -sm)"
