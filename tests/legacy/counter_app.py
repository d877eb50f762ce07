#!/usr/bin/env python3
"""A legacy KAR component in plain Python (standard library only).

It hosts the actor type `Counter` over HTTP: `kar run --app-port N --actors
Counter` posts every invocation to it as JSON (`POST /kar/app/v1/invoke`, the
body is a `kar.v1.Invocation`), and it calls the runtime back through the
JSON gateway with the invocation context in the `kar-flow-id`,
`kar-caller-id` and `kar-call-seq` headers.

    kar run --app-port 8080 --actors Counter -- python3 tests/legacy/counter_app.py

Counter methods (arguments are the JSON array in `payload.json`):

* `incr [n]`   adds n (default 1) to the state entry `count`, returns it;
* `get`        returns `count` (0 if unset);
* `slow [ms, tag]` sleeps ms milliseconds, returns tag;
* `chain [k, tag]` tail-calls itself with k-1 until k is 0, then returns
  "<tag> done";
* `fail [message]` raises an application error (FAILED_PRECONDITION).

Configuration: `KAR_APP_PORT` (where to listen, default 8080),
`KAR_RUNTIME_ADDR` (the runtime, default http://127.0.0.1:3500); and for the
tests, `--log-dir DIR` / `COUNTER_LOG_DIR` (every attempt is logged there as
JSON lines, `start` and `end`, in `<name>-<pid>.jsonl`) and `--name NAME` /
`COUNTER_NAME`.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNTIME = os.environ.get("KAR_RUNTIME_ADDR", "http://127.0.0.1:3500").rstrip("/")


class AppError(Exception):
    """An application error: completes the invocation with this gRPC code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Kar:
    """Calls to the runtime's JSON gateway on behalf of one invocation."""

    def __init__(self, invocation):
        context = invocation.get("context") or {}
        self.flow_id = context.get("flowId", "")
        self.request_id = context.get("requestId", "")
        self.seq = 0

    def request(self, method, path, body=None):
        """One gateway request carrying the invocation context; returns the JSON reply."""
        self.seq += 1
        headers = {
            "content-type": "application/json",
            "kar-flow-id": self.flow_id,
            "kar-caller-id": self.request_id,
            "kar-call-seq": str(self.seq),
        }
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(RUNTIME + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request) as reply:
                text = reply.read()
        except urllib.error.HTTPError as e:
            raise AppError(13, f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')}")
        return json.loads(text) if text else None

    def get_state(self, actor_type, actor_id, key):
        path = f"/kar/v1/actor/{q(actor_type)}/{q(actor_id)}/state/{q(key)}"
        reply = self.request("GET", path)
        return reply.get("value") if reply.get("found") else None

    def set_state(self, actor_type, actor_id, key, value):
        self.request("PUT", f"/kar/v1/actor/{q(actor_type)}/{q(actor_id)}/state/{q(key)}", value)


def q(segment):
    return urllib.parse.quote(segment, safe="")


class AttemptLog:
    """Appends one JSON line per attempt start and end, for the tests."""

    def __init__(self, directory, name):
        self.name = name
        self.lock = threading.Lock()
        self.file = None
        if directory:
            os.makedirs(directory, exist_ok=True)
            self.file = open(os.path.join(directory, f"{name}-{os.getpid()}.jsonl"), "a", buffering=1)

    def record(self, event, invocation, tag):
        if self.file is None:
            return
        actor = invocation.get("actor") or {}
        line = json.dumps({
            "event": event,
            "request_id": (invocation.get("context") or {}).get("requestId", ""),
            "attempt": invocation.get("attempt", 0),
            "target": f"{actor.get('type', '')}/{actor.get('id', '')}",
            "method": invocation.get("method", ""),
            "component": self.name,
            "tag": tag,
            "at_ms": int(time.time() * 1000),
        })
        with self.lock:
            self.file.write(line + "\n")


def counter(kar, invocation, args):
    """The Counter actor: returns ("value", v) or ("tailCall", {...})."""
    actor = invocation["actor"]
    kind, ident = actor["type"], actor["id"]
    method = invocation["method"]
    if method == "incr":
        n = args[0] if args else 1
        count = (kar.get_state(kind, ident, "count") or 0) + n
        kar.set_state(kind, ident, "count", count)
        return "value", count
    if method == "get":
        return "value", kar.get_state(kind, ident, "count") or 0
    if method == "slow":
        time.sleep(args[0] / 1000)
        return "value", args[1]
    if method == "chain":
        k, tag = args
        if k > 0:
            return "tailCall", {"actor": actor, "method": "chain", "payload": {"json": [k - 1, tag]}}
        return "value", f"{tag} done"
    if method == "fail":
        raise AppError(9, args[0] if args else "failed")
    raise LookupError(f"no method {method} on {kind}")


def tag_of(invocation, args):
    method = invocation.get("method")
    if method == "slow" and len(args) > 1:
        return str(args[1])
    if method == "chain" and len(args) > 1:
        return f"{args[1]}#{args[0]}"
    return ""


class Handler(BaseHTTPRequestHandler):
    log = None  # set in main

    def do_GET(self):
        if self.path == "/kar/app/v1/health":
            self.reply(200, b"ok", "text/plain")
        else:
            self.reply(404, b"not found", "text/plain")

    def do_POST(self):
        if self.path != "/kar/app/v1/invoke":
            self.reply(404, b"not found", "text/plain")
            return
        invocation = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        kind = invocation.get("kind")
        if kind in ("INVOCATION_KIND_ACTIVATE", "INVOCATION_KIND_DEACTIVATE"):
            self.reply(204)  # nothing to prepare or release
            return
        actor = invocation.get("actor") or {}
        if kind != "INVOCATION_KIND_ACTOR_METHOD" or actor.get("type") != "Counter":
            self.reply(404, f"not hosted here: {kind} {actor}".encode(), "text/plain")
            return
        args = (invocation.get("payload") or {}).get("json") or []
        tag = tag_of(invocation, args)
        self.log.record("start", invocation, tag)
        try:
            outcome, value = counter(Kar(invocation), invocation, args)
            body = {"value": {"json": value}} if outcome == "value" else {"tailCall": value}
        except AppError as e:
            body = {"error": {"code": e.code, "message": e.message}}
        except LookupError as e:
            self.log.record("end", invocation, tag)
            self.reply(404, str(e).encode(), "text/plain")
            return
        self.log.record("end", invocation, tag)
        self.reply(200, json.dumps(body).encode())

    def reply(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        if body:
            self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # quiet


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAR_APP_PORT", "8080")))
    parser.add_argument("--log-dir", default=os.environ.get("COUNTER_LOG_DIR"))
    parser.add_argument("--name", default=os.environ.get("COUNTER_NAME", "counter"))
    options = parser.parse_args()
    Handler.log = AttemptLog(options.log_dir, options.name)
    server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)
    server.daemon_threads = True
    print(f"counter app listening on 127.0.0.1:{options.port}, runtime {RUNTIME}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
