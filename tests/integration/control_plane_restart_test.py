"""Sidecars converge after the control plane is killed and restarted, whatever changed.

Usage: control_plane_restart_test.py CONTROL_PLANE MESHCTL SIDECAR SERVICES_YAML [unittest args]

The real control plane, meshctl and sidecars on 127.0.0.1 (plaintext xDS): Service reviews with a
v1 and a v2 workload, each a sidecar in front of a Python app, and two callers, frontend-sotw
(state of the world) and frontend-delta (incremental). An HTTPRoute sends reviews to the subset
v2, so every sidecar holds a route whose only cluster is the v2 subset's.

1. The control plane gets SIGKILL and starts again on the same data directory and port; the
   sidecars reconnect. The route moves to v1 (the v2 cluster is no longer needed): every sidecar
   ACKs every type within a few seconds, none NACKs, and both callers reach v1 only.
2. The sidecars are stopped (SIGSTOP) while the control plane is killed and restarted and the
   route moves back to v2, so they reconnect to a control plane whose view differs from theirs:
   its first push drops the v1 cluster their route still names. They keep it until the route
   moves, ACK everything, and reach v2 only.
"""

import json
import os
import signal
import sys
import tempfile
import time
import unittest
import cp_api
import sidecar_test
from mesh_util import (call_service, meshctl, reviews_route_to, reviews_subset_cluster,
                       start_control_plane, start_xds_sidecar, stop_all, write_meshctl_context)
from ports import free_port
from sidecar_test import HttpUpstream, wait_for

CONTROL_PLANE = MESHCTL = SERVICES = None  # set from argv

V1 = reviews_subset_cluster("v1")
V2 = reviews_subset_cluster("v2")
ROUTES = "type.googleapis.com/meshlet.xds.RouteConfiguration"
# Sidecars of this release get their Service ports' virtual hosts as ServiceRoutes.
SERVICE_ROUTES = "type.googleapis.com/meshlet.xds.ServiceRoute"


class ControlPlaneRestartTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.data = os.path.join(self.tmp, "cp-data")
        self.api = f"127.0.0.1:{free_port()}"
        self.ads = f"127.0.0.1:{free_port()}"
        self.sidecars, self.apps = [], []
        self.start_cp()
        self.context = write_meshctl_context(os.path.join(self.tmp, "meshctl.yaml"), self.api,
                                             os.path.join(self.data, "api-token"))

    def tearDown(self):
        for s in self.sidecars:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGCONT)
        stop_all(self.sidecars, self.apps, self.cp)

    def start_cp(self):
        self.cp, _, _ = start_control_plane(
            CONTROL_PLANE, os.path.join(self.tmp, "cp.log"), "--data-dir", self.data,
            "--api-address", self.api, "--xds-plaintext", "--xds-address", self.ads,
            "--xds-listen-host", "127.0.0.1")
        with open(os.path.join(self.data, "api-token")) as f:
            self.token = f.read().strip()

    def kill_cp(self):
        self.cp.send_signal(signal.SIGKILL)
        self.assertEqual(self.cp.wait(timeout=10), -signal.SIGKILL)

    def meshctl(self, *args, stdin=None):
        return meshctl(MESHCTL, self.context, *args, stdin=stdin)

    def apply(self, yaml_text):
        self.meshctl("apply", "-f", "-", stdin=yaml_text)

    def proxies(self):
        """The control plane's proxy status (`meshctl proxy-status`'s source), by node id."""
        status, body = cp_api.request(self.api, "GET", "/api/v1/proxies", token=self.token)
        if status != 200:
            raise AssertionError(f"GET /api/v1/proxies: {status} {body}")
        return {p["id"]: p for p in json.loads(body)["items"]}

    def converged(self, routes_before=None):
        """Whether every sidecar has a stream with no type awaiting an answer or NACKed, and,
        with `routes_before` (routes_acked()'s result earlier), has ACKed other routes since."""
        proxies = self.proxies()
        if len(proxies) != len(self.sidecars):
            return False
        if any(t["state"] in ("PENDING", "NACKED")
               for p in proxies.values() for t in p["types"].values()):
            return False
        return routes_before is None or all(
            version != routes_before.get(id) for id, version in self.routes_acked().items())

    def routes_acked(self):
        """The route configuration and ServiceRoute versions each sidecar ACKed, by node id."""
        return {id: (p["types"][ROUTES]["acked"], p["types"].get(SERVICE_ROUTES, {}).get("acked"))
                for id, p in self.proxies().items()}

    def nacks(self):
        """NACKs the control plane saw on the current streams (text by node and type), and the
        sidecars that refused an update since they started (by node)."""
        seen = {(id, url): t["lastNack"]["message"] for id, p in self.proxies().items()
                for url, t in p["types"].items() if "lastNack" in t}
        refused = {}
        for s in self.sidecars:
            for line in s.stat_lines("meshlet_xds_client_updates_total"):
                if 'result="nack"' in line and not line.endswith(": 0"):
                    refused[s.name] = line
        return seen, refused

    def upstream(self, caller):
        status, body = call_service(caller.outbound, "reviews:9080", "/")
        return json.loads(body)["upstream"] if status == 200 else f"{status} {body}"

    def clusters(self, sidecar):
        return {c["name"] for c in json.loads(sidecar.get("/clusters")[1])["clusters"]}

    def test_sidecars_converge_after_a_restart_with_or_without_a_changed_view(self):
        with open(SERVICES) as f:
            self.apply(f.read() + "---\n" + reviews_route_to("v2"))
        self.apps = [HttpUpstream("v1"), HttpUpstream("v2")]
        for version, app in zip(("v1", "v2"), self.apps):
            self.sidecars.append(start_xds_sidecar(
                self.tmp, self.ads, f"reviews-{version}-0", "default", "--node-service=reviews",
                f"--node-port={app.port}", f"--node-label=version={version}"))
        callers = [start_xds_sidecar(self.tmp, self.ads, "frontend-sotw", "default",
                                     "--node-service=frontend", "--xds-delta=false"),
                   start_xds_sidecar(self.tmp, self.ads, "frontend-delta", "default",
                                     "--node-service=frontend", "--xds-delta=true")]
        self.sidecars += callers
        self.assertTrue(wait_for(self.converged, timeout=10), self.proxies())
        for caller in callers:
            self.assertTrue(wait_for(lambda: self.upstream(caller) == "v2", timeout=5),
                            self.upstream(caller))

        # 1. Killed and restarted; the same view at reconnect; then the route moves to v1.
        self.kill_cp()
        self.start_cp()
        self.assertTrue(wait_for(self.converged, timeout=10), self.proxies())
        before = self.routes_acked()
        self.apply(reviews_route_to("v1"))
        applied = time.monotonic()
        self.assertTrue(wait_for(lambda: self.converged(before), timeout=5), self.proxies())
        print(f"restart, then a route change: every sidecar ACKed within "
              f"{(time.monotonic() - applied) * 1000:.0f} ms", file=sys.stderr)
        for caller in callers:
            self.assertTrue(wait_for(lambda: self.upstream(caller) == "v1", timeout=3),
                            self.upstream(caller))
            self.assertEqual({self.upstream(caller) for _ in range(20)}, {"v1"})
            self.assertTrue(wait_for(lambda: V2 not in self.clusters(caller), timeout=3),
                            self.clusters(caller))
        self.assertEqual(self.nacks(), ({}, {}))

        # 2. Away while the control plane restarts and the route moves back to v2: their first
        # push on the new stream drops the v1 cluster their route names.
        before = self.routes_acked()
        for s in self.sidecars:
            s.proc.send_signal(signal.SIGSTOP)
        try:
            self.kill_cp()
            self.start_cp()
            self.apply(reviews_route_to("v2"))
        finally:
            for s in self.sidecars:
                s.proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        self.assertTrue(wait_for(lambda: self.converged(before) and all(
            self.upstream(caller) == "v2" for caller in callers), timeout=10), self.proxies())
        print(f"a changed view at reconnect: every sidecar ACKed and routed to v2 within "
              f"{(time.monotonic() - resumed) * 1000:.0f} ms of SIGCONT", file=sys.stderr)
        for caller in callers:
            self.assertEqual({self.upstream(caller) for _ in range(20)}, {"v2"})
            self.assertTrue(wait_for(lambda: V1 not in self.clusters(caller), timeout=3),
                            self.clusters(caller))
        self.assertEqual(self.nacks(), ({}, {}))
        # The state-of-the-world caller kept v1 while its route named it, then dropped it.
        log = callers[0].log()
        self.assertIn(f'xds: keeping clusters "{V1}", which the control plane removed', log)
        self.assertIn(f'xds: dropped clusters "{V1}"', log)


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, sidecar_test.SIDECAR, SERVICES = (
        os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=sys.argv[:1] + sys.argv[5:], verbosity=2)
