"""meshlet-cni-agent with a real container runtime: podman's CNI backend with Debian's
containernetworking-plugins, its own conf dir, bin dir and storage.

Usage: cni_agent_podman_test.py BUILD_PY MESHLET_CNI_AGENT

Shown: podman writes a network's conflist (bridge, portmap, firewall, tuning); the agent appends
meshlet-cni and is ready; a container started on that network gets its network from the whole
chain, meshlet-cni included (the plugin's ADD and DEL counted in the agent's metrics: podman
passes no pod, so the plugin passes it through); podman rewriting the conflist (the network
removed and created again, as another agent would) is repaired within a bound and counted;
SIGTERM with --uninstall-on-exit leaves podman's conflist byte for byte as podman wrote it.
The image the container runs is meshlet-cni, built by deploy/images/build.py from the Bazel tree
of MESHLET_CNI_AGENT; the agent installs the plugin from it as the DaemonSet does: the static
meshlet-cni-launcher as the node's meshlet-cni, the plugin with its loader and libraries in
meshlet-cni.d/ beside it.

Needs root, podman, runc and /usr/lib/cni/{bridge,host-local,portmap,firewall,tuning}; without
them it prints "SKIP: ..." and passes. Removes its network, bridge, host-local state, storage
and processes at the end, also on failure.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

from cni_agent_client import AgentEndpoints, wait_for

BUILD_PY = BIN_DIR = None
CNI_DIR = "/usr/lib/cni"
NETWORK = f"mlcniagent{os.getpid()}"
SUBNET = "198.18.77.0/24"
REPAIR_BOUND_S = 3.0
TAG = "cni-agent-test"


def skip_reason():
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("podman", "runc", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    for plugin in ("bridge", "host-local", "portmap", "firewall", "tuning"):
        if not os.path.exists(os.path.join(CNI_DIR, plugin)):
            return f"needs {CNI_DIR}/{plugin} (containernetworking-plugins)"
    return None




class PodmanChainTest(AgentEndpoints, unittest.TestCase):
    def setUp(self):
        reason = skip_reason()
        if reason:
            print(f"SKIP: {reason}")
            self.skipTest(reason)
        self.tmp = tempfile.mkdtemp(prefix="cni-agent-podman-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.conf_dir = os.path.join(self.tmp, "net.d")
        self.bin_dir = os.path.join(self.tmp, "bin")
        self.state_dir = os.path.join(self.tmp, "state")
        os.mkdir(self.conf_dir)
        shutil.copytree(CNI_DIR, self.bin_dir)
        self.conf = os.path.join(self.tmp, "containers.conf")
        with open(self.conf, "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{self.bin_dir}"]
network_config_dir = "{self.conf_dir}"
""")
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf,
                        PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        self.podman_global = ["--root", os.path.join(self.tmp, "root"),
                              "--runroot", os.path.join(self.tmp, "run"),
                              "--storage-driver", "vfs"]
        self.bridge = None
        self.agent = None
        self.addCleanup(self.cleanup)

    def cleanup(self):
        if self.agent is not None:
            if self.agent.poll() is None:
                self.agent.kill()
                self.agent.wait()
            self.agent_log.close()
        self.podman("rm", "-a", "-f", check=False)
        self.podman("network", "rm", "-f", NETWORK, check=False)
        self.podman("rmi", "-a", "-f", check=False)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(os.path.join("/var/lib/cni/networks", NETWORK), ignore_errors=True)

    def podman(self, *args, check=True, timeout=120):
        r = subprocess.run(["podman", *self.podman_global, *args], capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        if check:
            self.assertEqual(r.returncode, 0, f"podman {' '.join(args)}: {r.stdout}{r.stderr}")
        return r

    def create_network(self):
        self.podman("network", "create", "--subnet", SUBNET, NETWORK)
        path = os.path.join(self.conf_dir, f"{NETWORK}.conflist")
        with open(path, "rb") as f:
            content = f.read()
        self.bridge = json.loads(content)["plugins"][0]["bridge"]
        return path, content

    def last_plugin(self, path):
        try:
            with open(path) as f:
                return json.load(f)["plugins"][-1]["type"]
        except (OSError, ValueError, KeyError, IndexError):
            return None

    def test_chain_repair_and_uninstall_with_podman(self):
        r = subprocess.run([sys.executable, BUILD_PY, "--bin-dir", BIN_DIR,
                            "--out", os.path.join(self.tmp, "images"), "--tag", TAG,
                            *(f"--podman-arg={a}" for a in self.podman_global), "meshlet-cni"],
                           capture_output=True, text=True, env=self.env, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.podman("load", "-i", os.path.join(self.tmp, "images", "meshlet-cni.oci.tar"))
        # The plugin as the DaemonSet installs it: the image's static launcher and its bundle
        # (the plugin with its loader and libraries).
        self.podman("create", "--name", f"{NETWORK}-files", f"localhost/meshlet-cni:{TAG}")
        launcher = os.path.join(self.tmp, "meshlet-cni-launcher")
        bundle = os.path.join(self.tmp, "bundle")
        self.podman("cp", f"{NETWORK}-files:/usr/local/bin/meshlet-cni-launcher", launcher)
        self.podman("cp", f"{NETWORK}-files:/usr/local/lib/meshlet-cni", bundle)
        self.podman("rm", f"{NETWORK}-files")
        path, written_by_podman = self.create_network()

        log_path = os.path.join(self.tmp, "agent.log")
        self.agent_log = open(log_path, "wb")
        self.agent = subprocess.Popen(
            [os.path.join(BIN_DIR, "cni", "meshlet-cni-agent"), "--cni-conf-dir", self.conf_dir,
             "--cni-bin-dir", self.bin_dir,
             "--plugin-binary", launcher, "--plugin-bundle", bundle,
             "--state-dir", self.state_dir, "--kubernetes-server=",
             "--http-address", "127.0.0.1:0", "--check-interval", "1s",
             "--uninstall-on-exit"], stdout=self.agent_log, stderr=subprocess.STDOUT)
        def serving():
            with open(log_path) as f:
                text = f.read()
            return text.split("serving on 127.0.0.1:", 1)[1].split()[0] if "serving on" in text \
                else None
        self.port = int(wait_for(serving, 10, "the agent serving"))
        wait_for(lambda: self.get("/readyz")[0] == 200, 10, "the agent ready")
        self.assertEqual(self.last_plugin(path), "meshlet-cni")
        self.assertIn("ld-linux-x86-64.so.2",
                      os.listdir(os.path.join(self.bin_dir, "meshlet-cni.d")))

        # A container on the network: its sandbox goes through the chain, meshlet-cni last.
        run = self.podman("run", "--rm", "--network", NETWORK, "--entrypoint",
                          "/usr/local/bin/meshlet-cni-agent", f"localhost/meshlet-cni:{TAG}",
                          "--help")
        self.assertIn("usage: meshlet-cni-agent", run.stdout)
        self.assertEqual(self.metric('meshlet_cni_pods_total{outcome="skipped"}'), 1)
        self.assertEqual(self.metric('meshlet_cni_pods_total{outcome="removed"}'), 1)
        self.assertEqual(self.metric('meshlet_cni_pods_total{outcome="failed"}'), 0)

        # podman writes its configuration again (another agent's rewrite): repaired.
        self.podman("network", "rm", "-f", NETWORK)
        path, written_by_podman = self.create_network()
        wait_for(lambda: self.last_plugin(path) == "meshlet-cni", REPAIR_BOUND_S,
                 "meshlet-cni back in podman's rewritten conflist")
        self.assertEqual(self.metric("meshlet_cni_conflist_repairs_total"), 1)
        run = self.podman("run", "--rm", "--network", NETWORK, "--entrypoint",
                          "/usr/local/bin/meshlet-cni-agent", f"localhost/meshlet-cni:{TAG}",
                          "--help")
        self.assertEqual(self.metric('meshlet_cni_pods_total{outcome="skipped"}'), 2)

        # Uninstall: podman's file exactly as podman wrote it, and the plugin gone.
        self.agent.send_signal(signal.SIGTERM)
        self.assertEqual(self.agent.wait(timeout=10), 0)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), written_by_podman)
        self.assertFalse(os.path.exists(os.path.join(self.bin_dir, "meshlet-cni")))
        self.assertFalse(os.path.exists(os.path.join(self.bin_dir, "meshlet-cni.d")))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    BUILD_PY, agent = (os.path.abspath(p) for p in sys.argv[1:])
    BIN_DIR = os.path.dirname(os.path.dirname(agent))  # the tree holding cni/meshlet-cni-agent
    unittest.main(argv=sys.argv[:1])
