#!/usr/bin/env bash
# Starts a single-node Apache Kafka (KRaft, combined broker+controller) on
# 127.0.0.1, assembling it first if needed, and waits until it is ready.
#
#   deploy/kafka/start.sh [--port 9092] [--dir DIR] [--controller-port P]
#                         [--timeout 60] [--version 4.4.0]
#
# Prints KAFKA_BROKERS=127.0.0.1:PORT on success (also written to DIR/env).
# DIR (default ${KAR_RUN_DIR:-/tmp/kar}/kafka-PORT) keeps data/, logs/,
# server.properties and kafka.pid. Storage is formatted once; restarting keeps
# the data. Already running on that DIR and port: prints the line, exits 0.
# Environment: KAFKA_VERSION, KAR_CACHE_DIR, KAR_RUN_DIR, KAFKA_HEAP_OPTS
# (default -Xms512m -Xmx512m), KAFKA_JVM_OPTS (extra JVM flags), JAVA_HOME.
set -euo pipefail
KAR_SCRIPT=kafka/start.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

port=9092 dir='' cport='' timeout=60
version=${KAFKA_VERSION:-4.4.0}
while (($#)); do
  case $1 in
    --port) need_value "$1" "${2:-}"; port=$2; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --dir) need_value "$1" "${2:-}"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    --controller-port) need_value "$1" "${2:-}"; cport=$2; shift 2 ;;
    --controller-port=*) cport=${1#*=}; shift ;;
    --timeout) need_value "$1" "${2:-}"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --version) need_value "$1" "${2:-}"; version=$2; shift 2 ;;
    --version=*) version=${1#*=}; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
check_port --port "$port"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout: not a number of seconds: '$timeout'"
dir=${dir:-$KAR_RUN_DIR/kafka-$port}
dir=$(realpath -m "$dir")
pidfile="$dir/kafka.pid"
config="$dir/server.properties"
logfile="$dir/logs/server.log"
brokers="127.0.0.1:$port"

ready() {
  echo "KAFKA_BROKERS=$brokers" >"$dir/env"
  echo "KAFKA_BROKERS=$brokers"
  exit 0
}

# Already running from this DIR?
if pid=$(pid_alive "$pidfile" kafka.Kafka); then
  grep -q "^listeners=PLAINTEXT://$brokers," "$config" 2>/dev/null ||
    die "Kafka (pid $pid) already runs from $dir on another port; stop it first (deploy/kafka/stop.sh --dir $dir)"
  port_open "$port" || die "Kafka (pid $pid) runs from $dir but 127.0.0.1:$port does not answer; see $logfile"
  ready
fi
rm -f "$pidfile"
port_open "$port" && die "port 127.0.0.1:$port is already in use by another process"

libs=$("$here/assemble.sh" --version "$version" --print-libs)
libs=${libs#KAFKA_LIBS=}
java=$(java_bin)

if [[ -z "$cport" ]]; then
  # Not port+1: a harness running several brokers may well pick that one next.
  cport=$(os_free_port) || cport=$(free_port_from $((port + 1)))
  [[ "$cport" != "$port" ]] || cport=$(free_port_from $((port + 2)))
else
  check_port --controller-port "$cport"
  port_open "$cport" && die "controller port 127.0.0.1:$cport is already in use"
fi

mkdir -p "$dir/data" "$dir/logs"
cat >"$config" <<EOF
# Written by deploy/kafka/start.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://$brokers,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://$brokers
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.network.threads=2
num.io.threads=4
# KIP-890's partition verification makes each partition leader ask the
# transaction coordinator before accepting a transactional write; with
# librdkafka (which registers partitions itself) it only adds latency.
transaction.partition.verification.enable=false
EOF

cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $logfile
appender.file.filePattern = $dir/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 100MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
EOF

cp_arg="$libs/*"
log_offset=$(stat -c %s "$logfile" 2>/dev/null || echo 0)
if [[ ! -f "$dir/data/meta.properties" ]]; then
  cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  if ! "$java" -Xmx256m -Dlog4j2.configurationFile="$here/tools-log4j2.properties" -cp "$cp_arg" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$config" >"$dir/logs/format.log" 2>&1; then
    cat "$dir/logs/format.log" >&2
    die "formatting storage in $dir/data failed"
  fi
fi

# shellcheck disable=SC2086,SC2016 # word-split the JVM opts; $$ and $@ are the child's.
setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
  "$java" ${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m} \
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true -Dkafka.logs.dir="$dir/logs" \
  -Dlog4j2.configurationFile="$dir/log4j2.properties" \
  ${KAFKA_JVM_OPTS:-} -cp "$cp_arg" kafka.Kafka "$config" \
  </dev/null >"$dir/logs/kafka.out" 2>&1 &

show_errors() { # the first errors of this start, else the last lines
  local errs
  errs=$(tail -c +$((log_offset + 1)) "$logfile" 2>/dev/null | grep -E -A 2 '^\[[^]]*\] (ERROR|FATAL)' | head -n 9 | cut -c1-400)
  [[ -n "$errs" ]] || errs=$(tail -n 10 "$dir/logs/kafka.out" 2>/dev/null)
  [[ -n "$errs" ]] || errs=$(tail -n 10 "$logfile" 2>/dev/null)
  [[ -z "$errs" ]] || echo "$errs" >&2
}

# Bounded wait: the process must stay up, log "Kafka Server started" (after
# the broker is unfenced) and accept connections on the port.
deadline=$((SECONDS + timeout))
while :; do
  if [[ -s "$pidfile" ]] && ! pid_alive "$pidfile" kafka.Kafka >/dev/null; then
    show_errors
    die "Kafka exited during startup; see $logfile"
  fi
  if tail -c +$((log_offset + 1)) "$logfile" 2>/dev/null | grep -q 'Kafka Server started' &&
    port_open "$port"; then
    ready
  fi
  if ((SECONDS >= deadline)); then
    show_errors
    stop_pid "$pidfile" 10 kafka.Kafka || true
    die "Kafka not ready within ${timeout}s (stopped it); see $logfile"
  fi
  sleep 0.2
done
