"""Route status with two control-plane revisions (ADR 0076): the unnamed revision and `canary`
follow one (fake) Kubernetes API server, each with its own store. Each revision's leader mirrors
the cluster's policy into its own store, but route status is written by one of them only: the
holder of the Lease meshlet-route-status, which the default revision (the one the tag `default`
points at, else the unnamed one) takes over from any other.

Usage: revision_status_test.py CONTROL_PLANE [unittest args]

Shown:
- both revisions mirror an HTTPRoute into their stores; only the unnamed revision (the default)
  holds meshlet-route-status and patches the route's status, canary never does;
- the tag `default` pointed at canary (its MutatingWebhookConfiguration, as `meshctl tag set
  default --revision canary` writes it): canary claims the Lease, the unnamed revision hands it
  over, and from then on only canary writes status, the two never both leading;
- the tag removed, the unnamed revision takes it back.
"""

import os
import sys
import tempfile
import time
import unittest

import cp_api
from fake_kubernetes_api import FakeApiServer
from mesh_util import make_ca, make_server_cert, start_control_plane, stop_process
from sidecar_test import wait_for

CONTROL_PLANE = None  # set from argv
# Revision name ("" the unnamed one) -> replica name.
REVISIONS = {"": "cp-unnamed", "canary": "cp-canary"}
STATUS_LEASE = ("meshlet-system", "meshlet-route-status")


def http_route(name, path, generation=1):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "shop", "uid": "u-" + name,
                         "generation": generation},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "ratings",
                                     "port": 80}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": "ratings", "port": 80}]}]}}


def default_tag(revision):
    """The tag `default`'s configuration as meshctl tag set writes it (its labels are what the
    control planes read)."""
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "meshlet-revision-tag-default",
                         "labels": {"meshlet.io/tag": "default", "meshlet.io/rev": revision}},
            "webhooks": []}


class RevisionStatusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t = cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cluster_ca = make_ca(t, "cluster-ca")
        cls.fake = FakeApiServer(make_server_cert(t, "apiserver", cluster_ca),
                                 [name + "-token" for name in REVISIONS.values()])
        cls.cps = {}
        try:
            for revision, name in REVISIONS.items():
                token_file = os.path.join(t, name + ".token")
                with open(token_file, "w") as f:
                    f.write(name + "-token\n")
                log = os.path.join(t, name + ".log")
                data = os.path.join(t, name + "-data")
                proc, api, _ = start_control_plane(
                    CONTROL_PLANE, log, "--data-dir", data, "--replica-name", name,
                    *(("--revision", revision) if revision else ()),
                    "--api-address", "127.0.0.1:0", "--xds-plaintext", "--xds-address",
                    "127.0.0.1:0", "--webhook-address=off", "--otlp-address=",
                    "--zipkin-address=", "--kubernetes-api", cls.fake.address,
                    "--kubernetes-token-file", token_file, "--kubernetes-ca-file",
                    cluster_ca[0], "--kubernetes-watch-timeout", "2s",
                    "--leader-election-lease-duration", "2s",
                    "--leader-election-renew-deadline", "1s",
                    "--leader-election-retry-period", "200ms",
                    "--revision-tags-interval", "300ms")
                with open(os.path.join(data, "api-token")) as f:
                    cls.cps[revision] = {"proc": proc, "api": api, "token": f.read().strip(),
                                         "log": log, "name": name}
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for cp in cls.cps.values():
            if cp["proc"].poll() is None:
                stop_process(cp["proc"])
        cls.fake.stop()

    def get(self, revision, path):
        cp = self.cps[revision]
        return cp_api.request(cp["api"], "GET", path, token=cp["token"])

    def logs(self):
        out = []
        for cp in self.cps.values():
            with open(cp["log"]) as f:
                out.append(f"--- {cp['name']}\n{f.read()[-4000:]}")
        return "\n".join(out)

    def metric(self, revision, metric):
        _, text = self.get(revision, "/metrics")
        for line in text.splitlines():
            if line.startswith(metric + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def status_holder(self):
        with self.fake.cond:
            lease = self.fake.leases.get(STATUS_LEASE)
            if lease is None:
                return None, None
            return (lease["spec"].get("holderIdentity"),
                    (lease["metadata"].get("annotations") or {}).get("meshlet.io/revision"))

    def status_writers(self, since):
        """The tokens that patched a route's status after the `since`-th write."""
        with self.fake.cond:
            return {who for who, method, path, _ in self.fake.writes[since:]
                    if path.endswith("/status") and method == "PATCH"}

    def leading(self):
        """Revisions whose control plane says it writes route status now."""
        return {r for r in self.cps if self.metric(r, "meshlet_cp_route_status_leader") == 1}

    def route_observed(self, generation):
        with self.fake.cond:
            obj = self.fake.objects["httproutes"].get(("shop", "ratings"), {})
            parents = obj.get("status", {}).get("parents", [])
        return any(c.get("observedGeneration") == generation
                   for p in parents for c in p.get("conditions", []))

    def watch_leaders(self, seconds):
        """Samples who says it writes status for `seconds`; fails on two at once."""
        end = time.time() + seconds
        seen = []
        while time.time() < end:
            now = self.leading()
            self.assertLessEqual(len(now), 1, f"two revisions write status at once: {now}")
            seen.append(now)
            time.sleep(0.05)
        return seen

    def test_one_revision_writes_status_and_the_default_tag_moves_it(self):
        route = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/ratings"
        self.fake.put("services", {
            "kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "ratings", "namespace": "shop", "uid": "u-svc"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.30", "clusterIPs": ["10.96.0.30"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        self.fake.put("httproutes", http_route("ratings", "/v1", generation=1))
        # Both revisions mirror the route into their own stores.
        for revision in self.cps:
            self.assertTrue(wait_for(lambda r=revision: self.get(r, route)[0] == 200, 15),
                            self.logs())
        # The unnamed revision is the default one: it holds the status Lease and writes.
        self.assertTrue(wait_for(lambda: self.status_holder() == ("cp-unnamed", "default"), 10),
                        (self.status_holder(), self.logs()))
        self.assertTrue(wait_for(lambda: self.route_observed(1), 10), self.logs())
        self.watch_leaders(1.0)
        self.assertEqual(self.leading(), {""})
        with self.fake.cond:
            mark = len(self.fake.writes)
        self.fake.put("httproutes", http_route("ratings", "/v2", generation=2))
        self.assertTrue(wait_for(lambda: self.route_observed(2), 10), self.logs())
        self.assertEqual(self.status_writers(mark), {"cp-unnamed-token"})

        # The tag default now points at canary: canary claims the Lease and writes from then on.
        with self.fake.cond:
            mark = len(self.fake.writes)
        self.fake.put("mutatingwebhookconfigurations", default_tag("canary"))
        moved = time.time()
        seen = []
        while self.status_holder() != ("cp-canary", "canary") and time.time() - moved < 10:
            seen += self.watch_leaders(0.2)
        self.assertEqual(self.status_holder(), ("cp-canary", "canary"), self.logs())
        # The tags are read every 300 ms, the Lease every 200 ms: a claim, a hand-over, a take.
        self.assertLess(time.time() - moved, 5)
        seen += self.watch_leaders(1.0)
        self.assertEqual(self.leading(), {"canary"})
        with open(self.cps[""]["log"]) as f:
            self.assertIn("cp-canary (preferred) claimed Lease meshlet-system/meshlet-route-status",
                          f.read())
        with self.fake.cond:
            mark = len(self.fake.writes)
        self.fake.put("httproutes", http_route("ratings", "/v3", generation=3))
        self.assertTrue(wait_for(lambda: self.route_observed(3), 10), self.logs())
        self.assertEqual(self.status_writers(mark), {"cp-canary-token"})

        # The tag removed: the unnamed revision is the default again and takes it back.
        self.fake.delete("mutatingwebhookconfigurations", "", "meshlet-revision-tag-default")
        self.assertTrue(wait_for(lambda: self.status_holder() == ("cp-unnamed", "default"), 10),
                        (self.status_holder(), self.logs()))
        self.watch_leaders(1.0)
        self.assertEqual(self.leading(), {""})
        with self.fake.cond:
            mark = len(self.fake.writes)
        self.fake.put("httproutes", http_route("ratings", "/v4", generation=4))
        self.assertTrue(wait_for(lambda: self.route_observed(4), 10), self.logs())
        self.assertEqual(self.status_writers(mark), {"cp-unnamed-token"})
        # Each revision's own Lease is still held by its own replica (mirroring stays per
        # revision: each store needs the cluster's policy).
        self.assertEqual(self.fake.lease_holder("meshlet-system", "meshlet-control-plane"),
                         "cp-unnamed")
        self.assertEqual(self.fake.lease_holder("meshlet-system", "meshlet-control-plane-canary"),
                         "cp-canary")
        for revision in self.cps:
            self.assertEqual(self.metric(revision, "meshlet_cp_leader"), 1)


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
