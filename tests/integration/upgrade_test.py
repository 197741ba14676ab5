"""`meshctl upgrade` against a (fake) Kubernetes API server, reached through a kubeconfig as a
user's laptop would (docs/upgrades.md, ADR 0070). No pods run here: the test answers the
restart as a Deployment controller and the revision's webhook would (new pods annotated with
the revision, ready, the old ones gone, the status written), or does not, to see each check.

Usage: upgrade_test.py MESHCTL CONTROL_PLANE [unittest args]

Shown:
- a revision without an available control plane Deployment is refused before anything changes;
- --dry-run prints the plan (restart, pinned and opted-out Deployments left alone) and changes
  nothing;
- a move labels the namespace, sends the `kubectl rollout restart` patch to each Deployment and
  StatefulSet to move (and to no other), waits for the rollout, and reports the namespace on
  the revision;
  namespaces go one at a time, in the order given;
- moving to `default` removes the label and sets meshlet.io/inject=enabled;
- a rollout that does not finish ends with the exit code 1, what it waits for and the command
  that goes back;
- the kubeconfig's token is what the API server sees; a wrong one is an HTTP 401 error;
- a token from the kubeconfig user's exec credential plugin is sent, also when the plugin leaves
  a process behind holding its output; a failing plugin's error names the user, the command and
  its stderr;
- --check-proxies refuses a control plane of another revision than the target's;
- tag set refuses a tag whose configuration another meshlet configuration would overlap, and
  upgrade a namespace two configurations would inject, both before anything changes, unless
  --force (ADR 0082).
"""

import base64
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import cp_api
from fake_kubernetes_api import FakeApiServer
from mesh_util import make_ca, make_server_cert, start_control_plane, stop_process

MESHCTL = CONTROL_PLANE = None  # from argv
TOKEN = "operator-" + os.urandom(6).hex()


def deployment(name, namespace, template_labels=None, generation=1):
    labels = dict({"app": name}, **(template_labels or {}))
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "generation": generation},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels}, "spec": {}}},
            "status": {"observedGeneration": generation, "replicas": 2, "updatedReplicas": 2,
                       "availableReplicas": 2, "readyReplicas": 2}}


def pod(name, namespace, app, revision):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app},
                         "annotations": {"sidecar.meshlet.io/revision": revision}},
            "spec": {}, "status": {"phase": "Running",
                                   "conditions": [{"type": "Ready", "status": "True"}]}}


class Cluster(unittest.TestCase):
    """The fake API server, a kubeconfig for it, and a fresh cluster for each test."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        ca = make_ca(cls.tmp, "cluster-ca")
        cls.fake = FakeApiServer(make_server_cert(cls.tmp, "apiserver", ca), TOKEN)
        cls.kubeconfig = os.path.join(cls.tmp, "kubeconfig")
        with open(cls.kubeconfig, "w") as f:
            # The CA as a file relative to the kubeconfig, as kubeadm's admin.conf may have it.
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "test",
                       "contexts": [{"name": "test",
                                     "context": {"cluster": "fake", "user": "operator"}}],
                       "clusters": [{"name": "fake", "cluster": {
                           "server": cls.fake.address,
                           "certificate-authority": os.path.basename(ca[0])}}],
                       "users": [{"name": "operator", "user": {"token": TOKEN}}]}, f)

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def setUp(self):
        # A fresh cluster for each test: namespaces, control planes, the app.
        for kind in ("namespaces", "deployments", "statefulsets", "pods",
                     "mutatingwebhookconfigurations"):
            for key in list(self.fake.objects[kind]):
                self.fake.delete(kind, key[0], key[1])
        for revision in ("0-2-0", "canary"):
            self.fake.put("deployments", deployment("meshlet-control-plane-" + revision,
                                                    "meshlet-system"))
        for ns in ("shop", "pay"):
            self.fake.put("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": ns, "labels": {
                                             "meshlet.io/rev": "0-2-0"}}})
            self.fake.put("deployments", deployment("web", ns))
            for i in range(2):
                self.fake.put("pods", pod("web-old-%d" % i, ns, "web", "0-2-0"))
        self.fake.put("deployments", deployment("pinned", "shop", {"meshlet.io/rev": "0-2-0"}))
        self.fake.put("deployments", deployment("batch", "shop",
                                                {"sidecar.meshlet.io/inject": "false"}))
        with self.fake.cond:
            self.fake.writes.clear()

    def meshctl(self, *args, expect=0, kubeconfig=None, timeout=60, global_args=()):
        """meshctl [GLOBAL_ARGS] upgrade ARGS."""
        env = dict(os.environ, HOME=self.tmp)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env["KUBECONFIG"] = kubeconfig or self.kubeconfig
        p = subprocess.run([MESHCTL, *global_args, "upgrade", *args], capture_output=True,
                           text=True, env=env, timeout=timeout)
        self.assertEqual(p.returncode, expect, "meshctl upgrade %s\nstdout:\n%s\nstderr:\n%s" %
                         (args, p.stdout, p.stderr))
        return p

    def writes(self):
        with self.fake.cond:
            return [(method, path, body) for _, method, path, body in self.fake.writes]

    def controller(self, namespaces, revision, stop):
        """Plays the Deployment controller and the revision's webhook: a restarted `web`
        Deployment gets new pods on `revision`, then loses the old ones, and its status."""
        done = set()
        while not stop.is_set() and len(done) < len(namespaces):
            for ns in namespaces:
                with self.fake.cond:
                    d = self.fake.objects["deployments"].get((ns, "web"))
                annotations = d["spec"]["template"]["metadata"].get("annotations", {})
                if ns in done or "kubectl.kubernetes.io/restartedAt" not in annotations:
                    continue
                generation = d["metadata"]["generation"]
                for name in [k[1] for k in self.fake.objects["pods"] if k[0] == ns]:
                    self.fake.delete("pods", ns, name)
                for i in range(2):
                    self.fake.put("pods", pod("web-new-%d" % i, ns, "web", revision))
                d = json.loads(json.dumps(d))
                d["status"] = dict(d["status"], observedGeneration=generation)
                self.fake.put("deployments", d)
                done.add(ns)
            stop.wait(0.1)



class UpgradeTest(Cluster):
    def test_no_control_plane_for_the_revision_is_refused_first(self):
        p = self.meshctl("--revision", "nightly", "-n", "shop", expect=1)
        self.assertIn("revision nightly has no control plane: no Deployment "
                      "meshlet-control-plane-nightly in meshlet-system", p.stderr)
        self.fake.put("deployments", dict(deployment("meshlet-control-plane-nightly",
                                                     "meshlet-system"), status={}))
        p = self.meshctl("--revision", "nightly", "-n", "shop", expect=1)
        self.assertIn("has no available replica", p.stderr)
        self.assertEqual(self.writes(), [])

    def statefulset(self, namespace):
        """A StatefulSet `db` with a pod on 0-2-0."""
        s = deployment("db", namespace)
        s.update(kind="StatefulSet", status={"observedGeneration": 1, "replicas": 1,
                                             "updatedReplicas": 1, "readyReplicas": 1})
        s["spec"]["replicas"] = 1
        self.fake.put("statefulsets", s)
        self.fake.put("pods", pod("db-0", namespace, "db", "0-2-0"))

    def test_dry_run_plans_and_changes_nothing(self):
        self.statefulset("shop")
        p = self.meshctl("--revision", "canary", "-n", "shop", "--dry-run")
        self.assertIn("statefulset/db: restart (1 on 0-2-0)", p.stdout)
        self.assertIn("namespace shop: revision 0-2-0 -> canary (meshlet.io/rev=canary)", p.stdout)
        self.assertIn("deployment/web: restart (2 on 0-2-0)", p.stdout)
        self.assertIn("deployment/pinned: left alone: its pods are labelled "
                      "meshlet.io/rev=0-2-0", p.stdout)
        self.assertIn("deployment/batch: left alone: its pods opt out of injection", p.stdout)
        self.assertEqual(self.writes(), [])

    def test_moves_namespaces_one_at_a_time_and_back(self):
        stop = threading.Event()
        t = threading.Thread(target=self.controller, args=(["shop", "pay"], "canary", stop))
        t.start()
        try:
            p = self.meshctl("--revision", "canary", "-n", "shop", "-n", "pay")
        finally:
            stop.set()
            t.join()
        for ns in ("shop", "pay"):
            self.assertIn("namespace %s: on canary" % ns, p.stdout)
            self.assertEqual(self.fake.objects["namespaces"][("", ns)]["metadata"]["labels"]
                             ["meshlet.io/rev"], "canary")
        self.assertIn("deployment/web: 2/2 pods on canary, ready", p.stdout)
        patches = [(path, body) for method, path, body in self.writes() if method == "PATCH"]
        # shop relabelled and restarted before pay was touched; pinned and batch never.
        self.assertEqual([path for path, _ in patches],
                         ["/api/v1/namespaces/shop",
                          "/apis/apps/v1/namespaces/shop/deployments/web",
                          "/api/v1/namespaces/pay", "/apis/apps/v1/namespaces/pay/deployments/web"])
        self.assertIn("kubectl.kubernetes.io/restartedAt",
                      patches[1][1]["spec"]["template"]["metadata"]["annotations"])
        # Moved already: nothing to restart.
        p = self.meshctl("--revision", "canary", "-n", "shop")
        self.assertIn("deployment/web: already on canary", p.stdout)
        # Back to the unnamed revision: the label goes, meshlet.io/inject=enabled comes.
        stop = threading.Event()
        t = threading.Thread(target=self.controller, args=(["shop"], "default", stop))
        self.fake.put("deployments", dict(deployment("meshlet-control-plane", "meshlet-system")))
        t.start()
        try:
            self.meshctl("--revision", "default", "-n", "shop")
        finally:
            stop.set()
            t.join()
        labels = self.fake.objects["namespaces"][("", "shop")]["metadata"]["labels"]
        self.assertNotIn("meshlet.io/rev", labels)
        self.assertEqual(labels["meshlet.io/inject"], "enabled")

    def test_a_rollout_that_does_not_finish_times_out_with_the_way_back(self):
        self.statefulset("shop")
        started = time.monotonic()
        p = self.meshctl("--revision", "canary", "-n", "shop", "-n", "pay", "--rollout-timeout",
                         "2s",
                         expect=1)
        self.assertLess(time.monotonic() - started, 30)
        self.assertIn("namespace shop: not on canary after 2s: waiting for deployment/web: "
                      "the Deployment's rollout, 2 pod(s) still on 0-2-0, 0/2 ready on canary",
                      p.stderr)
        self.assertIn("statefulset/db: the StatefulSet's rollout, 1 pod(s) still on 0-2-0",
                      p.stderr)
        self.assertIn("to go back: meshctl upgrade --revision 0-2-0 -n shop", p.stderr)
        self.assertIn(("PATCH", "/apis/apps/v1/namespaces/shop/statefulsets/db"),
                      [(method, path) for method, path, _ in self.writes()])
        # pay was never touched.
        self.assertFalse(any("/namespaces/pay" in path for _, path, _ in self.writes()))

    def test_check_proxies_needs_the_revisions_own_api(self):
        # A control plane of the unnamed revision: --check-proxies for canary refuses to take its
        # word for canary's proxies, before anything changes.
        log = os.path.join(self.tmp, "cp.log")
        data = os.path.join(self.tmp, "cp-data")
        cp, api, _ = start_control_plane(
            CONTROL_PLANE, log, "--data-dir", data, "--api-address", "127.0.0.1:0",
            "--xds-address", "127.0.0.1:0", "--webhook-address=off", "--otlp-address=",
            "--zipkin-address=")
        try:
            with open(os.path.join(data, "api-token")) as f:
                token = f.read().strip()
            connect = ("--server", api, "--token", token, "--ca-file", cp_api.ca_file_for(api))
            # --revision canary implies canary's identity, which the unnamed revision's API
            # certificate does not carry: refused at the handshake (exit 3: unreachable).
            refused = self.meshctl("--revision", "canary", "-n", "shop", "--check-proxies",
                                   expect=3, global_args=connect)
            # Told to take the unnamed revision's identity, it asks that API which revision
            # it is, and refuses its answer.
            p = self.meshctl("--revision", "canary", "-n", "shop", "--check-proxies", expect=1,
                             global_args=connect + (
                                 "--server-identity",
                                 "spiffe://cluster.local/ns/meshlet-system/sa/"
                                 "meshlet-control-plane"))
        finally:
            stop_process(cp)
        self.assertIn("peer identity spiffe://cluster.local/ns/meshlet-system/sa/"
                      "meshlet-control-plane is not allowed; expected one of [spiffe://"
                      "cluster.local/ns/meshlet-system/sa/meshlet-control-plane-canary]",
                      refused.stderr)
        self.assertIn("is revision default, not canary: point meshctl at revision canary's API",
                      p.stderr)
        self.assertEqual(self.writes(), [])

    def test_the_kubeconfigs_token_is_sent(self):
        with open(self.kubeconfig) as f:
            config = json.load(f)
        config["users"][0]["user"]["token"] = "wrong"
        wrong = os.path.join(self.tmp, "wrong-kubeconfig")
        with open(wrong, "w") as f:
            json.dump(config, f)
        p = self.meshctl("--revision", "canary", "-n", "shop", kubeconfig=wrong, expect=1)
        self.assertIn("HTTP 401", p.stderr)
        self.assertEqual(self.writes(), [])

    def test_a_token_from_an_exec_credential_plugin(self):
        """A kubeconfig whose user runs a credential plugin (as EKS, GKE and AKS write them):
        a relative command is the kubeconfig's directory's, it gets its args, env and the
        request with the cluster's server and CA, and its token is what the API server sees."""
        plugin_dir = os.path.join(self.tmp, "bin")
        os.makedirs(plugin_dir, exist_ok=True)
        plugin = os.path.join(plugin_dir, "get-token")
        info = os.path.join(self.tmp, "exec-info")
        with open(plugin, "w") as f:
            f.write('#!/bin/sh\nprintf %%s "$KUBERNETES_EXEC_INFO" > %s\n'
                    '[ "$1 $PROFILE" = "--cluster=fake ops" ] || { echo "bad args" >&2; exit 2; }\n'
                    'echo \'{"apiVersion":"client.authentication.k8s.io/v1",'
                    '"kind":"ExecCredential","status":{"token":"%s"}}\'\n' % (info, TOKEN))
        os.chmod(plugin, 0o755)
        with open(self.kubeconfig) as f:
            config = json.load(f)
        config["users"][0]["user"] = {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": "bin/get-token",
            "args": ["--cluster=fake"], "env": [{"name": "PROFILE", "value": "ops"}],
            "interactiveMode": "IfAvailable", "provideClusterInfo": True}}
        exec_kubeconfig = os.path.join(self.tmp, "exec-kubeconfig")
        with open(exec_kubeconfig, "w") as f:
            json.dump(config, f)
        p = self.meshctl("--revision", "canary", "-n", "shop", "--dry-run",
                         kubeconfig=exec_kubeconfig)
        self.assertIn("deployment/web: restart (2 on 0-2-0)", p.stdout)
        with open(info) as f:
            request = json.load(f)
        self.assertEqual(request["apiVersion"], "client.authentication.k8s.io/v1")
        self.assertEqual(request["kind"], "ExecCredential")
        self.assertEqual(request["spec"]["interactive"], False)
        self.assertEqual(request["spec"]["cluster"]["server"], self.fake.address)
        with open(os.path.join(self.tmp, config["clusters"][0]["cluster"][
                "certificate-authority"]), "rb") as f:
            self.assertEqual(base64.b64decode(request["spec"]["cluster"][
                "certificate-authority-data"]), f.read())
        # A plugin that leaves a process behind holding its stdout and stderr: meshctl goes on
        # when the plugin exits, not when that process ends (within --kubernetes-exec-timeout).
        child_pid = os.path.join(self.tmp, "exec-child.pid")
        with open(plugin) as f:
            answering = f.read()
        with open(plugin, "w") as f:
            f.write(answering.replace("#!/bin/sh\n", "#!/bin/sh\nsleep 30 &\necho $! > %s\n"
                                      % child_pid, 1))
        try:
            started = time.monotonic()
            p = self.meshctl("--revision", "canary", "-n", "shop", "--dry-run",
                             "--kubernetes-exec-timeout", "20s", kubeconfig=exec_kubeconfig)
            took = time.monotonic() - started
        finally:
            if os.path.exists(child_pid):
                with open(child_pid) as f:
                    try:
                        os.kill(int(f.read()), 9)
                    except ProcessLookupError:
                        pass  # gone with the plugin's process group (a timeout kills it)
            with open(plugin, "w") as f:
                f.write(answering)
        self.assertIn("deployment/web: restart (2 on 0-2-0)", p.stdout)
        self.assertLess(took, 5)
        # A plugin that fails: the error names the user, the command and its stderr.
        config["users"][0]["user"]["exec"]["env"] = []
        with open(exec_kubeconfig, "w") as f:
            json.dump(config, f)
        p = self.meshctl("--revision", "canary", "-n", "shop", "--dry-run",
                         kubeconfig=exec_kubeconfig, expect=1)
        self.assertIn('user operator: exec plugin bin/get-token: exited with status 2; its '
                      'stderr: "bad args"', p.stderr)
        self.assertEqual(self.writes(), [])


POD_RULES = [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
              "resources": ["pods"], "scope": "Namespaced"}]
NOT_THE_MESH = {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["kube-system", "meshlet-system"]}


def injector(revision, name=None):
    """A revision's own MutatingWebhookConfiguration as the install renders it and its control
    plane keeps it (caBundle filled in): for the unnamed revision ("") namespaces labelled
    meshlet.io/inject=enabled and pods labelled sidecar.meshlet.io/inject=true, neither labelled
    meshlet.io/rev; for a named one namespaces and pods labelled meshlet.io/rev=REVISION. `name`
    replaces the configuration's name."""
    name = name or "meshlet-sidecar-injector" + ("-" + revision if revision else "")
    service = "meshlet-control-plane" + ("-" + revision if revision else "")
    no_rev = {"key": "meshlet.io/rev", "operator": "DoesNotExist"}
    not_off = {"key": "sidecar.meshlet.io/inject", "operator": "NotIn", "values": ["false"]}
    if revision:
        rev = {"key": "meshlet.io/rev", "operator": "In", "values": [revision]}
        selectors = [({"matchExpressions": [rev, NOT_THE_MESH]},
                      {"matchExpressions": [no_rev, not_off]}),
                     ({"matchExpressions": [NOT_THE_MESH]}, {"matchExpressions": [rev, not_off]})]
        names = ["namespace.%s.sidecar.meshlet.io" % revision,
                 "object.%s.sidecar.meshlet.io" % revision]
    else:
        selectors = [({"matchExpressions": [
                          {"key": "meshlet.io/inject", "operator": "In", "values": ["enabled"]},
                          no_rev, NOT_THE_MESH]},
                      {"matchExpressions": [not_off, no_rev]}),
                     ({"matchExpressions": [
                          {"key": "meshlet.io/inject", "operator": "DoesNotExist"}, no_rev,
                          NOT_THE_MESH]},
                      {"matchExpressions": [
                          {"key": "sidecar.meshlet.io/inject", "operator": "In",
                           "values": ["true"]}, no_rev]})]
        names = ["namespace.sidecar.meshlet.io", "object.sidecar.meshlet.io"]
    hooks = []
    for hook_name, (namespaces, pods) in zip(names, selectors):
        hooks.append({"name": hook_name, "admissionReviewVersions": ["v1"],
                      "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 7,
                      "reinvocationPolicy": "Never",
                      "clientConfig": {"service": {"name": service, "namespace": "meshlet-system",
                                                   "path": "/inject", "port": 443},
                                       "caBundle": "Q0EgUEVN"},
                      "rules": copy.deepcopy(POD_RULES), "namespaceSelector": namespaces,
                      "objectSelector": pods})
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "meshlet"}},
            "webhooks": hooks}


class TagTest(Cluster):
    """meshctl tag set|list|remove against the fake API server (ADR 0076), and meshctl upgrade
    --revision TAG. The cluster: revisions 0-2-0, canary and the unnamed one installed (their
    Deployments available, their webhook configurations with a caBundle)."""

    def setUp(self):
        super().setUp()
        self.fake.put("deployments", deployment("meshlet-control-plane", "meshlet-system"))
        for revision in ("", "0-2-0", "canary"):
            self.fake.put("mutatingwebhookconfigurations", injector(revision))
        with self.fake.cond:
            self.fake.writes.clear()

    def tag(self, *args, expect=0):
        env = dict(os.environ, HOME=self.tmp, KUBECONFIG=self.kubeconfig)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        p = subprocess.run([MESHCTL, "tag", *args], capture_output=True, text=True, env=env,
                           timeout=60)
        self.assertEqual(p.returncode, expect, "meshctl tag %s\nstdout:\n%s\nstderr:\n%s" %
                         (args, p.stdout, p.stderr))
        return p

    def configuration(self, name):
        with self.fake.cond:
            obj = self.fake.objects["mutatingwebhookconfigurations"].get(("", name))
            return json.loads(json.dumps(obj)) if obj else None

    def label_shop(self, value):
        ns = self.fake.objects["namespaces"][("", "shop")]
        ns = json.loads(json.dumps(ns))
        ns["metadata"]["labels"] = {"meshlet.io/rev": value}
        self.fake.put("namespaces", ns)

    def test_set_list_move_and_remove_a_tag(self):
        self.label_shop("prod")
        p = self.tag("set", "prod", "--revision", "canary")
        self.assertIn("tag prod -> revision canary: MutatingWebhookConfiguration "
                      "meshlet-revision-tag-prod created", p.stdout)
        self.assertIn("namespaces using it: shop; their new pods get revision canary's sidecar",
                      p.stdout)
        self.assertIn("meshctl upgrade --revision prod -n shop", p.stdout)
        tag = self.configuration("meshlet-revision-tag-prod")
        self.assertEqual(tag["metadata"]["labels"]["meshlet.io/tag"], "prod")
        self.assertEqual(tag["metadata"]["labels"]["meshlet.io/rev"], "canary")
        self.assertEqual(len(tag["webhooks"]), 2)
        for hook in tag["webhooks"]:
            # Canary's webhook, on the tag's path, as canary's configuration reaches it.
            self.assertEqual(hook["clientConfig"]["service"],
                             {"name": "meshlet-control-plane-canary",
                              "namespace": "meshlet-system", "path": "/inject/tag/prod",
                              "port": 443})
            self.assertEqual(hook["clientConfig"]["caBundle"], "Q0EgUEVN")
            self.assertEqual(hook["timeoutSeconds"], 7)
        by_namespace, by_object = tag["webhooks"]
        self.assertEqual(by_namespace["name"], "namespace.tag-prod.sidecar.meshlet.io")
        self.assertIn({"key": "meshlet.io/rev", "operator": "In", "values": ["prod"]},
                      by_namespace["namespaceSelector"]["matchExpressions"])
        self.assertIn({"key": "meshlet.io/rev", "operator": "DoesNotExist"},
                      by_namespace["objectSelector"]["matchExpressions"])
        self.assertIn({"key": "meshlet.io/rev", "operator": "In", "values": ["prod"]},
                      by_object["objectSelector"]["matchExpressions"])
        # Moving it takes --overwrite.
        p = self.tag("set", "prod", "--revision", "0-2-0", expect=1)
        self.assertIn("tag prod points at revision canary; give --overwrite to move it to 0-2-0",
                      p.stderr)
        self.assertEqual(self.configuration("meshlet-revision-tag-prod")["metadata"]["labels"]
                         ["meshlet.io/rev"], "canary")
        p = self.tag("set", "prod", "--revision", "0-2-0", "--overwrite")
        self.assertIn("tag prod -> revision 0-2-0 (was canary)", p.stdout)
        moved = self.configuration("meshlet-revision-tag-prod")
        self.assertEqual(moved["metadata"]["labels"]["meshlet.io/rev"], "0-2-0")
        self.assertEqual(moved["webhooks"][0]["clientConfig"]["service"]["name"],
                         "meshlet-control-plane-0-2-0")
        # The namespace was never relabelled.
        self.assertEqual([(m, path) for m, path, _ in self.writes() if "namespaces" in path], [])
        p = self.tag("list")
        self.assertRegex(p.stdout, r"TAG\s+REVISION\s+NAMESPACES\nprod\s+0-2-0\s+shop\n")
        # Removing a tag a namespace uses would leave its new pods without a sidecar.
        p = self.tag("remove", "prod", expect=1)
        self.assertIn("namespaces shop use tag prod (meshlet.io/rev=prod): without it their new "
                      "pods get no sidecar", p.stderr)
        self.assertIsNotNone(self.configuration("meshlet-revision-tag-prod"))
        p = self.tag("remove", "prod", "--force")
        self.assertIn("tag prod removed", p.stdout)
        self.assertIsNone(self.configuration("meshlet-revision-tag-prod"))
        self.assertIn("no tags", self.tag("list").stdout)

    def test_bad_tags_are_refused_before_anything_changes(self):
        p = self.tag("set", "canary", "--revision", "0-2-0", expect=1)
        self.assertIn('"canary" is a revision (Deployment meshlet-system/meshlet-control-plane-'
                      'canary exists): a tag may not share its name', p.stderr)
        p = self.tag("set", "prod", "--revision", "nightly", expect=1)
        self.assertIn("revision nightly has no control plane", p.stderr)
        p = self.tag("set", "Prod!", "--revision", "canary", expect=2)
        self.assertIn('"Prod!" is not a tag name', p.stderr)
        p = self.tag("set", "prod", expect=2)
        self.assertIn("tag set needs --revision NAME", p.stderr)
        # A revision whose control plane has not written its caBundle yet.
        fresh = injector("canary")
        for hook in fresh["webhooks"]:
            del hook["clientConfig"]["caBundle"]
        self.fake.put("mutatingwebhookconfigurations", fresh)
        p = self.tag("set", "prod", "--revision", "canary", expect=1)
        self.assertIn("has no caBundle yet", p.stderr)
        p = self.tag("remove", "nope", expect=1)
        self.assertIn("no tag nope", p.stderr)
        self.assertEqual(self.writes(), [])

    def test_the_default_tag_takes_over_from_the_unnamed_revisions_configuration(self):
        p = self.tag("set", "default", "--revision", "canary")
        self.assertIn("MutatingWebhookConfiguration meshlet-sidecar-injector: deactivated",
                      p.stdout)
        tag = self.configuration("meshlet-revision-tag-default")
        # The unnamed revision's selection: namespaces labelled meshlet.io/inject=enabled.
        self.assertIn({"key": "meshlet.io/inject", "operator": "In", "values": ["enabled"]},
                      tag["webhooks"][0]["namespaceSelector"]["matchExpressions"])
        self.assertEqual(tag["webhooks"][0]["clientConfig"]["service"]["path"],
                         "/inject/tag/default")
        never = {"key": "meshlet.io/deactivated", "operator": "In", "values": ["never-match"]}
        for hook in self.configuration("meshlet-sidecar-injector")["webhooks"]:
            self.assertIn(never, hook["namespaceSelector"]["matchExpressions"])
        # The unnamed revision again: its configuration active first, then the tag gone.
        p = self.tag("set", "default", "--revision", "default")
        self.assertIn("meshlet-sidecar-injector: active again", p.stdout)
        self.assertIsNone(self.configuration("meshlet-revision-tag-default"))
        # Its selectors as they were.
        self.assertEqual([hook["namespaceSelector"] for hook in
                          self.configuration("meshlet-sidecar-injector")["webhooks"]],
                         [hook["namespaceSelector"] for hook in injector("")["webhooks"]])
        methods = [(m, path.rsplit("/", 1)[1]) for m, path, _ in self.writes()]
        self.assertEqual(methods, [("POST", "mutatingwebhookconfigurations"),
                                   ("PATCH", "meshlet-sidecar-injector"),
                                   ("PATCH", "meshlet-sidecar-injector"),
                                   ("DELETE", "meshlet-revision-tag-default")])

    def test_a_tag_another_configuration_would_overlap_is_refused_unless_forced(self):
        """A configuration of a revision named like the tag (left behind, or installed while its
        control plane is not) selects the same namespaces and pods: tag set refuses, naming both
        configurations, their webhooks, the pods and the namespaces, and writes nothing (the dry
        run too); --force writes it, with the same as a warning. The unnamed revision's
        configuration edited to select every namespace labelled for injection overlaps a new
        tag too, before any namespace uses it."""
        self.label_shop("prod")
        self.fake.put("mutatingwebhookconfigurations", injector("prod"))
        with self.fake.cond:
            self.fake.writes.clear()
        for dry_run in ((), ("--dry-run",)):
            p = self.tag("set", "prod", "--revision", "canary", *dry_run, expect=1)
            self.assertIn("tag prod: its MutatingWebhookConfiguration meshlet-revision-tag-prod "
                          "would select pods another meshlet webhook configuration selects; the "
                          "API server would send each such pod to both webhooks, and the first "
                          "called would inject it:", p.stderr)
            self.assertIn("MutatingWebhookConfiguration meshlet-revision-tag-prod (webhook "
                          "namespace.tag-prod.sidecar.meshlet.io) and meshlet-sidecar-injector-"
                          "prod (webhook namespace.prod.sidecar.meshlet.io) both select pods "
                          "(!meshlet.io/rev,sidecar.meshlet.io/inject notin (false)) in "
                          "namespaces (kubernetes.io/metadata.name notin (kube-system,"
                          "meshlet-system),meshlet.io/rev=prod): now shop", p.stderr)
            self.assertIn("(webhook object.tag-prod.sidecar.meshlet.io) and meshlet-sidecar-"
                          "injector-prod (webhook object.prod.sidecar.meshlet.io) both select "
                          "pods (meshlet.io/rev=prod,sidecar.meshlet.io/inject notin (false))",
                          p.stderr)
            self.assertIn("or give --force", p.stderr)
        self.assertEqual(self.writes(), [])
        p = self.tag("set", "prod", "--revision", "canary", "--force")
        self.assertIn("warning: tag prod: its MutatingWebhookConfiguration", p.stderr)
        self.assertIn("written anyway (--force)", p.stderr)
        self.assertIn("tag prod -> revision canary", p.stdout)
        self.assertIsNotNone(self.configuration("meshlet-revision-tag-prod"))

        self.fake.delete("mutatingwebhookconfigurations", "", "meshlet-sidecar-injector-prod")
        broad = injector("")
        broad["webhooks"][0]["namespaceSelector"] = {
            "matchLabels": {"meshlet.io/inject": "enabled"}}
        self.fake.put("mutatingwebhookconfigurations", broad)
        p = self.tag("set", "stable", "--revision", "0-2-0", expect=1)
        self.assertIn("meshlet-revision-tag-stable (webhook namespace.tag-stable.sidecar."
                      "meshlet.io) and meshlet-sidecar-injector (webhook namespace.sidecar."
                      "meshlet.io) both select pods (!meshlet.io/rev,sidecar.meshlet.io/inject "
                      "notin (false)) in namespaces (kubernetes.io/metadata.name notin "
                      "(kube-system,meshlet-system),meshlet.io/inject=enabled,"
                      "meshlet.io/rev=stable): none yet", p.stderr)
        self.assertIsNone(self.configuration("meshlet-revision-tag-stable"))

    def test_upgrade_refuses_a_namespace_two_configurations_would_inject(self):
        """The unnamed revision's configuration as 0.1.0 installed it selects every namespace
        labelled meshlet.io/inject=enabled, also one labelled for a revision: moving such a
        namespace to canary is refused before anything changes, naming both configurations, and
        its object webhook selects pods labelled sidecar.meshlet.io/inject=true in any revision's
        namespace; --force goes on with the same as a warning. With the configuration as this
        release renders it, the namespaces move."""
        old = injector("")
        for hook in old["webhooks"]:
            hook["namespaceSelector"]["matchExpressions"] = [
                e for e in hook["namespaceSelector"]["matchExpressions"]
                if e["key"] != "meshlet.io/rev"]
        self.fake.put("mutatingwebhookconfigurations", old)
        ns = json.loads(json.dumps(self.fake.objects["namespaces"][("", "shop")]))
        ns["metadata"]["labels"] = {"meshlet.io/inject": "enabled"}
        self.fake.put("namespaces", ns)
        with self.fake.cond:
            self.fake.writes.clear()
        p = self.meshctl("--revision", "canary", "-n", "shop", expect=1)
        self.assertIn("namespace shop: more than one meshlet webhook configuration selects its "
                      "pods on canary; the API server would send each such pod to all of them, "
                      "and the first called would inject it:", p.stderr)
        self.assertIn("MutatingWebhookConfiguration meshlet-sidecar-injector (webhook "
                      "namespace.sidecar.meshlet.io) and meshlet-sidecar-injector-canary "
                      "(webhook namespace.canary.sidecar.meshlet.io) both select pods "
                      "(!meshlet.io/rev,sidecar.meshlet.io/inject notin (false)) in namespaces "
                      "(kubernetes.io/metadata.name notin (kube-system,meshlet-system),"
                      "meshlet.io/inject=enabled,meshlet.io/rev=canary): now shop", p.stderr)
        self.assertEqual(self.writes(), [])
        p = self.meshctl("--revision", "canary", "-n", "shop", "--dry-run", "--force")
        self.assertIn("moved anyway (--force)", p.stderr)
        self.assertIn("deployment/web: restart (2 on 0-2-0)", p.stdout)
        # Its object webhook selects pods labelled sidecar.meshlet.io/inject=true in any
        # namespace without meshlet.io/inject, on a revision or not.
        p = self.meshctl("--revision", "canary", "-n", "pay", "--dry-run", expect=1)
        self.assertIn("MutatingWebhookConfiguration meshlet-sidecar-injector (webhook "
                      "object.sidecar.meshlet.io) and meshlet-sidecar-injector-canary (webhook "
                      "namespace.canary.sidecar.meshlet.io) both select pods (!meshlet.io/rev,"
                      "sidecar.meshlet.io/inject=true) in namespaces", p.stderr)
        # With the unnamed revision's configuration as this release has it, both move.
        self.fake.put("mutatingwebhookconfigurations", injector(""))
        p = self.meshctl("--revision", "canary", "-n", "shop", "-n", "pay", "--dry-run")
        self.assertEqual(p.stderr, "")
        self.assertEqual(self.writes(), [])

    def test_upgrade_to_a_tag_restarts_without_relabelling(self):
        self.label_shop("prod")
        self.tag("set", "prod", "--revision", "canary")
        with self.fake.cond:
            self.fake.writes.clear()
        stop = threading.Event()
        t = threading.Thread(target=self.controller, args=(["shop"], "canary", stop))
        t.start()
        try:
            p = self.meshctl("--revision", "prod", "-n", "shop")
        finally:
            stop.set()
            t.join()
        self.assertIn("revision canary (tag prod): control plane meshlet-system/"
                      "meshlet-control-plane-canary available", p.stdout)
        self.assertIn("namespace shop: revision prod already (meshlet.io/rev=prod)", p.stdout)
        self.assertIn("deployment/web: 2/2 pods on canary, ready", p.stdout)
        self.assertIn("namespace shop: on canary", p.stdout)
        patches = [path for method, path, _ in self.writes() if method == "PATCH"]
        self.assertEqual(patches, ["/apis/apps/v1/namespaces/shop/deployments/web"])


if __name__ == "__main__":
    MESHCTL, CONTROL_PLANE = (os.path.abspath(a) for a in sys.argv[1:3])
    del sys.argv[1:3]
    unittest.main(verbosity=2)
