"""Policy applied with kubectl: an operator's `kubectl apply` of the demo's Gateway API routes
(examples/gateway-api) against the fake Kubernetes API server, a control plane watching it.

Usage: kubectl_policy_test.py CONTROL_PLANE EXAMPLE.yaml... [unittest args]
(SKIP without kubectl, a failure under `./dev test`, which installs it.)

kubectl (Debian's kubernetes-client) talks to the fake (fake_kubernetes_api.py) as to an API
server: discovery (it asks for aggregated discovery first and falls back to the legacy
documents), GET, POST, merge PATCH and DELETE of custom resources, lists of Events. It runs with
`--validate=false`: the fake publishes no OpenAPI documents (kubectl's validation downloads
them); the examples are validated against the official schemas offline by //tests/k8s. Shown,
each step read back with kubectl as an operator would:
- `kubectl apply -f examples/gateway-api/` creates the meshlet.io Services and the HTTPRoutes;
  the control plane (the Lease holder) mirrors them into its store (its API shows them) and
  writes each route's status: Accepted True with observedGeneration the route's generation;
- a changed route applied again gets generation 2 (a label alone does not change it), the store
  follows, and so does the status' observedGeneration; a status in an applied file changes
  nothing (status is the control plane's, through the status subresource);
- a GRPCRoute applied with kubectl gets its status too, and a ReferenceGrant (v1beta1) is
  mirrored;
- `kubectl delete` removes the route from the store;
- an invalid route gets Accepted False (UnsupportedValue, naming the field) and a Warning Event
  that `kubectl get events` lists, and is not stored.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import cp_api
from fake_kubernetes_api import FakeApiServer
from mesh_util import make_ca, make_server_cert, start_control_plane, stop_process

CONTROL_PLANE = None  # set from argv
EXAMPLES = None  # the directory of examples/gateway-api, from argv
ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/"
ACCEPTED = ('{.metadata.generation} {.status.parents[0].conditions[?(@.type=="Accepted")]'
            '.status} {.status.parents[0].conditions[?(@.type=="Accepted")].observedGeneration}')

BROKEN_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: broken
spec:
  parentRefs:
  - {group: "", kind: Service, name: ratings, port: 9080}
  rules:
  - matches:
    - path: {type: RegularExpression, value: "(("}
    backendRefs:
    - {name: ratings, port: 9080}
"""
# A GRPCRoute (v1) and a ReferenceGrant (v1beta1) letting routes in `shop` name Services in
# `payments`.
GRPC_AND_GRANT = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: ratings-grpc
spec:
  parentRefs:
  - {group: "", kind: Service, name: ratings, port: 9080}
  rules:
  - matches:
    - method: {service: ratings.Ratings, method: Get}
    backendRefs:
    - {name: ratings, port: 9080}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: from-shop
spec:
  from:
  - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}
  to:
  - {group: "", kind: Service}
"""


class KubectlPolicyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("kubectl") is None:
            reason = "needs kubectl (Debian's kubernetes-client)"
            # ./dev test installs it and asks for it.
            if os.environ.get("MESHLET_REQUIRE_K8S_SCHEMA") == "1":
                raise AssertionError(reason)
            print("SKIP: " + reason, flush=True)
            raise unittest.SkipTest(reason)
        t = cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.cluster_ca = make_ca(t, "cluster-ca")
        cls.fake = FakeApiServer(make_server_cert(t, "apiserver", cls.cluster_ca),
                                 ["control-plane-token", "operator-token"])
        cls.proc = None
        try:
            token_file = os.path.join(t, "cp.token")
            with open(token_file, "w") as f:
                f.write("control-plane-token\n")
            cls.log = os.path.join(t, "cp.log")
            data = os.path.join(t, "cp-data")
            cls.proc, cls.api, _ = start_control_plane(
                CONTROL_PLANE, cls.log, "--data-dir", data, "--replica-name", "cp-a",
                "--api-address", "127.0.0.1:0", "--xds-plaintext", "--xds-address",
                "127.0.0.1:0", "--webhook-address=off", "--otlp-address=", "--zipkin-address=",
                "--kubernetes-api", cls.fake.address, "--kubernetes-token-file", token_file,
                "--kubernetes-ca-file", cls.cluster_ca[0], "--kubernetes-watch-timeout", "5s",
                "--leader-election-lease-duration", "2s", "--leader-election-renew-deadline",
                "1s", "--leader-election-retry-period", "200ms")
            with open(os.path.join(data, "api-token")) as f:
                cls.api_token = f.read().strip()
        except BaseException:
            cls.tearDownClass()
            raise
        # The Services the routes attach to, as service discovery finds them in the cluster.
        for name, ip, port in (("reviews", "10.96.0.20", 9080), ("ratings", "10.96.0.30", 9080)):
            cls.fake.put("services", {
                "kind": "Service", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": "shop", "uid": "u-" + name},
                "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                         "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}})

    @classmethod
    def tearDownClass(cls):
        if cls.proc is not None and cls.proc.poll() is None:
            stop_process(cls.proc)
        cls.fake.stop()

    def kubectl(self, *args, check=True):
        """kubectl's stdout, with only the command line telling it where the cluster is (no
        kubeconfig) and a discovery cache of the test's own."""
        env = dict(os.environ, KUBECONFIG=os.path.join(self.tmp, "no-kubeconfig"),
                   HOME=self.tmp)
        r = subprocess.run(["kubectl", "--server", self.fake.address, "--token", "operator-token",
                            "--certificate-authority", self.cluster_ca[0], "--cache-dir",
                            os.path.join(self.tmp, "kube-cache"), "--namespace", "shop", *args],
                           capture_output=True, text=True, env=env, timeout=30)
        if check:
            self.assertEqual(r.returncode, 0, f"kubectl {' '.join(args)}:\n{r.stderr}")
        return r.stdout

    def until(self, what, wanted, timeout=10):
        """Polls `what()` until it returns `wanted`; fails with the last answer and the log."""
        deadline = time.time() + timeout
        while True:
            got = what()
            if got == wanted:
                return
            if time.time() > deadline:
                with open(self.log) as f:
                    self.fail(f"{got!r}, not {wanted!r}\n{f.read()[-4000:]}")
            time.sleep(0.2)

    def stored(self, path):
        """The control plane's object at `path` in its API, or None."""
        code, text = cp_api.request(self.api, "GET", path, token=self.api_token)
        return json.loads(text) if code == 200 else None

    def weights(self, name):
        route = self.stored(ROUTES + name)
        return route and [b.get("weight") for rule in route["spec"]["rules"]
                          for b in rule.get("backendRefs", [])]

    def accepted(self, *names):
        """Each route's generation, Accepted status and its observedGeneration, as kubectl
        shows them, in one list."""
        return self.kubectl("get", "httproutes.gateway.networking.k8s.io", *names, "-o",
                            "jsonpath={range .items[*]}" + ACCEPTED + " {end}"
                            if len(names) > 1 else "jsonpath=" + ACCEPTED).split()

    def test_routes_applied_with_kubectl_are_mirrored_and_get_status(self):
        out = self.kubectl("apply", "--validate=false", "-f", EXAMPLES)
        for line in ("service.meshlet.io/reviews-v1 created",
                     "httproute.gateway.networking.k8s.io/reviews created",
                     "httproute.gateway.networking.k8s.io/ratings created"):
            self.assertIn(line, out)
        # kubectl asked for aggregated discovery and fell back to the legacy documents.
        with self.fake.cond:
            asked = list(self.fake.discovery_requests)
        self.assertTrue(any(path == "/apis" and "apidiscovery.k8s.io" in accept
                            for path, accept in asked), asked)
        self.assertIn("/apis/gateway.networking.k8s.io/v1", [path for path, _ in asked])

        # The leader mirrors everything into its store...
        self.until(lambda: self.stored("/apis/meshlet.io/v1/namespaces/shop/services/reviews-v1")
                   is not None, True)
        self.until(lambda: self.weights("reviews"), [None, 90, 10])
        self.assertEqual(self.stored(ROUTES + "ratings")["metadata"]["annotations"]
                         ["meshlet.io/managed-by"], "kubernetes")
        # ...and writes the routes' status, which kubectl reads.
        self.until(lambda: self.accepted("reviews", "ratings"), ["1", "True", "1"] * 2)

        # The other Gateway API kinds: a GRPCRoute gets its status, a ReferenceGrant (v1beta1)
        # is mirrored.
        grpc_file = os.path.join(self.tmp, "grpc.yaml")
        with open(grpc_file, "w") as f:
            f.write(GRPC_AND_GRANT)
        self.kubectl("apply", "--validate=false", "-f", grpc_file)
        self.until(lambda: self.stored("/apis/gateway.networking.k8s.io/v1beta1/namespaces/shop/"
                                       "referencegrants/from-shop") is not None, True)
        self.until(lambda: self.kubectl("get", "grpcroutes.gateway.networking.k8s.io",
                                        "ratings-grpc", "-o", "jsonpath=" + ACCEPTED).split(),
                   ["1", "True", "1"])

        # A label changes no spec: same generation. A changed route: generation 2, the store
        # and the status follow.
        self.kubectl("label", "httproutes.gateway.networking.k8s.io", "reviews", "team=reviews")
        self.assertEqual(self.kubectl("get", "httproutes.gateway.networking.k8s.io", "reviews",
                                      "-o", "jsonpath={.metadata.generation}"), "1")
        with open(os.path.join(EXAMPLES, "20-reviews-canary.yaml")) as f:
            changed = f.read().replace("weight: 90", "weight: 50").replace("weight: 10",
                                                                           "weight: 50")
        changed_file = os.path.join(self.tmp, "reviews-50-50.yaml")
        with open(changed_file, "w") as f:
            f.write(changed)
        self.assertIn("httproute.gateway.networking.k8s.io/reviews configured",
                      self.kubectl("apply", "--validate=false", "-f", changed_file))
        self.until(lambda: self.weights("reviews"), [None, 50, 50])
        self.until(lambda: self.accepted("reviews"), ["2", "True", "2"])

        # A status in an applied file is not written (the status subresource's alone): no
        # version of the route since has lost its status, and its generation stays.
        route = "httproutes.gateway.networking.k8s.io/reviews"
        with self.fake.cond:
            before = self.fake.rv
        with open(changed_file, "a") as f:
            f.write("status:\n  parents: []\n")
        self.assertIn("httproute.gateway.networking.k8s.io/reviews configured",
                      self.kubectl("apply", "--validate=false", "-f", changed_file))
        with self.fake.cond:
            since = [obj for rv, kind, _, obj in self.fake.history
                     if kind == "httproutes" and rv > before
                     and obj["metadata"]["name"] == "reviews"]
        self.assertTrue(since)  # the last-applied annotation changed
        self.assertTrue(all(obj.get("status", {}).get("parents") for obj in since), since)
        self.assertEqual(self.accepted("reviews"), ["2", "True", "2"])

        # Deleted with kubectl, gone from the store.
        self.assertIn('httproute.gateway.networking.k8s.io "reviews" deleted',
                      self.kubectl("delete", "-f", changed_file))
        self.until(lambda: self.stored(ROUTES + "reviews"), None)
        self.assertIsNotNone(self.stored(ROUTES + "ratings"))

        # An invalid route: not stored, Accepted False naming the field, and a Warning Event.
        broken_file = os.path.join(self.tmp, "broken.yaml")
        with open(broken_file, "w") as f:
            f.write(BROKEN_ROUTE)
        self.kubectl("apply", "--validate=false", "-f", broken_file)
        self.until(lambda: self.accepted("broken"), ["1", "False", "1"])
        condition = json.loads(self.kubectl(
            "get", "httproutes.gateway.networking.k8s.io", "broken", "-o",
            "jsonpath={.status.parents[0].conditions[0]}"))
        self.assertEqual(condition["reason"], "UnsupportedValue")
        self.assertIn("spec.rules[0].matches[0]", condition["message"])
        self.assertIsNone(self.stored(ROUTES + "broken"))
        events = self.kubectl("get", "events", "-o", 'jsonpath={range .items[*]}'
                              '{.involvedObject.kind}/{.involvedObject.name} {.type} {.reason}'
                              '{"\\n"}{end}')
        self.assertIn("HTTPRoute/broken Warning Invalid", events.splitlines())


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv[1])
    examples = [a for a in sys.argv[2:] if a.endswith(".yaml")]
    EXAMPLES = os.path.dirname(os.path.abspath(examples[0]))
    unittest.main(argv=[sys.argv[0]] + sys.argv[2 + len(examples):], verbosity=2)
