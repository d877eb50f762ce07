#!/usr/bin/env bash
# Assembles an Apache Kafka broker (KRaft) and its CLI tool classes from Maven
# Central into ${KAR_CACHE_DIR:-$HOME/.cache/kar}/kafka-<version>/libs.
#
#   deploy/kafka/assemble.sh [--version 4.4.0] [--print-libs]
#
# Idempotent: with the cache present (and deploy/kafka/pom.xml unchanged) it
# returns at once without running Maven or touching the network.
# Environment: KAFKA_VERSION, KAR_CACHE_DIR, MAVEN_ARGS (extra args for mvn).
set -euo pipefail
KAR_SCRIPT=kafka/assemble.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

version=${KAFKA_VERSION:-4.4.0}
print_libs=
while (($#)); do
  case $1 in
    --version) need_value "$1" "${2:-}"; version=$2; shift 2 ;;
    --version=*) version=${1#*=}; shift ;;
    --print-libs) print_libs=1; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([.-][A-Za-z0-9.-]+)?$ ]] || die "bad Kafka version: '$version'"

home="$KAR_CACHE_DIR/kafka-$version"
libs="$home/libs"
stamp="$(sha256sum "$here/pom.xml" | cut -c1-64) $version"

done_already() {
  [[ -f "$libs/.complete" && "$(cat "$libs/.complete")" == "$stamp" ]]
}

finish() {
  [[ -n "$print_libs" ]] && echo "KAFKA_LIBS=$libs"
  exit 0
}

done_already && finish

command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install -y maven)"
mkdir -p "$home"
# One assembler at a time per version; the others wait, then find it done.
exec 9>"$home/.lock"
flock -w 900 9 || die "timed out waiting for another assemble of Kafka $version"
done_already && finish

tmp="$home/libs.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
log="$home/assemble.log"
# shellcheck disable=SC2086
if ! mvn -q -B -f "$here/pom.xml" ${MAVEN_ARGS:-} \
  -Dkafka.version="$version" \
  dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  die "mvn failed to fetch Kafka $version (full log: $log)"
fi
[[ -f "$tmp/kafka_2.13-$version.jar" ]] || die "Kafka jar missing after mvn (log: $log)"
cp "$here/pom.xml" "$tmp/.pom.xml"
echo "$stamp" >"$tmp/.complete"
rm -rf "$libs"
mv "$tmp" "$libs"
trap - EXIT
finish
