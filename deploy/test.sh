#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests
# need (buf, grpcurl; later Kafka and Redis), lints the contract, builds the
# workspace, and runs the unit, conformance, end-to-end and crash tests.
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

step "running the tests"
cargo test --workspace
