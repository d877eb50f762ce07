#!/usr/bin/env bash
# Starts a private Redis (Debian's redis-server, installed if missing) on
# 127.0.0.1 with AOF persistence, and waits until it answers PING.
#
#   deploy/redis/start.sh [--port 6379] [--dir DIR] [--timeout 30]
#   deploy/redis/start.sh --install-only     (install redis-server, start nothing)
#
# Prints REDIS_URL=redis://127.0.0.1:PORT on success (also written to DIR/env).
# DIR (default ${KAR_RUN_DIR:-/tmp/kar}/redis-PORT) holds the data (AOF/RDB),
# redis.log and redis.pid. Not the system service: the package's own service
# is never started. Already running from DIR on PORT: prints the line, exits 0.
set -euo pipefail
KAR_SCRIPT=redis/start.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

port=6379 dir='' timeout=30 install_only=''
while (($#)); do
  case $1 in
    --install-only) install_only=1; shift ;;
    --port) need_value "$1" "${2:-}"; port=$2; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --dir) need_value "$1" "${2:-}"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    --timeout) need_value "$1" "${2:-}"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
check_port --port "$port"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout: not a number of seconds: '$timeout'"

install_redis() {
  local sudo=() made_policy='' log
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "redis-server is missing and installing it needs root (apt-get install -y redis-server)"
    sudo=(sudo -n)
  fi
  # Keep the package from starting the system-wide service on 6379.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  log=$(mktemp)
  local ok=
  if "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >"$log" 2>&1 ||
    { "${sudo[@]}" apt-get update -q >>"$log" 2>&1 &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >>"$log" 2>&1; }; then
    ok=1
  fi
  [[ -n "$made_policy" ]] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  if [[ -z "$ok" ]]; then
    tail -n 20 "$log" >&2
    rm -f "$log"
    die "apt-get install redis-server failed"
  fi
  rm -f "$log"
}

command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || install_redis
[[ -z "$install_only" ]] || exit 0

dir=${dir:-$KAR_RUN_DIR/redis-$port}
dir=$(realpath -m "$dir")
pidfile="$dir/redis.pid"
url="redis://127.0.0.1:$port"

ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]; }
ready() {
  echo "REDIS_URL=$url" >"$dir/env"
  echo "REDIS_URL=$url"
  exit 0
}

if pid=$(pid_alive "$pidfile" redis-server); then
  [[ "$(cat "$dir/port" 2>/dev/null)" == "$port" ]] ||
    die "Redis (pid $pid) already runs from $dir on another port; stop it first (deploy/redis/stop.sh --dir $dir)"
  ping && ready
else
  rm -f "$pidfile"
  port_open "$port" && die "port 127.0.0.1:$port is already in use by another process"
  mkdir -p "$dir"
  echo "$port" >"$dir/port"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --appendonly yes --appendfsync everysec \
    --daemonize yes --pidfile "$pidfile" --logfile "$dir/redis.log" \
    >"$dir/redis.out" 2>&1 || { cat "$dir/redis.out" >&2; die "redis-server failed to start; see $dir/redis.log"; }
fi

deadline=$((SECONDS + timeout))
until ping; do
  if ((SECONDS >= deadline)); then
    tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
    die "Redis on 127.0.0.1:$port did not answer PING within ${timeout}s; see $dir/redis.log"
  fi
  if [[ -s "$pidfile" ]] && ! pid_alive "$pidfile" redis-server >/dev/null; then
    tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
    die "redis-server exited during startup; see $dir/redis.log"
  fi
  sleep 0.1
done
ready
