"""The control plane's registry survives a crash (kill -9), and a registry that emptied stays
empty after one.

Usage: registry_crash_test.py CONTROL_PLANE SIDECAR [unittest args]

A sidecar registers over xDS; the control plane is killed with SIGKILL (no clean stop, which also
saves the registry) and started again on the same data directory: the workload is back, as
disconnected, keeping its endpoints for the grace period. When that grace has passed the registry
is empty again, and a second SIGKILL and restart bring nothing back. A control plane that crashes
again and again gives a gone workload only the rest of its grace period at each start, so it
still leaves. A change of connection state alone is saved later than a registration. A save that
fails (a directory in the file's place) is counted and tried again while the control plane serves.
"""

import json
import os
import signal
import sys
import tempfile
import time
import unittest
import urllib.request

import cp_api
import sidecar_test
from mesh_util import start_control_plane, start_xds_sidecar, stop_process
from ports import free_port
from sidecar_test import wait_for

CONTROL_PLANE = None


class RegistryCrashTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.data = os.path.join(self.tmp, "cp-data")
        self.log = os.path.join(self.tmp, "cp.log")
        self.ads = f"127.0.0.1:{free_port()}"
        self.cp = None
        self.sidecar = None

    def tearDown(self):
        if self.sidecar is not None:
            self.sidecar.stop()
        if self.cp is not None:
            stop_process(self.cp)

    def start_cp(self, grace="3s"):
        self.cp, self.api, _ = start_control_plane(
            CONTROL_PLANE, self.log, "--data-dir", self.data, "--api-address", "127.0.0.1:0",
            "--xds-plaintext", "--xds-address", self.ads, "--xds-listen-host", "127.0.0.1",
            "--deregister-grace", grace)
        with open(os.path.join(self.data, "api-token")) as f:
            self.token = f.read().strip()

    def crash_cp(self):
        self.cp.send_signal(signal.SIGKILL)
        self.assertEqual(self.cp.wait(timeout=10), -signal.SIGKILL)

    def workloads(self):
        req = urllib.request.Request(f"https://{self.api}/api/v1/workloads",
                                     headers={"Authorization": "Bearer " + self.token})
        with cp_api.urlopen(req, timeout=5) as r:
            return {w["id"]: w for w in json.loads(r.read())["items"]}

    def metric(self, name):
        req = urllib.request.Request(f"https://{self.api}/metrics",
                                     headers={"Authorization": "Bearer " + self.token})
        with cp_api.urlopen(req, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def register_then_crash_and_lose_the_sidecar(self):
        """web-0 registers and is saved; the control plane is killed and the sidecar goes too.
        Returns the saved registry's path."""
        self.start_cp()
        self.sidecar = start_xds_sidecar(self.tmp, self.ads, "web-0", "default",
                                         "--node-service=web", "--node-port=8080")
        self.assertTrue(wait_for(lambda: "web-0" in self.workloads(), timeout=10))
        saved = os.path.join(self.data, "registry.pb")
        # Saved while running, within about a second of the change.
        self.assertTrue(wait_for(lambda: os.path.exists(saved), timeout=5))
        self.crash_cp()
        self.sidecar.stop()  # it must not simply register again
        self.sidecar = None
        return saved

    def test_registry_survives_kill_9_and_an_emptied_one_stays_empty(self):
        saved = self.register_then_crash_and_lose_the_sidecar()
        self.start_cp()
        restored = self.workloads()
        self.assertIn("web-0", restored)
        self.assertFalse(restored["web-0"]["connected"])
        with open(self.log) as f:
            self.assertIn("restored 1 workload(s)", f.read())

        # After the grace period the workload leaves, and the saved file with it.
        self.assertTrue(wait_for(lambda: not self.workloads(), timeout=10))
        self.assertTrue(wait_for(lambda: not os.path.exists(saved), timeout=5))
        self.crash_cp()
        self.start_cp()
        self.assertEqual(self.workloads(), {})

    def test_a_failed_save_is_counted_and_tried_again(self):
        # A directory where the file goes: every write fails (also as root) until it is gone.
        self.start_cp()
        saved = os.path.join(self.data, "registry.pb")
        os.mkdir(saved)
        self.sidecar = start_xds_sidecar(self.tmp, self.ads, "web-0", "default",
                                         "--node-service=web", "--node-port=8080")
        self.assertTrue(wait_for(
            lambda: (self.metric("meshlet_cp_registry_save_errors_total") or 0) >= 1, timeout=10))
        self.assertIn("web-0", self.workloads())  # the control plane serves on
        with open(self.log) as f:
            self.assertIn("registry not saved", f.read())
        os.rmdir(saved)
        self.assertTrue(wait_for(lambda: os.path.isfile(saved), timeout=5))
        self.crash_cp()
        self.start_cp()
        self.assertIn("web-0", self.workloads())

    def test_a_crash_looping_control_plane_does_not_keep_a_gone_workload(self):
        # The workload's sidecar is gone; the control plane crashes a second after every start.
        # Each start restores the workload with what is left of its grace period (3 s), not a
        # fresh one, so it leaves after about the grace period all the same.
        self.register_then_crash_and_lose_the_sidecar()
        started = time.time()
        present = []
        while time.time() - started < 6:
            self.start_cp()
            present.append("web-0" in self.workloads())
            time.sleep(1)
            self.crash_cp()
        self.start_cp()
        self.assertEqual(self.workloads(), {})
        # Restored at first, gone while the crashes went on (a fresh grace period at every
        # start would have kept it in all of them).
        self.assertTrue(present[0], present)
        self.assertFalse(present[-1], present)

    def test_a_change_of_connection_state_alone_is_written_later(self):
        # Registrations are saved within a second; that a sidecar left only within a quarter of
        # the grace period (here 40 s: 10 s), so that reconnect storms do not rewrite the file.
        self.start_cp(grace="40s")
        self.sidecar = start_xds_sidecar(self.tmp, self.ads, "web-0", "default",
                                         "--node-service=web", "--node-port=8080")
        saved = os.path.join(self.data, "registry.pb")
        self.assertTrue(wait_for(lambda: os.path.exists(saved), timeout=10))
        # Once the registration has settled (the sidecar reports its readiness after it connects).
        registered = b""
        while True:
            time.sleep(1.5)
            with open(saved, "rb") as f:
                now = f.read()
            if now == registered:
                break
            registered = now
        self.sidecar.stop()
        self.sidecar = None
        self.assertTrue(wait_for(lambda: not self.workloads()["web-0"]["connected"], timeout=10))
        time.sleep(2)
        with open(saved, "rb") as f:
            self.assertEqual(f.read(), registered)

        def rewritten():
            with open(saved, "rb") as f:
                return f.read() != registered
        self.assertTrue(wait_for(rewritten, timeout=12))


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv[1])
    sidecar_test.SIDECAR = os.path.abspath(sys.argv[2])
    unittest.main(argv=sys.argv[:1] + sys.argv[3:], verbosity=2)
