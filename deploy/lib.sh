# shellcheck shell=bash
# Helpers shared by the deploy/ scripts. Sourced, never run.

KAR_CACHE_DIR="${KAR_CACHE_DIR:-$HOME/.cache/kar}"
# Where running instances keep their data, logs and pid files by default.
KAR_RUN_DIR="${KAR_RUN_DIR:-${TMPDIR:-/tmp}/kar}"
KAR_TOOLS_DIR="${KAR_TOOLS_DIR:-$KAR_CACHE_DIR/tools}"

die() {
  echo "${KAR_SCRIPT:-${0##*/}}: error: $*" >&2
  exit 1
}

note() {
  [[ -n "${KAR_VERBOSE:-}" ]] && echo "${KAR_SCRIPT:-${0##*/}}: $*" >&2
  return 0
}

need_value() { # need_value FLAG VALUE
  [[ -n "${2:-}" ]] || die "$1 needs a value"
}

check_port() { # check_port NAME VALUE
  [[ "$2" =~ ^[0-9]+$ ]] && ((10#$2 >= 1 && 10#$2 <= 65535)) || die "$1: not a port: '$2'"
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# First port >= $1 that nothing listens on.
free_port_from() {
  local p=$1
  while port_open "$p"; do
    ((p++))
    ((p <= 65535)) || die "no free port at or above $1"
  done
  echo "$p"
}

# A port the kernel says is free now (python3 asks for port 0); fails without python3.
os_free_port() {
  command -v python3 >/dev/null 2>&1 || return 1
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# pid_alive PIDFILE [WORD]: prints the pid and succeeds when it runs (and, with
# WORD, its command line contains WORD: a recycled pid does not count).
pid_alive() {
  local pid
  [[ -f "$1" ]] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n "${2:-}" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  fi
  echo "$pid"
}

# stop_pid PIDFILE TIMEOUT_SECONDS [WORD]: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pidfile=$1 timeout=$2 pid i
  pid=$(pid_alive "$pidfile" "${3:-}") || { rm -f "$pidfile"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  echo "${KAR_SCRIPT:-${0##*/}}: pid $pid did not stop within ${timeout}s, sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && die "pid $pid survived SIGKILL"
  rm -f "$pidfile"
}

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "java not found (install a JDK 17+ or set JAVA_HOME)"
  fi
}
