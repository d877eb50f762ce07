#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests
# need (buf from npm, grpcurl from the Go module proxy, Debian's
# redis-server, Apache Kafka assembled from Maven Central, schemathesis from
# PyPI), lints the contract, checks formatting and lints, builds the
# workspace, fuzzes the JSON gateway, and runs the unit, conformance,
# end-to-end, crash and chaos tests against a Kafka broker it starts.
# `.ci/run` calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test tools"
deploy/install-tools.sh >/dev/null
# The Redis store's tests start private redis-server instances.
deploy/redis/start.sh --install-only
# shellcheck source=deploy/env.sh
. deploy/env.sh

step "linting the contract (buf)"
deploy/lint-proto.sh --check-format

step "checking formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "building the workspace"
# The end-to-end tests start the kar and testapp binaries built here.
cargo build --workspace --bins --examples --quiet

step "fuzzing the JSON gateway from its OpenAPI document (schemathesis)"
FUZZ_TIME_LIMIT=300 KAR=target/debug/kar runtime/tests/fuzz_gateway.sh 10

step "starting Kafka for the tests"
# The Kafka tests (log, topics, purge) and the distributed end-to-end and
# chaos tests use the broker named by KAFKA_BROKERS; stopped and deleted when
# this script exits.
kafka_dir=$(mktemp -d "${TMPDIR:-/tmp}/kar-test-kafka.XXXXXX")
trap 'deploy/kafka/stop.sh --dir "$kafka_dir" --clean >/dev/null 2>&1 || true' EXIT
kafka_env=$(deploy/kafka/start.sh --port 39092 --dir "$kafka_dir")
export "${kafka_env?}"

step "running the tests"
# Every test binary runs even if one fails, so one run shows every failure.
cargo test --workspace --no-fail-fast
