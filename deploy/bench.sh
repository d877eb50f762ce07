#!/usr/bin/env bash
# Benchmarks actor calls on a runtime this script starts and stops: builds
# the release `kar`, starts it (embedded in a fresh data dir, or a
# distributed runtime on a Kafka and a Redis it also starts), runs
# `kar bench` with one caller and with 64, and prints each `bench:` line.
#
#   deploy/bench.sh [--backend embedded|distributed] [--seconds 10]
#
# Distributed: Kafka comes from KAFKA_BROKERS if set, else it is started on a
# free port (deploy/kafka/start.sh) and deleted afterwards; Redis is always a
# private one (AOF, everysec). Figures are reported, never judged.
set -euo pipefail
KAR_SCRIPT=bench.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
cd "$here/.."

backend=embedded seconds=10
while (($#)); do
  case $1 in
    --backend) need_value "$1" "${2:-}"; backend=$2; shift 2 ;;
    --backend=*) backend=${1#*=}; shift ;;
    --seconds) need_value "$1" "${2:-}"; seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
case $backend in embedded | distributed) ;; *) die "--backend: embedded or distributed, not '$backend'" ;; esac
[[ "$seconds" =~ ^[0-9]+$ ]] && ((seconds > 0)) || die "--seconds: not a positive number: '$seconds'"

cargo build --release --quiet --bin kar
kar=target/release/kar
work=$(mktemp -d "${TMPDIR:-/tmp}/kar-bench.XXXXXX")
kar_pid='' kafka_dir='' redis_port=''
cleanup() {
  [[ -n "$kar_pid" ]] && kill "$kar_pid" 2>/dev/null && wait "$kar_pid" 2>/dev/null
  [[ -n "$redis_port" ]] && deploy/redis/stop.sh --port "$redis_port" --dir "$work/redis" >/dev/null 2>&1
  [[ -n "$kafka_dir" ]] && deploy/kafka/stop.sh --dir "$kafka_dir" --clean >/dev/null 2>&1
  rm -rf "$work"
  return 0
}
trap cleanup EXIT

port=$(free_port_from 43500)
args=(run --port "$port" --data-dir "$work/data")
if [[ $backend == distributed ]]; then
  if [[ -z "${KAFKA_BROKERS:-}" ]]; then
    kafka_dir="$work/kafka"
    kafka_env=$(deploy/kafka/start.sh --port "$(free_port_from 49092)" --dir "$kafka_dir")
    export "${kafka_env?}"
  fi
  redis_port=$(free_port_from 46379)
  redis_env=$(deploy/redis/start.sh --port "$redis_port" --dir "$work/redis")
  redis_url=${redis_env#REDIS_URL=}
  args+=(--app "bench$$" --kafka-brokers "$KAFKA_BROKERS" --redis-url "$redis_url")
fi
"$kar" "${args[@]}" >"$work/kar.log" 2>&1 &
kar_pid=$!
for ((i = 0; i < 300; i++)); do
  port_open "$port" && break
  kill -0 "$kar_pid" 2>/dev/null || { tail -n 20 "$work/kar.log" >&2; die "kar run exited"; }
  sleep 0.1
done
port_open "$port" || die "kar run did not listen on $port within 30 s"

echo "bench: backend=$backend cores=$(nproc) seconds=$seconds"
for concurrency in 1 64; do
  "$kar" bench --runtime "127.0.0.1:$port" --concurrency "$concurrency" --seconds "$seconds" --warmup 2
done
if [[ $backend == distributed ]]; then
  "$kar" purge --app "bench$$" --kafka-brokers "$KAFKA_BROKERS" --redis-url "$redis_url" --yes >/dev/null 2>&1 || true
fi
