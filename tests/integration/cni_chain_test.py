"""meshlet-cni in a real CNI chain: Debian's `bridge` plugin (with `host-local` IPAM) creates the
pod's interface, then meshlet-cni programs the pod's traffic capture, each run as a container
runtime runs it (CNI spec 1.0.0: CNI_* environment, the plugin's configuration with the previous
result on stdin).

Usage: cni_chain_test.py MESHLET_CNI SIDECAR MESHCTL

Shown: for a pod marked for capture by the plugin (its annotations as `meshctl inject --cni`
writes them), the nat tables (iptables and, when the kernel has IPv6 NAT, ip6tables) inside the
pod's network namespace are exactly what meshlet-init installs for the same annotations: the
reference namespace runs `sidecar init` with the arguments `meshctl inject` writes into
meshlet-init. ADD passes the bridge's result on unchanged;
a second ADD leaves the tables as they were; CHECK passes, fails (code 100) once a rule is
removed, and passes again after ADD; DEL removes exactly the capture rules. A pod that is not
injected, injected with meshlet-init, or opted out passes through untouched; the pod's
annotations come from runtimeConfig or from an API server (the fake one, over HTTPS with a
token); a marked pod whose namespace is gone gets error 3. Everything it creates (namespaces, the
bridge, host-local's state, the fake API server) is removed at the end, also on failure.

Needs root, ip, iptables and /usr/lib/cni/{bridge,host-local} (Debian: containernetworking-
plugins); without them it prints "SKIP: ..." and passes.
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import netns
from netns import PATH, in_ns, run

MESHLET_CNI = SIDECAR = MESHCTL = None
CNI_DIR = "/usr/lib/cni"
PREFIX = "mlcni"  # namespaces mlcni<pid>{a,b,c,d}, the bridge mlcni<pid>
PID = os.getpid()
POD, REFERENCE, PLAIN, API_POD = (f"{PREFIX}{PID}{s}" for s in "abcd")
BRIDGE = f"{PREFIX}{PID}"
SUBNET4, SUBNET6 = "198.18.30.0/24", "fd00:30::/64"
TMP = None
IPV6 = False

# The capture settings of the pod, as annotations.
CAPTURE_ANNOTATIONS = {
    "traffic.meshlet.io/excludeOutboundPorts": "5432",
    "traffic.meshlet.io/excludeOutboundIPRanges": "198.18.10.0/24,fd00:10::/64",
    "traffic.meshlet.io/excludeInboundPorts": "9090",
}
# The annotations of the pod as `meshctl inject --cni` writes them (its status marks the pod for
# capture by the plugin); set by main().
MARKED = None
TOKEN = "node-agent-token"

fake_api = None


def conflist(meshlet_extra):
    ranges = [[{"subnet": SUBNET4}]] + ([[{"subnet": SUBNET6}]] if IPV6 else [])
    return {"cniVersion": "1.0.0", "name": f"{PREFIX}{PID}", "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": False, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": ranges,
                  "dataDir": os.path.join(TMP, "ipam")}},
        {"type": "meshlet-cni", "logFile": os.path.join(TMP, "meshlet-cni.log"), **meshlet_extra},
    ]}


def invoke(plugin, command, ns, config, pod=("shop", "cart-1"), netns_path=None):
    """Runs one plugin as a runtime does: (exit status, parsed stdout or None, raw stdout)."""
    env = {"PATH": PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": f"{ns}-id",
           "CNI_NETNS": netns_path if netns_path is not None else f"/var/run/netns/{ns}",
           "CNI_IFNAME": "eth0",
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod[0]};K8S_POD_NAME={pod[1]}",
           "CNI_PATH": f"{os.path.dirname(MESHLET_CNI)}:{CNI_DIR}"}
    binary = MESHLET_CNI if plugin["type"] == "meshlet-cni" else os.path.join(CNI_DIR,
                                                                               plugin["type"])
    result = subprocess.run([binary], input=json.dumps(config), capture_output=True, text=True,
                            env=env, timeout=60)
    parsed = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, parsed, result.stdout, result.stderr


def plugin_config(net, plugin, prev_result=None, runtime_config=None):
    """The configuration a runtime gives one plugin of the list (spec: section 'Deriving
    execution configuration from plugin configuration')."""
    config = dict(plugin)
    config["cniVersion"], config["name"] = net["cniVersion"], net["name"]
    if prev_result is not None:
        config["prevResult"] = prev_result
    if runtime_config is not None and plugin["type"] == "meshlet-cni":
        config["runtimeConfig"] = runtime_config
    return config


class Chain:
    """The conflist run for one pod namespace, as a runtime runs it."""

    def __init__(self, ns, meshlet_extra=None, annotations=None, pod=("shop", "cart-1")):
        self.ns, self.pod = ns, pod
        self.net = conflist(meshlet_extra or {})
        self.runtime = ({"io.kubernetes.cri.pod-annotations": annotations}
                        if annotations is not None else None)
        self.result = None

    def add(self):
        """ADD through the list; the meshlet-cni step's (status, result, stdout, stderr), and the
        bridge's result."""
        prev = None
        for plugin in self.net["plugins"]:
            out = invoke(plugin, "ADD", self.ns, plugin_config(self.net, plugin, prev,
                                                                self.runtime), self.pod)
            if plugin["type"] == "bridge":
                if out[0] != 0:
                    raise AssertionError(f"bridge ADD failed: {out[2]} {out[3]}")
                bridge_result = out[1]
            prev = out[1]
        if out[0] == 0:
            self.result = out[1]
        return out, bridge_result

    def run(self, command, plugins=None, netns_path=None):
        """CHECK (in order) or DEL (in reverse) with the cached result; the meshlet-cni step's
        answer."""
        plugins = plugins or self.net["plugins"]
        order = plugins if command != "DEL" else list(reversed(plugins))
        answer = None
        for plugin in order:
            out = invoke(plugin, command, self.ns,
                         plugin_config(self.net, plugin, self.result, self.runtime), self.pod,
                         netns_path)
            if plugin["type"] == "meshlet-cni":
                answer = out
            elif out[0] != 0:
                raise AssertionError(f"bridge {command} failed: {out[2]} {out[3]}")
        return answer

    def add_again(self):
        """ADD of meshlet-cni alone, with the list's result as prevResult (the bridge's interface
        exists already): its (status, result, stdout, stderr)."""
        plugin = self.meshlet_only()[0]
        return invoke(plugin, "ADD", self.ns,
                      plugin_config(self.net, plugin, self.result, self.runtime), self.pod)

    def meshlet_only(self):
        return [p for p in self.net["plugins"] if p["type"] == "meshlet-cni"]


def nat(ns, tool):
    """The namespace's nat table as iptables-save prints it, without comments and counters."""
    text = in_ns(ns, tool, "-t", "nat").stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]$", "[0:0]", line) for line in text.splitlines()
                     if not line.startswith("#"))


def tools():
    return ["iptables-save"] + (["ip6tables-save"] if IPV6 else [])


def inject(*flags):
    """A pod with CAPTURE_ANNOTATIONS as `meshctl inject FLAGS` writes it."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "cart-1", "namespace": "shop",
                        "annotations": CAPTURE_ANNOTATIONS},
           "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    path = os.path.join(TMP, "pod.json")
    with open(path, "w") as f:
        json.dump(pod, f)
    out = subprocess.run([MESHCTL, "inject", "-f", path, "-o", "json", *flags],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


def injected_init_args():
    """The arguments `meshctl inject` gives meshlet-init for a pod with CAPTURE_ANNOTATIONS."""
    init = [c for c in inject()["spec"]["initContainers"] if c["name"] == "meshlet-init"][0]
    assert init["args"][0] == "init", init["args"]
    return init["args"][1:]


class ChainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for ns in (POD, REFERENCE, PLAIN, API_POD):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        # The reference namespace: meshlet-init's rules for the same annotations, in a namespace
        # with addresses of the same families as the pod's.
        run("ip", "-n", REFERENCE, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        run("ip", "-n", REFERENCE, "addr", "add", "198.18.31.2/24", "dev", "eth0")
        if IPV6:
            run("ip", "-n", REFERENCE, "addr", "add", "fd00:31::2/64", "dev", "eth0", "nodad")
        for link in ("eth0", "eth1"):
            run("ip", "-n", REFERENCE, "link", "set", link, "up")
        cls.init_args = injected_init_args()
        in_ns(REFERENCE, SIDECAR, "init", *cls.init_args)

    def test_a_marked_pod_gets_meshlet_inits_rules_and_add_check_del_follow_the_spec(self):
        chain = Chain(POD, annotations=MARKED)
        (status, result, stdout, stderr), bridge_result = chain.add()
        self.assertEqual(status, 0, stdout + stderr)
        # The bridge's result, passed on unchanged.
        self.assertEqual(result, bridge_result)
        self.assertTrue(bridge_result["ips"], bridge_result)
        self.assertIn("outcome=captured", stderr)
        self.assertIn("sidecar init " + " ".join(self.init_args), stderr)
        # Exactly meshlet-init's rules, table for table.
        for tool in tools():
            self.assertEqual(nat(POD, tool), nat(REFERENCE, tool), tool)
            self.assertIn("MESHLET_OUTPUT", nat(POD, tool))
        self.assertIn("--dport 5432 -j RETURN", nat(POD, "iptables-save"))
        before = {tool: nat(POD, tool) for tool in tools()}

        # ADD again: the same tables, the same result.
        status, result, stdout, stderr = chain.add_again()
        self.assertEqual(status, 0, stdout + stderr)
        self.assertEqual(result, bridge_result)
        for tool in tools():
            self.assertEqual(nat(POD, tool), before[tool], f"{tool}: a second ADD changed it")

        # CHECK passes; with a rule gone it fails, naming what is missing; ADD repairs it.
        status, out, stdout, stderr = chain.run("CHECK")
        self.assertEqual((status, stdout), (0, ""), stderr)
        in_ns(POD, "iptables", "-t", "nat", "-D", "OUTPUT", "-p", "tcp", "-j", "MESHLET_OUTPUT")
        status, out, stdout, stderr = chain.run("CHECK")
        self.assertEqual(status, 1, stdout)
        self.assertEqual(out["code"], 100)
        self.assertEqual(out["cniVersion"], "1.0.0")
        self.assertEqual(out["msg"], "the pod's capture rules are not as installed")
        self.assertIn("the jump \"-A OUTPUT -p tcp -j MESHLET_OUTPUT\" is missing", out["details"])
        self.assertIn("outcome=failed", stderr)
        status, _, stdout, stderr = chain.add_again()
        self.assertEqual(status, 0, stdout + stderr)
        self.assertEqual(chain.run("CHECK")[0], 0)
        for tool in tools():
            self.assertEqual(nat(POD, tool), before[tool])

        # DEL removes exactly the capture rules (the bridge's DEL runs after, in reverse order).
        status, out, stdout, stderr = chain.run("DEL")
        self.assertEqual((status, stdout), (0, ""), stderr)
        self.assertIn("outcome=removed", stderr)
        for tool in tools():
            self.assertNotIn("MESHLET", nat(POD, tool))
        # DEL again, and DEL of a namespace that is gone: still success.
        self.assertEqual(chain.run("DEL")[0], 0)
        self.assertEqual(chain.run("DEL", netns_path="/var/run/netns/none-such")[0], 0)
        with open(os.path.join(TMP, "meshlet-cni.log")) as f:
            log = f.read()
        self.assertRegex(log, r"meshlet-cni ADD pod=shop/cart-1 container=\S+ outcome=captured")
        self.assertIn("meshlet-cni DEL pod=shop/cart-1", log)

    def test_pods_not_marked_pass_through_untouched(self):
        empty = {tool: nat(PLAIN, tool) for tool in tools()}
        for annotations in ({}, {"sidecar.meshlet.io/status": json.dumps(
                {"version": "0.1.0", "initContainers": ["meshlet-init"]})},
                            {**MARKED, "sidecar.meshlet.io/inject": "false"}):
            chain = Chain(PLAIN, annotations=annotations)
            (status, result, stdout, stderr), bridge_result = chain.add()
            self.assertEqual(status, 0, stdout + stderr)
            self.assertEqual(result, bridge_result)
            self.assertIn("outcome=skipped", stderr)
            for tool in tools():
                self.assertEqual(nat(PLAIN, tool), empty[tool])
            self.assertEqual(chain.run("CHECK")[0], 0)
            chain.run("DEL")
        # An excluded namespace is not looked at, marked or not.
        chain = Chain(PLAIN, annotations=MARKED, pod=("kube-system", "coredns-1"))
        (status, _, stdout, stderr), _ = chain.add()
        self.assertEqual(status, 0, stdout + stderr)
        self.assertIn("namespace kube-system is excluded", stderr)
        self.assertEqual(nat(PLAIN, "iptables-save"), empty["iptables-save"])
        chain.run("DEL")

    def test_a_marked_pod_whose_namespace_is_gone_is_error_3(self):
        chain = Chain(PLAIN, annotations=MARKED)
        plugin = chain.meshlet_only()[0]
        status, out, stdout, stderr = invoke(
            plugin, "ADD", PLAIN, plugin_config(chain.net, plugin, {"cniVersion": "1.0.0"},
                                                chain.runtime),
            netns_path="/var/run/netns/none-such")
        self.assertEqual(status, 1, stdout)
        self.assertEqual(out["code"], 3)
        self.assertIn("cannot enter the pod's network namespace /var/run/netns/none-such",
                      out["msg"])
        # Not marked: the same missing namespace does not matter.
        chain = Chain(PLAIN, annotations={})
        status, out, stdout, _ = invoke(
            plugin, "ADD", PLAIN, plugin_config(chain.net, plugin, {"cniVersion": "1.0.0"},
                                                chain.runtime),
            netns_path="/var/run/netns/none-such")
        self.assertEqual((status, out), (0, {"cniVersion": "1.0.0"}), stdout)

    def test_annotations_from_the_api_server(self):
        from fake_kubernetes_api import FakeApiServer
        from mesh_util import make_ca, make_server_cert
        global fake_api
        ca = make_ca(TMP, "cluster-ca")
        fake_api = FakeApiServer(make_server_cert(TMP, "apiserver", ca), TOKEN)
        token_file = os.path.join(TMP, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        kubernetes = {"kubernetes": {"server": fake_api.address, "caFile": ca[0],
                                     "tokenFile": token_file, "timeoutSeconds": 5}}
        fake_api.put("pods", {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "cart-2", "namespace": "shop",
                                           "annotations": MARKED},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}})
        chain = Chain(API_POD, meshlet_extra=kubernetes, pod=("shop", "cart-2"))
        (status, result, stdout, stderr), bridge_result = chain.add()
        self.assertEqual(status, 0, stdout + stderr)
        self.assertEqual(result, bridge_result)
        self.assertEqual(nat(API_POD, "iptables-save"), nat(REFERENCE, "iptables-save"))
        self.assertEqual(chain.run("DEL")[0], 0)
        # A pod the API server does not know: an error of meshlet-cni's own; a wrong token too.
        chain = Chain(API_POD, meshlet_extra=kubernetes, pod=("shop", "none-such"))
        (status, out, stdout, stderr), _ = chain.add()
        self.assertEqual(status, 1, stdout)
        self.assertEqual(out["code"], 101)
        self.assertIn("has no pod shop/none-such", out["msg"])
        chain.run("DEL")
        # The server is verified by name: its certificate is for 127.0.0.1, not localhost.
        by_name = {"kubernetes": dict(kubernetes["kubernetes"],
                                      server=fake_api.address.replace("127.0.0.1", "localhost"))}
        chain = Chain(API_POD, meshlet_extra=by_name, pod=("shop", "cart-2"))
        (status, out, stdout, stderr), _ = chain.add()
        self.assertEqual((status, out["code"]), (1, 101), stdout)
        self.assertIn("TLS with the API server https://localhost:", out["msg"])
        chain.run("DEL")
        with open(token_file, "w") as f:
            f.write("wrong\n")
        chain = Chain(API_POD, meshlet_extra=kubernetes, pod=("shop", "cart-2"))
        (status, out, stdout, stderr), _ = chain.add()
        self.assertEqual((status, out["code"]), (1, 101), stdout)
        self.assertIn("needs get on pods", out["msg"])
        chain.run("DEL")
        self.assertNotIn("MESHLET", nat(API_POD, "iptables-save"))


def teardown():
    global fake_api
    if fake_api is not None:
        fake_api.stop()
        fake_api = None
    for ns in (POD, REFERENCE, PLAIN, API_POD):
        if os.path.exists(f"/var/run/netns/{ns}"):
            netns.remove_namespace(ns)
    if os.path.exists(f"/sys/class/net/{BRIDGE}"):
        run("ip", "link", "del", BRIDGE, check=False)
    if TMP is not None and os.path.isdir(TMP):
        shutil.rmtree(TMP, ignore_errors=True)


def remove_leftovers():
    """What a killed earlier run left: its namespaces and its bridge."""
    netns.remove_leftovers(PREFIX, "abcd")
    for name in os.listdir("/sys/class/net"):
        match = re.fullmatch(rf"{PREFIX}(\d+)", name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            run("ip", "link", "del", name, check=False)


def unavailable():
    """Why the chain cannot run here, or None; sets IPV6."""
    global IPV6
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "iptables-save", "iptables-restore", "openssl"):
        if shutil.which(tool, path=PATH) is None:
            return f"{tool} is missing"
    for plugin in ("bridge", "host-local"):
        if not os.access(os.path.join(CNI_DIR, plugin), os.X_OK):
            return f"{CNI_DIR}/{plugin} is missing (apt-get install containernetworking-plugins)"
    remove_leftovers()
    reason, IPV6 = netns.probe_nat(f"{PREFIX}{PID}x")
    if reason is not None:
        return reason
    if not IPV6:
        print("SKIP IPv6: ip6tables or the kernel's IPv6 NAT is missing; IPv4 only")
    return None


def main():
    global MESHLET_CNI, SIDECAR, MESHCTL, TMP, MARKED
    if len(sys.argv) != 4:
        sys.exit("usage: cni_chain_test.py MESHLET_CNI SIDECAR MESHCTL")
    MESHLET_CNI, SIDECAR, MESHCTL = (os.path.abspath(p) for p in sys.argv[1:])
    reason = unavailable()
    if reason is not None:
        print(f"SKIP: needs root, iptables and the CNI plugins ({reason}); the chain does not run")
        return
    started = time.monotonic()
    TMP = tempfile.mkdtemp(prefix="cni_chain_", dir=os.environ.get("TEST_TMPDIR"))
    atexit.register(teardown)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    MARKED = {k: v for k, v in inject("--cni")["metadata"]["annotations"].items()
              if k.startswith(("sidecar.meshlet.io/", "traffic.meshlet.io/"))}
    try:
        result = unittest.TextTestRunner(verbosity=2).run(
            unittest.TestLoader().loadTestsFromTestCase(ChainTest))
    finally:
        teardown()
    print(f"cni_chain_test: {time.monotonic() - started:.1f}s")
    left = [n for n in (POD, REFERENCE, PLAIN, API_POD) if os.path.exists(f"/var/run/netns/{n}")]
    if left or os.path.exists(f"/sys/class/net/{BRIDGE}"):
        print(f"FAIL: left behind: {left} {BRIDGE}")
        sys.exit(1)
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
