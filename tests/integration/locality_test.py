"""Locality-aware balancing in the real sidecar binary, on loopback: a caller in zone eu-a
(--node-locality eu/eu-a) calls a service with two endpoints in its zone and two in zone eu-b of
the same region, the cluster with locality_lb enabled (docs/resilience.md, "Locality").

Usage: locality_test.py SIDECAR_BINARY [unittest args]

  test_zone_preference_spillover_and_failover, in three phases on one sidecar, each printing
  the share of requests each zone received:
    1. all healthy, one request at a time: every request stays in eu-a, spread evenly over
       its two endpoints (counted local, and named so in each request's server span); a TCP
       proxy's connections to the same cluster stay in eu-a and are counted too;
    2. eu-a overloaded (more requests in flight than max_inflight_per_host per endpoint, slow
       answers): part of the requests spill over to eu-b (counted spillover);
    3. eu-a's endpoints killed: the connect failures eject them (outlier detection) and the
       requests go to eu-b (counted failover, and named so in the spans), none failing thanks
       to the connect-failure retry.
"""

import collections
import http.client
import json
import os
import subprocess
import sys
import threading
import unittest

import sidecar_test as base
from sidecar_test import (app_routes, config_yaml, free_port, http_listener, stat_with,
                          tcp_listener)
from tracing_test import Collector, tracing_yaml

# Two retries on connect failures: the calls that find a killed endpoint before its ejection
# still succeed elsewhere.
ROUTES = app_routes(route_extra=", retry_policy: {num_retries: 2}")


def cluster(endpoints):
    text = ("  - name: app\n    connect_timeout: 250ms\n"
            "    locality_lb: {enabled: true, max_inflight_per_host: 2}\n"
            "    outlier_detection: {consecutive_gateway_failure: 1, interval: 0.1s,\n"
            "                        base_ejection_time: 30s, max_ejection_percent: 100}\n"
            "    load_assignment:\n      endpoints:\n")
    for port, zone in endpoints:
        text += (f"      - address: 127.0.0.1:{port}\n"
                 f"        locality: {{region: eu, zone: {zone}}}\n")
    return text


# An upstream in a process of its own, so that killing it resets its connections too (a thread's
# server keeps answering on the connections the sidecar pooled): answers {"upstream": NAME},
# /slow/S after S seconds.
UPSTREAM = r"""
import http.server, json, socket, sys, time
name = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(float(self.path[len("/slow/"):]))
        data = json.dumps({"upstream": name}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Upstream:
    def __init__(self, name):
        self.proc = subprocess.Popen([sys.executable, "-c", UPSTREAM, name],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body)["upstream"] if response.status == 200 else None
    finally:
        conn.close()


class LocalityTest(base.SidecarTestCase):
    def setUp(self):
        super().setUp()
        self.upstreams = {}
        for name in ("a1", "a2", "b1", "b2"):
            upstream = Upstream(name)
            self.addCleanup(upstream.kill)
            self.upstreams[name] = upstream
        self.port = free_port()
        self.tcp_port = free_port()
        self.collector = Collector()
        self.addCleanup(self.collector.close)
        zones = {"a1": "eu-a", "a2": "eu-a", "b1": "eu-b", "b2": "eu-b"}
        self.sidecar = self.start(
            config_yaml(http_listener("app", self.port) + tcp_listener("tcp", self.tcp_port, "app"),
                        cluster([(u.port, zones[n]) for n, u in self.upstreams.items()]),
                        ROUTES) + tracing_yaml(self.collector.port, service="caller"),
            "--node-locality", "eu/eu-a/node-1", concurrency=1)

    def decisions(self):
        return {d: stat_with(self.sidecar, "meshlet_upstream_rq_locality_total",
                             f'decision="{d}"') for d in ("local", "failover", "spillover")}

    def span_localities(self, prefix):
        """meshlet.upstream.locality of the server spans of requests to paths under `prefix`."""
        return collections.Counter(
            s["attributes"].get("meshlet.upstream.locality") for s in self.collector.snapshot()
            if s["kind"] == "SERVER" and s["name"].startswith("GET " + prefix))

    def report(self, phase, counts):
        total = sum(counts.values())
        in_a = counts["a1"] + counts["a2"]
        print(f"{phase}: {total} requests, zone eu-a {100 * in_a / total:.1f}% "
              f"(a1 {counts['a1']}, a2 {counts['a2']}), zone eu-b "
              f"{100 * (total - in_a) / total:.1f}% (b1 {counts['b1']}, b2 {counts['b2']}); "
              f"decisions {self.decisions()}", file=sys.stderr)
        return in_a / total

    def test_zone_preference_spillover_and_failover(self):
        # 1. All healthy: everything in the zone, evenly.
        counts = collections.Counter({n: 0 for n in self.upstreams})
        for i in range(400):
            status, upstream = get(self.port, f"/calm/{i}")
            self.assertEqual(status, 200)
            counts[upstream] += 1
        self.assertEqual(self.report("all healthy", counts), 1.0)
        self.assertGreater(counts["a1"], 140)
        self.assertGreater(counts["a2"], 140)
        self.assertEqual(self.decisions()["local"], 400)
        # Every server span says how its endpoint was picked (what meshctl explain reads).
        self.assertTrue(base.wait_for(lambda: sum(self.span_localities("/calm/").values()) == 400,
                                      10), self.span_localities("/calm/"))
        self.assertEqual(self.span_localities("/calm/"), {"local": 400})
        # A TCP proxy's picks are counted too.
        for i in range(3):
            status, upstream = get(self.tcp_port, f"/tcp/{i}")
            self.assertEqual(status, 200)
            self.assertIn(upstream, ("a1", "a2"))
        self.assertEqual(self.decisions()["local"], 403)

        # 2. Overload: 24 slow requests at once, over 2 x 2 allowed in flight in the zone.
        counts = collections.Counter({n: 0 for n in self.upstreams})
        results = []
        lock = threading.Lock()

        def call(i):
            status, upstream = get(self.port, "/slow/0.5")
            with lock:
                results.append(status)
                counts[upstream] += 1
        for wave in range(3):
            threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
        self.assertEqual(results, [200] * 72)
        share_a = self.report("eu-a overloaded", counts)
        self.assertLess(share_a, 0.9)
        self.assertGreater(counts["b1"] + counts["b2"], 0)
        self.assertGreater(self.decisions()["spillover"], 0)

        # 3. The zone's endpoints die: ejected on their connect failures, the calls fail over.
        spilled = self.decisions()["spillover"]
        for name in ("a1", "a2"):
            self.upstreams[name].kill()
        counts = collections.Counter({n: 0 for n in self.upstreams})
        for i in range(200):
            status, upstream = get(self.port, f"/after/{i}")
            self.assertEqual(status, 200, f"request {i} failed")
            counts[upstream] += 1
        self.assertEqual(self.report("eu-a killed", counts), 0.0)
        self.assertGreater(counts["b1"], 60)
        self.assertGreater(counts["b2"], 60)
        self.assertGreaterEqual(self.decisions()["failover"], 190)
        self.assertEqual(self.decisions()["spillover"], spilled)
        self.assertTrue(base.wait_for(lambda: sum(self.span_localities("/after/").values()) == 200,
                                      10), self.span_localities("/after/"))
        self.assertGreaterEqual(self.span_localities("/after/")["failover"], 190)


if __name__ == "__main__":
    base.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main()
