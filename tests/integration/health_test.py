"""Active health checks and outlier detection of the real sidecar binary, against real upstreams.

Usage: health_test.py SIDECAR_BINARY [unittest args]

  HttpHealthCheckTest  an endpoint whose /healthz fails stops receiving traffic on every worker
                       and gets it back once its checks pass; admin /clusters shows the flag and
                       the checker's view; checks are counted.
  TcpHealthCheckTest   a TCP check against a closed port marks that endpoint unhealthy: every
                       request goes to the live one (no connect failures reach the client).
  OutlierTest          an endpoint ejected for consecutive 5xx receives no traffic until its
                       single half-open probe; a failed probe ejects it again for longer; a
                       successful one brings it back.
"""

import http.client
import json
import os
import sys
import time
import unittest

import sidecar_test as base
from control_upstream import ControlUpstream
from sidecar_test import config_yaml, free_port, http_listener, wait_for

APP_PATH = "/work"


def get(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def cluster(name, ports, extra=""):
    text = f"  - name: {name}\n    connect_timeout: 0.25s\n{extra}    load_assignment:\n      endpoints:\n"
    for port in ports:
        text += f"      - address: 127.0.0.1:{port}\n"
    return text


ROUTES = """  - name: app-routes
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - match: {prefix: /}
        route: {cluster: app, retry_policy: {num_retries: 0}}
"""


def app_requests(upstream):
    return upstream.stats()["paths"].get(APP_PATH, 0)


def host_view(sidecar, port):
    clusters = json.loads(sidecar.get("/clusters")[1])
    app = [c for c in clusters["clusters"] if c["name"] == "app"][0]
    host = [h for h in app["hosts"] if h["address"] == f"127.0.0.1:{port}"][0]
    checked = None
    if app["health_check"] is not None:
        checked = [h for h in app["health_check"]["hosts"]
                   if h["address"] == f"127.0.0.1:{port}"][0]
    return host, checked


class HealthTestCase(base.SidecarTestCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.a = ControlUpstream(name="a")
        self.b = ControlUpstream(name="b")
        self.addCleanup(self.a.close)
        self.addCleanup(self.b.close)

    def send(self, n):
        """n requests; returns {upstream name: count}; every one must succeed."""
        seen = {}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        for _ in range(n):
            conn.request("GET", APP_PATH)
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
            name = resp.getheader("x-upstream")
            seen[name] = seen.get(name, 0) + 1
        conn.close()
        return seen


class HttpHealthCheckTest(HealthTestCase):
    def test_failing_endpoint_leaves_and_returns(self):
        hc = ("    health_check:\n"
              "      interval: 0.1s\n      timeout: 0.5s\n"
              "      unhealthy_threshold: 2\n      healthy_threshold: 2\n"
              "      http: {path: /healthz, expected_statuses: [200]}\n")
        sidecar = self.start(config_yaml(http_listener("http", self.port),
                                         cluster("app", [self.a.port, self.b.port], hc), ROUTES))
        self.assertTrue(wait_for(lambda: self.b.stats()["paths"].get("/healthz", 0) >= 2))
        # Both healthy: both get traffic.
        self.assertEqual(set(self.send(40)), {"a", "b"})

        # b's health endpoint fails (its application paths keep working).
        self.b.control(fail_next=10**6, status=503, fail_paths=["/healthz"])
        self.assertTrue(wait_for(lambda: "failed_active_health_check" in
                                 host_view(sidecar, self.b.port)[0]["health_flags"], timeout=5))
        host, checked = host_view(sidecar, self.b.port)
        self.assertFalse(host["healthy"])
        self.assertFalse(checked["healthy"])
        self.assertEqual(checked["last_failure"], "status 503")
        before = app_requests(self.b)
        # New connections spread over both workers: none of them sends to b.
        for _ in range(10):
            self.assertEqual(set(self.send(4)), {"a"})
        self.assertEqual(app_requests(self.b), before)

        self.b.control(fail_next=0)
        self.assertTrue(wait_for(lambda: host_view(sidecar, self.b.port)[0]["healthy"], timeout=5))
        self.assertEqual(set(self.send(40)), {"a", "b"})

        self.assertGreater(sidecar.stat("meshlet_upstream_health_check_total"), 4)
        self.assertGreaterEqual(sidecar.stat("meshlet_upstream_health_check_failure_total"), 2)
        self.assertEqual(sidecar.stat("meshlet_upstream_health_check_hosts_healthy"), 2)
        self.assertEqual(sidecar.stat("meshlet_upstream_health_check_transitions_total"), 2)


class TcpHealthCheckTest(HealthTestCase):
    def test_closed_port_is_unhealthy(self):
        closed = free_port()
        hc = "    health_check: {interval: 0.1s, timeout: 0.5s, unhealthy_threshold: 1, tcp: true}\n"
        sidecar = self.start(config_yaml(http_listener("http", self.port),
                                         cluster("app", [self.a.port, closed], hc), ROUTES))
        self.assertTrue(wait_for(lambda: "failed_active_health_check" in
                                 host_view(sidecar, closed)[0]["health_flags"], timeout=5))
        self.assertTrue(host_view(sidecar, self.a.port)[0]["healthy"])
        _, checked = host_view(sidecar, closed)
        self.assertIn("connect", checked["last_failure"])
        for _ in range(10):
            self.assertEqual(self.send(4), {"a": 4})
        self.assertEqual(sidecar.stat("meshlet_upstream_rq_connect_fail_total"), 0)
        self.assertEqual(sidecar.stat("meshlet_upstream_health_check_hosts_healthy"), 1)
        # A TCP check sends no HTTP request.
        self.assertEqual(self.a.stats()["paths"].get("/", 0), 0)


class OutlierTest(HealthTestCase):
    def test_ejected_endpoint_gets_nothing_until_its_single_probe(self):
        od = ("    outlier_detection: {consecutive_5xx: 3, interval: 0.1s, base_ejection_time: 1s,\n"
              "                        max_ejection_percent: 50}\n")
        # One worker: outlier detection is per worker, and the test counts exact requests.
        sidecar = self.start(config_yaml(http_listener("http", self.port),
                                         cluster("app", [self.a.port, self.b.port], od), ROUTES),
                             concurrency=1)
        self.b.control(fail_next=10**6, status=500)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        self.addCleanup(conn.close)

        def one():
            conn.request("GET", APP_PATH)
            resp = conn.getresponse()
            resp.read()
            return resp.status

        deadline = time.monotonic() + 5
        while app_requests(self.b) < 3 and time.monotonic() < deadline:
            one()
        self.assertEqual(app_requests(self.b), 3)
        ejected_at = time.monotonic()
        self.assertIn("outlier_ejected", host_view(sidecar, self.b.port)[0]["health_flags"])
        self.assertEqual(sidecar.stat("meshlet_upstream_outlier_ejections_active"), 1)
        self.assertEqual(sidecar.stat("meshlet_upstream_outlier_ejections_total"), 1)

        # Ejected for 1 s: every request goes to a.
        while time.monotonic() - ejected_at < 0.8:
            self.assertEqual(one(), 200)
        self.assertEqual(app_requests(self.b), 3)

        # The ejection ends: exactly one probe reaches b (and fails: ejected again, for 2 s).
        time.sleep(max(0.0, ejected_at + 1.1 - time.monotonic()))
        deadline = time.monotonic() + 5
        while app_requests(self.b) == 3 and time.monotonic() < deadline:
            one()
        self.assertEqual(app_requests(self.b), 4)
        reejected_at = time.monotonic()
        # Re-ejected for 2 s: nothing reaches b for the next 1.5 s.
        sent = 0
        while time.monotonic() - reejected_at < 1.5:
            self.assertEqual(one(), 200)
            sent += 1
        self.assertEqual(app_requests(self.b), 4, f"one probe only ({sent} requests since)")
        self.assertEqual(sidecar.stat("meshlet_upstream_outlier_ejections_total"), 2)

        # b recovers; after the second (longer) ejection its probe succeeds and traffic returns.
        self.b.control(fail_next=0)
        time.sleep(max(0.0, reejected_at + 2.1 - time.monotonic()))
        deadline = time.monotonic() + 3
        while app_requests(self.b) < 10 and time.monotonic() < deadline:
            self.assertEqual(one(), 200)
        self.assertGreaterEqual(app_requests(self.b), 10)
        self.assertEqual(sidecar.stat("meshlet_upstream_outlier_ejections_active"), 0)
        self.assertTrue(host_view(sidecar, self.b.port)[0]["healthy"])


if __name__ == "__main__":
    base.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
