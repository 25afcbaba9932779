#!/usr/bin/env bash
# s3-server.sh — throwaway one-node Ceph cluster (mon + memstore OSD + RADOS
# Gateway) serving S3 on 127.0.0.1, for the sqlite-vault test suite.
#
# Usage: scripts/s3-server.sh start|stop|status|env
#
#   start   install Ceph (Debian packages) if missing, bring the cluster up,
#           wait until S3 answers, print the env; no-op if already running
#   stop    kill the daemons started by `start` and remove the state dir
#   status  exit 0 if the gateway is running and accepts our credentials
#   env     print `export SQLITE_VAULT_TEST_S3_*=...` lines for the tests
#
# Environment:
#   SQLITE_VAULT_S3_STATE           state dir          (/tmp/sqlite-vault-s3)
#   SQLITE_VAULT_S3_PORT            S3 port            (7480, or the next free one)
#   SQLITE_VAULT_S3_MON_PORT        monitor port       (6789, or the next free one)
#   SQLITE_VAULT_S3_MEMSTORE_BYTES  OSD RAM store size (6 GiB)
#   SQLITE_VAULT_S3_TIMEOUT         start timeout, s   (120)
#
# Data lives in RAM (memstore) and everything binds to 127.0.0.1 only. The
# credentials below are fixed and only meant for this loopback test server.
set -euo pipefail

STATE="${SQLITE_VAULT_S3_STATE:-/tmp/sqlite-vault-s3}"
PORT="${SQLITE_VAULT_S3_PORT:-7480}"
MON_PORT="${SQLITE_VAULT_S3_MON_PORT:-6789}"
# A port given in the environment is used or refused; a default one that is
# taken is replaced by the next free port, recorded in the state dir.
PORT_FIXED="${SQLITE_VAULT_S3_PORT:+1}"
MON_PORT_FIXED="${SQLITE_VAULT_S3_MON_PORT:+1}"
MEMSTORE_BYTES="${SQLITE_VAULT_S3_MEMSTORE_BYTES:-$((6 * 1024 * 1024 * 1024))}"
TIMEOUT="${SQLITE_VAULT_S3_TIMEOUT:-120}"

ENDPOINT="http://127.0.0.1:${PORT}"
ACCESS_KEY="vaulttestaccess"
SECRET_KEY="vaulttestsecret0123456789"
# A role the test user may assume through RGW's STS API (temporary credentials with a session token).
ROLE_NAME="vault-backup"
REGION="us-east-1"

CONF="$STATE/ceph.conf"
RUN="$STATE/run"
PORTS="$STATE/ports" # the ports a running cluster was started on
LOCK="${STATE%/}.lock" # outside the state dir, which `stop` deletes
BOOTLOG="$STATE/log/startup.log" # daemons' stderr before they detach

log() { echo "s3-server: $*" >&2; }
die() { log "error: $*"; exit 1; }

# The ports of the cluster in the state dir, if one was started there.
load_ports() {
  [[ -r $PORTS ]] || return 0
  local name value
  while IFS='=' read -r name value; do
    [[ $value =~ ^[0-9]+$ ]] || continue
    case "$name" in
      PORT) PORT="$value" ;;
      MON_PORT) MON_PORT="$value" ;;
    esac
  done <"$PORTS"
  ENDPOINT="http://127.0.0.1:${PORT}"
}

print_env() {
  cat <<EOF
export SQLITE_VAULT_TEST_S3_ENDPOINT=$ENDPOINT
export SQLITE_VAULT_TEST_S3_ACCESS_KEY=$ACCESS_KEY
export SQLITE_VAULT_TEST_S3_SECRET_KEY=$SECRET_KEY
export SQLITE_VAULT_TEST_S3_REGION=$REGION
export SQLITE_VAULT_TEST_S3_ROLE_ARN=arn:aws:iam:::role/$ROLE_NAME
EOF
}

# Serialize start/stop. Daemons are launched with `9>&-` so they don't
# inherit (and keep holding) the lock.
take_lock() {
  exec 9>"$LOCK"
  flock -w "$TIMEOUT" 9 || die "could not lock $LOCK"
}

# pid of a daemon we started, if it is still alive and really that binary.
daemon_pid() { # <name e.g. mon.a> <binary>
  local pidfile="$RUN/$1.pid" pid
  [[ -r $pidfile ]] || return 1
  pid="$(<"$pidfile")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == *"/$2" ]] || return 1
  echo "$pid"
}

# True while the process exists and is not a zombie (this machine's init
# does not always reap orphaned daemons promptly).
alive() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n $state && $state != Z ]]
}

# Authenticated ListBuckets answered by an S3 server: the gateway is up and
# our user exists. (curl 7.88 omits x-amz-content-sha256, which RGW needs
# to check the signature, so it is passed explicitly.)
s3_ok() {
  curl -sf --max-time 5 \
    --aws-sigv4 "aws:amz:${REGION}:s3" --user "${ACCESS_KEY}:${SECRET_KEY}" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$ENDPOINT/" 2>/dev/null |
    grep -q ListAllMyBucketsResult
}

# Something accepts TCP connections on 127.0.0.1:<port>.
port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Print a free port for <what>: <port> itself, once it is free (a server
# being stopped may hold it for a few seconds), else, unless <fixed>, the
# first free one of the <spare> ports after it.
free_port() { # <what> <port> <fixed> <spare>
  local what="$1" port="$2" fixed="$3" spare="$4" i
  for ((i = 0; i < 20; i++)); do
    port_busy "$port" || { echo "$port"; return 0; }
    sleep 0.5
  done
  [[ -z $fixed ]] || die "127.0.0.1:$port ($what) is already in use"
  for ((i = 1; i <= spare; i++)); do
    if ! port_busy $((port + i)); then
      log "127.0.0.1:$port ($what) is in use; using $((port + i))"
      echo $((port + i))
      return 0
    fi
  done
  die "127.0.0.1:$port ($what) and the $spare ports after it are in use"
}

is_running() {
  daemon_pid client.rgw.a radosgw >/dev/null && s3_ok
}

show_logs() {
  local f
  for f in "$STATE"/log/*.log; do
    [[ -e $f ]] || continue
    log "---- tail of $f"
    tail -n 25 "$f" >&2
  done
}

ensure_packages() {
  local bin missing=0
  for bin in ceph ceph-mon ceph-osd radosgw radosgw-admin monmaptool curl flock; do
    command -v "$bin" >/dev/null || missing=1
  done
  ((missing)) || return 0
  log "installing Ceph packages (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends \
    ceph-mon ceph-osd radosgw ceph-common curl util-linux >&2
}

write_conf() {
  local fsid="$1"
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon initial members = a
# v1 spelled out: a bare address on a port other than 6789 would be taken
# for msgr2, which is not bound.
mon host = [v1:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr2 = false

auth cluster required = none
auth service required = none
auth client required = none

# Keep every path under the state dir; nothing in /etc/ceph or /var/lib/ceph.
run dir = $RUN
pid file = $RUN/\$name.pid
admin socket = $RUN/\$name.asok
log file = $STATE/log/\$name.log
mon cluster log file = $STATE/log/cluster.log
crash dir = $STATE/crash
keyring = $STATE/keyring

# One OSD, no replication, few PGs (RGW creates ~7 pools).
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0

[mon]
mon data = $STATE/mon/\$id
mon data avail warn = 1
mon data avail crit = 0

[osd]
osd data = $STATE/osd/\$id
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES

[client.rgw.a]
# tcp_nodelay: without it a small response (a manifest, a listing) waits ~40 ms for the client's
# delayed ACK before its body is sent (Nagle), which no hosted S3 service does.
rgw frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw data = $STATE/rgw
rgw thread pool size = 64
# Deleted/overwritten object data is garbage-collected after 2 h by default;
# memstore is RAM, so reclaim it within about a minute instead.
rgw gc obj min wait = 30
rgw gc processor period = 30
# STS (AssumeRole), so temporary credentials with session tokens can be tested.
rgw sts key = vaultteststskey1
rgw s3 auth use sts = true
EOF
}

# Delete the state dir, but only if it looks like one of ours.
wipe_state() {
  [[ -e $STATE ]] || return 0
  if [[ ! -e $STATE/ceph.conf && ! -e $RUN && -n "$(ls -A "$STATE")" ]]; then
    die "$STATE is not empty and not an s3-server state dir; refusing to delete it"
  fi
  rm -rf "$STATE"
}

# Start failed: show why, stop what was started, keep the logs.
fail() {
  log "error: $*"
  show_logs
  stop_daemons
  log "logs kept in $STATE/log"
  exit 1
}

# Run one setup command; daemons must not inherit the lock (fd 9), and
# their stderr goes to the startup log. A daemon's launcher waits for it to
# reach its monitor, so each command gets the start timeout too.
run() {
  timeout "$TIMEOUT" "$@" 9>&- 2>>"$BOOTLOG" || fail "command failed or timed out: $*"
}

wait_for() { # <description> <deadline (bash SECONDS)> <command...>
  local what="$1" deadline="$2" since=$SECONDS
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what"
    # Give radosgw a moment to write its pid file, then fail fast if it died.
    if ((SECONDS - since > 3)) && ! daemon_pid client.rgw.a radosgw >/dev/null; then
      fail "radosgw exited"
    fi
    sleep 0.5
  done
}

cmd_start() {
  take_lock
  load_ports
  if is_running; then
    print_env
    return 0
  fi
  # Half-started or dead cluster: start over from nothing.
  stop_daemons
  wipe_state

  ensure_packages
  PORT="${SQLITE_VAULT_S3_PORT:-7480}"
  MON_PORT="${SQLITE_VAULT_S3_MON_PORT:-6789}"
  # The OSD takes the lowest free ports from 6800, so the monitor's spares
  # stay below it and the gateway's well above.
  PORT="$(free_port "S3 gateway" "$PORT" "$PORT_FIXED" 40)"
  MON_PORT="$(free_port "monitor" "$MON_PORT" "$MON_PORT_FIXED" 10)"
  ENDPOINT="http://127.0.0.1:${PORT}"
  local began=$SECONDS deadline=$((SECONDS + TIMEOUT)) fsid id
  fsid="$(cat /proc/sys/kernel/random/uuid)"
  mkdir -p "$RUN" "$STATE/log" "$STATE/crash" "$STATE/mon" "$STATE/osd/0" "$STATE/rgw"
  printf 'PORT=%s\nMON_PORT=%s\n' "$PORT" "$MON_PORT" >"$PORTS"
  write_conf "$fsid"

  log "starting ceph-mon on 127.0.0.1:$MON_PORT"
  run monmaptool --create --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$STATE/monmap" >/dev/null
  run ceph-mon -c "$CONF" --mkfs -i a --monmap "$STATE/monmap"
  run ceph-mon -c "$CONF" -i a

  log "starting ceph-osd (memstore, $((MEMSTORE_BYTES / 1024 / 1024)) MiB of RAM)"
  id="$(ceph -c "$CONF" --connect-timeout "$TIMEOUT" osd create 2>>"$BOOTLOG")" ||
    fail "ceph osd create failed"
  [[ $id == 0 ]] || fail "expected osd id 0, got '$id'"
  # The OSD's mkfs writes the cluster's fsid (ceph_fsid) from what the monitor tells it; once, in a
  # CI run, it came out empty, and the OSD then failed at start with "wrong fsid". Check it, and
  # make the store again until it holds the cluster's fsid.
  local tries
  for ((tries = 1; ; tries++)); do
    run ceph-osd -c "$CONF" -i 0 --mkfs
    [[ "$(cat "$STATE/osd/0/ceph_fsid" 2>/dev/null)" == "$fsid" ]] && break
    ((tries < 5)) || fail "ceph-osd --mkfs did not record the cluster's fsid $fsid (got '$(cat "$STATE/osd/0/ceph_fsid" 2>/dev/null)')"
    log "ceph-osd --mkfs recorded fsid '$(cat "$STATE/osd/0/ceph_fsid" 2>/dev/null)', not $fsid; making the store again"
    rm -rf "$STATE/osd/0" && mkdir -p "$STATE/osd/0"
    sleep 1
  done
  for ((tries = 1; ; tries++)); do
    timeout "$TIMEOUT" ceph-osd -c "$CONF" -i 0 9>&- 2>>"$BOOTLOG" && break
    ((tries < 3)) || fail "command failed or timed out: ceph-osd -c $CONF -i 0"
    log "ceph-osd did not start (try $tries of 3; see $BOOTLOG); starting it again"
    sleep 2
  done

  log "starting radosgw on $ENDPOINT"
  run radosgw -c "$CONF" -n client.rgw.a
  wait_for "radosgw to listen on $ENDPOINT" "$deadline" port_busy "$PORT"
  run radosgw-admin -c "$CONF" user create --uid=vaulttest \
    --display-name="sqlite-vault tests" \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" --caps="roles=*" >/dev/null
  run radosgw-admin -c "$CONF" role create --role-name="$ROLE_NAME" --path=/ \
    --assume-role-policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/vaulttest"]},"Action":["sts:AssumeRole"]}]}' >/dev/null
  run radosgw-admin -c "$CONF" role-policy put --role-name="$ROLE_NAME" --policy-name=s3 \
    --policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":"arn:aws:s3:::*"}]}' >/dev/null
  wait_for "S3 credentials to be accepted" "$deadline" s3_ok

  print_env >"$STATE/env"
  log "ready after $((SECONDS - began)) s (env also in $STATE/env)"
  print_env
}

# SIGKILL on purpose: the cluster is thrown away, a graceful radosgw
# shutdown takes ~5 s, and memstore would first dump all its RAM to disk.
stop_daemons() {
  local spec name bin pid pids=() i
  for spec in client.rgw.a:radosgw osd.0:ceph-osd mon.a:ceph-mon; do
    IFS=: read -r name bin <<<"$spec"
    if pid="$(daemon_pid "$name" "$bin")"; then
      kill -KILL "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for ((i = 0; i < 50; i++)); do # wait up to 5 s for them to be gone
    local running=0
    for pid in "${pids[@]}"; do
      alive "$pid" && running=1
    done
    ((running)) || return 0
    sleep 0.1
  done
  log "warning: daemons still alive: ${pids[*]}"
}

cmd_stop() {
  take_lock
  stop_daemons
  wipe_state
}

load_ports
case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) is_running ;;
  env) print_env ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
