"""meshlet-cni-agent, the node agent of CNI mode, run as a process against a temporary CNI conf
dir and bin dir (no root needed).

Usage: cni_agent_test.py MESHLET_CNI_AGENT MESHLET_CNI

Shown: not ready while the conf dir has no network configuration, ready once the primary
plugin's configuration appears and meshlet-cni is last in it; the plugin binary copied into the
bin dir; the installed plugin, run with the agent's entry as a runtime would (VERSION), counted
in meshlet_cni_pods_total from its log; another writer rewriting the conflist (without
meshlet-cni) repaired within a bound and counted in meshlet_cni_conflist_repairs_total; a file
that is not JSON reported (not ready, counted) and left untouched; SIGTERM with
--uninstall-on-exit restores the conflist byte for byte and removes the plugin; a .conf
converted to a .conflist and restored by `meshlet-cni-agent uninstall`.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

from cni_agent_client import AgentEndpoints, stop_agent, wait_for
from ports import free_port

AGENT = PLUGIN = None
REPAIR_BOUND_S = 3.0  # the watch reacts in ~0.1 s; the periodic check (1 s here) is the fallback

# As a primary plugin's agent writes it: its own layout, kept byte for byte.
BRIDGE = """{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"""


class AgentTest(AgentEndpoints, unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cni-agent-")
        self.conf_dir = os.path.join(self.tmp, "net.d")
        self.bin_dir = os.path.join(self.tmp, "bin")
        self.state_dir = os.path.join(self.tmp, "state")
        os.mkdir(self.conf_dir)
        os.mkdir(self.bin_dir)
        self.port = free_port()
        self.agent = None
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def tearDown(self):
        stop_agent(self.agent, getattr(self, "log", None))

    def flags(self):
        return ["--cni-conf-dir", self.conf_dir, "--cni-bin-dir", self.bin_dir,
                "--plugin-binary", PLUGIN, "--state-dir", self.state_dir,
                "--kubernetes-server=", "--http-address", f"127.0.0.1:{self.port}"]

    def start(self, *extra, flags=None):
        if self.agent is not None:  # a second agent after the first stopped
            self.log.close()
        self.log = open(os.path.join(self.tmp, "agent.log"), "ab")
        self.agent = subprocess.Popen(
            [AGENT, *(flags or self.flags()), "--check-interval", "1s", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.get("/healthz")[0] == 200, 10, "the agent serves /healthz")

    def path(self, name):
        return os.path.join(self.conf_dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def write(self, name, content):
        # As another agent writes: a temporary file renamed over the old one.
        with open(self.path(name) + ".tmp", "w") as f:
            f.write(content)
        os.rename(self.path(name) + ".tmp", self.path(name))

    def meshlet_last(self, name):
        try:
            plugins = json.loads(self.read(name))["plugins"]
        except (OSError, ValueError, KeyError):
            return None
        return plugins[-1] if plugins and plugins[-1].get("type") == "meshlet-cni" else None

    def stop(self):
        self.agent.send_signal(signal.SIGTERM)
        self.assertEqual(self.agent.wait(timeout=10), 0)

    def test_insert_repair_count_and_uninstall_byte_for_byte(self):
        self.start("--uninstall-on-exit")
        status, body = self.get("/readyz")
        self.assertEqual(status, 503, body)
        self.assertIn("no CNI network configuration", body)
        self.write("10-pods.conflist", BRIDGE)
        wait_for(lambda: self.get("/readyz")[0] == 200, REPAIR_BOUND_S, "ready once in the chain")
        entry = self.meshlet_last("10-pods.conflist")
        self.assertIsNotNone(entry)
        self.assertEqual(json.loads(self.read("10-pods.conflist"))["plugins"][0]["type"], "bridge")
        with open(os.path.join(self.bin_dir, "meshlet-cni"), "rb") as a, open(PLUGIN, "rb") as b:
            self.assertEqual(a.read(), b.read())
        self.assertTrue(os.access(os.path.join(self.bin_dir, "meshlet-cni"), os.X_OK))
        self.assertEqual(self.metric("meshlet_cni_conflist_inserts_total"), 1)

        # The installed plugin run by a runtime with the agent's entry (ADD of a sandbox that is
        # no Kubernetes pod: passed through, nothing touched): its outcome is counted.
        conf = dict(entry, cniVersion="1.0.0", name="pods",
                    prevResult={"cniVersion": "1.0.0", "interfaces": [], "ips": []})
        run = subprocess.run([os.path.join(self.bin_dir, "meshlet-cni")], input=json.dumps(conf),
                             capture_output=True, text=True,
                             env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee",
                                  "CNI_NETNS": "/nonexistent", "CNI_IFNAME": "eth0",
                                  "CNI_PATH": self.bin_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        self.assertEqual(run.returncode, 0, run.stderr + run.stdout)
        self.assertEqual(self.metric('meshlet_cni_pods_total{outcome="skipped"}'), 1)

        # Another agent rewrites its configuration without meshlet-cni: repaired, counted.
        rewritten = BRIDGE.replace("cni0", "cni1")
        self.write("10-pods.conflist", rewritten)
        wait_for(lambda: self.meshlet_last("10-pods.conflist"), REPAIR_BOUND_S,
                 "meshlet-cni back in the rewritten conflist")
        self.assertIn(b"cni1", self.read("10-pods.conflist"))
        self.assertEqual(self.metric("meshlet_cni_conflist_repairs_total"), 1)
        self.assertEqual(self.get("/readyz")[0], 200)

        # The conf dir removed and created again (the node's network plugin reinstalled): the
        # new directory is watched, so what is written there is repaired at once, not at the
        # periodic check (60 s for this test's second agent).
        self.stop()
        self.start("--uninstall-on-exit", "--check-interval", "60s")
        wait_for(lambda: self.get("/readyz")[0] == 200, REPAIR_BOUND_S, "ready again")
        shutil.rmtree(self.conf_dir)
        os.mkdir(self.conf_dir)
        # The old directory's watch reports its removal; that check watches the new one.
        wait_for(lambda: self.get("/readyz")[0] == 503, REPAIR_BOUND_S, "not ready, no conflist")
        rewritten = BRIDGE.replace("cni0", "cni2")
        self.write("10-pods.conflist", rewritten)
        wait_for(lambda: self.meshlet_last("10-pods.conflist"), REPAIR_BOUND_S,
                 "meshlet-cni in the new directory's conflist")

        # SIGTERM with --uninstall-on-exit: the file exactly as its writer left it.
        self.stop()
        self.assertEqual(self.read("10-pods.conflist"), rewritten.encode())
        self.assertEqual(sorted(os.listdir(self.conf_dir)), ["10-pods.conflist"])
        self.assertFalse(os.path.exists(os.path.join(self.bin_dir, "meshlet-cni")))

    def test_never_in_the_chain_without_the_plugin(self):
        self.write("10-pods.conflist", BRIDGE)
        installed = os.path.join(self.bin_dir, "meshlet-cni")
        self.start()
        wait_for(lambda: self.get("/readyz")[0] == 200, REPAIR_BOUND_S, "ready")
        # Someone removes the plugin: copied again at the next check.
        os.unlink(installed)
        wait_for(lambda: os.path.exists(installed), REPAIR_BOUND_S, "the plugin copied again")
        self.assertEqual(self.get("/readyz")[0], 200)
        self.stop()
        # An agent that cannot install the plugin takes meshlet-cni out of the chain.
        flags = self.flags()
        flags[flags.index("--plugin-binary") + 1] = os.path.join(self.tmp, "missing")
        os.unlink(installed)
        self.start(flags=flags)
        wait_for(lambda: self.read("10-pods.conflist") == BRIDGE.encode(), REPAIR_BOUND_S,
                 "meshlet-cni out of the chain")
        status, body = self.get("/readyz")
        self.assertEqual(status, 503)
        self.assertIn("the plugin is not installed", body)
        self.assertGreaterEqual(self.metric('meshlet_cni_agent_errors_total{step="copy_plugin"}'),
                                1)

    def test_bad_file_is_reported_and_left_untouched(self):
        self.write("10-pods.conflist", '{"plugins": [')
        self.start()
        wait_for(lambda: self.metric('meshlet_cni_agent_errors_total{step="check"}') >= 1, 5,
                 "the unreadable conflist counted")
        status, body = self.get("/readyz")
        self.assertEqual(status, 503)
        self.assertIn("10-pods.conflist", body)
        self.assertEqual(self.read("10-pods.conflist"), b'{"plugins": [')
        # Fixed by its writer: the agent follows.
        self.write("10-pods.conflist", BRIDGE)
        wait_for(lambda: self.get("/readyz")[0] == 200, REPAIR_BOUND_S, "ready once fixed")
        self.stop()  # without --uninstall-on-exit: stays in the chain
        self.assertIsNotNone(self.meshlet_last("10-pods.conflist"))

    def test_conf_converted_and_restored_by_uninstall_command(self):
        conf = '{"cniVersion": "0.4.0", "name": "b", "type": "bridge"}\n'
        self.write("10-bridge.conf", conf)
        self.start()
        wait_for(lambda: self.get("/readyz")[0] == 200, REPAIR_BOUND_S, "ready")
        self.assertEqual(sorted(os.listdir(self.conf_dir)), ["10-bridge.conflist"])
        self.assertIsNotNone(self.meshlet_last("10-bridge.conflist"))
        self.stop()
        run = subprocess.run([AGENT, "uninstall", *self.flags()], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(sorted(os.listdir(self.conf_dir)), ["10-bridge.conf"])
        self.assertEqual(self.read("10-bridge.conf"), conf.encode())


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    AGENT, PLUGIN = (os.path.abspath(p) for p in sys.argv[1:])
    unittest.main(argv=sys.argv[:1])
