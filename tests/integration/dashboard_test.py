"""The dashboard in headless Chromium (docs/dashboard.md).

Usage: dashboard_test.py CONTROL_PLANE MESHCTL SIDECAR DASHBOARD_TEST_JS [unittest args]

The three-service chain of telemetry_test (frontend → backend → db, db retrying a 503) sends one
request with 100 % sampling and golden-metrics reports. Its sidecars are started the way `./dev
demo` starts them (and Kubernetes injection will): the control plane given by --xds and the node by
--node-* flags, a bootstrap without an xds block and without a metrics_report address, so the
reports go where --xds points. Then playwright-core (npm, in tests/browser/node_modules) drives
Debian's /usr/bin/chromium through the page `meshctl dashboard` links to: the service graph with
golden metrics on its edges and a row per edge in its table, a trace search with filters, the
trace's waterfall (5 spans, the retry attempt) and its explanation, the explanation of a 504 whose
decision records are posted over OTLP (the hop, the reason, the policy objects), the proxies page listing the three sidecars.
Screenshots go to TEST_UNDECLARED_OUTPUTS_DIR. Without node_modules or chromium the test prints
SKIP, unless MESHLET_REQUIRE_BROWSER=1 (./dev test sets it), which makes that a failure.
"""

import json
import os
import subprocess
import sys
import unittest

import browser
import cp_api
import sidecar_test as base
import telemetry_test
from sidecar_test import free_port, wait_for

SCRIPT = None  # set from argv

TIMEOUT_TRACE_ID = "6bf92f3577b34da6a3ce929d0e0e4736"


def _attributes(pairs):
    return [{"key": k, "value": {"stringValue": v}} for k, v in pairs]


# productpage's outbound sidecar timed out calling reviews (route timeout from a TrafficPolicy,
# two attempts); reviews' inbound sidecar allowed the call.
TIMEOUT_TRACE = {"resourceSpans": [
    {"resource": {"attributes": _attributes([("service.name", "productpage.default")])},
     "scopeSpans": [{"spans": [
         {"traceId": TIMEOUT_TRACE_ID, "spanId": "00f067aa0ba90201", "name": "GET /reviews/1",
          "kind": 2, "startTimeUnixNano": "1700000000000000000",
          "endTimeUnixNano": "1700000000300000000", "status": {"code": 2, "message": "UT"},
          "attributes": _attributes([
              ("http.response.status_code", "504"),
              ("meshlet.route", "reviews-split.rule-0"),
              ("meshlet.policy.route", "HTTPRoute/default/reviews-split"),
              ("meshlet.route.rule", "0"), ("meshlet.route.match", "0"),
              ("meshlet.cluster", "outbound|9080|version=v2|reviews.default"),
              ("meshlet.subset", "version=v2"),
              ("meshlet.policy.traffic", "TrafficPolicy/default/reviews"),
              ("meshlet.timeout.request_ms", "300"),
              ("meshlet.timeout.origin", "route"),
              ("meshlet.policy.timeout", "TrafficPolicy/default/reviews"),
              ("meshlet.response_flags", "UT"),
              ("meshlet.error.reason", "upstream request timeout"),
              ("meshlet.attempts", "endpoint=10.0.0.5:15006 outcome=timeout duration_ms=200 "
               "next=retry(per-try timeout); endpoint=10.0.0.6:15006 outcome=timeout "
               "duration_ms=100 next=no-retry(deadline)")])},
         {"traceId": TIMEOUT_TRACE_ID, "spanId": "00f067aa0ba90202",
          "parentSpanId": "00f067aa0ba90201", "name": "GET /reviews/1", "kind": 3,
          "startTimeUnixNano": "1700000000001000000", "endTimeUnixNano": "1700000000200000000",
          "attributes": _attributes([("meshlet.retry_attempt", "1")])}]}]},
    {"resource": {"attributes": _attributes([("service.name", "reviews.default")])},
     "scopeSpans": [{"spans": [
         {"traceId": TIMEOUT_TRACE_ID, "spanId": "00f067aa0ba90203",
          "parentSpanId": "00f067aa0ba90202", "name": "GET /reviews/1", "kind": 2,
          "startTimeUnixNano": "1700000000002000000", "endTimeUnixNano": "1700000000350000000",
          "attributes": _attributes([
              ("http.response.status_code", "200"), ("meshlet.cluster", "inbound|9080"),
              ("meshlet.authz", "allow"),
              ("meshlet.policy.authz", "AuthorizationPolicy/default/reviews-callers")])}]}]}]}


SHED_TRACE_ID = "7bf92f3577b34da6a3ce929d0e0e4736"

# productpage's outbound sidecar shed a request: its worker had its share of requests in flight.
SHED_TRACE = {"resourceSpans": [
    {"resource": {"attributes": _attributes([("service.name", "productpage.default")])},
     "scopeSpans": [{"spans": [
         {"traceId": SHED_TRACE_ID, "spanId": "00f067aa0ba90301", "name": "GET /reviews/1",
          "kind": 2, "startTimeUnixNano": "1700000001000000000",
          "endTimeUnixNano": "1700000001000100000", "status": {"code": 2, "message": "OL"},
          "attributes": _attributes([
              ("http.response.status_code", "503"),
              ("meshlet.listener.direction", "outbound"),
              ("meshlet.response_flags", "OL"),
              ("meshlet.error.reason", "overloaded"),
              ("meshlet.shed.reason", "active_requests"),
              ("meshlet.shed.limit", "40"),
              ("meshlet.shed.worker_limit", "20")])}]}]}]}


class DashboardTest(telemetry_test.ControlPlaneCase):
    def api_certificate_spki(self):
        """base64 SHA-256 of the API certificate's public key (cp_api.certificate_spki)."""
        return cp_api.certificate_spki(self.api_port, self.ca_file)

    def metrics_report(self):
        # No address: the default, the control plane given by --xds.
        return "metrics_report:\n  interval: 0.2s\n"

    def sidecar(self, name, yaml_text):
        # The static chain plus the control plane by flags; the listeners it pushes bind free
        # ports on loopback (the outbound one is unused here).
        return super().sidecar(
            name, yaml_text, f"--xds=127.0.0.1:{self.grpc_port}", "--xds-plaintext=true",
            f"--node-id={name}-0", f"--node-service={name}", "--node-address=127.0.0.1",
            f"--node-label=meshlet.io/inbound-port={free_port()}",
            f"--node-label=meshlet.io/outbound-port={free_port()}")

    def test_dashboard_in_chromium(self):
        browser.require(self, SCRIPT)

        self.three_services()
        traces = []

        def found():
            traces[:] = self.api("/api/v1/traces?service=db")["items"]
            return len(traces) == 1 and traces[0]["spanCount"] == 5
        self.assertTrue(wait_for(found, 10), traces)
        # The golden metrics of the three edges, reported to the --xds address.
        stat = []

        def reported():
            stat[:] = self.api("/api/v1/stat?window=1m")["items"]
            return sum(e["requests"] for e in stat) == 3
        self.assertTrue(wait_for(reported, 10), f"golden metrics in /api/v1/stat: {stat}")

        # A request a proxy timed out and one it shed, as a sidecar's decision records describe
        # them.
        for trace in (TIMEOUT_TRACE, SHED_TRACE):
            status, body = telemetry_test.http_call(
                self.otlp_port, "POST", "/v1/traces", json.dumps(trace),
                {"content-type": "application/json"})
            self.assertEqual(status, 200, body)

        link = self.meshctl("dashboard").strip()
        prefix = f"https://127.0.0.1:{self.api_port}/dashboard/#token="
        self.assertTrue(link.startswith(prefix), link)
        with open(self.token_file) as f:
            self.assertEqual(link[len(prefix):], f.read().strip())

        shots = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or self.tmp
        r = subprocess.run(["node", SCRIPT, f"https://127.0.0.1:{self.api_port}",
                            link[len(prefix):], traces[0]["traceId"], shots,
                            self.api_certificate_spki(), TIMEOUT_TRACE_ID, SHED_TRACE_ID],
                           capture_output=True, text=True, timeout=240)
        print(r.stdout, r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("PASS dashboard", r.stdout)
        for name in ("dashboard-graph.png", "dashboard-trace.png", "dashboard-proxies.png"):
            self.assertGreater(os.path.getsize(os.path.join(shots, name)), 10000, name)


if __name__ == "__main__":
    telemetry_test.CONTROL_PLANE = sys.argv.pop(1)
    telemetry_test.MESHCTL = sys.argv.pop(1)
    base.SIDECAR = sys.argv.pop(1)
    SCRIPT = sys.argv.pop(1)
    unittest.main()
