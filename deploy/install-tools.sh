#!/usr/bin/env bash
# Installs the tools the test command needs beyond the Rust toolchain, into
# ${KAR_CACHE_DIR:-$HOME/.cache/kar}/tools/bin (override: KAR_TOOLS_DIR):
#   buf      from npm (@bufbuild/buf, its bundled Linux binary), BUF_VERSION
#   grpcurl  built with `go install` from the Go module proxy, GRPCURL_VERSION
#
#   deploy/install-tools.sh [--only buf|grpcurl]
#
# Idempotent: a tool already at the wanted version is left alone (no network).
# Prints KAR_TOOLS_BIN=DIR; `. deploy/env.sh` puts DIR on PATH.
set -euo pipefail
KAR_SCRIPT=install-tools.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

BUF_VERSION=${BUF_VERSION:-1.75.0}
GRPCURL_VERSION=${GRPCURL_VERSION:-v1.9.4}
only=
while (($#)); do
  case $1 in
    --only) need_value "$1" "${2:-}"; only=$2; shift 2 ;;
    --only=*) only=${1#*=}; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
case $only in "" | buf | grpcurl) ;; *) die "--only: unknown tool '$only' (buf or grpcurl)" ;; esac

bin="$KAR_TOOLS_DIR/bin"
mkdir -p "$bin"
exec 9>"$KAR_TOOLS_DIR/.lock"
flock -w 900 9 || die "timed out waiting for another install-tools.sh"

run_logged() { # run_logged WHAT CMD...
  local what=$1 log
  shift
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    rm -f "$log"
    die "$what failed"
  fi
  rm -f "$log"
}

install_buf() {
  local prefix="$KAR_TOOLS_DIR/npm-buf"
  if [[ -x "$bin/buf" && "$("$bin/buf" --version 2>/dev/null)" == "$BUF_VERSION" ]]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install -y npm), needed for buf"
  rm -rf "$prefix"
  mkdir -p "$prefix"
  # A private prefix: nothing global, nothing in the repo.
  run_logged "npm install @bufbuild/buf@$BUF_VERSION" \
    npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
    "@bufbuild/buf@$BUF_VERSION"
  # Link the platform binary itself (not the node wrapper): no node at run time.
  local real
  real=$(find "$prefix/node_modules/@bufbuild" -path '*/bin/buf' -type f -perm -u+x 2>/dev/null |
    grep -v '/buf/bin/buf$' | head -n 1)
  [[ -n "$real" ]] || real="$prefix/node_modules/.bin/buf"
  [[ -x "$real" ]] || die "buf binary not found after npm install (in $prefix)"
  ln -sfn "$real" "$bin/buf"
  [[ "$("$bin/buf" --version 2>/dev/null)" == "$BUF_VERSION" ]] || die "installed buf does not report version $BUF_VERSION"
}

install_grpcurl() {
  local stamp="$bin/.grpcurl-version"
  if [[ -x "$bin/grpcurl" && "$(cat "$stamp" 2>/dev/null)" == "$GRPCURL_VERSION" ]]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "go not found (needed to build grpcurl)"
  # Outside any module or workspace, so the repo's files cannot interfere.
  (cd "$KAR_TOOLS_DIR" && run_logged "go install grpcurl@$GRPCURL_VERSION" \
    env GOBIN="$bin" GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION")
  [[ -x "$bin/grpcurl" ]] || die "grpcurl missing after go install"
  echo "$GRPCURL_VERSION" >"$stamp"
}

[[ -z "$only" || "$only" == buf ]] && install_buf
[[ -z "$only" || "$only" == grpcurl ]] && install_grpcurl
echo "KAR_TOOLS_BIN=$bin"
