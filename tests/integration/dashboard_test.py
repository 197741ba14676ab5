"""The dashboard in headless Chromium (docs/dashboard.md).

Usage: dashboard_test.py CONTROL_PLANE MESHCTL SIDECAR DASHBOARD_TEST_JS [unittest args]

The three-service chain of telemetry_test (frontend → backend → db, db retrying a 503) sends one
request with 100 % sampling and golden-metrics reports. Its sidecars are started the way `./dev
demo` starts them (and Kubernetes injection will): the control plane given by --xds and the node by
--node-* flags, a bootstrap without an xds block and without a metrics_report address, so the
reports go where --xds points. Then playwright-core (npm, in tests/browser/node_modules) drives
Debian's /usr/bin/chromium through the page `meshctl dashboard` links to: the service graph with
golden metrics on its edges and a row per edge in its table, a trace search with filters, the
trace's waterfall (5 spans, the retry attempt), the proxies page listing the three sidecars.
Screenshots go to TEST_UNDECLARED_OUTPUTS_DIR. Without node_modules or chromium the test prints
SKIP, unless MESHLET_REQUIRE_BROWSER=1 (./dev test sets it), which makes that a failure.
"""

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import unittest

import cp_api
import sidecar_test as base
import telemetry_test
from sidecar_test import free_port, wait_for

SCRIPT = None  # set from argv


class DashboardTest(telemetry_test.ControlPlaneCase):
    def api_certificate_spki(self):
        """base64 SHA-256 of the API certificate's public key, which the browser is told to accept
        (--ignore-certificate-errors-spki-list): an operator's browser would trust the mesh CA."""
        context = cp_api.ssl_context(self.ca_file)
        with socket.create_connection(("127.0.0.1", self.api_port), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True)
        key = subprocess.run(["openssl", "x509", "-inform", "DER", "-pubkey", "-noout"],
                             input=der, capture_output=True, check=True).stdout
        spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=key,
                              capture_output=True, check=True).stdout
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

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
            return len(traces) == 1 and traces[0]["spanCount"] == 5
        self.assertTrue(wait_for(found, 10), traces)
        # The golden metrics of the three edges, reported to the --xds address.
        stat = []

        def reported():
            stat[:] = self.api("/api/v1/stat?window=1m")["items"]
            return sum(e["requests"] for e in stat) == 3
        self.assertTrue(wait_for(reported, 10), f"golden metrics in /api/v1/stat: {stat}")

        link = self.meshctl("dashboard").strip()
        prefix = f"https://127.0.0.1:{self.api_port}/dashboard/#token="
        self.assertTrue(link.startswith(prefix), link)
        with open(self.token_file) as f:
            self.assertEqual(link[len(prefix):], f.read().strip())

        shots = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or self.tmp
        r = subprocess.run(["node", SCRIPT, f"https://127.0.0.1:{self.api_port}",
                            link[len(prefix):], traces[0]["traceId"], shots,
                            self.api_certificate_spki()],
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
