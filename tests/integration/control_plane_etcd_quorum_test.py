"""A control plane on a real 3-member etcd cluster through member failures and a lost quorum.

Usage: control_plane_etcd_quorum_test.py CONTROL_PLANE MESHCTL SIDECAR SERVICES_YAML [unittest args]

Three etcd members on 127.0.0.1, started by the test; one control plane with --store naming all
three (--etcd-timeout 2s); a sidecar of Service reviews connected to it, and an app behind it.

1. The member the control plane talks to first is killed: `meshctl apply` still succeeds (the
   store moves to the next member; the time is printed) and the sidecar follows.
2. A second member is killed, so the cluster has no quorum: `meshctl apply` exits non-zero
   saying the policy store is unavailable, nothing wrong is pushed, and requests through the
   sidecar to its app keep succeeding. While four more applies wait on the store, API paths that
   do not need it answer within a second and a sidecar connecting then gets its configuration
   (store calls run off the control plane's loop).
3. Both members come back: an apply succeeds again and the sidecar converges.

Without the etcd binary the test prints SKIP.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import cp_api
import sidecar_test
from etcd_util import EtcdCluster, etcd_installed
from mesh_util import (meshctl, reviews_route_to, reviews_subset_cluster,
                       start_plaintext_control_plane, start_xds_sidecar, stop_process,
                       write_meshctl_context)
from sidecar_test import HttpUpstream, wait_for

CONTROL_PLANE = MESHCTL = SERVICES = None  # set from argv
V1 = reviews_subset_cluster("v1")
V2 = reviews_subset_cluster("v2")


class ControlPlaneEtcdQuorumTest(unittest.TestCase):
    def setUp(self):
        if not etcd_installed():
            self.skipTest("etcd is not installed (Debian package etcd-server)")
        self.tmp = tempfile.mkdtemp(prefix="cp-etcd-quorum-")
        self.etcd = EtcdCluster(self.tmp, members=3)
        self.cp = None
        self.sidecar = None
        self.late = None
        self.app = None
        self.addCleanup(self.cleanup)
        self.etcd.start()
        self.cp, self.api, self.ads, _ = start_plaintext_control_plane(
            CONTROL_PLANE, self.tmp, *self.etcd.store_args(), "--etcd-timeout", "2s")
        self.context = write_meshctl_context(os.path.join(self.tmp, "meshctl.yaml"), self.api,
                                             os.path.join(self.tmp, "cp-data", "api-token"))
        with open(SERVICES) as f:
            meshctl(MESHCTL, self.context, "apply", "-f", "-",
                    stdin=f.read() + "---\n" + reviews_route_to("v1"))
        self.app = HttpUpstream("app")
        self.sidecar = start_xds_sidecar(
            self.tmp, self.ads, "reviews-v1-0", "default", "--node-service=reviews",
            f"--node-port={self.app.port}", "--node-label=version=v1")

    def cleanup(self):
        for sidecar in (self.sidecar, self.late):
            if sidecar is not None:
                sidecar.stop()
        if self.app is not None:
            self.app.close()
        if self.cp is not None:
            stop_process(self.cp)
        self.etcd.stop_all()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def clusters(self):
        return {c["name"] for c in json.loads(self.sidecar.get("/clusters")[1])["clusters"]}

    def apply(self, text):
        return subprocess.run([MESHCTL, "apply", "-f", "-"], input=text, capture_output=True,
                              text=True, timeout=60,
                              env=dict(os.environ, MESHCTL_CONFIG=self.context))

    def app_answers(self):
        """A request through the sidecar's inbound listener to its app."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.sidecar.inbound}/",
                                        timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def serves_while_the_store_hangs(self):
        """While applies wait on the quorum-less store, the control plane keeps serving: a sidecar
        that connects now gets the policy it has, and API paths without the store answer at once."""
        env = dict(os.environ, MESHCTL_CONFIG=self.context)
        waiting = []
        for _ in range(4):
            p = subprocess.Popen([MESHCTL, "apply", "-f", "-"], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                                 env=env)
            p.stdin.write(reviews_route_to("v1"))
            p.stdin.close()
            waiting.append(p)
        try:
            time.sleep(0.5)  # they reach the store and wait there, one after the other
            start = time.time()
            with open(os.path.join(self.tmp, "cp-data", "api-token")) as f:
                token = f.read().strip()
            status, body = cp_api.request(self.api, "GET", "/api/v1/proxies", token=token)
            self.assertEqual(status, 200, body)
            api_ms = (time.time() - start) * 1000
            start = time.time()
            late = start_xds_sidecar(
                self.tmp, self.ads, "reviews-v1-1", "default", "--node-service=reviews",
                f"--node-port={self.app.port}", "--node-label=version=v1")
            self.late = late
            late_clusters = lambda: {
                c["name"] for c in json.loads(late.get("/clusters")[1])["clusters"]}
            self.assertTrue(wait_for(lambda: V2 in late_clusters(), timeout=3),
                            "a sidecar connecting while the store hangs gets the last policy")
            print(f"while applies wait on the store: API answered in {api_ms:.0f} ms, a new "
                  f"sidecar had its configuration after {(time.time() - start) * 1000:.0f} ms",
                  file=sys.stderr)
            self.assertLess(api_ms, 1000)
            self.assertTrue(any(p.poll() is None for p in waiting),
                            "the applies were still waiting on the store meanwhile")
        finally:
            for p in waiting:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.assertTrue(all(p.returncode != 0 for p in waiting))

    def test_member_loss_quorum_loss_and_recovery(self):
        self.assertTrue(wait_for(lambda: V1 in self.clusters(), timeout=10))
        self.assertTrue(self.app_answers())

        # 1. The first member dies; the other two keep a quorum.
        self.etcd.kill("m0")
        start = time.time()
        p = self.apply(reviews_route_to("v2"))
        print(f"apply with m0 dead: {(time.time() - start) * 1000:.0f} ms", file=sys.stderr)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue(wait_for(lambda: V2 in self.clusters() and V1 not in self.clusters(),
                                 timeout=10), "the sidecar follows with one member down")

        # 2. A second member dies: no quorum. Writes are refused, saying why; the data plane
        # keeps serving what it has.
        self.etcd.kill("m1")
        start = time.time()
        p = self.apply(reviews_route_to("v1"))
        print(f"apply without quorum: exit {p.returncode} after "
              f"{(time.time() - start) * 1000:.0f} ms", file=sys.stderr)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("policy store is unavailable", p.stdout + p.stderr)
        self.assertIn(V2, self.clusters())
        self.assertNotIn(V1, self.clusters())
        for _ in range(20):
            self.assertTrue(self.app_answers())
        self.serves_while_the_store_hangs()

        # 3. Quorum back: writes work again and the sidecar converges.
        self.etcd.start("m0")
        self.etcd.start("m1")
        self.assertTrue(wait_for(lambda: self.apply(reviews_route_to("v1")).returncode == 0,
                                 timeout=30), "an apply once the quorum is back")
        self.assertTrue(wait_for(lambda: V1 in self.clusters() and V2 not in self.clusters(),
                                 timeout=10), "the sidecar converges")


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, sidecar_test.SIDECAR, SERVICES = (
        os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=sys.argv[:1] + sys.argv[5:], verbosity=2)
