"""The control plane's trace collector end to end (docs/tracing.md, "The built-in collector").

Usage: telemetry_test.py CONTROL_PLANE MESHCTL SIDECAR [unittest args]

A real control plane with its OTLP and Zipkin receivers on port 0; three real sidecars, one per
service, exporting to it at 100 % sampling and reporting golden metrics to its gRPC port:
client → sidecar "frontend" (OTLP JSON) → sidecar "backend" (OTLP protobuf) → sidecar "db"
(retries once) → control_upstream, which fails the first request with 503. The one trace is then
found with `meshctl traces`, shown with `meshctl trace` (parent/child links across the three
services, the retry attempt visible), the edges appear in /api/v1/dependencies, and the golden
metrics (/api/v1/stat, `meshctl stat`, `meshctl top --once`) count the request on each edge,
successful after the retry, and so does their history (/api/v1/stat/history per edge and per
service, `meshctl stat --history`). A Zipkin v2 payload posted by hand is found too, and bad
payloads get 400s that name the problem and are counted. `meshctl explain REQUEST_ID` names the
hop and the reason of a 504 (a route timeout at the callee's sidecar, passed on by the caller's)
and of a 503 (a connect failure at the caller's sidecar); `meshctl explain --from --to` dry-runs
requests against the routes the control plane sent a connected sidecar.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import control_upstream
import cp_api
import sidecar_test as base
from sidecar_test import free_port, http_listener, wait_for

CONTROL_PLANE = MESHCTL = None  # set from argv

# Services, a TrafficPolicy and an HTTPRoute with a header match and a weighted split, for the
# dry run of `meshctl explain --from --to`.
DRY_RUN_POLICIES = """apiVersion: meshlet.io/v1
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: meshlet.io/v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: meshlet.io/v1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  target: reviews
  timeouts: {request: 2s, perTry: 500ms}
  retries: {attempts: 3}
  outlierDetection: {consecutive5xx: 5, baseEjectionTime: 30s}
---
apiVersion: meshlet.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  target: reviews
  rules:
  - name: canary-header
    matches:
    - headers: [{name: x-canary, value: always}]
    backends: [{service: reviews, subset: {version: v2}}]
  - name: split
    backends:
    - {service: reviews, subset: {version: v1}, weight: 90}
    - {service: reviews, subset: {version: v2}, weight: 10}
"""


def routes(cluster, retry=""):
    text = f"""  - name: app-routes
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - name: catch-all
        match: {{prefix: /}}
        route:
          cluster: {cluster}
"""
    if retry:
        text += "          " + retry + "\n"
    return text


def cluster(name, port):
    return (f"  - name: {name}\n    connect_timeout: 250ms\n"
            f"    outlier_detection: {{consecutive_5xx: 1000, consecutive_gateway_failure: 1000}}\n"
            f"    load_assignment:\n      endpoints:\n      - address: 127.0.0.1:{port}\n")


def tracing(port, protocol, service):
    return (f"tracing:\n  sampling_percent: 100\n  collector_address: 127.0.0.1:{port}\n"
            f"  protocol: {protocol}\n  flush_interval: 0.05s\n  service_name: {service}\n")


def http_call(port, method, path, body=None, headers=None, ca_file=None):
    """(status, body bytes); HTTPS verified with `ca_file` when given (the control plane's API)."""
    if ca_file is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                           context=cp_api.ssl_context(ca_file))
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class ControlPlaneCase(base.SidecarTestCase):
    """A control plane with its collector for the whole class; sidecars per test."""

    @classmethod
    def setUpClass(cls):
        cls.data = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.log_path = os.path.join(cls.data, "control-plane.log")
        cls.log = open(cls.log_path, "wb")
        cls.cp = subprocess.Popen(
            [CONTROL_PLANE, "--data-dir", os.path.join(cls.data, "cp"),
             "--api-address", "127.0.0.1:0", "--xds-plaintext", "--xds-address", "127.0.0.1:0",
             "--xds-listen-host=127.0.0.1", "--otlp-address", "127.0.0.1:0",
             "--zipkin-address=127.0.0.1:0"],
            stdout=cls.log, stderr=cls.log)
        pattern = rb"OTLP/HTTP on 127\.0\.0\.1:(\d+), Zipkin on 127\.0\.0\.1:(\d+)"
        found = None

        def started():
            nonlocal found
            with open(cls.log_path, "rb") as f:
                text = f.read()
            found = (re.search(rb"API on 127\.0\.0\.1:(\d+)", text), re.search(pattern, text),
                     re.search(rb"ADS on 127\.0\.0\.1:(\d+)", text))
            return all(found) or cls.cp.poll() is not None
        wait_for(started, 10)
        if not all(found):
            raise AssertionError("control plane did not start: " + open(cls.log_path).read())
        cls.api_port = int(found[0].group(1))
        cls.otlp_port, cls.zipkin_port = int(found[1].group(1)), int(found[1].group(2))
        cls.grpc_port = int(found[2].group(1))
        cls.token_file = os.path.join(cls.data, "cp", "api-token")
        cls.ca_file = cp_api.root_file(os.path.join(cls.data, "cp"))

    @classmethod
    def tearDownClass(cls):
        cls.cp.send_signal(signal.SIGTERM)
        code = cls.cp.wait(timeout=10)
        cls.log.close()
        assert code == 0, open(cls.log_path).read()

    def api(self, path):
        with open(self.token_file) as f:
            token = f.read().strip()
        status, body = http_call(self.api_port, "GET", path,
                                 headers={"authorization": f"Bearer {token}"},
                                 ca_file=self.ca_file)
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def meshctl(self, *args):
        r = subprocess.run([MESHCTL, "--server", f"127.0.0.1:{self.api_port}",
                            "--token-file", self.token_file, "--ca-file", self.ca_file, *args],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def sidecar(self, name, yaml_text, *flags):
        # Each sidecar in its own directory: Sidecar writes sidecar.yaml and its log there.
        workdir = os.path.join(self.tmp, name)
        os.mkdir(workdir)
        s = base.Sidecar(workdir, yaml_text, *flags, concurrency=1)
        self.sidecars.append(s)
        return s

    def metric(self, name, labels):
        status, body = http_call(self.api_port, "GET", "/metrics", ca_file=self.ca_file)
        for line in body.decode().splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return int(float(line.rsplit(" ", 1)[1]))
        return 0

    def metrics_report(self):
        return f"metrics_report:\n  address: 127.0.0.1:{self.grpc_port}\n  interval: 0.2s\n"

    def three_services(self):
        """client → frontend → backend → db (retries once) → app, whose first answer is a 503.
        Sends one request; returns nothing (the sidecars are cleaned up with the test)."""
        up = control_upstream.ControlUpstream(name="app")
        self.addCleanup(up.close)
        db_port, backend_port, frontend_port = free_port(), free_port(), free_port()
        retry = "retry_policy: {num_retries: 1, base_interval: 0.001s}"
        # backend and db: inbound sidecars (their spans SERVER); frontend: an outbound one (its
        # span of the call CLIENT).
        self.sidecar("db",
                     base.config_yaml(http_listener("in", db_port, direction="INBOUND"),
                                      cluster("app", up.port),
                                      routes("app", retry))
                     + tracing(self.otlp_port, "OTLP_PROTO", "db") + self.metrics_report())
        self.sidecar("backend",
                     base.config_yaml(http_listener("in", backend_port, direction="INBOUND"),
                                      cluster("db", db_port),
                                      routes("db"))
                     + tracing(self.otlp_port, "OTLP_PROTO", "backend") + self.metrics_report())
        self.sidecar("frontend",
                     base.config_yaml(http_listener("out", frontend_port),
                                      cluster("backend", backend_port), routes("backend"))
                     + tracing(self.otlp_port, "OTLP_JSON", "frontend") + self.metrics_report())
        up.control(fail_next=1, status=503)
        status, _ = http_call(frontend_port, "GET", "/checkout")
        self.assertEqual(status, 200)



# Each kind of reply a proxy makes itself, from one sidecar ("edge-0") that samples nothing: the
# path that provokes it, the status, the response flags, the reason, and what the verdict of
# `meshctl explain` says after "STATUS at edge's sidecar: " (a regular expression: the timeout's
# milliseconds are what was left when the request was routed).
ERROR_KINDS = [
    ("/timeout", 504, "UT", "upstream request timeout",
     r"request timeout \d+ms from HTTPRoute/default/edge \(route timeout\) expired after 1 "
     r"attempt"),
    ("/per-try", 504, "UPT", "upstream per-try timeout",
     r"per-try timeout 100ms from TrafficPolicy/default/slow \(route per-try\) expired on its "
     r"only attempt"),
    ("/reset", 503, "UR", "upstream reset before response",
     r"the upstream reset the stream after 1 attempt \(route reset\)"),
    ("/refused", 503, "UF", "upstream connect error",
     r"connecting to cluster gone failed: connection refused after 1 attempt \(route refused\)"),
    ("/tls", 503, "UF", "upstream TLS handshake failed",
     r"the TLS handshake with cluster tls failed after 1 attempt \(route tls\)"),
    ("/no-hosts", 503, "UH", "no healthy upstream",
     r"no healthy endpoint in cluster empty \(route no-hosts\)"),
    ("/overflow", 503, "UO", "upstream overloaded",
     r"a circuit-breaker limit of cluster narrow refused the request \(limits from "
     r"TrafficPolicy/default/narrow\) \(route overflow\)"),
    ("/breaker", 503, "BO", "upstream circuit breaker open",
     r"the consecutive-failure breaker of cluster flaky is open \(outlier settings from "
     r"TrafficPolicy/default/flaky\) \(route breaker\)"),
    ("/limited", 429, "RL", "local rate limit exceeded",
     r"rate limited by TrafficPolicy/default/limits \(route limited\)"),
    ("/nowhere", 404, "NR", "no route", r"unknown destination: no route matched the request"),
    # A Gateway API backendRef the control plane could not resolve: its share of the rule's
    # weight goes to a cluster no configuration defines, answered 500.
    ("/no-backend", 500, "NC", "route backend does not exist",
     r"the route's backend does not exist \(the share of backendRefs the control plane could not "
     r"resolve: see the route's ResolvedRefs status\) \(route HTTPRoute/default/edge rule 2\)"),
    ("/fault", 503, "FI", "fault injected",
     r"fault injection aborted the request \(route fault\)"),
    # The hop is the listener's side, outbound here, whatever refused the request.
    ("/denied", 403, "AZ", "RBAC: access denied",
     r"denied by AuthorizationPolicy/default/no-denied for a caller without a mesh identity"),
]

# Load shedding (OL), from a sidecar of its own ("shedder-0", one worker, at most one request in
# flight): a second request while a slow one runs.
SHED_KINDS = [
    ("/ok", 503, "OL", "overloaded",
     r"the sidecar shed the request: more than 1 request in flight on its worker \(its share of "
     r"--overload-max-active-requests 1\)"),
]


def source(kind, name):
    return f"{{kind: {kind}, namespace: default, name: {name}}}"


def edge_config(port, access_log, ok, slow, reset, failing, closed, ca_file, otlp_port):
    """The sidecar of ERROR_KINDS: one route per kind, each to the cluster that provokes it."""
    def route(path, action, extra=""):
        return (f"      - name: {path.strip('/')}\n        match: {{prefix: {path}}}\n"
                f"        {action}\n{extra}")
    no_retries = "          retry_policy: {num_retries: 0}\n"
    routes = "".join([
        route("/timeout", "route:", "          cluster: slow\n          timeout: 0.2s\n"
              f"          timeout_source: {source('HTTPRoute', 'edge')}\n" + no_retries),
        route("/per-try", "route:",
              "          cluster: slow\n          timeout: 5s\n"
              "          retry_policy: {num_retries: 0, per_try_timeout: 0.1s}\n"
              f"          per_try_timeout_source: {source('TrafficPolicy', 'slow')}\n"),
        route("/reset", "route:", "          cluster: reset\n" + no_retries),
        route("/refused", "route:", "          cluster: gone\n" + no_retries),
        route("/tls", "route:", "          cluster: tls\n" + no_retries),
        route("/no-hosts", "route: {cluster: empty}"),
        route("/no-backend", "route:",
              "          weighted_clusters: {clusters: [{name: \"meshlet:missing-backend\", "
              "weight: 1}]}\n" + no_retries
              + "        source: {kind: HTTPRoute, namespace: default, name: edge, rule: 2}\n"),
        route("/overflow", "route:", "          cluster: narrow\n" + no_retries),
        route("/breaker", "route:", "          cluster: flaky\n" + no_retries),
        route("/limited", "route: {cluster: ok}",
              "        rate_limit: {requests_per_second: 1, burst: 1, "
              f"source: {source('TrafficPolicy', 'limits')}}}\n"),
        route("/fault", "route: {cluster: ok}",
              "        fault: {abort: {http_status: 503, percentage: 100}}\n"),
        route("/denied", "route: {cluster: ok}"),
        route("/ok", "route: {cluster: ok}"),
    ])
    clusters = "".join([
        cluster("ok", ok),
        cluster("slow", slow),
        cluster("reset", reset),
        cluster("gone", closed),
        base.static_cluster("tls", ok, extra=f"    tls: {{enabled: true, ca_file: {ca_file}, "
                                              "sni: localhost}\n"),
        "  - name: empty\n    type: EDS\n",  # no assignment: no hosts
        base.static_cluster("narrow", slow, extra=(
            "    circuit_breakers: {max_requests: 1, max_pending_requests: 1}\n"
            f"    traffic_policy: {source('TrafficPolicy', 'narrow')}\n")),
        base.static_cluster("flaky", failing, extra=(
            "    circuit_breakers: {consecutive_failures: {failure_threshold: 1, "
            "open_duration: 60s}}\n"
            f"    traffic_policy: {source('TrafficPolicy', 'flaky')}\n")),
    ])
    listener = (f"  - name: out\n    address: 127.0.0.1:{port}\n    direction: OUTBOUND\n"
                "    protocol: PROTOCOL_HTTP\n    route_config_name: edge\n"
                f"    access_log: {{path: {access_log}}}\n"
                "    authorization:\n      policies:\n"
                "      - {name: no-denied, action: DENY, rules: [{paths: [/denied]}], "
                f"source: {source('AuthorizationPolicy', 'no-denied')}}}\n")
    routes_text = ("  - name: edge\n    virtual_hosts:\n    - name: all\n      domains: [\"*\"]\n"
                   "      routes:\n" + routes)
    return ("node: {id: edge-0, service: edge}\n"
            + base.config_yaml(listener, clusters, routes_text)
            + f"tracing:\n  sampling_percent: 0\n  collector_address: 127.0.0.1:{otlp_port}\n"
            "  protocol: OTLP_PROTO\n  flush_interval: 0.05s\n  service_name: edge\n"
            "  error_spans_per_second: 100\n")


class ErrorAttributionTest(ControlPlaneCase):
    def test_every_proxy_made_error_is_attributed_logged_traced_and_explained(self):
        # Unsampled requests: each reply a proxy makes itself names the proxy, its flags and the
        # reason (x-meshlet-error) and the request id, the access log and an exported server span
        # (an error span) say the same, and `meshctl explain REQUEST_ID` names the hop, the reason
        # and the policy object responsible.
        ok = control_upstream.ControlUpstream(name="ok")
        slow = control_upstream.ControlUpstream(name="slow")
        reset = control_upstream.ControlUpstream(name="reset")
        failing = control_upstream.ControlUpstream(name="failing")
        for up in (ok, slow, reset, failing):
            self.addCleanup(up.close)
        slow.control(delay_ms=1500)
        reset.control(fail_next=1000, reset="before_headers")
        failing.control(fail_next=1000, status=503)
        port, closed = free_port(), free_port()
        access_log = os.path.join(self.tmp, "access.log")
        self.sidecar("edge", edge_config(port, access_log, ok.port, slow.port, reset.port,
                                         failing.port, closed, self.ca_file, self.otlp_port))
        # What provokes the limits: a first request that takes the only slot, the breaker's one
        # failure, the bucket's one token.
        occupied = []
        occupy = threading.Thread(
            target=lambda: occupied.append(http_call(port, "GET", "/overflow")[0]))
        occupy.start()
        self.addCleanup(occupy.join)  # also when the test fails before the join below
        # The application's own 503 (what opens the breaker) and an answer from the application
        # pass untouched: no attribution, no request id added.
        for path, status in (("/breaker", 503), ("/ok", 200)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            self.assertEqual(resp.status, status, path)
            self.assertEqual(resp.getheader("x-upstream"), "failing" if status == 503 else "ok")
            self.assertIsNone(resp.getheader("x-meshlet-error"), path)
            self.assertIsNone(resp.getheader("x-request-id"), path)
        self.assertEqual(http_call(port, "GET", "/limited")[0], 200)
        self.assertTrue(wait_for(lambda: slow.stats()["requests"] >= 1, 5))

        answers = self.provoke(port, ERROR_KINDS, "edge-0")
        self.assert_explained(ERROR_KINDS, answers, access_log, "edge")
        occupy.join()
        self.assertEqual(occupied, [200])
        # One error span per kind; the requests that merely set the limits up exported none.
        self.assertEqual(self.sidecars[-1].stat("meshlet_tracing_error_spans_total"),
                         len(ERROR_KINDS))

    def test_a_shed_request_is_attributed_logged_traced_and_explained(self):
        # The sidecar's own load shedding: the verdict names the limit and the setting.
        slow = control_upstream.ControlUpstream(name="slow")
        ok = control_upstream.ControlUpstream(name="ok")
        for up in (slow, ok):
            self.addCleanup(up.close)
        slow.control(delay_ms=1500)
        port = free_port()
        access_log = os.path.join(self.tmp, "shed.log")
        listener = (f"  - name: out\n    address: 127.0.0.1:{port}\n    direction: OUTBOUND\n"
                    "    protocol: PROTOCOL_HTTP\n    route_config_name: shed\n"
                    f"    access_log: {{path: {access_log}}}\n")
        routes_text = ("  - name: shed\n    virtual_hosts:\n    - name: all\n"
                       "      domains: [\"*\"]\n      routes:\n"
                       "      - match: {prefix: /slow}\n        route: {cluster: slow}\n"
                       "      - match: {prefix: /}\n        route: {cluster: ok}\n")
        self.sidecar("shedder",
                     "node: {id: shedder-0, service: shedder}\n"
                     + base.config_yaml(listener, cluster("slow", slow.port) + cluster("ok", ok.port),
                                        routes_text)
                     + f"tracing:\n  sampling_percent: 0\n  collector_address: "
                     f"127.0.0.1:{self.otlp_port}\n  protocol: OTLP_PROTO\n"
                     "  flush_interval: 0.05s\n  service_name: shedder\n",
                     "--overload-max-active-requests=1")
        self.assertEqual(http_call(port, "GET", "/ok")[0], 200)  # below the limit: served
        held = []
        hold = threading.Thread(target=lambda: held.append(http_call(port, "GET", "/slow")[0]))
        hold.start()
        self.addCleanup(hold.join)
        self.assertTrue(wait_for(lambda: slow.stats()["requests"] >= 1, 5))
        answers = self.provoke(port, SHED_KINDS, "shedder-0")
        self.assert_explained(SHED_KINDS, answers, access_log, "shedder",
                              lines=[r"\n     shed      more than 1 request in flight on its worker "
                                     r"\(its share of --overload-max-active-requests 1\)\n"])
        hold.join()
        self.assertEqual(held, [200])  # the request in flight was not touched
        self.assertEqual(self.sidecars[-1].stat("meshlet_http_downstream_rq_overload_shed_total"), 1)

    def provoke(self, port, kinds, node):
        """Sends each kind's request: its status, x-meshlet-error naming `node`, a request id.
        Returns {path: request id}."""
        answers = {}
        for path, status, flags, reason, _ in kinds:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            self.assertEqual(resp.status, status, path)
            self.assertEqual(resp.getheader("x-meshlet-error"),
                             f"{node}; flag={flags}; reason={reason}", path)
            request_id = resp.getheader("x-request-id")
            self.assertRegex(request_id or "", r"^[0-9a-f-]{36}$", path)
            answers[path] = request_id
        return answers

    def assert_explained(self, kinds, answers, access_log, service, lines=()):
        """Each kind's request has its access log line, an exported error span from `service`'s
        outbound listener, and an explanation whose verdict names the hop, the reason and what is
        responsible (and holds `lines`, regular expressions)."""
        with open(access_log) as f:
            logged = {line["request_id"]: line for line in map(json.loads, f)}
        for path, status, flags, reason, verdict in kinds:
            request_id = answers[path]
            with self.subTest(path=path):
                line = logged.get(request_id)
                self.assertIsNotNone(line, f"{path}: no access log line for {request_id}")
                self.assertEqual((line["response_code"], line["response_flags"],
                                  line["error_reason"]), (status, flags, reason))
                found = []

                def exported():
                    found[:] = self.api(f"/api/v1/traces?requestId={request_id}")["items"]
                    return len(found) == 1
                self.assertTrue(wait_for(exported, 10), f"{path}: no trace for {request_id}")
                spans = self.api(f"/api/v1/traces/{found[0]['traceId']}")["spans"]
                attributes = spans[0]["attributes"]
                self.assertEqual(attributes.get("meshlet.error.reason"), reason)
                self.assertEqual(attributes.get("meshlet.response_flags"), flags)
                self.assertEqual(attributes.get("meshlet.listener.direction"), "outbound")
                self.assertEqual(spans[0]["flags"] & 1, 0)  # not sampled: an error span
                text = self.meshctl("explain", request_id)
                self.assertIn(f"(request id {request_id}): {status}", text)
                self.assertIn(f"error     {flags}: {reason} (the proxy answered itself)", text)
                self.assertRegex(
                    text, rf"\nVerdict: {status} at {service}'s outbound sidecar: {verdict}\n")
                for expected in lines:
                    self.assertRegex(text, expected)

class TelemetryTest(ControlPlaneCase):
    def test_tcp_proxy_traffic_is_in_the_golden_metrics(self):
        # An opaque TCP hop: no requests, but bytes each way and connections on its edge.
        echo = base.EchoServer()
        self.addCleanup(echo.close)
        port = free_port()
        self.sidecar("worker", "node: {id: worker-0, service: worker}\n"
                     + base.config_yaml(base.tcp_listener("redis-out", port, "redis"),
                                        cluster("redis", echo.port))
                     + self.metrics_report())
        for _ in range(3):
            self.assertEqual(base.echo_round_trip(port, b"x" * 10000), b"x" * 10000)
        edge = {}

        def reported():
            for e in self.api("/api/v1/stat?window=1m")["items"]:
                if (e["source"], e["destination"]) == ("worker", "redis"):
                    edge.update(e)
                    # 30 000 bytes each way over three connections, all reported.
                    return (e["txBytes"], e["rxBytes"], e["connections"]) == (30000, 30000, 3)
            return False
        self.assertTrue(wait_for(reported, 10), edge)
        self.assertEqual(edge["requests"], 0)
        self.assertGreater(edge["txBytesPerSecond"], 0)
        self.assertGreater(edge["rxBytesPerSecond"], 0)
        self.assertGreater(edge["connectionsPerSecond"], 0)

    def explained(self, request_id):
        """`meshctl explain REQUEST_ID` once the request's spans are in the collector."""
        found = []

        def arrived():
            found[:] = self.api(f"/api/v1/traces?requestId={request_id}")["items"]
            return len(found) == 1 and found[0]["spanCount"] >= 2
        self.assertTrue(wait_for(arrived, 10), found)
        return self.meshctl("explain", request_id)

    def test_explain_names_the_hop_and_the_reason_of_a_504_and_a_503(self):
        # client → frontend → backend (route timeout 200 ms) → app, which answers after 2 s: the
        # backend's sidecar answers 504 itself and the frontend passes it on.
        up = control_upstream.ControlUpstream(name="app")
        self.addCleanup(up.close)
        up.control(delay_ms=2000)
        backend_port, frontend_port, closed_port = free_port(), free_port(), free_port()
        self.sidecar("backend",
                     base.config_yaml(http_listener("in", backend_port), cluster("app", up.port),
                                      routes("app", "timeout: 0.2s"))
                     + tracing(self.otlp_port, "OTLP_PROTO", "backend"))
        self.sidecar("frontend",
                     base.config_yaml(http_listener("out", frontend_port),
                                      cluster("backend", backend_port), routes("backend"))
                     + tracing(self.otlp_port, "OTLP_JSON", "frontend"))
        status, _ = http_call(frontend_port, "GET", "/slow", headers={"x-request-id": "ex-504"})
        self.assertEqual(status, 504)
        text = self.explained("ex-504")
        self.assertIn("(request id ex-504): 504", text)
        self.assertIn("error     UT: upstream request timeout", text)
        self.assertRegex(text, r"\n  2\. backend outbound sidecar: GET /slow -> 504 in [0-9.]+ms   "
                               r"<- failed first\n")
        # The route's own timeout, from static configuration: no policy object to name.
        self.assertRegex(text, r"\n       timeouts  request \d+ms\n")
        self.assertRegex(text, r"\nVerdict: 504 at backend's outbound sidecar: request timeout "
                               r"\d+ms \(route catch-all\) expired after 1 attempt\n")

        # client → "lonely", whose only endpoint refuses connections: its sidecar answers 503.
        lonely_port = free_port()
        self.sidecar("lonely",
                     base.config_yaml(http_listener("out", lonely_port), cluster("gone", closed_port),
                                      routes("gone"))
                     + tracing(self.otlp_port, "OTLP_JSON", "lonely"))
        status, _ = http_call(lonely_port, "GET", "/x", headers={"x-request-id": "ex-503"})
        self.assertEqual(status, 503)
        found = []

        def arrived():
            found[:] = self.api("/api/v1/traces?requestId=ex-503")["items"]
            return len(found) == 1
        self.assertTrue(wait_for(arrived, 10), found)
        text = self.meshctl("explain", "ex-503")
        self.assertIn("Verdict: 503 at lonely's outbound sidecar: connecting to cluster gone "
                      "failed: connection refused", text)
        self.assertIn("(the proxy answered itself)", text)

    def test_explain_keeps_an_unsampled_retried_request_one_chain(self):
        # client → frontend (retries 503s) → backend, whose only endpoint refuses connections:
        # backend's sidecar answers each attempt 503 UF, and frontend's passes the last on. Nothing
        # is sampled: each hop exported error spans, frontend's attempts none, so backend's spans
        # name parents that are not in the trace; explain links them to frontend's hop by the
        # attempts' span ids in its decision record.
        backend_port, frontend_port, closed_port = free_port(), free_port(), free_port()

        def unsampled(service):
            return (f"tracing:\n  sampling_percent: 0\n  collector_address: "
                    f"127.0.0.1:{self.otlp_port}\n  protocol: OTLP_PROTO\n"
                    f"  flush_interval: 0.05s\n  service_name: {service}\n"
                    "  error_spans_per_second: 100\n")
        self.sidecar("backend",
                     base.config_yaml(http_listener("in", backend_port), cluster("app", closed_port),
                                      routes("app", "retry_policy: {num_retries: 0}"))
                     + unsampled("backend"))
        self.sidecar("frontend",
                     base.config_yaml(http_listener("out", frontend_port),
                                      cluster("backend", backend_port),
                                      routes("backend",
                                             "retry_policy: {num_retries: 2, base_interval: 0.001s}"))
                     + unsampled("frontend"))
        status, _ = http_call(frontend_port, "GET", "/retried",
                              headers={"x-request-id": "ex-retried"})
        self.assertEqual(status, 503)
        found = []

        def arrived():
            found[:] = self.api("/api/v1/traces?requestId=ex-retried")["items"]
            return len(found) == 1 and found[0]["spanCount"] == 4
        self.assertTrue(wait_for(arrived, 10), found)
        text = self.meshctl("explain", "ex-retried")
        self.assertIn("(request id ex-retried): 503", text)
        self.assertIn(", 4 hops\n", text)
        self.assertRegex(text, r"\n1\. frontend outbound sidecar: GET /retried -> 503 ")
        # Each attempt's hop under frontend's, none at the top.
        self.assertEqual(len(re.findall(r"\n  \d\. backend outbound sidecar: GET /retried -> 503 ",
                                        text)), 3, text)
        self.assertNotRegex(text, r"\n\d\. backend")
        self.assertEqual(len(re.findall(r"\n     attempt \d 127\.0\.0\.1:\d+ 503 \d+ms -> ", text)),
                         3, text)
        # Each backend hop's attempt says why it got no connection.
        self.assertEqual(len(re.findall(
            r"\n       attempt 1 127\.0\.0\.1:\d+ connect-failure\(refused\) \d+ms -> ", text)), 3, text)
        self.assertRegex(text, r"\nVerdict: 503 at backend's outbound sidecar: connecting to "
                               r"cluster app failed: connection refused after 1 attempt "
                               r"\(route catch-all\)\n")

    def test_explain_shows_the_file_of_the_gateway_api_route_that_decided(self):
        # meshlet's HTTPRoute "ratings" and the Gateway API's HTTPRoute "ratings", applied from
        # two files; the Gateway API's owns the Service's port (ADR 0060), and ratings has no
        # endpoints: a call answered 503 UH is explained with that route and its own file.
        meshlet_file = os.path.join(self.tmp, "meshlet-ratings.yaml")
        gateway_file = os.path.join(self.tmp, "gateway-ratings.yaml")
        with open(meshlet_file, "w") as f:
            f.write("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: ratings}\n"
                    "spec:\n  ports: [{name: http, port: 9080}]\n---\n"
                    "apiVersion: meshlet.io/v1\nkind: HTTPRoute\nmetadata: {name: ratings}\n"
                    "spec:\n  target: ratings\n  rules:\n  - backends: [{service: ratings}]\n")
        with open(gateway_file, "w") as f:
            f.write("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                    "metadata: {name: ratings}\nspec:\n"
                    "  parentRefs: [{group: \"\", kind: Service, name: ratings, port: 9080}]\n"
                    "  rules:\n  - backendRefs: [{name: ratings, port: 9080}]\n")
        self.meshctl("apply", "-f", meshlet_file)
        self.meshctl("apply", "-f", gateway_file)
        outbound_port = free_port()
        self.sidecar("caller",
                     base.config_yaml(http_listener("static", free_port()), cluster("app", free_port()),
                                      routes("app"))
                     + tracing(self.otlp_port, "OTLP_PROTO", "caller"),
                     f"--xds=127.0.0.1:{self.grpc_port}", "--xds-plaintext=true",
                     "--node-id=caller-0", "--node-service=caller", "--node-address=127.0.0.1",
                     f"--node-label=meshlet.io/inbound-port={free_port()}",
                     f"--node-label=meshlet.io/outbound-port={outbound_port}")
        sent = []  # (request id, status)

        def routed():
            request_id = f"ex-gateway-{len(sent)}"
            try:
                status, _ = http_call(outbound_port, "GET", "/r/1",
                                      headers={"host": "ratings:9080", "x-request-id": request_id})
            except OSError:
                status = 0  # the outbound listener is not pushed yet
            sent.append((request_id, status))
            return status == 503
        self.assertTrue(wait_for(routed, 10), sent)
        request_id = sent[-1][0]
        found = []

        def arrived():
            found[:] = self.api(f"/api/v1/traces?requestId={request_id}")["items"]
            return len(found) == 1
        self.assertTrue(wait_for(arrived, 10), found)
        text = self.meshctl("explain", request_id)
        self.assertIn(f"HTTPRoute.gateway.networking.k8s.io/default/ratings (from {gateway_file}) "
                      "rule 0", text)
        self.assertNotIn(meshlet_file, text)
        self.assertRegex(text, r"\nVerdict: 503 at caller's outbound sidecar: no healthy endpoint in "
                               r"cluster \S*ratings\S* \(route HTTPRoute\.gateway\.networking\.k8s\.io"
                               r"/default/ratings \(from " + re.escape(gateway_file) + r"\) rule 0\)\n")

    def test_route_rules_have_figures_and_history(self):
        # A Gateway API HTTPRoute with two rules on Service stars (no endpoints): rule 0 redirects
        # /old (302), rule 1 sends the rest to stars (503, no healthy host). A sidecar connected
        # to the control plane counts each rule apart; its reports carry them and its workload.
        policies = os.path.join(self.tmp, "stars.yaml")
        with open(policies, "w") as f:
            f.write("apiVersion: meshlet.io/v1\nkind: Service\nmetadata: {name: stars}\n"
                    "spec:\n  ports: [{name: http, port: 9080}]\n---\n"
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                    "metadata: {name: stars}\nspec:\n"
                    "  parentRefs: [{group: \"\", kind: Service, name: stars, port: 9080}]\n"
                    "  rules:\n"
                    "  - matches: [{path: {type: PathPrefix, value: /old}}]\n"
                    "    filters:\n"
                    "    - type: RequestRedirect\n"
                    "      requestRedirect: {hostname: elsewhere.example, statusCode: 302}\n"
                    "  - backendRefs: [{name: stars, port: 9080}]\n")
        self.meshctl("apply", "-f", policies)
        outbound_port = free_port()
        caller = self.sidecar(
            "caller",
            base.config_yaml(http_listener("static", free_port()), cluster("app", free_port()),
                             routes("app"))
            + self.metrics_report(),
            f"--xds=127.0.0.1:{self.grpc_port}", "--xds-plaintext=true",
            "--node-id=caller-0.default", "--node-namespace=default", "--node-service=caller",
            "--node-address=127.0.0.1", f"--node-label=meshlet.io/inbound-port={free_port()}",
            f"--node-label=meshlet.io/outbound-port={outbound_port}")

        def call(path):
            try:
                status, _ = http_call(outbound_port, "GET", path, headers={"host": "stars:9080"})
            except OSError:
                return 0  # the outbound listener is not pushed yet
            return status
        self.assertTrue(wait_for(lambda: call("/old/a") == 302, 10))
        for path in ("/old/b", "/old/c"):
            self.assertEqual(call(path), 302)
        for path in ("/x", "/y"):
            self.assertEqual(call(path), 503)

        # The sidecar's exposition, by rule.
        gateway_route = "HTTPRoute.gateway.networking.k8s.io/default/stars"
        _, exposition, _ = caller.get("/stats/prometheus")
        self.assertIn(f'meshlet_route_rq_total{{route="{gateway_route}",rule="0",'
                      f'service="stars.default",code_class="3xx"}} 3', exposition)
        self.assertIn(f'meshlet_route_rq_total{{route="{gateway_route}",rule="1",'
                      f'service="stars.default",code_class="5xx"}} 2', exposition)

        # The window's figures per rule, through the API and meshctl.
        figures = {}

        def reported():
            answer = self.api("/api/v1/stat/routes?service=stars.default&window=1m")
            figures.clear()
            for r in answer["routes"]:
                figures[r["rule"]] = r
            return (figures.get(0, {}).get("requests"), figures.get(1, {}).get("requests")) == (3, 2)
        self.assertTrue(wait_for(reported, 15), figures)
        self.assertEqual((figures[0]["route"], figures[0]["kind"], figures[0]["service"]),
                         ("default/stars", "HTTPRoute.gateway.networking.k8s.io", "stars.default"))
        self.assertEqual((figures[0]["failures"], figures[0]["successRate"]), (0, 1.0))
        self.assertEqual((figures[1]["failures"], figures[1]["successRate"]), (2, 0.0))
        table = self.meshctl("stat", "--routes", "stars.default")
        self.assertRegex(table, r"ROUTE\s+RULE\s+SUCCESS\s+RPS")
        self.assertRegex(table, re.escape(gateway_route) + r"\s+0\s+100\.00%.*\s3\s+0\n")
        self.assertRegex(table, re.escape(gateway_route) + r"\s+1\s+0\.00%.*\s2\s+2\n")

        # Each rule's history, and the workload's outbound calls (the two that reached a cluster).
        def total(selector):
            answer = self.api(f"/api/v1/stat/history?{selector}&window=2m")
            return sum(p["requests"] for p in answer["points"])
        self.assertEqual(total("route=default/stars&rule=0"), 3)
        self.assertEqual(total("route=default/stars&rule=1"), 2)
        self.assertEqual(total("route=default/stars"), 5)
        self.assertTrue(wait_for(lambda: total("workload=default/caller-0") == 2, 10))
        text = self.meshctl("stat", "--history", "--route", "default/stars:1", "--window", "2m")
        self.assertIn("route default/stars rule 1, every 10s", text)
        self.assertRegex(text, r"\d\d:\d\d:\d\d\s+0\.\d+\s+0\.00%")
        text = self.meshctl("stat", "--history", "--workload", "default/caller-0", "--window", "2m")
        self.assertIn("workload default/caller-0 (outbound, to every service)", text)
        with open(self.token_file) as f:
            token = f.read().strip()
        status, body = http_call(self.api_port, "GET", "/api/v1/stat/history?route=stars&rule=0",
                                 headers={"authorization": f"Bearer {token}"},
                                 ca_file=self.ca_file)
        self.assertEqual(status, 400, body)
        self.assertIn("is not NAMESPACE/NAME", body.decode())

    def test_explain_dry_run_matches_with_the_sidecars_own_routes(self):
        # Policies applied from a file; a sidecar of frontend connected to the control plane,
        # whose outbound routes the dry run matches requests against.
        policies = os.path.join(self.tmp, "reviews.yaml")
        with open(policies, "w") as f:
            f.write(DRY_RUN_POLICIES)
        self.meshctl("apply", "-f", policies)
        up = control_upstream.ControlUpstream(name="app")
        self.addCleanup(up.close)
        self.sidecar("frontend",
                     base.config_yaml(http_listener("static", free_port()), cluster("app", up.port),
                                      routes("app")),
                     f"--xds=127.0.0.1:{self.grpc_port}", "--xds-plaintext=true",
                     "--node-id=frontend-0", "--node-service=frontend",
                     "--node-address=127.0.0.1",
                     f"--node-label=meshlet.io/inbound-port={free_port()}",
                     f"--node-label=meshlet.io/outbound-port={free_port()}")
        text = ""

        def routed():
            nonlocal text
            r = subprocess.run([MESHCTL, "--server", f"127.0.0.1:{self.api_port}",
                                "--token-file", self.token_file, "--ca-file", self.ca_file,
                                "explain", "--from", "frontend", "--to",
                                "http://reviews:9080/r/1", "-H", "x-canary: always"],
                               capture_output=True, text=True, timeout=10)
            text = r.stdout + r.stderr
            return r.returncode == 0 and "reviews.canary-header" in text
        self.assertTrue(wait_for(routed, 10), text)
        self.assertIn("Dry run: GET http://reviews:9080/r/1 from frontend-0", text)
        self.assertRegex(text, r"route +reviews\.canary-header\n")
        self.assertRegex(text, r"timeout +2000ms\n")
        self.assertRegex(text, r"retries +3, per try 500ms\n")
        self.assertRegex(text, r"cluster +outbound\|9080\|version=v2\|reviews\.default\n")
        self.assertRegex(text, r"outlier +eject after 5 consecutive 5xx")
        self.assertRegex(text, r"endpoints +none \(503 no healthy upstream\)")
        # The retry budget is on by default, so no concurrent-retry limit: said in words.
        self.assertRegex(
            text, r"limits +connections \d+, pending \d+, requests \d+, retries unlimited\n")

        # Without the header: the weighted split, the sidecar's own rule order.
        text = self.meshctl("explain", "--from", "frontend", "--to", "http://reviews:9080/r/1")
        self.assertRegex(text, r"route +reviews\.split\n")
        self.assertRegex(text, r"cluster +outbound\|9080\|version=v1\|reviews\.default weight 90")
        self.assertRegex(text, r"cluster +outbound\|9080\|version=v2\|reviews\.default weight 10")
        # A host the mesh does not know.
        text = self.meshctl("explain", "--from", "frontend", "--to", "http://nowhere/")
        self.assertRegex(text, r"route +no-service\n")
        self.assertRegex(text, r"action +direct response 404\n")
        # A service without a connected sidecar, and a bad URL.
        r = subprocess.run([MESHCTL, "--server", f"127.0.0.1:{self.api_port}",
                            "--token-file", self.token_file, "--ca-file", self.ca_file,
                            "explain", "--from", "ratings", "--to", "http://reviews:9080/"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no sidecar of service ratings in namespace default is connected", r.stderr)
        r = subprocess.run([MESHCTL, "--server", f"127.0.0.1:{self.api_port}",
                            "--token-file", self.token_file, "--ca-file", self.ca_file,
                            "explain", "--from", "frontend", "--to", "reviews:9080"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--to: expected http://HOST[:PORT][/PATH]", r.stderr)

    def test_a_trace_through_three_services_with_a_retry(self):
        self.three_services()
        # One span per request at frontend and backend (their single attempts are folded into
        # their request spans, attempt_spans: RETRIED by default): frontend's outbound one is
        # CLIENT, backend's inbound one SERVER; db: server + two attempts.
        traces = []

        def complete():
            traces[:] = self.api("/api/v1/traces?service=db")["items"]
            return len(traces) == 1 and traces[0]["spanCount"] == 5
        self.assertTrue(wait_for(complete, 10), traces)
        summary, = traces
        trace_id = summary["traceId"]
        self.assertEqual((summary["rootService"], summary["rootOperation"]),
                         ("frontend", "GET /checkout"))
        self.assertEqual(summary["services"], ["backend", "db", "frontend"])
        self.assertTrue(summary["error"])  # the failed first attempt

        listing = self.meshctl("traces", "--service", "backend", "--min-duration", "0ms")
        self.assertIn(trace_id, listing)
        self.assertIn("frontend: GET /checkout", listing)
        self.assertNotIn(trace_id, self.meshctl("traces", "--service", "backend",
                                                "--min-duration", "1h"))

        spans = {s["spanId"]: s for s in self.api(f"/api/v1/traces/{trace_id}")["spans"]}
        by = lambda service, kind: sorted(
            (s for s in spans.values() if s["service"] == service and s["kind"] == kind),
            key=lambda s: s["attributes"].get("meshlet.retry_attempt", ""))
        f_client, = by("frontend", "client")
        b_server, = by("backend", "server")
        d_server, = by("db", "server")
        d_clients = by("db", "client")
        self.assertEqual(by("frontend", "server") + by("backend", "client"), [])
        self.assertEqual(f_client["parentSpanId"], "")
        # The call frontend → backend as service-graph tools pair it: a CLIENT span, the SERVER
        # span whose parent it is, naming the service it called.
        self.assertEqual(b_server["parentSpanId"], f_client["spanId"])
        self.assertEqual(f_client["attributes"]["peer.service"], "backend")
        self.assertRegex(f_client["attributes"]["meshlet.upstream.address"], r"^127\.0\.0\.1:\d+$")
        self.assertNotIn("peer.service", b_server["attributes"])
        self.assertEqual(d_server["parentSpanId"], b_server["spanId"])
        # A folded span keeps what its attempt measured.
        self.assertIn("meshlet.upstream.ready_us", f_client["attributes"])
        self.assertEqual([c["parentSpanId"] for c in d_clients], [d_server["spanId"]] * 2)
        self.assertEqual([c["attributes"]["meshlet.retry_attempt"] for c in d_clients], ["1", "2"])
        self.assertEqual([c["attributes"]["http.response.status_code"] for c in d_clients],
                         ["503", "200"])
        self.assertEqual([c["status"]["code"] for c in d_clients], ["ERROR", "UNSET"])
        # The OTLP span flags, as the collector stored them: sampled, with a remote parent for
        # the server spans continuing another sidecar's context (0x301), not for the trace's
        # root or the attempts, whose parent is their own server span (0x101).
        self.assertEqual([s["flags"] for s in (f_client, b_server, d_server)],
                         [0x101, 0x301, 0x301])
        self.assertEqual([c["flags"] for c in d_clients], [0x101, 0x101])

        waterfall = self.meshctl("trace", trace_id)
        lines = waterfall.splitlines()
        self.assertIn(f"Trace {trace_id}: 5 spans, 3 services", lines[0])
        rows = [l for l in lines if "|" in l]
        self.assertEqual(len(rows), 5, waterfall)
        depth = lambda line: len(line) - len(line.lstrip(" "))
        self.assertEqual([depth(r) for r in rows], [0, 2, 4, 6, 6], waterfall)
        # The kinds as the waterfall shows them: frontend's outbound call, the servers under it.
        self.assertRegex(rows[0], r"frontend\s+client\s")
        self.assertRegex(rows[1], r"backend\s+server\s")
        self.assertRegex(rows[2], r"db\s+server\s")
        self.assertIn("meshlet.retry_attempt=2", waterfall)
        self.assertIn("http.response.status_code=503", waterfall)
        self.assertIn(f"span {d_server['spanId']} parent {b_server['spanId']}", waterfall)

        edges = self.api("/api/v1/dependencies")["items"]
        pairs = {(e["caller"], e["callee"]): e for e in edges}
        for pair in (("frontend", "backend"), ("backend", "db")):
            self.assertEqual((pairs[pair]["calls"], pairs[pair]["errors"]), (1, 0), edges)
            self.assertGreater(pairs[pair]["p99Nanos"], 0)
        self.assertEqual([e for e in edges if e["caller"] == "db"], [])

        self.assertGreaterEqual(
            self.metric("meshlet_cp_telemetry_spans_received_total", {"receiver": "otlp"}), 5)

        # Golden metrics: from the sidecars' own counters, one request per edge, successful
        # after db's retry (the retried 503 is an attempt, not a failed request).
        stat = {}

        def reported():
            stat.clear()
            for e in self.api("/api/v1/stat?window=1m")["items"]:
                stat[(e["source"], e["destination"])] = e
            return all(stat.get(p, {}).get("requests") == 1
                       for p in (("frontend", "backend"), ("backend", "db"), ("db", "app")))
        self.assertTrue(wait_for(reported, 10), stat)
        for pair, e in stat.items():
            self.assertEqual((e["failures"], e["successRate"], e["reporters"]), (0, 1.0, 1), pair)
            self.assertGreater(e["latencyMs"]["p99"], 0)
            self.assertGreater(e["rps"], 0)
            self.assertGreaterEqual(e["connectionsPerSecond"], 0)
        # The db → app request took at least the two attempts; its p50 is within the latency
        # the frontend saw (which includes it).
        self.assertLessEqual(stat[("db", "app")]["latencyMs"]["p50"],
                             stat[("frontend", "backend")]["latencyMs"]["p50"] * 1.07)
        table = self.meshctl("stat", "db")
        self.assertRegex(table, r"SOURCE\s+DESTINATION\s+SUCCESS\s+RPS\s+P50\s+P95\s+P99")
        self.assertRegex(table, r"backend\s+db\s+100\.00%")
        self.assertRegex(table, r"db\s+app\s+100\.00%")
        self.assertNotIn("frontend", table)
        top = self.meshctl("top", "--once", "--limit", "2")
        self.assertEqual(len(top.strip().splitlines()), 3, top)  # header + the two busiest
        self.assertIn("ACTIVE", top.splitlines()[0])

        # The history holds the same requests in 10 s points, per edge and per service (the
        # inbound of db: backend's calls), through the API and `meshctl stat --history`.
        history = {}

        def in_history():
            for selector in ("edge=frontend,backend", "service=db"):
                history[selector] = self.api(f"/api/v1/stat/history?{selector}&window=2m")
            return all(sum(p["requests"] for p in h["points"]) == 1 for h in history.values())
        self.assertTrue(wait_for(in_history, 10), history)
        edge = history["edge=frontend,backend"]
        self.assertEqual((edge["source"], edge["destination"], edge["stepSeconds"], edge["events"]),
                         ("frontend", "backend", 10, []))
        self.assertIn(len(edge["points"]), (12, 13))  # two minutes at 10 s, and the one of now
        point = next(p for p in edge["points"] if p["requests"])
        self.assertEqual((point["failures"], point["successRate"], point["rps"]), (0, 1.0, 0.1))
        self.assertGreater(point["latencyMs"]["p99"], 0)
        text = self.meshctl("stat", "--history", "db", "--window", "2m")
        self.assertIn("db (inbound, from every caller), every 10s", text)
        self.assertRegex(text, r"\d\d:\d\d:\d\d\s+0\.1\s+100\.00%\s+\d")
        with open(self.token_file) as f:
            token = f.read().strip()
        status, body = http_call(self.api_port, "GET", "/api/v1/stat/history?service=db&step=7s",
                                 headers={"authorization": f"Bearer {token}"},
                                 ca_file=self.ca_file)
        self.assertEqual(status, 400, body)
        self.assertIn("step: must be a multiple of the resolution (10s)", body.decode())
        status, _ = http_call(self.api_port, "GET", "/api/v1/stat/history?service=db",
                              ca_file=self.ca_file)
        self.assertEqual(status, 401)

    def test_prometheus_scrapes_a_sidecar_and_the_control_plane(self):
        """A real Prometheus (Debian's) scrapes the sidecar's read-only --prometheus-address and
        the control plane's /metrics; PromQL over its HTTP API returns the requests sent."""
        up = control_upstream.ControlUpstream(name="app")
        self.addCleanup(up.close)
        port, scrape_port, prom_port = free_port(), free_port(), free_port()
        workdir = os.path.join(self.tmp, "scraped")
        os.mkdir(workdir)
        sidecar = base.Sidecar(workdir, base.config_yaml(http_listener("out", port),
                                                         cluster("app", up.port), routes("app")),
                               f"--prometheus-address=127.0.0.1:{scrape_port}", concurrency=1)
        self.sidecars.append(sidecar)
        for _ in range(5):
            self.assertEqual(http_call(port, "GET", "/x")[0], 200)
        # The scrape port serves metrics and readiness only: nothing that changes state.
        self.assertEqual(http_call(scrape_port, "POST", "/quitquitquit")[0], 404)
        self.assertEqual(http_call(scrape_port, "GET", "/config_dump")[0], 404)
        self.assertEqual(http_call(scrape_port, "GET", "/ready")[0], 200)

        # promtool accepts both expositions as they are scraped.
        for where, body in (("sidecar", http_call(scrape_port, "GET", "/stats/prometheus")[1]),
                            ("control plane",
                             http_call(self.api_port, "GET", "/metrics", ca_file=self.ca_file)[1])):
            check = subprocess.run(["promtool", "check", "metrics"], input=body,
                                   capture_output=True, timeout=30)
            self.assertEqual((check.returncode, check.stdout + check.stderr), (0, b""), where)
            self.assertIn(b"meshlet_", body)

        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                    f"- job_name: sidecar\n  metrics_path: /stats/prometheus\n"
                    f"  static_configs: [{{targets: ['127.0.0.1:{scrape_port}']}}]\n"
                    f"- job_name: control-plane\n  scheme: https\n"
                    f"  tls_config: {{ca_file: {self.ca_file}, server_name: meshlet-control-plane}}\n"
                    f"  static_configs: [{{targets: ['127.0.0.1:{self.api_port}']}}]\n")
        log = open(os.path.join(workdir, "prometheus.log"), "wb")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(workdir, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=log)

        def stop():
            prom.terminate()
            prom.wait(timeout=10)
            log.close()
        self.addCleanup(stop)

        def query(promql):
            status, body = http_call(prom_port, "GET", "/api/v1/query?query=" +
                                     urllib.parse.quote(promql))
            if status != 200:
                return None
            result = json.loads(body)["data"]["result"]
            return [float(r["value"][1]) for r in result]
        answers = {}

        def scraped():
            try:
                answers["requests"] = query(
                    'sum(meshlet_upstream_rq_duration_seconds_count{job="sidecar",cluster="app"})')
                answers["up"] = query('up{job="control-plane"}')
            except OSError:
                return False
            return answers["requests"] == [5.0] and answers["up"] == [1.0]
        self.assertTrue(wait_for(scraped, 20), (answers, open(log.name).read()[-2000:]))
        # Success rate by PromQL from the same histograms the golden metrics use. A cluster
        # whose requests all succeeded has no failure series (registered on first use,
        # docs/stats.md): `or vector(0)` reads it as 0.
        self.assertEqual(query('sum(meshlet_upstream_rq_duration_seconds_count'
                               '{cluster="app",outcome="failure"})'), [])
        self.assertEqual(query('sum(meshlet_upstream_rq_duration_seconds_count'
                               '{cluster="app",outcome="failure"}) or vector(0)'), [0.0])

    def test_zipkin_payload_is_found(self):
        trace = "5a5a5a5a5a5a5a5a0123456789abcdef"
        now_us = int(time.time() * 1e6)
        body = json.dumps([
            {"traceId": trace, "id": "1111111111111111", "name": "get /z", "kind": "SERVER",
             "timestamp": now_us, "duration": 80000, "localEndpoint": {"serviceName": "zedge"},
             "tags": {"http.status_code": "200"}},
            {"traceId": trace, "id": "2222222222222222", "parentId": "1111111111111111",
             "name": "get /db", "kind": "SERVER", "timestamp": now_us + 1000, "duration": 50000,
             "localEndpoint": {"serviceName": "zdb"}, "tags": {"error": "timeout"}}])
        status, _ = http_call(self.zipkin_port, "POST", "/api/v2/spans", body,
                              {"content-type": "application/json"})
        self.assertEqual(status, 202)
        listing = self.meshctl("traces", "--service", "zdb", "--status", "error")
        self.assertIn(trace, listing)
        self.assertIn("zedge: get /z", listing)
        self.assertIn("ERROR: timeout", self.meshctl("trace", trace))
        edges = self.api("/api/v1/dependencies")["items"]
        self.assertIn({"caller": "zedge", "callee": "zdb", "errors": 1, "calls": 1},
                      [{k: e[k] for k in ("caller", "callee", "errors", "calls")} for e in edges])

    def test_traces_survive_a_restart_with_the_on_disk_ring(self):
        ring = os.path.join(self.tmp, "ring")
        data = os.path.join(self.tmp, "cp-ring")

        def start():
            log_path = os.path.join(self.tmp, f"cp-ring-{time.monotonic_ns()}.log")
            log = open(log_path, "wb")
            cp = subprocess.Popen(
                [CONTROL_PLANE, "--data-dir", data, "--api-address", "127.0.0.1:0",
                 "--xds-plaintext", "--xds-address", "127.0.0.1:0", "--otlp-address=",
                 "--zipkin-address", "127.0.0.1:0",
                 "--trace-store-dir", ring], stdout=log, stderr=log)
            ports = {}

            def up():
                text = open(log_path).read()
                api = re.search(r"API on 127\.0\.0\.1:(\d+)", text)
                zipkin = re.search(r"Zipkin on 127\.0\.0\.1:(\d+)", text)
                if api and zipkin:
                    ports.update(api=int(api.group(1)), zipkin=int(zipkin.group(1)))
                return bool(ports) or cp.poll() is not None
            self.assertTrue(wait_for(up, 10) and ports, open(log_path).read())
            return cp, log, ports, log_path

        cp, log, ports, _ = start()
        trace = "7a7a7a7a7a7a7a7a0123456789abcdef"
        body = json.dumps([{"traceId": trace, "id": "3333333333333333", "name": "get /kept",
                            "kind": "SERVER", "timestamp": int(time.time() * 1e6),
                            "duration": 1000, "localEndpoint": {"serviceName": "ringsvc"}}])
        self.assertEqual(http_call(ports["zipkin"], "POST", "/api/v2/spans", body,
                                   {"content-type": "application/json"})[0], 202)
        cp.send_signal(signal.SIGTERM)
        self.assertEqual(cp.wait(timeout=10), 0)
        log.close()

        cp, log, ports, log_path = start()
        self.addCleanup(lambda: (cp.send_signal(signal.SIGTERM), cp.wait(timeout=10), log.close()))
        self.assertIn("1 spans read back", open(log_path).read())
        with open(os.path.join(data, "api-token")) as f:
            token = f.read().strip()
        status, reply = http_call(ports["api"], "GET", f"/api/v1/traces/{trace}",
                                  headers={"authorization": f"Bearer {token}"},
                                  ca_file=cp_api.root_file(data))
        self.assertEqual(status, 200, reply)
        span, = json.loads(reply)["spans"]
        self.assertEqual((span["service"], span["name"]), ("ringsvc", "get /kept"))

    def test_bad_payloads_are_refused_clearly_and_counted(self):
        before = self.metric("meshlet_cp_telemetry_requests_rejected_total",
                             {"receiver": "zipkin", "reason": "invalid"})
        status, body = http_call(self.zipkin_port, "POST", "/api/v2/spans",
                                 '[{"traceId":"xyz","id":"1111111111111111","timestamp":1}]',
                                 {"content-type": "application/json"})
        self.assertEqual(status, 400)
        self.assertIn(b"[0].traceId: must be 32 or 16 hex digits", body)
        self.assertEqual(self.metric("meshlet_cp_telemetry_requests_rejected_total",
                                     {"receiver": "zipkin", "reason": "invalid"}), before + 1)
        status, body = http_call(self.otlp_port, "POST", "/v1/traces", b"\xff\xff\xff",
                                 {"content-type": "application/x-protobuf"})
        self.assertEqual(status, 400)
        self.assertIn(b"invalid protobuf", body)
        status, _ = http_call(self.otlp_port, "POST", "/v1/traces", "{}",
                              {"content-type": "text/plain"})
        self.assertEqual(status, 415)
        # The body limit (4 MiB by default) is enforced by the listener.
        status, _ = http_call(self.otlp_port, "POST", "/v1/traces", b"x" * (5 << 20),
                              {"content-type": "application/json"})
        self.assertEqual(status, 413)
        # The query API needs the token.
        status, _ = http_call(self.api_port, "GET", "/api/v1/traces", ca_file=self.ca_file)
        self.assertEqual(status, 401)


if __name__ == "__main__":
    CONTROL_PLANE = sys.argv.pop(1)
    MESHCTL = sys.argv.pop(1)
    base.SIDECAR = sys.argv.pop(1)
    unittest.main()
