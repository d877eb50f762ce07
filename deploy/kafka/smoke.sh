#!/usr/bin/env bash
# Checks that a running broker works for what kar needs: creates two topics,
# produces two records, copies them with a transactional producer that commits
# the consumer offsets in the transaction (Kafka's TransactionalMessageCopier),
# and reads them back with isolation.level=read_committed.
#
#   deploy/kafka/smoke.sh [--brokers 127.0.0.1:9092]
#
# Defaults to $KAFKA_BROKERS. Quiet on success; leaves its topics
# (kar-smoke-<random>-in/-out) behind, deleting them when it can.
set -euo pipefail
KAR_SCRIPT=kafka/smoke.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

brokers=${KAFKA_BROKERS:-127.0.0.1:9092}
while (($#)); do
  case $1 in
    --brokers) need_value "$1" "${2:-}"; brokers=$2; shift 2 ;;
    --brokers=*) brokers=${1#*=}; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

run() { "$here/run-class.sh" "$@"; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() { # step WHAT CMD...
  local what=$1
  shift
  "$@" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; die "$what failed (brokers $brokers)"; }
}

t="kar-smoke-$RANDOM$RANDOM"
step "create topic $t-in" run org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" \
  --create --topic "$t-in" --partitions 1 --replication-factor 1
step "create topic $t-out" run org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" \
  --create --topic "$t-out" --partitions 1 --replication-factor 1
step "produce" run org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$brokers" \
  --topic "$t-in" --command-property acks=all < <(printf 'one\ntwo\n')
step "transactional copy" timeout 60 "$here/run-class.sh" org.apache.kafka.tools.TransactionalMessageCopier \
  --broker-list "$brokers" --input-topic "$t-in" --input-partition 0 --output-topic "$t-out" \
  --transactional-id "$t-tx" --consumer-group "$t-group" --transaction-size 1 --group-mode
out=$(run org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$brokers" \
  --topic "$t-out" --from-beginning --max-messages 2 --timeout-ms 30000 \
  --command-property isolation.level=read_committed 2>>"$log") || true
[[ "$out" == $'one\ntwo' ]] || { tail -n 30 "$log" >&2; die "read_committed consume returned '${out//$'\n'/,}', expected 'one,two'"; }
run org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --delete --topic "$t-in" >/dev/null 2>&1 || true
run org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --delete --topic "$t-out" >/dev/null 2>&1 || true
