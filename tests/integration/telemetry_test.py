"""The control plane's trace collector end to end (docs/tracing.md, "The built-in collector").

Usage: telemetry_test.py CONTROL_PLANE MESHCTL SIDECAR [unittest args]

A real control plane with its OTLP and Zipkin receivers on port 0; two real sidecars exporting to
it at 100 % sampling: client → sidecar "frontend" (OTLP JSON) → sidecar "backend" (OTLP
protobuf, retries once) → control_upstream, which fails the first request with 503. The trace is
then found with `meshctl traces`, shown with `meshctl trace`, and the frontend → backend edge
appears in /api/v1/dependencies. A Zipkin v2 payload posted by hand is found too, and bad
payloads get 400s that name the problem and are counted.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import control_upstream
import sidecar_test as base
from sidecar_test import free_port, http_listener, wait_for

CONTROL_PLANE = MESHCTL = None  # set from argv


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


def http_call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class TelemetryTest(base.SidecarTestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.log_path = os.path.join(cls.data, "control-plane.log")
        cls.log = open(cls.log_path, "wb")
        cls.cp = subprocess.Popen(
            [CONTROL_PLANE, "--data-dir", os.path.join(cls.data, "cp"),
             "--api-address", "127.0.0.1:0", "--xds-plaintext", "--xds-address", "127.0.0.1:0",
             "--otlp-address", "127.0.0.1:0", "--zipkin-address=127.0.0.1:0"],
            stdout=cls.log, stderr=cls.log)
        pattern = rb"OTLP/HTTP on 127\.0\.0\.1:(\d+), Zipkin on 127\.0\.0\.1:(\d+)"
        found = None

        def started():
            nonlocal found
            with open(cls.log_path, "rb") as f:
                text = f.read()
            found = (re.search(rb"API on 127\.0\.0\.1:(\d+)", text), re.search(pattern, text))
            return all(found) or cls.cp.poll() is not None
        wait_for(started, 10)
        if not all(found):
            raise AssertionError("control plane did not start: " + open(cls.log_path).read())
        cls.api_port = int(found[0].group(1))
        cls.otlp_port, cls.zipkin_port = int(found[1].group(1)), int(found[1].group(2))
        cls.token_file = os.path.join(cls.data, "cp", "api-token")

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
                                 headers={"authorization": f"Bearer {token}"})
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def meshctl(self, *args):
        r = subprocess.run([MESHCTL, "--server", f"127.0.0.1:{self.api_port}",
                            "--token-file", self.token_file, *args],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def sidecar(self, name, yaml_text):
        # Each sidecar in its own directory: Sidecar writes sidecar.yaml and its log there.
        workdir = os.path.join(self.tmp, name)
        os.mkdir(workdir)
        s = base.Sidecar(workdir, yaml_text, concurrency=1)
        self.sidecars.append(s)
        return s

    def metric(self, name, labels):
        status, body = http_call(self.api_port, "GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return int(float(line.rsplit(" ", 1)[1]))
        return 0

    def test_a_trace_through_two_sidecars_with_a_retry(self):
        up = control_upstream.ControlUpstream(name="app")
        self.addCleanup(up.close)
        backend_port, frontend_port = free_port(), free_port()
        retry = "retry_policy: {num_retries: 1, base_interval: 0.001s}"
        self.sidecar("backend",
                     base.config_yaml(http_listener("in", backend_port), cluster("app", up.port),
                                      routes("app", retry))
                     + tracing(self.otlp_port, "OTLP_PROTO", "backend"))
        self.sidecar("frontend",
                     base.config_yaml(http_listener("out", frontend_port),
                                      cluster("backend", backend_port), routes("backend"))
                     + tracing(self.otlp_port, "OTLP_JSON", "frontend"))
        up.control(fail_next=1, status=503)
        status, _ = http_call(frontend_port, "GET", "/checkout")
        self.assertEqual(status, 200)

        # frontend server + client, backend server + two client attempts.
        traces = []

        def complete():
            traces[:] = self.api("/api/v1/traces?service=backend")["items"]
            return len(traces) == 1 and traces[0]["spanCount"] == 5
        self.assertTrue(wait_for(complete, 10), traces)
        summary, = traces
        trace_id = summary["traceId"]
        self.assertEqual((summary["rootService"], summary["rootOperation"]),
                         ("frontend", "GET /checkout"))
        self.assertEqual(summary["services"], ["backend", "frontend"])
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
        f_server, = by("frontend", "server")
        f_client, = by("frontend", "client")
        b_server, = by("backend", "server")
        b_clients = by("backend", "client")
        self.assertEqual(f_server["parentSpanId"], "")
        self.assertEqual(f_client["parentSpanId"], f_server["spanId"])
        self.assertEqual(b_server["parentSpanId"], f_client["spanId"])
        self.assertEqual([c["parentSpanId"] for c in b_clients], [b_server["spanId"]] * 2)
        self.assertEqual([c["attributes"]["meshlet.retry_attempt"] for c in b_clients], ["1", "2"])
        self.assertEqual([c["attributes"]["http.response.status_code"] for c in b_clients],
                         ["503", "200"])
        self.assertEqual([c["status"]["code"] for c in b_clients], ["ERROR", "UNSET"])

        waterfall = self.meshctl("trace", trace_id)
        lines = waterfall.splitlines()
        self.assertIn(f"Trace {trace_id}: 5 spans, 2 services", lines[0])
        rows = [l for l in lines if "|" in l]
        self.assertEqual(len(rows), 5, waterfall)
        depth = lambda line: len(line) - len(line.lstrip(" "))
        self.assertEqual([depth(r) for r in rows], [0, 2, 4, 6, 6], waterfall)
        self.assertIn("frontend", rows[0])
        self.assertIn("backend", rows[2])
        self.assertIn("meshlet.retry_attempt=2", waterfall)
        self.assertIn("http.response.status_code=503", waterfall)
        self.assertIn(f"span {b_server['spanId']} parent {f_client['spanId']}", waterfall)

        edges = self.api("/api/v1/dependencies")["items"]
        edge, = [e for e in edges if (e["caller"], e["callee"]) == ("frontend", "backend")]
        self.assertEqual((edge["calls"], edge["errors"]), (1, 0))
        self.assertGreater(edge["p99Nanos"], 0)
        self.assertEqual([e for e in edges if e["caller"] == "backend"], [])

        self.assertGreaterEqual(
            self.metric("meshlet_cp_telemetry_spans_received_total", {"receiver": "otlp"}), 5)

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
        status, _ = http_call(self.api_port, "GET", "/api/v1/traces")
        self.assertEqual(status, 401)


if __name__ == "__main__":
    CONTROL_PLANE = sys.argv.pop(1)
    MESHCTL = sys.argv.pop(1)
    base.SIDECAR = sys.argv.pop(1)
    unittest.main()
