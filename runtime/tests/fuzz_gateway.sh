#!/usr/bin/env bash
# Property-based fuzzing of the JSON gateway from its own OpenAPI document.
#
# Starts `kar run` on a free port, runs schemathesis against
# http://HOST:PORT/openapi.json for a bounded number of examples per
# operation, and then checks the runtime is still alive and answering. The
# check is `not_a_server_error`, with 503 and 504 accepted: those are the
# documented unavailability (a call to an actor type nobody hosts parks until
# one attaches, so every request carries `grpc-timeout` and may end in 504).
#
# Usage: runtime/tests/fuzz_gateway.sh [MAX_EXAMPLES]   (default 20)
# Env:   KAR=path/to/kar (default: build target/debug/kar)
#        FUZZ_SEED (default 1), FUZZ_TIME_LIMIT seconds (default 600)
set -euo pipefail

max_examples=${1:-20}
seed=${FUZZ_SEED:-1}
time_limit=${FUZZ_TIME_LIMIT:-600}
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${HOME}/.cache/kar/schemathesis-venv

if [[ ! -x "$venv/bin/schemathesis" ]]; then
    echo "installing schemathesis into $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4.32,<5'
fi

if [[ -z "${KAR:-}" ]]; then
    (cd "$root" && cargo build --quiet -p kar-runtime --bin kar)
    KAR=$root/target/debug/kar
fi

work=$(mktemp -d)
kar_pid=
cleanup() {
    if [[ -n "$kar_pid" ]]; then
        kill "$kar_pid" 2>/dev/null || true
        wait "$kar_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$KAR" run --port 0 --host 127.0.0.1 --data-dir "$work/data" --ready-file "$work/ready" 2>"$work/kar.log" &
kar_pid=$!
for _ in $(seq 200); do
    [[ -s "$work/ready" ]] && break
    kill -0 "$kar_pid" 2>/dev/null || { cat "$work/kar.log"; echo "kar run exited"; exit 1; }
    sleep 0.1
done
address=$(cat "$work/ready")
echo "kar runtime at $address"

cat >"$work/schemathesis.toml" <<'EOF'
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503", "504"]
EOF

set +e
timeout "$time_limit" "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run \
    "http://$address/openapi.json" \
    --checks not_a_server_error \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --request-timeout 10 \
    --header 'grpc-timeout: 2S' \
    --report har --report-har-path "$work/requests.har" \
    --no-color >"$work/schemathesis.out" 2>&1
status=$?
set -e
tail -n 40 "$work/schemathesis.out"

python3 - "$work/requests.har" <<'EOF'
import collections, json, sys
try:
    entries = json.load(open(sys.argv[1]))["log"]["entries"]
except (OSError, ValueError, KeyError):
    entries = []
codes = collections.Counter(e["response"]["status"] for e in entries)
classes = collections.Counter(f"{c // 100}xx" if c else "no response" for c in codes.elements())
print(f"requests: {len(entries)}")
print("by class: " + ", ".join(f"{k}={v}" for k, v in sorted(classes.items())))
print("by status: " + ", ".join(f"{k}={v}" for k, v in sorted(codes.items())))
undocumented = sum(v for k, v in codes.items() if k >= 500 and k not in (503, 504))
print(f"undocumented 5xx: {undocumented}")
EOF

alive=ok
kill -0 "$kar_pid" 2>/dev/null || alive="the runtime died"
health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$address/kar/v1/system/components" || true)
echo "runtime after the fuzz: $alive, GET /kar/v1/system/components -> $health"
if [[ "$alive" != ok || "$health" != 200 ]]; then
    tail -n 50 "$work/kar.log"
    exit 1
fi
if [[ $status -ne 0 ]]; then
    echo "schemathesis failed (exit $status)"
    exit "$status"
fi
echo "fuzz passed"
