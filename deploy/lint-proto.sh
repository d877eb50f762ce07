#!/usr/bin/env bash
# Lints the kar.v1 contract with buf (rules in the repo's buf.yaml: STANDARD on
# proto/kar/v1, proto/third_party only an import path) and checks it builds.
# Installs buf first if needed (deploy/install-tools.sh --only buf).
#
#   deploy/lint-proto.sh [--check-format]
#
# --check-format also runs `buf format --diff --exit-code` (off by default:
# proto/kar/v1/state.proto is not buf-formatted yet).
# Quiet on success; buf's findings and a one-line error otherwise.
set -euo pipefail
KAR_SCRIPT=lint-proto.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

check_format=
while (($#)); do
  case $1 in
    --check-format) check_format=1; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

"$here/install-tools.sh" --only buf >/dev/null
buf="$KAR_TOOLS_DIR/bin/buf"
cd "$here/.."
[[ -f buf.yaml ]] || die "buf.yaml missing at the repo root"
"$buf" build || die "buf build failed"
"$buf" lint || die "buf lint found problems in proto/ (listed above)"
if [[ -n "$check_format" ]]; then
  "$buf" format --diff --exit-code || die "proto files are not buf-formatted (diff above; fix with: buf format -w)"
fi
