#!/usr/bin/env bash
# Single-node OpenStack Swift (Debian 12 packages) with the s3api + tempauth
# middleware, bound to 127.0.0.1: a real SigV4-verifying S3 endpoint for
# integration tests (presigned URLs, Range, etc.).
#
#   bash scripts/swift-s3.sh start   # install if needed, start, print env lines
#   bash scripts/swift-s3.sh stop    # stop all servers started by `start`
#
# stdout carries only the env lines (also written to $SWIFT_S3_DIR/env, so a
# caller can `source` it or `eval "$(bash scripts/swift-s3.sh start)"`);
# progress goes to stderr. Must run as root (apt-get install).
#
# Env knobs (defaults):
#   SWIFT_S3_DIR=/tmp/swift-s3          state: configs, rings, data, logs, pids
#   SWIFT_S3_PORT=18080                 proxy (S3 endpoint) port
#   SWIFT_S3_BACKEND_PORT_BASE=16010    object=+0, container=+1, account=+2
#   SWIFT_S3_ACCOUNT=test SWIFT_S3_USER=tester SWIFT_S3_KEY=testing
#     -> S3 access key id "test:tester", secret access key "testing"
#   SWIFT_S3_REGION=us-east-1
#   SWIFT_S3_START_TIMEOUT=60           seconds to wait for the proxy
set -euo pipefail

STATE_DIR="${SWIFT_S3_DIR:-/tmp/swift-s3}"
PROXY_PORT="${SWIFT_S3_PORT:-18080}"
BASE_PORT="${SWIFT_S3_BACKEND_PORT_BASE:-16010}"
OBJECT_PORT=$((BASE_PORT + 0))
CONTAINER_PORT=$((BASE_PORT + 1))
ACCOUNT_PORT=$((BASE_PORT + 2))
ACCOUNT="${SWIFT_S3_ACCOUNT:-test}"
USER_NAME="${SWIFT_S3_USER:-tester}"
KEY="${SWIFT_S3_KEY:-testing}"
REGION="${SWIFT_S3_REGION:-us-east-1}"
START_TIMEOUT="${SWIFT_S3_START_TIMEOUT:-60}"
HOST=127.0.0.1
PY=/usr/bin/python3  # Debian's python (swift's); PATH may have a pyenv/venv python3

# tempauth's config key is user_<account>_<user> = <key> <groups>, and the env
# file must be sourceable: keep names simple and the key free of whitespace/quotes.
[[ $ACCOUNT =~ ^[A-Za-z0-9-]+$ && $USER_NAME =~ ^[A-Za-z0-9-]+$ ]] ||
  { echo "swift-s3: SWIFT_S3_ACCOUNT/SWIFT_S3_USER must match [A-Za-z0-9-]+" >&2; exit 2; }
[[ $KEY =~ ^[A-Za-z0-9+/=._-]+$ ]] ||
  { echo "swift-s3: SWIFT_S3_KEY must match [A-Za-z0-9+/=._-]+" >&2; exit 2; }
SERVERS=(account container object proxy)

log() { echo "swift-s3: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

env_lines() {
  cat <<EOF
S3_TEST_ENDPOINT=http://${HOST}:${PROXY_PORT}
S3_TEST_REGION=${REGION}
S3_TEST_ACCESS_KEY_ID=${ACCOUNT}:${USER_NAME}
S3_TEST_SECRET_ACCESS_KEY=${KEY}
S3_TEST_FORCE_PATH_STYLE=true
EOF
}

# Every server has the healthcheck filter (GET /healthcheck -> 200 "OK"). The
# proxy's does not touch the backends, so probe all four.
healthy() {
  "$PY" - "$HOST" "$PROXY_PORT" "$ACCOUNT_PORT" "$CONTAINER_PORT" "$OBJECT_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
host, ports = sys.argv[1], sys.argv[2:]
for p in ports:
    with urllib.request.urlopen(f"http://{host}:{p}/healthcheck", timeout=2) as r:
        if r.status != 200:
            sys.exit(1)
PY
}

# A pid counts only if it is still a swift server (guards against pid reuse).
pid_alive() {
  [[ -f "$1" ]] || return 1
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && grep -q 'swift-' "/proc/$pid/cmdline" 2>/dev/null
}

all_running() {
  local s
  for s in "${SERVERS[@]}"; do pid_alive "$STATE_DIR/run/$s.pid" || return 1; done
}

install_pkgs() {
  local bins=(swift-proxy-server swift-account-server swift-container-server
              swift-object-server swift-ring-builder "$PY")
  local b missing=0
  for b in "${bins[@]}"; do command -v "$b" >/dev/null || missing=1; done
  [[ $missing == 0 ]] && return 0
  [[ $(id -u) == 0 ]] || die "swift is not installed and we are not root"
  log "installing swift packages (apt-get)..."
  # Without systemd as PID 1, invoke-rc.d would run the packages' init
  # scripts; a policy-rc.d that denies service starts keeps apt from starting
  # Debian's own swift daemons. Only add one if the machine has none.
  local added_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  {
    apt-get update -qq &&
    # No recommends: avoids keystonemiddleware/barbican/castellan; s3api is
    # built into python3-swift (swift.common.middleware.s3api, needs lxml,
    # which python3-swift already depends on).
    apt-get install -y -qq --no-install-recommends \
      swift-proxy swift-account swift-container swift-object
  } >&2 || rc=$?
  [[ $added_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
  [[ $rc == 0 ]] || die "apt-get install failed (rc=$rc)"
}

# Swift stores object metadata in user.* xattrs; refuse early with a clear
# message rather than failing on the first PUT.
check_xattr() {
  "$PY" - "$1" <<'PY' || die "filesystem of $1 lacks user xattrs; set SWIFT_S3_DIR to a dir on ext4/xfs/btrfs"
import os, sys, tempfile
fd, p = tempfile.mkstemp(dir=sys.argv[1])
try:
    os.setxattr(p, "user.swift-s3-test", b"1")
finally:
    os.close(fd); os.unlink(p)
PY
}

write_configs() {
  local etc="$STATE_DIR/etc"
  mkdir -p "$etc" "$STATE_DIR/data/d1" "$STATE_DIR/run" "$STATE_DIR/log" "$STATE_DIR/cache"

  # swift reads /etc/swift/swift.conf at import time (hard-coded path): it
  # holds the hash prefix/suffix and storage policies. The Debian package
  # ships a usable one; only create it if something removed it.
  if [[ ! -f /etc/swift/swift.conf ]]; then
    mkdir -p /etc/swift
    cat > /etc/swift/swift.conf <<'EOF'
[swift-hash]
swift_hash_path_suffix = changeme
swift_hash_path_prefix = changeme
[storage-policy:0]
name = Policy-0
default = yes
EOF
  fi

  # Shared [DEFAULT] bits. user=root: simplest reliable choice when run as
  # root in CI (no chown dance). workers=0: single process, no fork -> less RSS.
  local common
  common="user = root
swift_dir = $etc
devices = $STATE_DIR/data
mount_check = false
bind_ip = $HOST
workers = 0
log_level = INFO
recon_cache_path = $STATE_DIR/cache"

  local s port
  for s in account container object; do
    case $s in
      account) port=$ACCOUNT_PORT ;; container) port=$CONTAINER_PORT ;; object) port=$OBJECT_PORT ;;
    esac
    cat > "$etc/$s-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $port

[pipeline:main]
pipeline = healthcheck $s-server

[app:$s-server]
use = egg:swift#$s

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
  done

  # cache is required by tempauth; without a memcached it just misses (and
  # logs connection errors), which is fine for tests. s3api sits right before
  # tempauth; tempauth checks the SigV4 signature using the user's key.
  cat > "$etc/proxy-server.conf" <<EOF
[DEFAULT]
$common
bind_port = $PROXY_PORT

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = $REGION

[filter:tempauth]
use = egg:swift#tempauth
reseller_prefix = AUTH_
user_${ACCOUNT}_${USER_NAME} = $KEY .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = $HOST:11211

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
# S3 bucket versioning (PutBucketVersioning, versionId) through s3api; needs symlink.
allow_object_versioning = true
[filter:symlink]
use = egg:swift#symlink
EOF

  # 1-replica rings, one device each, built in parallel (each
  # swift-ring-builder call is ~0.5 s of python start-up). part_power 6 keeps
  # them tiny. Rebuilt only when ports change (the ring stores ip:port).
  local stamp="$HOST:$ACCOUNT_PORT:$CONTAINER_PORT:$OBJECT_PORT"
  if [[ "$(cat "$etc/rings.stamp" 2>/dev/null)" != "$stamp" ]]; then
    rm -f "$etc"/*.builder "$etc"/*.ring.gz "$etc/rings.stamp"
    local pids=()
    build_ring account "$ACCOUNT_PORT" & pids+=($!)
    build_ring container "$CONTAINER_PORT" & pids+=($!)
    build_ring object "$OBJECT_PORT" & pids+=($!)
    local p
    for p in "${pids[@]}"; do
      wait "$p" || { cat "$STATE_DIR/log/rings.log" >&2; die "swift-ring-builder failed"; }
    done
    echo "$stamp" > "$etc/rings.stamp"
  fi
}

build_ring() {
  local b="$STATE_DIR/etc/$1.builder"
  {
    swift-ring-builder "$b" create 6 1 1 &&
    swift-ring-builder "$b" add "r1z1-$HOST:$2/d1" 100 &&
    swift-ring-builder "$b" rebalance
  } >>"$STATE_DIR/log/rings.log" 2>&1
}

stop() {
  local s pidf pid
  for s in "${SERVERS[@]}"; do
    pidf="$STATE_DIR/run/$s.pid"
    if pid_alive "$pidf"; then
      pid=$(cat "$pidf")
      log "stopping $s-server (pid $pid)"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidf"
  done
}

start() {
  if all_running && healthy; then
    log "already running"
  else
    stop  # clear any half-started leftovers from an earlier run
    install_pkgs
    mkdir -p "$STATE_DIR"
    check_xattr "$STATE_DIR"
    write_configs
    # Fail fast on a port clash (swift itself retries bind() for 30 s).
    local s p
    for p in "$PROXY_PORT" "$ACCOUNT_PORT" "$CONTAINER_PORT" "$OBJECT_PORT"; do
      if (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then
        die "port $HOST:$p is already in use (set SWIFT_S3_PORT / SWIFT_S3_BACKEND_PORT_BASE)"
      fi
    done
    for s in "${SERVERS[@]}"; do
      # -v also logs to the console (here: the log file); without a syslog
      # socket swift's syslog handler just sends UDP to localhost:514.
      # (swift calls setsid() itself when dropping privileges.)
      "swift-$s-server" "$STATE_DIR/etc/$s-server.conf" -v \
        >>"$STATE_DIR/log/$s.log" 2>&1 </dev/null &
      echo $! > "$STATE_DIR/run/$s.pid"
    done
    local deadline=$((SECONDS + START_TIMEOUT))
    until healthy; do
      for s in "${SERVERS[@]}"; do
        pid_alive "$STATE_DIR/run/$s.pid" ||
          { tail -n 30 "$STATE_DIR/log/$s.log" >&2; stop; die "$s-server exited; log: $STATE_DIR/log/$s.log"; }
      done
      if (( SECONDS >= deadline )); then
        tail -n 30 "$STATE_DIR"/log/*.log >&2 || true
        stop
        die "swift did not become healthy within ${START_TIMEOUT}s (logs in $STATE_DIR/log)"
      fi
      sleep 0.5
    done
    log "up on http://$HOST:$PROXY_PORT (state: $STATE_DIR)"
  fi
  env_lines > "$STATE_DIR/env"
  env_lines
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
