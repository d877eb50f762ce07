#!/usr/bin/env bash
# Stops the Kafka started by deploy/kafka/start.sh: SIGTERM, then SIGKILL if it
# has not exited within --timeout seconds (default 30).
#
#   deploy/kafka/stop.sh [--port 9092] [--dir DIR] [--timeout 30] [--clean]
#
# DIR defaults as in start.sh (${KAR_RUN_DIR:-/tmp/kar}/kafka-PORT). Removes
# nothing unless --clean, which deletes DIR (data, logs, config). Not running:
# exits 0.
set -euo pipefail
KAR_SCRIPT=kafka/stop.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

port=9092 dir='' timeout=30 clean=''
while (($#)); do
  case $1 in
    --port) need_value "$1" "${2:-}"; port=$2; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --dir) need_value "$1" "${2:-}"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    --timeout) need_value "$1" "${2:-}"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --clean) clean=1; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
check_port --port "$port"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout: not a number of seconds: '$timeout'"
dir=${dir:-$KAR_RUN_DIR/kafka-$port}
[[ -d "$dir" ]] || exit 0
stop_pid "$dir/kafka.pid" "$timeout" kafka.Kafka
rm -f "$dir/env"
if [[ -n "$clean" ]]; then
  # Refuse to delete anything that does not look like a start.sh directory.
  [[ -f "$dir/server.properties" || ! -e "$dir/data" ]] || die "$dir does not look like a Kafka dir made by start.sh; not deleting"
  rm -rf "$dir"
fi
