"""A controllable HTTP/1.1 upstream for resilience tests (python3 standard library only).

Run as a script:   control_upstream.py --port 8080 [--name app-a] [--host 127.0.0.1]
Use as a module:   up = ControlUpstream(name="a"); up.control(fail_next=2, status=503)
                   ...; up.stats()["requests"]; up.close()
Or drive a running one over HTTP with control(port, **fields) and stats(port).

Every request other than the two below is an *application request*. Unless the current behaviour
says otherwise it is answered `200` with a small text body naming the upstream
(`upstream=NAME method=M path=P\\n`) and the header `x-upstream: NAME`, so tests can tell
endpoints apart. Request bodies (Content-Length or chunked) are read in full and counted.

POST /__control   JSON object; each field present replaces that part of the behaviour (fields not
                  given keep their value). Answers 200 with the whole behaviour as JSON.
  fail_next     int   the next N application requests fail (counts down; 0 = none fail).
  status        int   status of a failed request (default 503).
  retry_after   str   `Retry-After` value sent with a failed request's response (null = none).
  grpc_status   int   a failed request is answered as a trailers-only gRPC error instead: HTTP 200,
                      content-type application/grpc, `grpc-status: N`, `grpc-message`, no body
                      (null = answer `status`).
  reset         str   how a failed request fails instead of answering `status`:
                      "before_headers" - the connection is reset (RST) before any byte of the
                                         response;
                      "after_headers"  - `200` response headers announcing a body are sent, then
                                         the connection is reset;
                      null             - answer `status` (default).
  fail_paths    list  path prefixes failures apply to (null = every path). Requests on other
                      paths neither fail nor consume fail_next.
  delay_ms      int   delay before answering, for every application request (0 = none) ...
  delay_next    int   ... or only for the next N of them when > 0 (counts down).
  close_idle    bool  close the connection right after each response, without announcing it
                      (no `Connection: close`), like a server whose idle timeout just fired.
  ok_status     int   status of the non-failing answers (default 200).
  clear         bool  true: back to the defaults and all counters zeroed (applied first).
GET /__stats      JSON:
  name, requests (application requests), methods {METHOD: n}, paths {PATH: n},
  failed (requests that failed on purpose), connections (accepted), body_bytes (total request
  body bytes received), body_lengths (per request, in order), last_headers (the last
  application request's headers, names lower-cased — e.g. x-meshlet-deadline, grpc-timeout),
  headers_log (the same for every application request, in order), delayed (requests delayed).

Everything is served from a ThreadingHTTPServer (one thread per connection, keep-alive).
"""

import argparse
import http.server
import json
import socket
import struct
import sys
import threading
import time
import urllib.request

DEFAULTS = {
    "fail_next": 0,
    "status": 503,
    "retry_after": None,
    "grpc_status": None,
    "reset": None,
    "fail_paths": None,
    "delay_ms": 0,
    "delay_next": 0,
    "close_idle": False,
    "ok_status": 200,
}
RESET_MODES = (None, "before_headers", "after_headers")


def _empty_stats():
    return {"requests": 0, "methods": {}, "paths": {}, "failed": 0, "connections": 0,
            "body_bytes": 0, "body_lengths": [], "last_headers": {}, "headers_log": [],
            "delayed": 0}


class ControlUpstream:
    """The server. Starts serving on construction; port 0 picks a free port (see .port)."""

    def __init__(self, name="upstream", port=0, host="127.0.0.1"):
        self.name = name
        self._lock = threading.Lock()
        self._behaviour = dict(DEFAULTS)
        self._stats = _empty_stats()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out in separate writes; without NODELAY, Nagle plus the
                # peer's delayed ACK adds ~40 ms to every keep-alive response.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with upstream._lock:
                    upstream._stats["connections"] += 1

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except (ConnectionError, OSError):
                    self.close_connection = True

            def __getattr__(self, attr):
                # Every method (GET, POST, PATCH, custom ones) goes through one handler.
                if attr.startswith("do_"):
                    return self._dispatch
                raise AttributeError(attr)

            def _read_body(self):
                length = self.headers.get("content-length")
                if length is not None:
                    remaining = int(length)
                    total = 0
                    while remaining > 0:
                        chunk = self.rfile.read(min(remaining, 1 << 16))
                        if not chunk:
                            break
                        total += len(chunk)
                        remaining -= len(chunk)
                    return total
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    total = 0
                    while True:
                        size_line = self.rfile.readline()
                        if not size_line:
                            return total
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return total
                        total += len(self.rfile.read(size))
                        self.rfile.readline()
                return 0

            def _dispatch(self):
                path = self.path.split("?")[0]
                if path == "/__control" and self.command == "POST":
                    length = int(self.headers.get("content-length") or 0)
                    return self._control(self.rfile.read(length))
                body_len = self._read_body()
                if path == "/__stats" and self.command == "GET":
                    with upstream._lock:
                        data = json.dumps(dict(upstream._stats, name=upstream.name)).encode()
                    return self._answer(200, data, "application/json")
                self._application(path, body_len)

            def _control(self, body):
                try:
                    fields = json.loads(body or b"{}")
                    if not isinstance(fields, dict):
                        raise ValueError("the control body must be a JSON object")
                    behaviour = upstream.control(**fields)
                except (ValueError, TypeError) as e:
                    return self._answer(400, (str(e) + "\n").encode(), "text/plain")
                self._answer(200, json.dumps(behaviour).encode(), "application/json")

            def _application(self, path, body_len):
                headers = {k.lower(): v for k, v in self.headers.items()}
                with upstream._lock:
                    b = upstream._behaviour
                    s = upstream._stats
                    s["requests"] += 1
                    s["methods"][self.command] = s["methods"].get(self.command, 0) + 1
                    s["paths"][path] = s["paths"].get(path, 0) + 1
                    s["body_bytes"] += body_len
                    s["body_lengths"].append(body_len)
                    s["last_headers"] = headers
                    s["headers_log"].append(headers)
                    delay = 0
                    if b["delay_ms"] > 0:
                        if b["delay_next"] > 0:
                            b["delay_next"] -= 1
                            delay = b["delay_ms"]
                            if b["delay_next"] == 0:
                                b["delay_ms"] = 0
                        else:
                            delay = b["delay_ms"]
                    if delay:
                        s["delayed"] += 1
                    applies = b["fail_paths"] is None or any(
                        path.startswith(p) for p in b["fail_paths"])
                    fail = applies and b["fail_next"] > 0
                    if fail:
                        b["fail_next"] -= 1
                        s["failed"] += 1
                    status, retry_after, reset = b["status"], b["retry_after"], b["reset"]
                    grpc_status = b["grpc_status"]
                    ok_status, close_idle = b["ok_status"], b["close_idle"]
                if delay:
                    time.sleep(delay / 1000.0)
                if fail and reset == "before_headers":
                    return self._reset()
                if fail and reset == "after_headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n"
                                     b"x-upstream: " + upstream.name.encode() + b"\r\n\r\n")
                    self.wfile.flush()
                    time.sleep(0.05)  # let the headers leave before the reset
                    return self._reset()
                extra = {}
                if fail and retry_after is not None:
                    extra["retry-after"] = str(retry_after)
                if fail and grpc_status is not None:
                    extra["grpc-status"] = str(grpc_status)
                    extra["grpc-message"] = f"failed on purpose by {upstream.name}"
                    self._answer(200, b"", "application/grpc", extra)
                    if close_idle:
                        self.close_connection = True
                    return
                body = f"upstream={upstream.name} method={self.command} path={path}\n".encode()
                self._answer(status if fail else ok_status, body, "text/plain", extra)
                if close_idle:
                    self.wfile.flush()
                    self.close_connection = True

            def _reset(self):
                # SO_LINGER with a zero timeout turns close() into an RST.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
                try:
                    self.connection.close()
                except OSError:
                    pass

            def _answer(self, status, body, content_type, extra=None):
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.send_header("x-upstream", upstream.name)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def control(self, clear=False, **fields):
        """Changes the behaviour (see the module docstring); returns the new behaviour."""
        unknown = set(fields) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown control field(s): {', '.join(sorted(unknown))}")
        if "reset" in fields and fields["reset"] not in RESET_MODES:
            raise ValueError(f"reset: must be one of {RESET_MODES}, got {fields['reset']!r}")
        with self._lock:
            if clear:
                self._behaviour = dict(DEFAULTS)
                self._stats = _empty_stats()
            self._behaviour.update(fields)
            return dict(self._behaviour)

    def stats(self):
        """A snapshot of the counters (see the module docstring)."""
        with self._lock:
            return json.loads(json.dumps(dict(self._stats, name=self.name)))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def control(port, host="127.0.0.1", **fields):
    """POSTs fields to a running upstream's /__control; returns the behaviour it reports."""
    req = urllib.request.Request(f"http://{host}:{port}/__control",
                                 data=json.dumps(fields).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def stats(port, host="127.0.0.1"):
    """GETs a running upstream's /__stats."""
    with urllib.request.urlopen(f"http://{host}:{port}/__stats", timeout=5) as r:
        return json.loads(r.read())


def main(argv):
    parser = argparse.ArgumentParser(description="A controllable HTTP/1.1 test upstream.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="upstream")
    args = parser.parse_args(argv)
    upstream = ControlUpstream(name=args.name, port=args.port, host=args.host)
    print(f"control_upstream {args.name} listening on {args.host}:{upstream.port}", flush=True)
    try:
        upstream._thread.join()
    except KeyboardInterrupt:
        upstream.close()


if __name__ == "__main__":
    main(sys.argv[1:])
