"""The CA's signing material reloaded live, from files and from a Kubernetes Secret, under traffic.

Usage: ca_reload_test.py CONTROL_PLANE SIDECAR MAKE_CA MESHCTL [unittest args]

One root and three intermediates are made with certs/make-ca.sh: A and B under the root, and C
under a root the control plane does not trust. The real control plane signs with A, from files
(--ca-cert/--ca-key/--ca-trust-bundle, checked every 200 ms) in one test and from a
kubernetes.io/tls Secret on the fake API server (--ca-secret) in the other; two sidecars
(root_rotation_test's harness: frontend renews 6-second certificates every ~3 s) call each other
over mTLS in a steady trickle throughout. Shown, for each source:
- the material is replaced by B (files: each file renamed over the old one, as an atomic writer
  or kubectl cp leaves it; Secret: a new version of the object): frontend's next certificate is
  issued by B, with no restart of any process (same pids) and meshlet_cp_ca_reload_total
  {result="ok"} counting it; `meshctl ca status` names B, its source and the last result;
- then a second root is added to the roots (ca.crt, or the --ca-trust-bundle file): both
  sidecars run and ACK the two-root bundle over xDS, B still signing;
- then by C (a chain to an untrusted root): refused, counted as result="invalid", logged with the
  reason, with the Secret a Warning Event on the Secret; frontend's later certificates still come
  from B;
- no request between the sidecars failed, and none was retried.
And two replicas on one etcd (skipped without etcd), each with --ca-secret on the same Secret:
both move to B within a moment of each other, both refuse C (an Event from each), and both keep
signing with B.
About 40 s.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import cp_api
import root_rotation_test
import sidecar_test
from etcd_util import EtcdCluster, Replica, etcd_installed
from mesh_util import call_service, meshctl, start_fake_kubernetes, write_meshctl_context
from root_rotation_test import RotationHarness, Trickle
from sidecar_test import wait_for

MESHCTL = None  # set from argv
SECRET = ("meshlet-system", "meshlet-ca")
TOKEN = "control-plane-own-token"
# The chain file of each intermediate: A's and B's end in their root (make-ca.sh's ca-chain.pem);
# C's is the intermediate alone, since a chain ending in a root brings that root into the bundle.
CHAIN = {"A": "ca-chain.pem", "B": "ca-chain.pem", "C": "ca-cert.pem"}


class CaReloadTest(RotationHarness):
    def setUp(self):
        super().setUp()
        t = self.tmp
        self.cas = {}
        for name, root in (("A", self.new_root), ("B", self.new_root)):
            out = os.path.join(t, "ca-" + name)
            subprocess.run([root_rotation_test.MAKE_CA, "intermediate", "--root", root, "--out",
                            out, "--name", "meshlet CA " + name], check=True, capture_output=True)
            self.cas[name] = out
        stranger = os.path.join(t, "stranger-root")
        subprocess.run([root_rotation_test.MAKE_CA, "root", "--out", stranger], check=True,
                       capture_output=True)
        self.cas["C"] = os.path.join(t, "ca-C")
        subprocess.run([root_rotation_test.MAKE_CA, "intermediate", "--root", stranger, "--out",
                        self.cas["C"], "--name", "meshlet CA C"], check=True, capture_output=True)
        self.root_cert = os.path.join(self.new_root, "root-cert.pem")
        # The root an operator adds to the bundle at step R (a rotation's first step).
        self.second_root = os.path.join(t, "second-root")
        subprocess.run([root_rotation_test.MAKE_CA, "root", "--out", self.second_root],
                       check=True, capture_output=True)
        self.two_roots = False
        self.fake = None

    def tearDown(self):
        super().tearDown()
        if self.fake is not None:
            self.fake.stop()

    def roots(self):
        """The roots the operator lists now: A's and B's root, and the second one after R."""
        paths = [self.root_cert] + ([os.path.join(self.second_root, "root-cert.pem")]
                                    if self.two_roots else [])
        text = ""
        for path in paths:
            with open(path) as f:
                text += f.read()
        return text

    def read(self, name, file):
        with open(os.path.join(self.cas[name], file)) as f:
            return f.read()

    def issuer(self, name):
        return f"CN=meshlet CA {name},O=meshlet"

    def metric(self, name, labels):
        with cp_api.urlopen(f"https://{self.api}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.split("{")[0].split(" ")[0] == name and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rpartition(" ")[2])
        return 0

    def ca_status(self):
        token_file = os.path.join(self.tmp, "api-token-file")
        with open(token_file, "w") as f:
            f.write(self.api_token + "\n")
        context = os.path.join(self.tmp, "meshctl-context")
        write_meshctl_context(context, self.api, token_file)
        return meshctl(MESHCTL, context, "ca", "status", "-o", "json")

    def run_under_traffic(self, replace, source_label):
        """Starts the sidecars and the trickle, replaces A by B then by C with `replace`."""
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()
        for service in ("frontend", "backend"):
            self.start_sidecar(service)
        self.assertTrue(wait_for(lambda: self.issuers().get("frontend") == self.issuer("A"),
                                 timeout=15), self.diagnostics())
        # Each side knows the other before the trickle starts.
        self.assertTrue(wait_for(lambda: all(
            call_service(self.sidecars[a].outbound, b)[0] == 200
            for a, b in (("frontend", "backend"), ("backend", "frontend"))), timeout=15),
            self.diagnostics())
        pids = [self.cp.pid] + [s.proc.pid for s in self.sidecars.values()]
        self.trickle = Trickle(self.sidecars)
        self.started = time.time()
        time.sleep(0.5)

        self.enter("B")
        replaced = time.time()
        replace("B")
        self.assertTrue(wait_for(
            lambda: self.metric("meshlet_cp_ca_reload_total", {"result": "ok"}) == 1, timeout=10))
        taken = time.time() - replaced
        self.assertTrue(wait_for(lambda: self.issuers()["frontend"] == self.issuer("B"),
                                 timeout=15), self.issuers())
        self.assertEqual(self.metric("meshlet_cp_ca_reload_total", {"result": "ok"}), 1)
        # The expiry gauges: B signs, the root lasts, frontend's 6-second certificate is the
        # soonest to expire among the streams.
        now = time.time()
        self.assertGreater(self.metric("meshlet_cp_ca_certificate_expiry_timestamp_seconds",
                                       {"role": "signing", "subject": self.issuer("B")}),
                           now + 300 * 86400)
        self.assertGreater(self.metric("meshlet_cp_ca_certificate_expiry_timestamp_seconds",
                                       {"role": "root"}), now + 3000 * 86400)
        self.assertEqual(self.metric("meshlet_cp_ca_signing_certificate_info",
                                     {"subject": self.issuer("B")}), 1)
        earliest = self.metric("meshlet_xds_client_certificate_earliest_expiry_timestamp_seconds",
                               {})
        self.assertGreater(earliest, now - 2)
        self.assertLess(earliest, now + 10)
        shown = json.loads(self.ca_status())
        self.assertEqual(shown["subject"], self.issuer("B"))
        self.assertIn(source_label, shown["source"])
        self.assertEqual(shown["last_reload"]["result"], "ok")
        human = meshctl(MESHCTL, os.path.join(self.tmp, "meshctl-context"), "ca", "status")
        self.assertIn(self.issuer("B"), human)

        # The operator adds a second root (a rotation's first step): every sidecar runs and has
        # ACKed the two-root bundle over xDS; B still signs.
        self.enter("R")
        self.two_roots = True
        replace("B")
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(2), timeout=10),
                        self.diagnostics())
        self.assertEqual(self.metric("meshlet_cp_ca_reload_total", {"result": "ok"}), 2)
        self.assertEqual(len(json.loads(self.ca_status())["roots"]), 2)

        self.enter("C")
        replace("C")
        self.assertTrue(wait_for(
            lambda: self.metric("meshlet_cp_ca_reload_total", {"result": "invalid"}) == 1,
            timeout=10))
        with open(self.cp_log) as f:
            log = f.read()
        self.assertRegex(log, r"ca: refused new signing material: .*does not verify up to a "
                              r"root of the trust bundle.*still issuing as \"CN=meshlet CA B")
        # frontend renews at least twice more, always from B.
        renewed = self.sidecars["frontend"].stat("meshlet_workload_certificate_rotations_total")
        self.assertTrue(wait_for(
            lambda: self.sidecars["frontend"].stat("meshlet_workload_certificate_rotations_total") >=
            renewed + 2, timeout=15), self.diagnostics())
        self.assertEqual(self.issuers()["frontend"], self.issuer("B"))
        shown = json.loads(self.ca_status())
        self.assertEqual(shown["subject"], self.issuer("B"))
        self.assertEqual(shown["last_reload"]["result"], "invalid")
        self.trickle.stop()

        self.assertEqual(self.trickle.failures, [])
        for step in "BRC":
            for name in self.sidecars:
                self.assertGreater(self.trickle.ok.get((step, name), 0), 0, (step, name))
        for s in self.sidecars.values():
            self.assertEqual(s.stat("meshlet_upstream_rq_retry_total"), 0, self.diagnostics())
        self.assertEqual(pids, [self.cp.pid] + [s.proc.pid for s in self.sidecars.values()])
        self.assertIsNone(self.cp.poll())
        self.assertEqual(log.count("ca: issuing"), 1)  # one start of the control plane
        print(f"\n{source_label}: B taken {taken:.2f} s after it was written (reload interval "
              f"0.2 s); {sum(self.trickle.ok.values())} requests, 0 failed", file=sys.stderr)

    def test_files_reloaded_live(self):
        files = os.path.join(self.tmp, "live")
        os.makedirs(files)
        chain, key = os.path.join(files, "ca-chain.pem"), os.path.join(files, "ca-key.pem")
        roots = os.path.join(files, "roots.pem")

        def replace(name):
            for source, target in ((CHAIN[name], chain), ("ca-key.pem", key)):
                shutil.copy(os.path.join(self.cas[name], source), target + ".new")
                os.rename(target + ".new", target)
            with open(roots + ".new", "w") as f:
                f.write(self.roots())
            os.rename(roots + ".new", roots)
        replace("A")
        self.start_control_plane("--ca-cert", chain, "--ca-key", key, "--ca-trust-bundle",
                                 roots, "--ca-reload-interval", "200ms")
        self.run_under_traffic(replace, "files")

    def test_secret_reloaded_live(self):
        t = self.tmp
        self.fake, kubernetes_flags = start_fake_kubernetes(t, TOKEN)

        def replace(name):
            # ca.crt is the operator's roots; C's chain leaves out its own root.
            data = {"tls.crt": self.read(name, CHAIN[name]),
                    "tls.key": self.read(name, "ca-key.pem"), "ca.crt": self.roots()}
            self.fake.put("secrets", {
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"namespace": SECRET[0], "name": SECRET[1]},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})
        replace("A")
        self.start_control_plane(
            "--ca-secret", "/".join(SECRET), "--ca-reload-interval", "200ms",
            *kubernetes_flags, "--kubernetes-discovery=false", "--kubernetes-policy=false",
            "--webhook-address=off")
        self.run_under_traffic(replace, "Secret meshlet-system/meshlet-ca")
        with self.fake.cond:
            events = [e for _, e in self.fake.events]
        self.assertEqual(len(events), 1, events)
        self.assertEqual(events[0]["regarding"]["kind"], "Secret")
        self.assertEqual(events[0]["regarding"]["name"], SECRET[1])
        self.assertEqual(events[0]["type"], "Warning")
        self.assertIn("does not verify up to a root", events[0]["note"])


class ReplicasTest(unittest.TestCase):
    """Two replicas on one etcd, both with --ca-secret on the same Secret: each reads it and
    switches to B within a moment of the other, and each refuses C (an Event from each)."""

    def setUp(self):
        if not etcd_installed():
            self.skipTest("etcd is not installed (Debian package etcd-server)")
        t = self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        # Cleanups run also when setUp fails half-way.
        self.etcd = EtcdCluster(os.path.join(t, "etcd"))
        self.addCleanup(self.etcd.stop_all)
        self.etcd.start()
        root = os.path.join(t, "root")
        stranger = os.path.join(t, "stranger")
        make = root_rotation_test.MAKE_CA
        for args in (["root", "--out", root], ["root", "--out", stranger]):
            subprocess.run([make, *args], check=True, capture_output=True)
        self.cas = {}
        for name, parent in (("A", root), ("B", root), ("C", stranger)):
            self.cas[name] = os.path.join(t, "ca-" + name)
            subprocess.run([make, "intermediate", "--root", parent, "--out", self.cas[name],
                            "--name", "meshlet CA " + name], check=True, capture_output=True)
        with open(os.path.join(root, "root-cert.pem")) as f:
            self.root_pem = f.read()
        self.fake, kubernetes_flags = start_fake_kubernetes(t, TOKEN)
        self.addCleanup(self.fake.stop)
        self.put_secret("A")
        self.replicas = []
        for name in ("r1", "r2"):
            self.replicas.append(Replica(
                root_rotation_test.CONTROL_PLANE, MESHCTL, t, name, self.etcd,
                "--replica-name", name, "--ca-secret", "/".join(SECRET),
                "--ca-reload-interval", "200ms", *kubernetes_flags,
                "--kubernetes-discovery=false", "--kubernetes-policy=false",
                "--webhook-address=off"))
            self.addCleanup(self.replicas[-1].stop)

    def put_secret(self, name):
        with open(os.path.join(self.cas[name], CHAIN[name])) as chain, \
                open(os.path.join(self.cas[name], "ca-key.pem")) as key:
            data = {"tls.crt": chain.read(), "tls.key": key.read(), "ca.crt": self.root_pem}
        self.fake.put("secrets", {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"namespace": SECRET[0], "name": SECRET[1]},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})

    def statuses(self):
        out = []
        for r in self.replicas:
            status, body = r.request("GET", "/api/v1/ca")
            self.assertEqual(status, 200, body)
            out.append(json.loads(body))
        return out

    def test_replicas_switch_together(self):
        self.assertEqual({s["subject"] for s in self.statuses()}, {"CN=meshlet CA A,O=meshlet"})
        written = time.time()
        self.put_secret("B")
        self.assertTrue(wait_for(lambda: {s["subject"] for s in self.statuses()} ==
                                 {"CN=meshlet CA B,O=meshlet"}, timeout=10), self.statuses())
        both = time.time() - written
        self.put_secret("C")
        self.assertTrue(wait_for(lambda: all(s["last_reload"]["result"] == "invalid"
                                             for s in self.statuses()), timeout=10),
                        self.statuses())
        self.assertEqual({s["subject"] for s in self.statuses()}, {"CN=meshlet CA B,O=meshlet"})
        with self.fake.cond:
            events = [e for _, e in self.fake.events]
        self.assertEqual(sorted(e["reportingInstance"] for e in events), ["r1", "r2"], events)
        print(f"\nreplicas: both on B {both:.2f} s after the Secret changed", file=sys.stderr)


if __name__ == "__main__":
    root_rotation_test.CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    root_rotation_test.MAKE_CA = os.path.abspath(sys.argv.pop(1))
    MESHCTL = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
