#!/usr/bin/env bash
# Run every test on a fresh machine: installs what the suite needs (Bun from npm; sqlite3, age and Ceph
# from Debian), starts the test S3 server (Ceph RGW on 127.0.0.1), builds the binary, type-checks, runs
# `bun test`, and stops the server again however the run ends. Unformatted code fails the run (Biome).
#
#   scripts/test.sh [bun test arguments…]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test.sh: $*" >&2; }

if ! command -v bun >/dev/null 2>&1; then
  log "installing Bun from npm"
  npm install -g bun >/dev/null
fi
missing=()
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v gunzip >/dev/null 2>&1 || missing+=(gzip)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v age >/dev/null 2>&1 || missing+=(age)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bun install --frozen-lockfile

started_here=0
if ! scripts/s3-server.sh status >/dev/null 2>&1; then
  started_here=1
  trap 'scripts/s3-server.sh stop >/dev/null 2>&1 || true' EXIT
fi
# Start the server (or reuse a running one), once more from nothing if the first try fails. A server
# that does not start ends the run here, with its reason as the last lines, where a CI log's tail
# shows it (`eval "$(…)"` alone would swallow the failure and run every S3 test without a server).
start_log="$(mktemp)"
s3_start() {
  local rc=0
  s3env="$(scripts/s3-server.sh start 2>"$start_log")" || rc=$?
  cat "$start_log" >&2
  return "$rc"
}
if ! s3_start; then
  log "the test S3 server did not start; stopping what is left and trying once more"
  scripts/s3-server.sh stop || true
  trap 'scripts/s3-server.sh stop >/dev/null 2>&1 || true' EXIT
  if ! s3_start; then
    log "error: the test S3 server (Ceph RGW, scripts/s3-server.sh) did not start; its last lines:"
    tail -n 40 "$start_log" >&2
    rm -f "$start_log"
    exit 1
  fi
fi
rm -f "$start_log"
eval "$s3env"
if [ -z "${SQLITE_VAULT_TEST_S3_ENDPOINT:-}" ]; then
  log "error: scripts/s3-server.sh start printed no SQLITE_VAULT_TEST_S3_ENDPOINT"
  exit 1
fi

bun run build
bunx tsc --noEmit -p .
# Formatting and lint (Biome): unformatted code fails the run; `bunx biome check --write` fixes it.
bunx biome ci --reporter=summary
# bun test's own summary, plus the plain "N passed, N failed" line that any CI can read.
log="$(mktemp)"
set +e
bun test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -n 1 | grep -Eo '[0-9]+' || true)
failed=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -n 1 | grep -Eo '[0-9]+' || true)
rm -f "$log"
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$status"
