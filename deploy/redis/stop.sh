#!/usr/bin/env bash
# Stops the Redis started by deploy/redis/start.sh: SIGTERM (Redis flushes its
# AOF and exits), then SIGKILL if it has not exited within --timeout seconds.
#
#   deploy/redis/stop.sh [--port 6379] [--dir DIR] [--timeout 30] [--clean]
#
# DIR defaults as in start.sh (${KAR_RUN_DIR:-/tmp/kar}/redis-PORT). Removes
# nothing unless --clean, which deletes DIR. Not running: exits 0.
set -euo pipefail
KAR_SCRIPT=redis/stop.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

port=6379 dir='' timeout=30 clean=''
while (($#)); do
  case $1 in
    --port) need_value "$1" "${2:-}"; port=$2; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --dir) need_value "$1" "${2:-}"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    --timeout) need_value "$1" "${2:-}"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --clean) clean=1; shift ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
check_port --port "$port"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout: not a number of seconds: '$timeout'"
dir=${dir:-$KAR_RUN_DIR/redis-$port}
[[ -d "$dir" ]] || exit 0
stop_pid "$dir/redis.pid" "$timeout" redis-server
rm -f "$dir/env"
if [[ -n "$clean" ]]; then
  [[ -f "$dir/port" || -f "$dir/redis.log" || -z "$(ls -A "$dir")" ]] ||
    die "$dir does not look like a Redis dir made by start.sh; not deleting"
  rm -rf "$dir"
fi
