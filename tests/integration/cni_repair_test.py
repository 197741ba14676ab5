"""meshlet-cni-agent's race repair against the tests' fake Kubernetes API server (HTTPS, bearer
token): the agent lists the pods of its node and acts on those marked for meshlet-cni whose proxy
is not ready and which the plugin's log shows no capture of since they started.

Usage: cni_repair_test.py MESHLET_CNI_AGENT MESHLET_CNI

Shown, in mode evict: an uncaptured pod of a ReplicaSet is evicted (policy/v1 Eviction); one whose
PodDisruptionBudget refuses the first eviction (429) is evicted at a later pass, the refusal
counted; a captured pod (a `captured` line in the plugin's log since it started), a pod not
injected, a pod injected with meshlet-init and an uncaptured pod of another node are left alone;
a bare pod is only reported, once; a refused token counted as failed lists. In mode label: the pod is labelled
cni.meshlet.io/uncaptured=true (with the reason as an annotation) once, not evicted. Metrics:
meshlet_cni_pods_repaired_total{action}, meshlet_cni_repair_evictions_refused_total,
meshlet_cni_repair_failures_total, meshlet_cni_pods_uncaptured. On SIGTERM with
--uninstall-on-exit and --daemonset: the plugin stays in the chain while the DaemonSet stands (a
rolling update), and the conflist is restored byte for byte once it is being deleted or gone.
Everything is removed at the end.
"""

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

from cni_agent_client import AgentEndpoints, stop_agent, wait_for
from fake_kubernetes_api import FakeApiServer
from mesh_util import make_ca, make_server_cert
from ports import free_port

AGENT = PLUGIN = None
TOKEN = "node-agent-token"
NODE = "node-1"
CNI_STATUS = json.dumps({"version": "0.2.0", "capture": "cni",
                         "initContainers": ["meshlet-proxy"]}, separators=(",", ":"))
INIT_STATUS = json.dumps({"version": "0.2.0", "initContainers": ["meshlet-init", "meshlet-proxy"]},
                         separators=(",", ":"))
BRIDGE = """{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}}
  ]
}
"""
STARTED = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=2)
RS = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop-rs", "uid": "rs-1",
       "controller": True}]


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, status=CNI_STATUS, node=NODE, owners=RS, ready=False):
    annotations = {"sidecar.meshlet.io/status": status} if status else {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "shop", "name": name, "uid": f"uid-{name}",
                         "annotations": annotations, "ownerReferences": owners},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
            "status": {"phase": "Running", "startTime": rfc3339(STARTED),
                       "initContainerStatuses": [{"name": "meshlet-proxy", "ready": ready}]}}


class RepairTest(AgentEndpoints, unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cni-repair-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        ca = make_ca(self.tmp, "cluster-ca")
        self.api = FakeApiServer(make_server_cert(self.tmp, "apiserver", ca), TOKEN)
        self.addCleanup(self.api.stop)
        self.sa_dir = os.path.join(self.tmp, "serviceaccount")
        self.state_dir = os.path.join(self.tmp, "state")
        for d in ("net.d", "bin", "serviceaccount", "state"):
            os.mkdir(os.path.join(self.tmp, d))
        shutil.copy(ca[0], os.path.join(self.sa_dir, "ca.crt"))
        with open(os.path.join(self.sa_dir, "token"), "w") as f:
            f.write(TOKEN + "\n")
        self.port = free_port()
        self.agent = None

    def tearDown(self):
        stop_agent(self.agent, getattr(self, "log", None))

    def start(self, mode, *extra):
        if self.agent is not None:  # a second agent after the first stopped
            self.log.close()
        self.log = open(os.path.join(self.tmp, "agent.log"), "ab")
        self.agent = subprocess.Popen(
            [AGENT, "--cni-conf-dir", os.path.join(self.tmp, "net.d"),
             "--cni-bin-dir", os.path.join(self.tmp, "bin"), "--plugin-binary", PLUGIN,
             "--state-dir", self.state_dir, "--kubernetes-server", self.api.address,
             "--service-account-dir", self.sa_dir, "--http-address", f"127.0.0.1:{self.port}",
             "--node-name", NODE, "--repair-mode", mode, "--repair-interval", "1s", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.get("/healthz")[0] == 200, 10, "the agent serves /healthz")

    def plugin_logged(self, line):
        with open(os.path.join(self.state_dir, "cni.log"), "a") as f:
            f.write(line + "\n")

    def agent_log(self):
        with open(os.path.join(self.tmp, "agent.log")) as f:
            return f.read()

    def pods(self):
        with self.api.cond:
            return {name for (_, name) in self.api.objects["pods"]}

    def repaired(self, action):
        return self.metric(f'meshlet_cni_pods_repaired_total{{action="{action}"}}')

    def passes(self, n):
        """Waits for `n` more pod lists of the agent."""
        seen = len(self.api.seen("pods", watch=False))
        wait_for(lambda: len(self.api.seen("pods", watch=False)) >= seen + n, 10,
                 f"{n} more pod lists")

    def test_evicts_uncaptured_pods_of_controllers_and_leaves_the_rest(self):
        captured_at = STARTED + datetime.timedelta(seconds=1)
        # The plugin captured shop/captured after it started; shop/stale only before (an older
        # pod of the same name).
        self.plugin_logged(f"{captured_at.strftime('%Y-%m-%dT%H:%M:%S')}.250Z meshlet-cni ADD "
                           f"pod=shop/captured container=0123456789ab outcome=captured detail=\"\"")
        self.plugin_logged("2000-01-01T00:00:00.000Z meshlet-cni ADD pod=shop/stale "
                           "container=0123456789ab outcome=captured detail=\"\"")
        for p in (pod("uncaptured"), pod("stale"), pod("budgeted"), pod("captured"),
                  pod("ready", ready=True), pod("plain", status=None),
                  pod("init-mode", status=INIT_STATUS), pod("elsewhere", node="node-2"),
                  pod("bare", owners=[])):
            self.api.put("pods", p)
        self.api.refuse_evictions["shop/budgeted"] = 1
        self.start("evict")
        wait_for(lambda: {"uncaptured", "stale", "budgeted"}.isdisjoint(self.pods()), 15,
                 "the uncaptured pods evicted")
        self.assertEqual(sorted(self.api.evictions), ["shop/budgeted", "shop/stale",
                                                      "shop/uncaptured"])
        self.assertEqual(self.pods(), {"captured", "ready", "plain", "init-mode", "elsewhere",
                                       "bare"})
        # The field selector asked for this node's pods only.
        self.assertIn({"fieldSelector": f"spec.nodeName={NODE}"},
                      self.api.seen("pods", watch=False))
        self.passes(2)
        self.assertEqual(self.repaired("evict"), 3)
        self.assertEqual(self.metric("meshlet_cni_repair_evictions_refused_total"), 1)
        self.assertEqual(self.repaired("report"), 1)  # the bare pod, once over several passes
        self.assertEqual(self.repaired("label"), 0)
        self.assertEqual(self.metric("meshlet_cni_pods_uncaptured"), 1)
        for step in ("list", "evict", "label"):
            self.assertEqual(self.metric(f'meshlet_cni_repair_failures_total{{step="{step}"}}'), 0)
        log = self.agent_log()
        self.assertIn("evicted pod shop/uncaptured", log)
        self.assertIn("eviction of pod shop/budgeted refused for now (HTTP 429", log)
        self.assertIn("pod shop/bare is not captured", log)
        self.assertIn("a bare pod: not evicted", log)

    def test_label_mode_labels_once_and_evicts_nothing(self):
        self.api.put("pods", pod("uncaptured"))
        self.api.put("pods", pod("captured", ready=True))
        self.start("label")
        wait_for(lambda: (self.api.objects["pods"][("shop", "uncaptured")]["metadata"]
                          .get("labels") or {}).get("cni.meshlet.io/uncaptured") == "true", 15,
                 "the uncaptured pod labelled")
        self.passes(2)
        labelled = self.api.objects["pods"][("shop", "uncaptured")]["metadata"]
        self.assertIn("no capture by meshlet-cni", labelled["annotations"]["cni.meshlet.io/uncaptured"])
        self.assertNotIn("labels", self.api.objects["pods"][("shop", "captured")]["metadata"])
        self.assertEqual(self.api.evictions, [])
        patches = [w for w in self.api.writes if w[1] == "PATCH"]
        self.assertEqual(len(patches), 1, patches)  # labelled once; then only reported
        self.assertEqual(self.repaired("label"), 1)
        self.assertEqual(self.repaired("report"), 0)  # labelled is reported
        self.assertEqual(self.metric("meshlet_cni_pods_uncaptured"), 1)

    def test_refused_by_rbac_is_a_counted_failure_tried_again(self):
        self.api.put("pods", pod("uncaptured"))
        with open(os.path.join(self.sa_dir, "token"), "w") as f:
            f.write("not-the-token\n")
        self.start("evict")
        wait_for(lambda: (self.metric('meshlet_cni_repair_failures_total{step="list"}') or 0) >= 2,
                 10, "two failed lists")
        self.assertIn("the API server answered HTTP 401", self.agent_log())
        # The token is read again at each pass: once right, the repair goes through.
        with open(os.path.join(self.sa_dir, "token"), "w") as f:
            f.write(TOKEN + "\n")
        wait_for(lambda: self.api.evictions == ["shop/uncaptured"], 10, "the eviction")

    def test_sigterm_keeps_the_plugin_in_the_chain_while_the_daemonset_stands(self):
        conflist = os.path.join(self.tmp, "net.d", "10-pods.conflist")
        with open(conflist, "w") as f:
            f.write(BRIDGE)
        installed = os.path.join(self.tmp, "bin", "meshlet-cni")
        daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet",
                     "metadata": {"namespace": "meshlet-system", "name": "meshlet-cni-node"},
                     "spec": {}}
        flags = ("--uninstall-on-exit", "--daemonset", "meshlet-system/meshlet-cni-node",
                 "--check-interval", "1s")

        def run_and_stop():
            self.start("off", *flags)
            wait_for(lambda: self.get("/readyz")[0] == 200, 10, "meshlet-cni in the chain")
            self.agent.send_signal(signal.SIGTERM)
            self.assertEqual(self.agent.wait(10), 0)
            with open(conflist) as f:
                return f.read()

        # A rolling update or a restart: the DaemonSet stands, the plugin stays for the next agent.
        self.api.put("daemonsets", daemonset)
        self.assertIn('"type": "meshlet-cni"', run_and_stop())
        self.assertTrue(os.path.exists(installed))
        self.assertIn("stays (an update or a restart): meshlet-cni stays in the chain",
                      self.agent_log())
        # Being deleted (foreground deletion), then gone (background): the chain as it was found.
        self.api.put("daemonsets", dict(daemonset, metadata=dict(
            daemonset["metadata"], deletionTimestamp=rfc3339(datetime.datetime.now()))))
        self.assertEqual(run_and_stop(), BRIDGE)
        self.assertFalse(os.path.exists(installed))
        self.api.delete("daemonsets", "meshlet-system", "meshlet-cni-node")
        self.assertEqual(run_and_stop(), BRIDGE)
        self.assertEqual(self.agent_log().count("is gone or being deleted: uninstalling"), 2)


if __name__ == "__main__":
    AGENT, PLUGIN = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1] + sys.argv[3:])
