"""Policy kept in Kubernetes: two control-plane replicas elect a leader through a Lease in a fake
API server; the leader alone mirrors meshlet.io objects (a TrafficPolicy) and Gateway API routes
into its store and writes route status back; when it dies the other takes over.

Usage: kubernetes_policy_test.py CONTROL_PLANE SIDECAR [unittest args]

The fake (fake_kubernetes_api.py) serves meshlet.io Services and TrafficPolicies, HTTPRoutes,
GRPCRoutes, ReferenceGrants, Gateways and GatewayClasses as custom resources (lists, watches), route status as a
merge-patched subresource, Events and Leases; every other meshlet.io kind answers 404, as when
its CRD is not installed. (kubectl_policy_test applies policy to it with kubectl.) Each replica has
its own bearer token and its own store (a data directory), so what a replica wrote, in Kubernetes
and in its store, is told apart. Shown:
- exactly one replica holds the Lease; only it writes (status patches, Events, its store);
- a TrafficPolicy created in Kubernetes appears in the leader's API (`meshctl get`), marked as
  mirrored, and `meshctl apply` of it is refused with a pointer at kubectl, as are an editor's
  writes claiming to be the mirror's with its header (counted); deleting it in Kubernetes
  deletes it from the store;
- a valid HTTPRoute appears in the leader's API and in the configuration of a sidecar connected
  to it (its route), gets its computed status (Accepted, ResolvedRefs) with observedGeneration
  its Kubernetes generation, and leaves the sidecar's configuration when deleted; an invalid one is not stored, gets a Warning
  Event naming the field, and its status says Accepted False (UnsupportedValue) with
  observedGeneration its metadata.generation;
- kinds whose CRD is missing are absent (a gauge), not an error loop;
- a GatewayClass of meshlet's controller and a Gateway are mirrored and served by the API, and
  HTTPRoutes whose parentRef names the Gateway get a parent status of
  meshlet.io/gateway-controller: Accepted, or NoMatchingListenerHostname; the GatewayClass and
  the Gateway get their own status (Accepted, the listener's attachedRoutes, Programmed False);
- the leader killed, the other replica leads within the lease duration and mirrors;
- the leader stopped (SIGTERM), it hands the Lease over and the other leads well before the lease
  duration.
"""

import copy
import json
import os
import signal
import sys
import tempfile
import time
import unittest

import cp_api
import sidecar_test
from fake_kubernetes_api import FakeApiServer
from mesh_util import (make_ca, make_server_cert, start_control_plane, start_xds_sidecar,
                       stop_process)
from sidecar_test import wait_for

CONTROL_PLANE = None  # set from argv
REPLICAS = ("cp-a", "cp-b")


def traffic_policy(name, attempts, generation=1):
    return {"apiVersion": "meshlet.io/v1", "kind": "TrafficPolicy",
            "metadata": {"name": name, "namespace": "shop", "uid": "u-" + name,
                         "generation": generation},
            "spec": {"target": name, "retries": {"attempts": attempts}}}


def http_route(name, rules, generation=1):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "shop", "uid": "u-" + name,
                         "generation": generation},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "ratings",
                                     "port": 80}],
                     "rules": rules}}


class KubernetesPolicyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t = cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cluster_ca = cls.cluster_ca = make_ca(t, "cluster-ca")
        cls.fake = FakeApiServer(make_server_cert(t, "apiserver", cluster_ca),
                                 [name + "-token" for name in REPLICAS])
        cls.cps = {}
        cls.sidecars = []
        try:
            for name in REPLICAS:
                cls.start_replica(name)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_replica(cls, name):
        t = cls.tmp
        token_file = os.path.join(t, name + ".token")
        with open(token_file, "w") as f:
            f.write(name + "-token\n")
        log = os.path.join(t, name + ".log")
        data = os.path.join(t, name + "-data")
        proc, api, ads = start_control_plane(
            CONTROL_PLANE, log, "--data-dir", data, "--replica-name", name,
            "--api-address", "127.0.0.1:0", "--xds-plaintext", "--xds-address",
            "127.0.0.1:0", "--webhook-address=off", "--otlp-address=",
            "--zipkin-address=", "--kubernetes-api", cls.fake.address,
            "--kubernetes-token-file", token_file, "--kubernetes-ca-file", cls.cluster_ca[0],
            "--kubernetes-watch-timeout", "2s", "--leader-election-lease-duration", "2s",
            "--leader-election-renew-deadline", "1s",
            "--leader-election-retry-period", "200ms")
        with open(os.path.join(data, "api-token")) as f:
            cls.cps[name] = {"proc": proc, "api": api, "ads": ads,
                             "token": f.read().strip(), "log": log}

    @classmethod
    def tearDownClass(cls):
        for sidecar in cls.sidecars:
            sidecar.stop()
        for cp in cls.cps.values():
            if cp["proc"].poll() is None:
                stop_process(cp["proc"])
        cls.fake.stop()

    def get(self, name, path):
        cp = self.cps[name]
        return cp_api.request(cp["api"], "GET", path, token=cp["token"])

    def logs(self):
        out = []
        for name, cp in self.cps.items():
            with open(cp["log"]) as f:
                out.append(f"--- {name}\n{f.read()[-4000:]}")
        return "\n".join(out)

    def metric(self, name, metric, **labels):
        _, text = self.get(name, "/metrics")
        total = 0
        for line in text.splitlines():
            if line.startswith(metric + "{") or line.startswith(metric + " "):
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def leader(self):
        return self.fake.lease_holder("meshlet-system", "meshlet-control-plane")

    def test_1_the_leader_alone_mirrors_policy_and_writes_status(self):
        self.assertTrue(wait_for(lambda: self.leader() in REPLICAS, 10), self.logs())
        leader = self.leader()
        follower = [n for n in REPLICAS if n != leader][0]
        policy = "/apis/meshlet.io/v1/namespaces/shop/trafficpolicies/ratings"

        self.fake.put("trafficpolicies", traffic_policy("ratings", 2))
        self.assertTrue(wait_for(lambda: self.get(leader, policy)[0] == 200, 10), self.logs())
        body = json.loads(self.get(leader, policy)[1])
        self.assertEqual(body["metadata"]["annotations"]["meshlet.io/managed-by"], "kubernetes")
        self.assertEqual(body["spec"]["retries"]["attempts"], 2)
        # An update in Kubernetes reaches the store.
        self.fake.put("trafficpolicies", traffic_policy("ratings", 3, generation=2))
        self.assertTrue(wait_for(lambda: json.loads(self.get(leader, policy)[1])
                                 ["spec"]["retries"]["attempts"] == 3, 10), self.logs())
        # meshctl apply of a mirrored object is refused, pointing at kubectl.
        cp = self.cps[leader]
        code, text = cp_api.request(
            cp["api"], "PUT", policy, token=cp["token"],
            body="kind: TrafficPolicy\nmetadata: {name: ratings}\nspec: {target: ratings}\n",
            headers={"Content-Type": "application/yaml"})
        self.assertEqual(code, 409, text)
        self.assertIn("kubectl", text)
        # So is an editor's that claims to be the mirror with its header: only the mirror inside
        # the control plane changes what it mirrored; the claim is counted and logged by name.
        code, text = cp_api.request(cp["api"], "POST", "/api/v1/operator-tokens",
                                    token=cp["token"], body='{"name":"ed","role":"editor"}',
                                    headers={"Content-Type": "application/json"})
        self.assertEqual(code, 201, text)
        editor = json.loads(text)["token"]
        for method, body in (("PUT", "kind: TrafficPolicy\nmetadata: {name: ratings}\n"
                                     "spec: {target: ratings}\n"), ("DELETE", None)):
            code, text = cp_api.request(
                cp["api"], method, policy, token=editor, body=body,
                headers={"Content-Type": "application/yaml", "x-meshlet-mirror": "kubernetes"})
            self.assertEqual(code, 409, f"{method}: {text}")
        self.assertEqual(self.metric(leader, "meshlet_cp_api_forged_mirror_header_total"), 2)
        with open(cp["log"]) as f:
            self.assertIn('from operator-token "ed" carries x-meshlet-mirror', f.read())
        self.assertEqual(json.loads(self.get(leader, policy)[1])["spec"]["retries"]["attempts"], 3)

        # Gateway API routes: a valid one is stored, an invalid one gets an Event and status.
        # A Service the route attaches to (through service discovery), and the route at a
        # generation the store's own numbering would not give it.
        self.fake.put("services", {
            "kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "ratings", "namespace": "shop", "uid": "u-svc"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.30", "clusterIPs": ["10.96.0.30"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        self.fake.put("httproutes", http_route("ratings-v1", [
            {"backendRefs": [{"name": "ratings", "port": 80}]}], generation=5))
        self.fake.put("httproutes", http_route("broken", [
            {"matches": [{"path": {"type": "RegularExpression", "value": "(("}}]}],
            generation=3))
        route = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/"
        self.assertTrue(wait_for(lambda: self.get(leader, route + "ratings-v1")[0] == 200, 10),
                        self.logs())
        # A sidecar in the namespace, connected to the leader and declaring ratings as its
        # dependency (pushed, not discovered on first use), gets the route.
        caller = start_xds_sidecar(self.tmp, self.cps[leader]["ads"], "caller-0", "shop",
                                   "--node-service=caller",
                                   "--node-label=meshlet.io/dependencies=ratings")
        self.sidecars.append(caller)

        def sent_config():
            code, text = self.get(leader, "/api/v1/proxies/caller-0/config")
            return text if code == 200 else ""

        self.assertTrue(wait_for(lambda: "shop/ratings-v1/rule-0" in sent_config(), 10),
                        sent_config()[:2000])

        def broken_status():
            with self.fake.cond:
                obj = self.fake.objects["httproutes"].get(("shop", "broken"), {})
                return obj.get("status", {}).get("parents", [])

        self.assertTrue(wait_for(lambda: broken_status(), 10), self.logs())
        parents = broken_status()

        def route_status(name):
            with self.fake.cond:
                obj = self.fake.objects["httproutes"].get(("shop", name), {})
                return obj.get("status", {}).get("parents", [])

        # The status computed for the valid route: Accepted and ResolvedRefs, observedGeneration
        # the one Kubernetes gave it.
        self.assertTrue(wait_for(lambda: route_status("ratings-v1"), 10), self.logs())
        good = route_status("ratings-v1")[0]
        self.assertEqual(good["controllerName"], "meshlet.io/mesh-controller")
        conditions = {c["type"]: c for c in good["conditions"]}
        self.assertEqual(conditions["Accepted"]["status"], "True", good)
        self.assertEqual(conditions["ResolvedRefs"]["status"], "True", good)
        self.assertEqual(conditions["Accepted"]["observedGeneration"], 5)
        self.assertTrue(conditions["Accepted"]["lastTransitionTime"])
        self.assertEqual(len(parents), 1)
        self.assertEqual(parents[0]["controllerName"], "meshlet.io/mesh-controller")
        self.assertEqual(parents[0]["parentRef"]["name"], "ratings")
        accepted = parents[0]["conditions"][0]
        self.assertEqual((accepted["type"], accepted["status"], accepted["reason"]),
                         ("Accepted", "False", "UnsupportedValue"))
        self.assertEqual(accepted["observedGeneration"], 3)
        self.assertIn("spec.rules[0].matches[0]", accepted["message"])
        self.assertEqual(self.get(leader, route + "broken")[0], 404)
        # The Event is written on its own, after the status it explains: waited for, not
        # expected at once.
        def invalid_event():
            with self.fake.cond:
                return any(e["reason"] == "Invalid" and e["regarding"]["name"] == "broken"
                           for _, e in self.fake.events)
        self.assertTrue(wait_for(invalid_event, 10), self.fake.events)
        with self.fake.cond:
            writes = list(self.fake.writes)
        # Only the leader wrote: status, Events; the follower's store has nothing mirrored.
        non_lease = [(who, method, path) for who, method, path, _ in writes
                     if "/leases" not in path]
        self.assertTrue(non_lease)
        self.assertEqual({who for who, _, _ in non_lease}, {leader + "-token"}, non_lease)
        self.assertEqual(self.get(follower, policy)[0], 404)
        self.assertEqual(self.metric(leader, "meshlet_cp_leader"), 1)
        self.assertEqual(self.metric(follower, "meshlet_cp_leader"), 0)
        # Kinds whose CRD is missing are absent, not retried in a loop.
        absent = "authorizationpolicies.meshlet.io"  # the fake does not serve it
        self.assertTrue(wait_for(lambda: self.metric(
            leader, "meshlet_cp_kubernetes_resource_absent", resource=absent) == 1, 10),
                        [line for line in self.get(leader, "/metrics")[1].splitlines()
                         if "meshlet_cp_kubernetes" in line])
        self.assertLessEqual(self.metric(leader, "meshlet_cp_kubernetes_lists_total",
                                         resource=absent), 2)

        # Deleted in Kubernetes, deleted from the store (and the route from the sidecar).
        self.fake.delete("trafficpolicies", "shop", "ratings")
        self.assertTrue(wait_for(lambda: self.get(leader, policy)[0] == 404, 10), self.logs())
        self.fake.delete("httproutes", "shop", "ratings-v1")
        self.assertTrue(wait_for(lambda: self.get(leader, route + "ratings-v1")[0] == 404, 10),
                        self.logs())
        self.assertTrue(wait_for(lambda: "shop/ratings-v1/rule-0" not in sent_config(), 10),
                        sent_config()[:2000])

    def test_1a_routes_attached_to_a_meshlet_gateway_get_its_parent_status(self):
        self.assertTrue(wait_for(lambda: self.leader() in REPLICAS, 10), self.logs())
        leader = self.leader()
        gw = "gateway.networking.k8s.io/v1"
        self.fake.put("gatewayclasses", {
            "apiVersion": gw, "kind": "GatewayClass",
            "metadata": {"name": "meshlet", "uid": "u-gc", "generation": 1},
            "spec": {"controllerName": "meshlet.io/gateway-controller"}})
        self.fake.put("gateways", {
            "apiVersion": gw, "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "shop", "uid": "u-gw", "generation": 1},
            "spec": {"gatewayClassName": "meshlet", "listeners": [
                {"name": "web", "port": 80, "protocol": "HTTP",
                 "hostname": "*.example.com"}]}})
        for name, hostname in (("edge-web", "shop.example.com"), ("edge-miss", "shop.example.org")):
            self.fake.put("httproutes", {
                "apiVersion": gw, "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": "shop", "uid": "u-" + name,
                             "generation": 2},
                "spec": {"parentRefs": [{"name": "edge", "sectionName": "web"}],
                         "hostnames": [hostname],
                         "rules": [{"backendRefs": [{"name": "ratings", "port": 80}]}]}})
        # Both kinds are mirrored into the leader's store and served by its API (each kind has
        # its own watch: either may arrive first).
        for path in ("/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/edge",
                     "/apis/gateway.networking.k8s.io/v1/gatewayclasses/meshlet"):
            self.assertTrue(wait_for(lambda: self.get(leader, path)[0] == 200, 10),
                            path + "\n" + self.logs())

        def gateway_parent(name):
            with self.fake.cond:
                obj = self.fake.objects["httproutes"].get(("shop", name), {})
                for p in obj.get("status", {}).get("parents", []):
                    if p["controllerName"] == "meshlet.io/gateway-controller":
                        return p
            return None

        self.assertTrue(wait_for(lambda: gateway_parent("edge-web") and gateway_parent(
            "edge-miss"), 10), self.logs())
        web = {c["type"]: c for c in gateway_parent("edge-web")["conditions"]}
        self.assertEqual((web["Accepted"]["status"], web["Accepted"]["reason"]),
                         ("True", "Accepted"), web)
        self.assertEqual(web["Accepted"]["observedGeneration"], 2)
        self.assertEqual(gateway_parent("edge-web")["parentRef"]["name"], "edge")
        miss = {c["type"]: c for c in gateway_parent("edge-miss")["conditions"]}
        self.assertEqual((miss["Accepted"]["status"], miss["Accepted"]["reason"]),
                         ("False", "NoMatchingListenerHostname"), miss)

        # The GatewayClass's and the Gateway's own status, written back by the leader: accepted,
        # the listener with the one route attached, not programmed (no proxy serves it).
        def status(kind, key):
            with self.fake.cond:
                return self.fake.objects[kind].get(key, {}).get("status", {})

        # The Gateway's status may first be written before its routes arrived (no route
        # attached); the leader writes it again once they are: wait for that one.
        def listeners_attached():
            listeners = status("gateways", ("shop", "edge")).get("listeners") or [{}]
            return listeners[0].get("attachedRoutes")

        self.assertTrue(wait_for(lambda: listeners_attached() == 1
                                 and status("gatewayclasses", ("", "meshlet")).get(
                                     "conditions"), 10),
                        "%s\n%s" % (status("gateways", ("shop", "edge")), self.logs()))
        edge = status("gateways", ("shop", "edge"))
        conditions = {c["type"]: c for c in edge["conditions"]}
        self.assertEqual((conditions["Accepted"]["status"], conditions["Accepted"]["reason"]),
                         ("True", "Accepted"), edge)
        self.assertEqual(conditions["Accepted"]["observedGeneration"], 1)
        self.assertEqual((conditions["Programmed"]["status"], conditions["Programmed"]["reason"]),
                         ("False", "Pending"), edge)
        self.assertEqual(edge["listeners"][0]["name"], "web")
        self.assertEqual(edge["listeners"][0]["attachedRoutes"], 1, edge)
        gc = {c["type"]: c for c in status("gatewayclasses", ("", "meshlet"))["conditions"]}
        self.assertEqual(gc["Accepted"]["status"], "True", gc)
        with self.fake.cond:
            writers = {who for who, method, path, _ in self.fake.writes
                       if path.split("?")[0].endswith(("/gateways/edge/status",
                                                       "/gatewayclasses/meshlet/status"))}
        self.assertEqual(writers, {leader + "-token"})

        # The Gateway's proxy: its ServiceAccount, Deployment and Service "edge-meshlet", owned
        # by the Gateway, written by the leader alone.
        def deployed(kind):
            with self.fake.cond:
                return copy.deepcopy(self.fake.objects[kind].get(("shop", "edge-meshlet")))

        self.assertTrue(wait_for(lambda: all(deployed(k) for k in (
            "serviceaccounts", "deployments", "services")), 10), self.logs())
        for kind in ("serviceaccounts", "deployments", "services"):
            owners = deployed(kind)["metadata"]["ownerReferences"]
            self.assertEqual([(o["kind"], o["name"], o["uid"], o["controller"]) for o in owners],
                             [("Gateway", "edge", "u-gw", True)], kind)
        pod = deployed("deployments")["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], "edge-meshlet")
        proxy = pod["containers"][0]
        self.assertIn("--gateway=shop/edge", proxy["args"])
        self.assertTrue(proxy["image"].startswith("meshlet-proxy:"), proxy["image"])
        self.assertEqual([p["port"] for p in deployed("services")["spec"]["ports"]], [80])
        # A listener added: the Service and the Deployment follow (the Service's clusterIP, set
        # by the API server, stays).
        with self.fake.cond:
            self.fake.objects["services"][("shop", "edge-meshlet")]["spec"]["clusterIP"] = \
                "10.96.0.9"
        self.fake.put("gateways", {
            "apiVersion": gw, "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "shop", "uid": "u-gw", "generation": 2},
            "spec": {"gatewayClassName": "meshlet", "listeners": [
                {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"},
                {"name": "alt", "port": 8080, "protocol": "HTTP"}]}})
        self.assertTrue(wait_for(lambda: len(deployed("services")["spec"]["ports"]) == 2, 10),
                        self.logs())
        self.assertEqual(deployed("services")["spec"].get("clusterIP"), "10.96.0.9")
        self.assertEqual(sorted(p["containerPort"] for p in deployed("deployments")["spec"][
            "template"]["spec"]["containers"][0]["ports"] if p["containerPort"] < 15000),
            [80, 8080])
        with self.fake.cond:
            writers = {who for who, method, path, _ in self.fake.writes
                       if "edge-meshlet" in path or path.split("?")[0].endswith(
                           ("/serviceaccounts", "/deployments", "/services"))}
        self.assertEqual(writers, {leader + "-token"})

    def test_2_another_replica_takes_over_when_the_leader_dies(self):
        self.assertTrue(wait_for(lambda: self.leader() in REPLICAS, 10), self.logs())
        leader = self.leader()
        follower = [n for n in REPLICAS if n != leader][0]
        self.cps[leader]["proc"].send_signal(signal.SIGKILL)
        self.cps[leader]["proc"].wait()
        died = time.time()
        self.assertTrue(wait_for(lambda: self.leader() == follower, 10), self.logs())
        # The lease duration (2 s), a retry period and some slack for a loaded machine.
        self.assertLess(time.time() - died, 5)
        self.fake.put("trafficpolicies", traffic_policy("reviews", 2))
        path = "/apis/meshlet.io/v1/namespaces/shop/trafficpolicies/reviews"
        self.assertTrue(wait_for(lambda: self.get(follower, path)[0] == 200, 10), self.logs())

    def test_3_a_leader_stopping_hands_the_lease_over(self):
        # test_2 killed one replica: start it again, as a follower.
        for name in REPLICAS:
            if self.cps[name]["proc"].poll() is not None:
                self.start_replica(name)
        self.assertTrue(wait_for(lambda: self.leader() in REPLICAS, 10), self.logs())
        leader = self.leader()
        follower = [n for n in REPLICAS if n != leader][0]
        self.assertTrue(wait_for(lambda: self.metric(follower, "meshlet_cp_leader") == 0
                                 and self.get(follower, "/metrics")[0] == 200, 10), self.logs())
        stopped = time.time()
        self.cps[leader]["proc"].send_signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: self.leader() == follower, 10), self.logs())
        took = time.time() - stopped
        self.assertEqual(self.cps[leader]["proc"].wait(timeout=10), 0)
        with open(self.cps[leader]["log"]) as f:
            self.assertIn("released Lease meshlet-system/meshlet-control-plane", f.read())
        # Waiting out the Lease would take its 2 s; handed over, the follower's next retry
        # (200 ms) takes it.
        self.assertLess(took, 1.5)


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv[1])
    sidecar_test.SIDECAR = os.path.abspath(sys.argv[2])
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
