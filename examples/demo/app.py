"""A sample service for `./dev demo` (python3 standard library only).

    app.py --workload reviews-v1-0 --service reviews --version v1 --port 17090 \
           [--upstream ratings:9080 --outbound 17092] [--fail-every N [--fail-burst K]]
           [--slow-ms MS]

Answers every GET with JSON naming itself. With --upstream it first calls that service through
its own sidecar's outbound listener (127.0.0.1:--outbound, Host: --upstream) with the same path,
and nests the answer (or the error status) under "upstream", so one request to the frontend shows
the whole chain. The headers that steer routing and tracing are passed on.

  --fail-every N   of every N requests, the first --fail-burst (default 1) are answered 503
                   (the sidecars' retries hide them from the callers); not under /slow, so the
                   timeout example shows the timeout alone
  --slow-ms MS     requests under /slow take MS milliseconds (the callers' timeout cuts them)

GET /__stats answers {"requests": n, "failed": n, "slow": n}.
"""

import argparse
import http.client
import http.server
import json
import socket
import sys
import threading
import time

PROPAGATED = ("x-canary", "x-request-id", "traceparent", "tracestate", "b3")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--version", default="v1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", help="HOST:PORT of the service to call, as the mesh names it")
    p.add_argument("--outbound", type=int, help="this workload's sidecar outbound port")
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--fail-burst", type=int, default=1)
    p.add_argument("--slow-ms", type=int, default=0)
    args = p.parse_args()

    lock = threading.Lock()
    counters = {"requests": 0, "failed": 0, "slow": 0}
    local = threading.local()  # one keep-alive connection to the sidecar per serving thread

    def call_upstream(path, headers):
        for attempt in range(2):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", args.outbound,
                                                               timeout=10)
            try:
                conn.request("GET", path, headers=dict(headers, Host=args.upstream))
                r = conn.getresponse()
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                conn.close()
                local.conn = None
                # The sidecar may have closed an idle keep-alive connection: one more try on a
                # fresh one; a second failure is real.
                if attempt == 1:
                    return 0, str(e).encode(), None
                continue
            try:
                return r.status, r.read(), r.getheader("x-meshlet-route")
            except http.client.IncompleteRead as e:
                # The answer came but its body was cut short; the status is what counts (and
                # the request must not be sent twice).
                conn.close()
                local.conn = None
                return r.status, e.partial, r.getheader("x-meshlet-route")
            except (ConnectionError, OSError) as e:
                conn.close()
                local.conn = None
                return r.status, str(e).encode(), None
        return 0, b"", None

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Headers and body leave in two writes: without NODELAY, Nagle and the peer's
            # delayed ACK add about 40 ms to every keep-alive response.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def handle_one_request(self):
            try:
                super().handle_one_request()
            except (ConnectionError, OSError):  # the caller gave up (a timeout) and hung up
                self.close_connection = True

        def answer(self, status, doc):
            body = (json.dumps(doc) + "\n").encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/__stats":
                with lock:
                    return self.answer(200, dict(counters, workload=args.workload))
            under_slow = self.path.startswith("/slow")
            with lock:
                counters["requests"] += 1
                fail = args.fail_every > 0 and not under_slow and \
                    counters["requests"] % args.fail_every < args.fail_burst
                slow = args.slow_ms > 0 and under_slow
                counters["failed"] += fail
                counters["slow"] += slow
            me = {"workload": args.workload, "service": args.service, "version": args.version}
            # Who called, as this workload's sidecar verified it (mTLS): the caller's SPIFFE id.
            if self.headers.get("x-meshlet-peer-identity"):
                me["caller"] = self.headers["x-meshlet-peer-identity"]
            if fail:
                return self.answer(503, dict(me, error="injected failure (--fail-every)"))
            if slow:
                time.sleep(args.slow_ms / 1000.0)
            if args.upstream:
                headers = {k: v for k, v in self.headers.items() if k.lower() in PROPAGATED}
                started = time.monotonic()
                status, body, route = call_upstream(self.path, headers)
                try:
                    upstream = json.loads(body) if status == 200 else None
                except ValueError:
                    upstream = None
                if upstream is None:
                    # Degrade like a real service: answer without the part that failed.
                    upstream = {"status": status, "error": body.decode(errors="replace")[:200]}
                upstream["route"] = route
                upstream["ms"] = round((time.monotonic() - started) * 1000, 1)
                me["upstream"] = upstream
            self.answer(200, me)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("%s (%s %s) serving on 127.0.0.1:%d%s" % (
        args.workload, args.service, args.version, args.port,
        ", calling %s through 127.0.0.1:%d" % (args.upstream, args.outbound)
        if args.upstream else ""), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
