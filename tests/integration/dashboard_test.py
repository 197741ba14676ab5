"""The dashboard in headless Chromium (docs/dashboard.md).

Usage: dashboard_test.py CONTROL_PLANE MESHCTL SIDECAR DASHBOARD_TEST_JS [unittest args]

The three-service chain of telemetry_test (frontend → backend → db, db retrying a 503) sends one
request with 100 % sampling and golden-metrics reports; then playwright-core (npm, in
tests/browser/node_modules) drives Debian's /usr/bin/chromium through the page `meshctl
dashboard` links to: the service graph with golden metrics on its edges, a trace search with
filters, the trace's waterfall (5 spans, the retry attempt), the proxies page. Screenshots go to
TEST_UNDECLARED_OUTPUTS_DIR. Without node_modules or chromium the test prints SKIP, unless
MESHLET_REQUIRE_BROWSER=1 (./dev test sets it), which makes that a failure.
"""

import os
import shutil
import subprocess
import sys
import unittest

import sidecar_test as base
import telemetry_test
from sidecar_test import wait_for

SCRIPT = None  # set from argv


class DashboardTest(telemetry_test.ControlPlaneCase):
    def test_dashboard_in_chromium(self):
        modules = os.path.join(os.path.dirname(os.path.realpath(SCRIPT)), "node_modules",
                               "playwright-core")
        missing = [what for what, ok in (("tests/browser/node_modules (npm ci)",
                                          os.path.isdir(modules)),
                                         ("/usr/bin/chromium", os.path.exists("/usr/bin/chromium")),
                                         ("node", shutil.which("node") is not None)) if not ok]
        if missing:
            message = "needs " + ", ".join(missing) + " (./dev test installs them)"
            if os.environ.get("MESHLET_REQUIRE_BROWSER") == "1":
                self.fail(message)
            print("SKIP: dashboard_test " + message)
            self.skipTest(message)

        self.three_services()
        traces = []

        def found():
            traces[:] = self.api("/api/v1/traces?service=db")["items"]
            stat = self.api("/api/v1/stat?window=1m")["items"]
            return (len(traces) == 1 and traces[0]["spanCount"] == 5 and
                    sum(e["requests"] for e in stat) == 3)
        self.assertTrue(wait_for(found, 10), traces)

        link = self.meshctl("dashboard").strip()
        prefix = f"http://127.0.0.1:{self.api_port}/dashboard/#token="
        self.assertTrue(link.startswith(prefix), link)
        with open(self.token_file) as f:
            self.assertEqual(link[len(prefix):], f.read().strip())

        shots = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or self.tmp
        r = subprocess.run(["node", SCRIPT, f"http://127.0.0.1:{self.api_port}",
                            link[len(prefix):], traces[0]["traceId"], shots],
                           capture_output=True, text=True, timeout=120)
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
