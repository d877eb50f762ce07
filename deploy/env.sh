# shellcheck shell=bash
# Source this (`. deploy/env.sh`) to put the tools that deploy/install-tools.sh
# installs (buf, grpcurl) on PATH. Honours KAR_CACHE_DIR / KAR_TOOLS_DIR.
KAR_TOOLS_BIN="${KAR_TOOLS_DIR:-${KAR_CACHE_DIR:-$HOME/.cache/kar}/tools}/bin"
case ":$PATH:" in
  *":$KAR_TOOLS_BIN:"*) ;;
  *) PATH="$KAR_TOOLS_BIN:$PATH" ;;
esac
export PATH KAR_TOOLS_BIN
