#!/usr/bin/env bash
# The quick start: builds the runtime and the bank example, then runs the
# example as a component of an embedded runtime (`kar run -- <example>`),
# with its log and state in a fresh data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p kar-runtime --bin kar -p kar-client --example bank
data_dir="$(mktemp -d -t kar-quickstart-XXXXXX)"
trap 'rm -rf "$data_dir"' EXIT
exec_status=0
target/release/kar run --data-dir "$data_dir" --log warn -- target/release/examples/bank || exec_status=$?
exit "$exec_status"
