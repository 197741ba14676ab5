"""Version skew both ways, with traffic: the previous release's control plane and sidecars
against this tree's.

Usage: skew_test.py CONTROL_PLANE SIDECAR [unittest args], with MESHLET_PREVIOUS_RELEASE naming a
directory that holds the previous release's `control-plane` and `sidecar` (`./dev test` builds
them from the tag CHANGELOG.md names; docs/upgrades.md). Without it the test prints SKIP and
passes.

Each case runs one control plane (its CA issuing workload certificates, xDS to every sidecar) and
the Service `backend`: an HTTP app behind the sidecar `backend-0`, called by `frontend-0` through
its outbound listener, mutual TLS and HTTP/2 between the two sidecars as the control plane
configures them. Cases, by which side runs the previous release:
  - the control plane new, both sidecars old (sidecars upgraded after the control plane);
  - the control plane new, one sidecar old and one new, both ways (during a rollout);
  - the control plane old, both sidecars new (a control plane rolled back);
  - the control plane new, backend's sidecars replaced old -> new one at a time while requests
    flow (a rolling upgrade).
Every request answers 200 from the app, through backend's sidecar, with frontend's verified
identity; no sidecar refused a configuration (NACK); the control plane reports the release each
sidecar runs. Under the new control plane, backend has a TrafficPolicy with `overload` settings:
the configuration sent to an old sidecar (as the control plane shows it) goes without what that
release does not read (the cluster's `overload` and `traffic_policy`, ADR 0071), a new sidecar's
has both, and the control plane names the capabilities each old sidecar lacks.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import cp_api
import sidecar_test
from mesh_util import (call_service, create_join_token, http_service, put_resource, spiffe,
                       start_plaintext_control_plane, start_xds_sidecar, stop_all, stop_process)
from sidecar_test import HttpUpstream, wait_for

NEW = {}  # "control-plane", "sidecar": this tree's binaries, from argv
OLD = {}  # the previous release's, from MESHLET_PREVIOUS_RELEASE
NAMESPACE = "default"
REQUESTS = 200
SERVICE = http_service("backend", NAMESPACE)
# Settings of fields the previous release does not read (Cluster.overload, and the
# Cluster.traffic_policy naming this object): for the new control plane only, whose API knows them.
TRAFFIC_POLICY = f"""apiVersion: meshlet.io/v1
kind: TrafficPolicy
metadata: {{name: backend, namespace: {NAMESPACE}}}
spec:
  target: backend
  overload: {{ejectionTime: 2s, penalty: 4}}
"""
BACKEND_CLUSTER = f"outbound|9080||backend.{NAMESPACE}"
# What a sidecar of the previous release (0.1.0) lacks, as the control plane names it.
PREVIOUS_LACKS = ["overload", "policy-source", "stream-reset-lifetime", "flood-drain",
                  "large-xds-messages", "service-routes", "on-demand", "jwt", "ca-rotation",
                  "federation", "gateway", "locality", "backend-tls", "cors",
                  "server-names", "external-services"]


def release(binary):
    """The release a binary reports ("meshlet sidecar 0.1.0" gives "0.1.0")."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1]


class Mesh:
    """One control plane and its sidecars in a directory of their own."""

    def __init__(self, control_plane):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.cp, self.api, self.ads, self.token = start_plaintext_control_plane(
            control_plane, self.tmp, "--xds-listen-host", "127.0.0.1", "--xds-debounce", "20ms",
            "--deregister-grace", "1s")
        self.sidecars, self.apps = [], []
        put_resource(self.api, self.token, f"namespaces/{NAMESPACE}/services/backend", SERVICE)
        if control_plane == NEW["control-plane"]:
            put_resource(self.api, self.token,
                         f"namespaces/{NAMESPACE}/trafficpolicies/backend", TRAFFIC_POLICY)

    def close(self):
        stop_all(self.sidecars, self.apps, self.cp)

    def start(self, binary, node_id, account, *args):
        token = create_join_token(self.api, self.token, account, "10m", NAMESPACE)
        s = start_xds_sidecar(self.tmp, self.ads, node_id, NAMESPACE, *args, join_token=token,
                              service_account=account, binary=binary)
        self.sidecars.append(s)
        return s

    def backend(self, binary, node_id="backend-0"):
        app = HttpUpstream(node_id)
        self.apps.append(app)
        return self.start(binary, node_id, "backend", "--node-service=backend",
                          "--node-label=app=backend", f"--node-port={app.port}")

    def frontend(self, binary):
        return self.start(binary, "frontend-0", "frontend", "--node-service=frontend")

    def proxies(self):
        """{node id: (sidecarVersion, [NACK texts], [capabilities it lacks])} from the control
        plane's API; a control plane older than the fields reports no version and no lacks."""
        status, body = self.api_get("/api/v1/proxies")
        out = {}
        for p in json.loads(body)["items"]:
            nacks = [t.get("nack") for t in p.get("types", {}).values() if t.get("nack")]
            out[p["id"]] = (p.get("sidecarVersion"), nacks, p.get("lacks"))
        return out

    def sent_cluster(self, node):
        """The cluster BACKEND_CLUSTER as the control plane sent it to `node` (its JSON)."""
        status, body = self.api_get(f"/api/v1/proxies/{node}/config")
        for t in json.loads(body)["types"]:
            for r in t["resources"] if t["type"] == "clusters" else []:
                if r["name"] == BACKEND_CLUSTER:
                    return r["resource"]
        return None

    def api_get(self, path):
        req = urllib.request.Request(cp_api.url(self.api, path),
                                     headers={"Authorization": "Bearer " + self.token})
        with cp_api.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()


class SkewTest(unittest.TestCase):
    def setUp(self):
        self.meshes = []

    def tearDown(self):
        for m in self.meshes:
            m.close()

    def mesh(self, control_plane):
        m = Mesh(control_plane)
        self.meshes.append(m)
        return m

    def call_ok(self, frontend, backends):
        """One request from frontend to backend: (ok, detail). ok when the app of one of
        `backends` (node ids) answered 200 through its sidecar with frontend's identity."""
        status, body = call_service(frontend.outbound, "backend:9080")
        if status != 200:
            return False, f"{status} {body[:200]}"
        answer = json.loads(body)
        if answer["upstream"] not in backends:
            return False, f"answered by {answer['upstream']}"
        identity = answer["headers"].get("x-meshlet-peer-identity")
        if identity != spiffe("frontend"):
            return False, f"peer identity {identity!r}: the hop was not mutual TLS"
        return True, ""

    def check_traffic(self, mesh, frontend, backend):
        # Configuration arrives by xDS: wait for the first answer, then count every one.
        self.assertTrue(wait_for(lambda: self.call_ok(frontend, {backend.name})[0], timeout=20),
                        self.call_ok(frontend, {backend.name})[1] + "\n" + frontend.log())
        failures = []
        for _ in range(REQUESTS):
            ok, detail = self.call_ok(frontend, {backend.name})
            if not ok:
                failures.append(detail)
        self.assertEqual(failures, [], f"{len(failures)} of {REQUESTS} requests failed")
        # The hop between the sidecars was mutual TLS: backend's sidecar completed handshakes.
        self.assertGreater(backend.stat("meshlet_downstream_tls_handshakes_total"), 0)
        self.assertEqual(frontend.stat("meshlet_upstream_cx_tls_handshake_fail_total"), 0)
        for node, (_, nacks, _) in mesh.proxies().items():
            self.assertEqual(nacks, [], f"{node} refused its configuration")

    def assert_reported(self, mesh, expected):
        """The control plane (this tree's) reports each sidecar's own release."""
        proxies = mesh.proxies()
        for node, binary in expected.items():
            self.assertEqual(proxies[node][0], "meshlet-sidecar " + release(binary), node)

    def assert_gated(self, mesh, expected):
        """Each sidecar got its backend cluster in the form its release reads: an old one
        without overload and traffic_policy (and it is named lacking them), a new one with."""
        proxies = mesh.proxies()
        for node, binary in expected.items():
            old = binary == OLD["sidecar"]
            self.assertEqual(proxies[node][2], PREVIOUS_LACKS if old else [], node)
            cluster = mesh.sent_cluster(node)
            self.assertIsNotNone(cluster, f"{node}: no {BACKEND_CLUSTER} sent")
            for field in ("overload", "traffic_policy"):
                self.assertEqual(field in cluster, not old, f"{node}: {field} in {cluster}")

    def run_case(self, control_plane, caller, callee):
        """frontend (on `caller`) calls backend (on `callee`) under `control_plane`."""
        m = self.mesh(control_plane)
        backend, frontend = m.backend(callee), m.frontend(caller)
        self.check_traffic(m, frontend, backend)
        if control_plane == NEW["control-plane"]:
            self.assert_reported(m, {"backend-0": callee, "frontend-0": caller})
            self.assert_gated(m, {"backend-0": callee, "frontend-0": caller})

    def test_new_control_plane_old_sidecars(self):
        self.run_case(NEW["control-plane"], OLD["sidecar"], OLD["sidecar"])

    def test_new_control_plane_old_caller_new_callee(self):
        self.run_case(NEW["control-plane"], OLD["sidecar"], NEW["sidecar"])

    def test_new_control_plane_new_caller_old_callee(self):
        self.run_case(NEW["control-plane"], NEW["sidecar"], OLD["sidecar"])

    def test_old_control_plane_new_sidecars(self):
        # A control plane older than sidecarVersion in /api/v1/proxies: nothing to compare.
        self.run_case(OLD["control-plane"], NEW["sidecar"], NEW["sidecar"])

    def test_rolling_upgrade_of_the_callee_loses_no_request(self):
        m = self.mesh(NEW["control-plane"])
        old_backends = [m.backend(OLD["sidecar"], f"backend-{i}") for i in range(2)]
        frontend = m.frontend(OLD["sidecar"])
        names = {b.name for b in old_backends}
        self.assertTrue(wait_for(lambda: self.call_ok(frontend, names)[0], timeout=20))
        failures, sent = [], [0]
        stop = threading.Event()
        serving = set(names)

        def traffic():
            while not stop.is_set():
                ok, detail = self.call_ok(frontend, set(serving))
                sent[0] += 1
                if not ok:
                    failures.append(detail)
                time.sleep(0.005)

        t = threading.Thread(target=traffic)
        t.start()
        try:
            # One member at a time: start its replacement on the new release, wait until the
            # caller has it, then stop the old one (SIGTERM: it drains and reports not ready,
            # and the control plane withdraws its endpoint).
            for i, old in enumerate(old_backends):
                # It may answer as soon as it registers, before m.backend() returns.
                serving.add(f"backend-new-{i}")
                new = m.backend(NEW["sidecar"], f"backend-new-{i}")
                self.assertTrue(wait_for(
                    lambda: new.stat("meshlet_downstream_tls_handshakes_total") > 0, timeout=20),
                    "the caller never reached " + new.name)
                m.sidecars.remove(old)
                # SIGTERM, as the kubelet sends: the sidecar drains (the requests it carries
                # finish) and exits; a SIGKILL would cut a response it is forwarding.
                stop_process(old.proc, timeout=15)
                old.stop()
                serving.discard(old.name)
            time.sleep(0.5)
        finally:
            stop.set()
            t.join()
        self.assertGreater(sent[0], 50)
        self.assertEqual(failures, [], f"{len(failures)} of {sent[0]} requests failed")
        self.assert_reported(m, {"backend-new-0": NEW["sidecar"], "backend-new-1": NEW["sidecar"]})
        print(f"\nrolling upgrade: {sent[0]} requests, 0 failed", file=sys.stderr)


if __name__ == "__main__":
    NEW["control-plane"], NEW["sidecar"] = (os.path.abspath(a) for a in sys.argv[1:3])
    sidecar_test.SIDECAR = NEW["sidecar"]
    previous = os.environ.get("MESHLET_PREVIOUS_RELEASE", "")
    if not previous:
        print("SKIP: skew_test: MESHLET_PREVIOUS_RELEASE is not set (./dev test builds the "
              "previous release and sets it)")
        sys.exit(0)
    for name in ("control-plane", "sidecar"):
        OLD[name] = os.path.join(previous, name)
        if not os.access(OLD[name], os.X_OK):
            sys.exit(f"skew_test: MESHLET_PREVIOUS_RELEASE={previous} has no {name}")
    print(f"skew: previous release {release(OLD['sidecar'])}, this tree "
          f"{release(NEW['sidecar'])}", file=sys.stderr)
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
