"""Live tap (docs/control-plane.md "Live tap") with the real control plane, two sidecars and
meshctl: `meshctl tap` shows the requests of a service and of a workload with their fields,
headers only for admin, the rate and duration hold, every tap is audited, and nothing is tapped
once a tap ended (by its duration, or by Ctrl-C).

Usage: tap_test.py CONTROL_PLANE MESHCTL SIDECAR

frontend-0 calls backend (backend-0 in front of a Python app) over mesh mTLS, about 40 requests a
second from a thread, for the whole test.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import browser
import cp_api
import sidecar_test
from ports import free_port
from mesh_util import (call_service, create_join_token, spiffe, start_plaintext_control_plane,
                       start_xds_sidecar, stop_all, write_meshctl_context)
from sidecar_test import HttpUpstream, wait_for

CONTROL_PLANE = MESHCTL = BROWSER_SCRIPT = None  # set from argv

SERVICES = """apiVersion: meshlet.io/v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: meshlet.io/v1
kind: Service
metadata: {name: ghost, namespace: default}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
"""


class TapTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.cp, cls.api, cls.ads, cls.api_token = start_plaintext_control_plane(
            CONTROL_PLANE, cls.tmp, "--xds-listen-host", "127.0.0.1", "--xds-debounce", "20ms",
            "--tap-max-rate", "50", "--tap-max-duration", "20s")
        cls.data = os.path.join(cls.tmp, "cp-data")
        cls.context = write_meshctl_context(os.path.join(cls.tmp, "admin.yaml"), cls.api,
                                            os.path.join(cls.data, "api-token"))
        cls.app = HttpUpstream("backend-app")
        cls.sidecars = []
        cls.stop_traffic = threading.Event()
        try:
            cls.backend = cls.start_sidecar("backend", app_port=cls.app.port)
            cls.frontend = cls.start_sidecar("frontend")
            # ghost's app port has nothing listening: its sidecar answers 503 itself.
            cls.ghost = cls.start_sidecar("ghost", app_port=free_port())
            cls.run_meshctl(cls.context, "apply", "-f", "-", stdin=SERVICES)
            assert wait_for(lambda: call_service(cls.frontend.outbound, "backend:9080")[0] == 200,
                            timeout=15), "frontend never reached backend"
            viewer = cls.run_meshctl(cls.context, "operator-token", "create", "vera", "--role",
                                     "viewer").stdout.strip()
            viewer_file = os.path.join(cls.tmp, "viewer-token")
            with open(viewer_file, "w") as f:
                f.write(viewer + "\n")
            cls.viewer_context = write_meshctl_context(os.path.join(cls.tmp, "viewer.yaml"),
                                                       cls.api, viewer_file)
            cls.traffic = threading.Thread(target=cls.send_traffic, daemon=True)
            cls.traffic.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stop_traffic.set()
        stop_all(cls.sidecars, [cls.app], cls.cp)

    @classmethod
    def start_sidecar(cls, service, app_port=None):
        token = create_join_token(cls.api, cls.api_token, service, "10m")
        s = start_xds_sidecar(cls.tmp, cls.ads, f"{service}-0", "default",
                              f"--node-service={service}",
                              *([f"--node-port={app_port}"] if app_port else []),
                              "--tap-flush-interval=100ms", join_token=token,
                              service_account=service, concurrency=2)
        cls.sidecars.append(s)
        return s

    @classmethod
    def send_traffic(cls):
        i = 0
        while not cls.stop_traffic.is_set():
            call_service(cls.frontend.outbound, "backend:9080", f"/hello/{i}?q=1")
            i += 1
            time.sleep(0.025)

    @staticmethod
    def run_meshctl(context, *args, stdin=None, expect=0, timeout=40):
        p = subprocess.run([MESHCTL, *args], input=stdin, capture_output=True, text=True,
                           env=dict(os.environ, MESHCTL_CONFIG=context), timeout=timeout)
        if expect is not None and p.returncode != expect:
            raise AssertionError(f"meshctl {args} exited {p.returncode}, not {expect}:\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def tap_json(self, *args, context=None):
        p = self.run_meshctl(context or self.context, "tap", *args, "-o", "json")
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def test_service_tap_shows_inbound_requests_with_their_fields(self):
        started = time.monotonic()
        p = self.run_meshctl(self.viewer_context, "tap", "svc/backend", "--rate", "20",
                             "--duration", "3s")
        took = time.monotonic() - started
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        self.assertTrue(lines, p.stderr)
        self.assertIn("inbound  backend-0 GET backend:9080/hello/", lines[0])
        self.assertRegex(lines[0], r" status=200 latency=[0-9.]+ms caller=" +
                         spiffe("frontend").replace(".", r"\."))
        self.assertIn("tapping service default/backend at 20 requests/s for 3s: backend-0",
                      p.stderr)
        self.assertIn("tap ended (", p.stderr)
        # The duration holds: the tap ends at 3s (and the sidecars' last batches).
        self.assertLess(took, 3 + 4)
        self.assertGreaterEqual(took, 3)

    def test_workload_tap_outbound_names_route_cluster_and_own_identity(self):
        events = self.tap_json("default/frontend-0", "--direction", "outbound", "--rate", "10",
                               "--duration", "2s")
        kinds = [e["kind"] for e in events]
        self.assertEqual(kinds[0], "TapStarted")
        self.assertEqual(kinds[-1], "TapEnded")
        self.assertIn("TapProxy", kinds)
        taps = [e for e in events if e["kind"] == "TapEvent"]
        self.assertTrue(taps, events)
        e = taps[0]
        self.assertEqual((e["proxy"], e["direction"], e["method"], e["authority"], e["status"]),
                         ("frontend-0", "outbound", "GET", "backend:9080", 200))
        self.assertTrue(e["path"].startswith("/hello/") and e["path"].endswith("?q=1"), e)
        self.assertEqual(e["caller"], spiffe("frontend"))
        self.assertEqual(e["cluster"], "outbound|9080||backend.default")
        self.assertIn("routeName", e)
        self.assertRegex(e["upstream"], r"^127\.0\.0\.1:\d+$")
        self.assertRegex(e["requestId"], r"^[0-9a-f-]{36}$")
        self.assertGreater(e["latencyMs"], 0)
        self.assertNotIn("requestHeaders", e)

    def first_event(self, args, tapped, call):
        """The first event of a 3 s `meshctl tap ARGS -o json` while `call` runs three times once
        the `tapped` sidecar has the tap."""
        proc = subprocess.Popen([MESHCTL, "tap", *args, "--duration", "3s", "-o", "json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, MESHCTL_CONFIG=self.context))
        try:
            self.assertTrue(wait_for(lambda: tapped.stat("meshlet_tap_active") == 1, timeout=5))
            for _ in range(3):
                call()
            out, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
        events = [json.loads(l) for l in out.splitlines() if '"TapEvent"' in l]
        self.assertTrue(events, out + err)
        return events[0]

    def test_a_request_the_proxy_answered_itself_is_tapped(self):
        # An unknown host: the outbound route table's own 404 (route no-service), no upstream.
        e = self.first_event(["default/frontend-0", "--authority", "nope:9080"], self.frontend,
                             lambda: self.assertNotEqual(
                                 call_service(self.frontend.outbound, "nope:9080")[0], 200))
        self.assertEqual((e["direction"], e["authority"], e["status"], e["routeName"]),
                         ("outbound", "nope:9080", 404, "no-service"), e)
        self.assertNotIn("cluster", e)
        self.assertNotIn("upstream", e)

    def test_a_proxys_own_error_is_named(self):
        e = self.first_event(["default/ghost-0"], self.ghost,
                             lambda: self.assertEqual(
                                 call_service(self.frontend.outbound, "ghost:9080")[0], 503))
        self.assertEqual((e["direction"], e["status"], e["caller"]),
                         ("inbound", 503, spiffe("frontend")), e)
        self.assertIn("UF", e["flags"], e)
        self.assertTrue(e["error"].startswith("ghost-0; flag=UF"), e)

    def test_headers_only_for_admin(self):
        p = self.run_meshctl(self.viewer_context, "tap", "svc/backend", "--headers",
                             "--duration", "2s", expect=1)
        self.assertIn("headers=true: a tap with request and response headers needs the admin "
                      "role; vera has viewer", p.stderr)
        events = self.tap_json("svc/backend", "--headers", "--rate", "5", "--duration", "2s")
        taps = [e for e in events if e["kind"] == "TapEvent"]
        self.assertTrue(taps, events)
        request = dict(taps[0]["requestHeaders"])
        self.assertEqual(request[":method"], "GET")
        self.assertEqual(request["x-meshlet-peer-identity"], spiffe("frontend"))
        self.assertEqual(dict(taps[0]["responseHeaders"])[":status"], "200")

    def test_rate_and_limits_hold(self):
        # About 40 requests/s for 3 s; at most 2/s (burst 2) are shown, the rest counted.
        events = self.tap_json("svc/backend", "--rate", "2", "--duration", "3s")
        taps = [e for e in events if e["kind"] == "TapEvent"]
        self.assertGreaterEqual(len(taps), 2)
        self.assertLessEqual(len(taps), 2 + 2 * 3 + 1)
        dropped = events[-1]["dropped"]
        self.assertGreater(dropped["sidecarRate"] + dropped["tapRate"], 30, events[-1])
        # The control plane's limits: clear 4xx, counted.
        p = self.run_meshctl(self.context, "tap", "svc/backend", "--rate", "500", expect=1)
        self.assertIn("rate=500: above this control plane's --tap-max-rate 50", p.stderr)
        p = self.run_meshctl(self.context, "tap", "svc/backend", "--duration", "1h", expect=1)
        self.assertIn("above this control plane's --tap-max-duration 20s", p.stderr)
        p = self.run_meshctl(self.context, "tap", "svc/nothing", "--duration", "1s", expect=1)
        self.assertIn("no sidecar of service default/nothing is connected", p.stderr)

    def test_every_tap_is_audited(self):
        self.run_meshctl(self.viewer_context, "tap", "svc/backend", "--rate", "3", "--duration",
                         "1s")
        self.run_meshctl(self.viewer_context, "tap", "svc/backend", "--headers", "--duration",
                         "1s", expect=1)
        with open(os.path.join(self.data, "audit.log")) as f:
            records = [json.loads(l) for l in f if '"/api/v1/tap"' in l]
        by_vera = [r for r in records if r["principal"] == "vera"]
        self.assertGreaterEqual(len(by_vera), 2, records)
        ok = [r for r in by_vera if r["status"] == 200][-1]
        self.assertEqual(ok["tap"], {"workload": "", "service": "default/backend", "rate": "3",
                                     "duration": "1s", "headers": False})
        refused = [r for r in by_vera if r["status"] == 403][-1]
        self.assertTrue(refused["tap"]["headers"])
        self.assertIn("needs the admin role", refused["error"])

    def test_nothing_is_tapped_after_the_tap_ends(self):
        self.run_meshctl(self.context, "tap", "svc/backend", "--rate", "50", "--duration", "1s")
        self.assertTrue(wait_for(lambda: self.backend.stat("meshlet_tap_active") == 0, timeout=5))
        sent = self.backend.stat("meshlet_tap_events_total")
        time.sleep(1)
        self.assertEqual(self.backend.stat("meshlet_tap_events_total"), sent)

        # Ctrl-C: meshctl exits at once and cleanly, the sidecar's tap stops.
        proc = subprocess.Popen([MESHCTL, "tap", "svc/backend", "--duration", "20s"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, MESHCTL_CONFIG=self.context))
        first = proc.stdout.readline()
        self.assertIn("inbound  backend-0 GET", first)
        self.assertEqual(self.backend.stat("meshlet_tap_active"), 1)
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=5), 0)
        proc.stdout.close()
        proc.stderr.close()
        self.assertTrue(wait_for(lambda: self.backend.stat("meshlet_tap_active") == 0, timeout=5))
        sent = self.backend.stat("meshlet_tap_events_total")
        time.sleep(1)
        self.assertEqual(self.backend.stat("meshlet_tap_events_total"), sent)

    def test_live_tab_in_chromium(self):
        browser.require(self, BROWSER_SCRIPT)
        shots = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or self.tmp
        port = int(self.api.rsplit(":", 1)[1])
        r = subprocess.run(["node", BROWSER_SCRIPT, f"https://{self.api}", self.api_token, shots,
                            cp_api.certificate_spki(port, cp_api.ca_file_for(self.api)),
                            spiffe("frontend")],
                           capture_output=True, text=True, timeout=120)
        print(r.stdout, r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("PASS live", r.stdout)
        self.assertGreater(os.path.getsize(os.path.join(shots, "dashboard-live.png")), 10000)
        self.assertTrue(wait_for(lambda: self.backend.stat("meshlet_tap_active") == 0, timeout=5))


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    MESHCTL = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    BROWSER_SCRIPT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
