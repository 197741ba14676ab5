"""`meshctl ca rotate`: a root rotation and then an intermediate rotation, each one command,
under traffic, with no process restarted by the rotation.

Usage: ca_rotate_test.py CONTROL_PLANE SIDECAR MAKE_CA MESHCTL [unittest args]

Roots R1 and R2 are made with certs/make-ca.sh, with intermediate A under R1 (what the control
plane signs with at start, from --ca-cert/--ca-key files), N under R2 (the root rotation's new
material) and M under R2 with a lifetime of one day (an intermediate about to expire, replaced
by N2 under R2 in the intermediate rotation). Two sidecars (root_rotation_test's harness:
frontend renews 6-second certificates every ~3 s, backend holds 40-second ones) report their
trust bundle and certificate every 300 ms and call each other over mTLS in a steady trickle.
Shown:
- `meshctl ca rotate --cert N --key N --wait` walks requested → distributing → reissuing →
  complete and exits 0: both sidecars reported R2 in their bundle before signing switched (the
  status of the reissuing step lists both with two roots), backend was asked to renew early (its
  early-renewal counter, its certificate from N long before its own renewal time), and at the
  end every bundle holds R2 only, so a client with an R1 certificate is refused;
- the control plane is restarted while the rotation is in step reissuing, and it resumes there
  (the new material read back from where the request named it) and completes;
- the intermediate rotations follow at once, each starting from the material the last left in
  use (the configured files still hold A): to M, which `meshctl check` warns about, then to N2
  with the bundle unchanged (R2 only) and every certificate from N2, and the warning gone; the
  files then set to N2 are taken as holding it (adopted);
- a rotation to material that does not exist ends aborted, naming the file; one started towards
  a third root is aborted with --abort in step distributing, and the bundle returns to R2 alone;
- no request between the sidecars failed or was retried, and no sidecar restarted.
About 60 s.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

import cp_api
import root_rotation_test
import sidecar_test
from mesh_util import make_workload_cert, peer_accepted, trust_bundle_roots, write_meshctl_context
from root_rotation_test import RotationHarness, Trickle, spiffe
from sidecar_test import free_port, wait_for

MESHCTL = None  # set from argv
REPORTS = "metrics_report:\n  interval: 0.3s\n"


class CaRotateTest(RotationHarness):
    def make(self, *args):
        subprocess.run([root_rotation_test.MAKE_CA, *args], check=True, capture_output=True)

    def setUp(self):
        super().setUp()
        t = self.tmp
        self.dirs = {name: os.path.join(t, name) for name in ("R1", "R2", "R3", "A", "N", "M",
                                                               "N2", "X")}
        for root in ("R1", "R2", "R3"):
            self.make("root", "--out", self.dirs[root])
        for name, root, extra in (("A", "R1", []), ("N", "R2", []), ("M", "R2", ["--days", "1"]),
                                  ("N2", "R2", []), ("X", "R3", [])):
            self.make("intermediate", "--root", self.dirs[root], "--out", self.dirs[name],
                      "--name", "meshlet CA " + name, *extra)
        # The configured material: the files an operator points --ca-cert/--ca-key at.
        self.live = os.path.join(t, "live")
        os.makedirs(self.live)
        self.put_live("A")
        self.all_roots = os.path.join(t, "all-roots.pem")
        with open(self.all_roots, "w") as out:
            for root in ("R1", "R2", "R3"):
                with open(os.path.join(self.dirs[root], "root-cert.pem")) as f:
                    out.write(f.read())

    def put_live(self, name):
        for source, target in (("ca-chain.pem", "chain.pem"), ("ca-key.pem", "key.pem")):
            shutil.copy(os.path.join(self.dirs[name], source),
                        os.path.join(self.live, target + ".new"))
            os.rename(os.path.join(self.live, target + ".new"), os.path.join(self.live, target))

    def files(self, name):
        return ["--cert", os.path.join(self.dirs[name], "ca-chain.pem"),
                "--key", os.path.join(self.dirs[name], "ca-key.pem")]

    def meshctl(self, *args, timeout=20, check=True):
        p = subprocess.run([MESHCTL, *args], capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, MESHCTL_CONFIG=self.context))
        if check and p.returncode != 0:
            raise AssertionError(f"meshctl {args} exited {p.returncode}: {p.stdout}{p.stderr}\n"
                                 f"{self.cp_tail()}")
        return p

    def cp_tail(self):
        with open(self.cp_log) as f:
            return "".join(line for line in f if "ca:" in line)[-4000:]

    def rotation(self):
        return json.loads(self.meshctl("ca", "rotate", "--status", "-o", "json").stdout)

    def issuer(self, name):
        return f"CN=meshlet CA {name},O=meshlet"

    def start(self):
        # The same API address across the restart, for the meshctl following the rotation.
        if not hasattr(self, "api_address"):
            self.api_address = f"127.0.0.1:{free_port()}"
        self.start_control_plane(
            "--api-address", self.api_address,
            "--ca-cert", os.path.join(self.live, "chain.pem"), "--ca-key",
            os.path.join(self.live, "key.pem"), "--ca-reload-interval", "200ms",
            "--ca-rotation-interval", "200ms", "--ca-rotation-report-max-age", "5s")
        # The API's certificate comes from the workload CA: an operator's meshctl trusts every
        # root the rotations go through.
        cp_api.trust(self.api, self.all_roots)

    def test_root_then_intermediate_rotation_under_traffic(self):
        self.started = time.time()
        self.start()
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()
        token_file = os.path.join(self.tmp, "api-token-file")
        with open(token_file, "w") as f:
            f.write(self.api_token + "\n")
        self.context = write_meshctl_context(os.path.join(self.tmp, "ctx"), self.api, token_file)
        for service in ("frontend", "backend"):
            self.start_sidecar(service, REPORTS)
        frontend, backend = self.sidecars["frontend"], self.sidecars["backend"]
        self.assertTrue(wait_for(lambda: set(self.issuers().values()) == {self.issuer("A")},
                                 timeout=15), self.diagnostics())
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(1), timeout=10))
        r1_peer = make_workload_cert(
            self.tmp, "r1-peer", (os.path.join(self.dirs["R1"], "root-cert.pem"),
                                  os.path.join(self.dirs["R1"], "root-key.pem")),
            spiffe("r1-peer"))
        # Its inbound listener may still be starting on a loaded machine: a refused connection
        # is not a refused peer.
        self.assertTrue(wait_for(lambda: peer_accepted(backend.inbound, *r1_peer), timeout=10),
                        self.diagnostics())
        pids = [s.proc.pid for s in self.sidecars.values()]
        self.trickle = Trickle(self.sidecars)
        time.sleep(0.5)

        # The root rotation, one command; the control plane restarted half-way.
        self.enter("root")
        backend_renewals = backend.stat("meshlet_workload_certificate_rotations_total")
        rotate = subprocess.Popen(
            [MESHCTL, "ca", "rotate", *self.files("N"), "--renewal-jitter", "8s",
             "--renewal-retry", "5s", "--wait", "90s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, MESHCTL_CONFIG=self.context))
        self.assertTrue(wait_for(lambda: self.rotation().get("step") == "reissuing", timeout=30),
                        self.cp_tail())
        shown = self.rotation()
        # Signing switched only once both sidecars reported the new root in their bundle.
        r2 = shown["new_root"]
        self.assertEqual({s["node"] for s in shown["sidecars"]}, {"frontend-0", "backend-0"})
        self.assertTrue(all(r2 in s["bundle_roots"] and len(s["bundle_roots"]) == 2
                            for s in shown["sidecars"]), shown)
        self.enter("restart")
        self.start()  # same flags and data directory: the rotation resumes from the store
        out, err = rotate.communicate(timeout=120)
        self.assertEqual(rotate.returncode, 0, out + err + self.cp_tail())
        self.assertIn("complete", out)
        with open(self.cp_log) as f:
            log = f.read()
        # Each step taken in order, once, by one of the two control-plane processes.
        steps = re.findall(r"ca: root rotation: (\w+) → (\w+)", log)
        self.assertEqual(steps, [("requested", "distributing"), ("distributing", "reissuing"),
                                 ("reissuing", "complete")], log)
        self.assertRegex(log, r"root CA rotation in step reissuing")
        self.enter("after-root")
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(1), timeout=10))
        self.assertEqual(set(self.issuers().values()), {self.issuer("N")})
        # backend's 40-second certificate was replaced early (asked by the renewal round).
        self.assertGreaterEqual(backend.stat("meshlet_workload_certificate_early_renewals_total"),
                                1, self.diagnostics())
        self.assertGreater(backend.stat("meshlet_workload_certificate_rotations_total"),
                           backend_renewals)
        self.assertFalse(peer_accepted(backend.inbound, *r1_peer))
        self.assertFalse(peer_accepted(frontend.inbound, *r1_peer))
        status = self.rotation()
        self.assertEqual(status["step"], "complete")
        self.assertFalse(status["adopted"])

        # The intermediate rotations follow at once, each from the material the last one left
        # in use (the configured files still hold A): first to M (one day left), then to N2.
        self.enter("to-M")
        self.meshctl("ca", "rotate", "--intermediate", *self.files("M"), "--renewal-jitter", "2s",
                     "--wait", "60s", timeout=70)
        self.assertEqual(set(self.issuers().values()), {self.issuer("M")})
        status = self.rotation()
        self.assertIn("/N/ca-chain.pem", status["base_source"])
        self.assertFalse(status["adopted"])
        check = self.meshctl("check", check=False)
        self.assertRegex(check.stdout + check.stderr, r"WARNING.*meshlet CA M")
        self.enter("to-N2")
        out = self.meshctl("ca", "rotate", "--intermediate", *self.files("N2"),
                           "--renewal-jitter", "2s", "--wait", "60s", timeout=70).stdout
        self.assertIn("reissuing", out)
        self.assertNotIn("distributing", out)
        self.assertEqual(set(self.issuers().values()), {self.issuer("N2")})
        # The certificates reissued from N2 are pushed and ACKed after the command returns.
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(1), timeout=10),
                        self.diagnostics())
        self.assertIn("/M/ca-chain.pem", self.rotation()["base_source"])
        # The operator puts N2 where --ca-cert/--ca-key point: the configured source holds it.
        self.put_live("N2")
        self.assertTrue(wait_for(lambda: self.rotation()["adopted"], timeout=10))
        self.assertEqual(set(self.issuers().values()), {self.issuer("N2")})
        check = self.meshctl("check", check=False)
        self.assertNotRegex(check.stdout + check.stderr, r"WARNING.*meshlet CA M")

        # Material that cannot be read ends the request, naming the file.
        self.enter("refused")
        p = self.meshctl("ca", "rotate", "--cert", "/nonexistent/chain.pem", "--key",
                         "/nonexistent/key.pem", "--wait", "20s", check=False, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("/nonexistent/chain.pem", p.stderr)
        self.assertEqual(self.rotation()["step"], "aborted")
        # Towards R3, aborted in step distributing: the bundle returns to R2 alone.
        self.enter("abort")
        self.meshctl("ca", "rotate", *self.files("X"), "--bundle-ack-timeout", "5m")
        self.assertTrue(wait_for(lambda: self.rotation()["step"] == "distributing", timeout=10))
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(2), timeout=10))
        self.assertIn("aborted", self.meshctl("ca", "rotate", "--abort").stdout)
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(1), timeout=10))
        self.assertEqual(set(self.issuers().values()), {self.issuer("N2")})
        self.trickle.stop()

        self.assertEqual(self.trickle.failures, [])
        for step in ("root", "after-root", "to-M", "to-N2", "abort"):
            for name in self.sidecars:
                self.assertGreater(self.trickle.ok.get((step, name), 0), 0, (step, name))
        for s in self.sidecars.values():
            self.assertEqual(s.stat("meshlet_upstream_rq_retry_total"), 0, self.diagnostics())
        self.assertEqual(pids, [s.proc.pid for s in self.sidecars.values()])
        print(f"\nCA rotations: {sum(self.trickle.ok.values())} requests, 0 failed; "
              f"{time.time() - self.started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    root_rotation_test.CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    root_rotation_test.MAKE_CA = os.path.abspath(sys.argv.pop(1))
    MESHCTL = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
