#!/usr/bin/env bash
# Runs a main class from the assembled Kafka (assembling it first if needed),
# e.g. the CLI tools that Kafka's bin/*.sh scripts wrap:
#
#   deploy/kafka/run-class.sh org.apache.kafka.tools.TopicCommand \
#       --bootstrap-server 127.0.0.1:9092 --create --topic t --partitions 1
#   deploy/kafka/run-class.sh org.apache.kafka.tools.ConsoleProducer ...
#   deploy/kafka/run-class.sh org.apache.kafka.tools.consumer.ConsoleConsumer ...
#   deploy/kafka/run-class.sh org.apache.kafka.tools.TransactionsCommand ...
#
# Logs warnings to stderr. Environment: KAFKA_VERSION, KAR_CACHE_DIR,
# KAFKA_TOOL_HEAP_OPTS (default -Xmx256m), JAVA_HOME.
set -euo pipefail
KAR_SCRIPT=kafka/run-class.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

(($#)) || die "usage: run-class.sh MAIN_CLASS [ARGS...]"
libs=$("$here/assemble.sh" --print-libs)
libs=${libs#KAFKA_LIBS=}
java=$(java_bin)
# shellcheck disable=SC2086
exec "$java" ${KAFKA_TOOL_HEAP_OPTS:--Xmx256m} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/tools-log4j2.properties" \
  -cp "$libs/*" "$@"
