"""Kubernetes service discovery: the control plane lists and watches Services, EndpointSlices and
Pods through a fake API server, and a real sidecar reaches the Services it finds.

Usage: kubernetes_discovery_test.py CONTROL_PLANE SIDECAR [unittest args]

No API server can run here, so the fake (HTTPS on 127.0.0.1, a "cluster CA", the control plane's
bearer token checked) answers in the shapes of the Kubernetes API reference: lists with
metadata.resourceVersion and `continue` pages, watches as a chunked stream of one JSON event per
line (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR with a 410 Status), ended after timeoutSeconds;
a watch from a resourceVersion older than its history gets the 410 ERROR event, as the API server
sends it. Every change gets the next resourceVersion (etcd's revision) and goes to the history
watches replay from. The "pods" are two HTTP servers on 127.0.0.2 and 127.0.0.3 (the same port,
named "web" in the Service's targetPort) without a sidecar; the caller is a real sidecar
configured over xDS. Shown:
- nothing is served before all three kinds are listed (the caller waits, with no configuration);
- lists are paged with a percent-encoded continue token;
- the Service becomes a destination: the caller reaches both pods in plaintext by its name, on the
  port the EndpointSlices resolved its named targetPort to; an ExternalName Service is left out;
- an endpoint that stops being ready leaves the caller's configuration within 1 s;
- a watch cut mid-stream resumes from the last resourceVersion without a list, and a change made
  meanwhile arrives;
- a 410 (history compacted) lists again and picks up a change the watch never announced;
- events of odd shapes and a line that is not JSON end the watch (counted), never the process,
  and it resumes;
- bookmarks move the resourceVersion the next watch starts from; expired watches are renewed;
- a deleted Service leaves the caller's configuration;
- endpoints carry the region and zone of their Node's topology labels (Nodes read as metadata);
- Pods are read as metadata only (PartialObjectMetadata), and a Pod update that changes nothing
  discovery reads (its status) publishes nothing while a label change does;
- the stats count lists, watches by how they ended, and events.
"""

import http.server
import json
import os
import socket
import sys
import tempfile
import threading
import time
import unittest

import cp_api
import sidecar_test
from fake_kubernetes_api import FakeApiServer
from mesh_util import (call_service, make_ca, make_server_cert, start_control_plane,
                       start_xds_sidecar, stop_all)
from sidecar_test import wait_for

CONTROL_PLANE = None  # set from argv
TOKEN = "discovery-token"
CLUSTER = "outbound|80||ratings.shop"


def service(name, ports, cluster_ip="10.96.0.30", type_="ClusterIP"):
    spec = {"type": type_, "ports": ports}
    if type_ == "ExternalName":
        spec["externalName"] = "example.invalid"
    else:
        spec.update({"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "selector": {"app": name}})
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "shop", "uid": "u-" + name}, "spec": spec}


def endpoint(address, pod, ready=True):
    return {"addresses": [address], "conditions": {"ready": ready, "serving": ready,
                                                    "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": pod, "uid": "u-" + pod},
            "nodeName": "node-1"}


def slice_(name, service_name, port, endpoints):
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": service_name,
                                    "endpointslice.kubernetes.io/managed-by":
                                        "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": endpoints}


def pod(name, labels):
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"serviceAccountName": "ratings",
                     "containers": [{"name": "app", "image": "ratings:1"}]},
            "status": {"phase": "Running"}}


class PodApp:
    """An HTTP server on `address`:`port` answering with its own name: a pod without sidecar."""

    def __init__(self, name, address, port):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                data = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def start_pod_apps():
    """Two apps on one port of 127.0.0.2 and 127.0.0.3 (retried if the port is taken)."""
    for _ in range(20):
        probe = socket.socket()
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            a = PodApp("ratings-a", "127.0.0.2", port)
        except OSError:
            continue
        try:
            b = PodApp("ratings-b", "127.0.0.3", port)
        except OSError:
            a.close()
            continue
        return port, [a, b]
    raise AssertionError("no common free port on 127.0.0.2 and 127.0.0.3")


class KubernetesDiscoveryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t = cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cluster_ca = make_ca(t, "cluster-ca")
        cls.fake = FakeApiServer(make_server_cert(t, "apiserver", cluster_ca), TOKEN)
        cls.apps, cls.sidecars, cls.cp = [], [], None
        try:
            cls.port, cls.apps = start_pod_apps()
            fake = cls.fake
            fake.put("services", service("ratings", [
                {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]))
            fake.put("services", service("legacy", [{"port": 443, "protocol": "TCP"}],
                                         type_="ExternalName"))
            fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", cls.port, [
                endpoint("127.0.0.2", "ratings-a"), endpoint("127.0.0.3", "ratings-b")]))
            fake.put("pods", pod("ratings-a", {"app": "ratings", "version": "v1"}))
            fake.put("pods", pod("ratings-b", {"app": "ratings", "version": "v2"}))
            for i in range(3):
                fake.put("pods", pod(f"other-{i}", {"app": "other"}))
            # The endpoints' node, with its topology labels (the slice names no zone).
            fake.put("nodes", {"kind": "Node", "apiVersion": "v1", "metadata": {
                "name": "node-1", "labels": {"topology.kubernetes.io/region": "eu-1",
                                             "topology.kubernetes.io/zone": "eu-1a"}}})
            # Pods cannot be listed at first: nothing may be served meanwhile.
            fake.fail_lists.add("pods")
            token_file = os.path.join(t, "token")
            with open(token_file, "w") as f:
                f.write(TOKEN + "\n")
            cls.log = os.path.join(t, "cp.log")
            cls.cp, cls.api, cls.ads = start_control_plane(
                CONTROL_PLANE, cls.log, "--data-dir", os.path.join(t, "cp-data"),
                "--api-address", "127.0.0.1:0", "--xds-plaintext", "--xds-address",
                "127.0.0.1:0", "--webhook-address=off", "--otlp-address=", "--zipkin-address=",
                "--kubernetes-api", fake.address, "--kubernetes-token-file", token_file,
                "--kubernetes-ca-file", cluster_ca[0], "--kubernetes-list-page-size", "2",
                "--kubernetes-watch-timeout", "2s", "--xds-debounce", "50ms")
            # The caller connects while the pods cannot be listed: it gets nothing (and is not
            # ready) until they can.
            started = {}

            def start_caller():
                try:
                    started["caller"] = start_xds_sidecar(t, cls.ads, "caller-0", "shop",
                                                          "--node-service=caller")
                except BaseException as e:  # reported below
                    started["error"] = e

            thread = threading.Thread(target=start_caller)
            thread.start()
            cls.waited = wait_for(lambda: "cannot generate resources for caller-0: waiting for "
                                          "Kubernetes discovery" in cls.read_log(), 8)
            time.sleep(0.5)
            cls.served_before_listed = "caller" in started
            fake.fail_lists.clear()
            thread.join()
            if "error" in started:
                raise started["error"]
            cls.caller = started["caller"]
            cls.sidecars.append(cls.caller)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.cp is not None:
            stop_all(cls.sidecars, cls.apps, cls.cp)
        else:
            for app in cls.apps:
                app.close()
        cls.fake.stop()

    def hosts(self):
        _, body, _ = self.caller.get("/clusters")
        for cluster in json.loads(body)["clusters"]:
            if cluster["name"] == CLUSTER:
                return sorted(h["address"] for h in cluster["hosts"])
        return None

    def metric(self, name, **labels):
        with cp_api.urlopen(f"https://{self.api}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    @classmethod
    def read_log(cls):
        with open(cls.log) as f:
            return f.read()

    def cp_log(self):
        return self.read_log()

    def test_1_nothing_is_served_before_everything_is_listed_then_the_service_is_reachable(self):
        self.assertTrue(self.waited, self.cp_log())
        self.assertFalse(self.served_before_listed)
        self.assertGreaterEqual(self.metric("meshlet_cp_kubernetes_lists_total",
                                            resource="pods", result="http_error"), 1)
        expected = [f"127.0.0.2:{self.port}", f"127.0.0.3:{self.port}"]
        # The caller discovers the Service on its first request to it (on-demand, the default),
        # which is answered.
        self.assertTrue(wait_for(
            lambda: call_service(self.caller.outbound, "ratings.shop", "/")[0] == 200, 10),
            self.cp_log())
        self.assertTrue(wait_for(lambda: self.hosts() == expected, 10),
                        f"{self.hosts()}\n{self.cp_log()}")
        # Paged lists: 5 pods at 2 per page, the token percent-encoded on the way.
        pages = [q for q in self.fake.seen("pods", watch=False) if "continue" in q]
        self.assertGreaterEqual(len(pages), 2)
        # Pods (and namespaces, for Gateways' allowedRoutes) are read as metadata only (lists and
        # watches); the other kinds whole.
        with self.fake.cond:
            partial = [k for k, _ in self.fake.metadata_only_requests]
        self.assertEqual(partial.count("pods"), len(self.fake.seen("pods", watch=False)) +
                         len(self.fake.seen("pods", watch=True)))
        self.assertEqual(set(partial), {"pods", "namespaces", "nodes"})
        # The endpoints carry their Node's region and zone (its labels; the slice has no zone).
        _, body, _ = self.caller.get("/config_dump")
        localities = []

        def walk(value):
            if isinstance(value, dict):
                if value.get("address", "").startswith("127.0.0.2") and "locality" in value:
                    localities.append(value["locality"])
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)
        walk(json.loads(body))
        self.assertIn({"region": "eu-1", "zone": "eu-1a", "node": "node-1"}, localities, body)
        # Both pods answer by the Service's name, in plaintext, on the resolved target port.
        answered = set()
        for _ in range(20):
            code, body = call_service(self.caller.outbound, "ratings.shop.svc.cluster.local",
                                      "/")
            self.assertEqual(code, 200, body)
            answered.add(body)
        self.assertEqual(answered, {"ratings-a", "ratings-b"})
        # The ExternalName Service is no destination.
        code, _ = call_service(self.caller.outbound, "legacy.shop", "/")
        self.assertEqual(code, 404)
        self.assertEqual(self.metric("meshlet_cp_kubernetes_services"), 1)

    def test_1b_updates_that_change_nothing_discovery_reads_publish_nothing(self):
        self.assertTrue(wait_for(lambda: self.hosts() is not None, 10))
        time.sleep(0.3)
        published = self.metric("meshlet_cp_kubernetes_publications_total")
        modified = self.metric("meshlet_cp_kubernetes_events_total", resource="pods",
                               type="modified")
        changed = pod("ratings-a", {"app": "ratings", "version": "v1"})
        changed["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        self.fake.put("pods", changed)
        self.assertTrue(wait_for(lambda: self.metric(
            "meshlet_cp_kubernetes_events_total", resource="pods", type="modified") > modified, 5))
        time.sleep(0.3)
        self.assertEqual(self.metric("meshlet_cp_kubernetes_publications_total"), published)
        # A label change is published.
        self.fake.put("pods", pod("ratings-a", {"app": "ratings", "version": "v1", "x": "y"}))
        self.assertTrue(wait_for(lambda: self.metric(
            "meshlet_cp_kubernetes_publications_total") > published, 5))

    def test_2_an_endpoint_that_is_not_ready_leaves_within_a_second(self):
        self.assertTrue(wait_for(lambda: self.hosts() is not None and len(self.hosts()) == 2, 10))
        self.fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", self.port, [
            endpoint("127.0.0.2", "ratings-a"), endpoint("127.0.0.3", "ratings-b", ready=False)]))
        start = time.time()
        self.assertTrue(wait_for(lambda: self.hosts() == [f"127.0.0.2:{self.port}"], 5),
                        self.hosts())
        elapsed = time.time() - start
        self.assertLess(elapsed, 1.0)
        for _ in range(5):
            self.assertEqual(call_service(self.caller.outbound, "ratings.shop", "/"),
                             (200, "ratings-a"))
        self.fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", self.port, [
            endpoint("127.0.0.2", "ratings-a"), endpoint("127.0.0.3", "ratings-b")]))
        self.assertTrue(wait_for(lambda: len(self.hosts()) == 2, 5), self.hosts())

    def test_3_a_dropped_watch_resumes_from_its_resource_version(self):
        self.assertTrue(wait_for(lambda: self.hosts() is not None and len(self.hosts()) == 2, 10))
        lists = len(self.fake.seen("endpointslices", watch=False))
        watches = len(self.fake.seen("endpointslices", watch=True))
        last = self.fake.last_rv("endpointslices")
        self.fake.command("endpointslices", "drop")
        self.assertTrue(wait_for(lambda: self.metric(
            "meshlet_cp_kubernetes_watches_total", resource="endpointslices",
            result="closed") >= 1, 5), self.cp_log())
        # A change while no watch is open.
        self.fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", self.port, [
            endpoint("127.0.0.2", "ratings-a"), endpoint("127.0.0.3", "ratings-b"),
            endpoint("127.0.0.9", "ratings-c")]))
        self.assertTrue(wait_for(lambda: len(self.hosts()) == 3, 10), self.hosts())
        resumed = self.fake.seen("endpointslices", watch=True)[watches:]
        self.assertTrue(resumed)
        # From the resourceVersion of the last event it had, not a list.
        self.assertEqual(int(resumed[0]["resourceVersion"]), last)
        self.assertEqual(len(self.fake.seen("endpointslices", watch=False)), lists)

    def test_4_gone_lists_again(self):
        self.assertTrue(wait_for(lambda: self.hosts() is not None, 10))
        lists = len(self.fake.seen("endpointslices", watch=False))
        # History compacted, and a change no watch announced.
        self.fake.compact()
        self.fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", self.port, [
            endpoint("127.0.0.2", "ratings-a")]), announce=False)
        self.fake.command("endpointslices", "gone")
        self.assertTrue(wait_for(lambda: self.hosts() == [f"127.0.0.2:{self.port}"], 10),
                        f"{self.hosts()}\n{self.cp_log()}")
        self.assertGreater(len(self.fake.seen("endpointslices", watch=False)), lists)
        self.assertGreaterEqual(self.metric("meshlet_cp_kubernetes_watches_total",
                                            resource="endpointslices", result="gone"), 1)
        self.assertIn("listing endpointslices again", self.cp_log())

    def test_5_bookmarks_move_the_resource_version_and_expired_watches_are_renewed(self):
        # test_4 compacted the history: a services watch from before that gets 410 and lists
        # again, which moves its resourceVersion too. Wait for that first, so that below only
        # the bookmark can move it.
        compacted = self.fake.compacted
        self.assertTrue(wait_for(lambda: any(
            int(q["resourceVersion"]) >= compacted for q in self.fake.seen("services", watch=True)),
            10), self.fake.seen("services", watch=True)[-3:])
        # A change of another kind moves the global resourceVersion; a bookmark tells the
        # services watch, whose next watch starts there.
        rv = self.fake.put("pods", pod("other-9", {"app": "other"}))
        self.fake.command("services", "bookmark")
        self.assertTrue(wait_for(lambda: any(
            int(q["resourceVersion"]) >= rv for q in self.fake.seen("services", watch=True)), 10),
            self.fake.seen("services", watch=True)[-3:])
        self.assertGreaterEqual(self.metric("meshlet_cp_kubernetes_events_total",
                                            resource="services", type="bookmark"), 1)
        self.assertGreaterEqual(self.metric("meshlet_cp_kubernetes_watches_total",
                                            resource="services", result="expired"), 1)
        for query in self.fake.seen("services", watch=True):
            self.assertEqual(query["allowWatchBookmarks"], "true")
            self.assertEqual(query["timeoutSeconds"], "2")

    def test_5b_malformed_events_end_the_watch_which_resumes(self):
        self.assertTrue(wait_for(lambda: self.hosts() is not None, 10))
        before = self.hosts()
        for kind in ("services", "endpointslices", "pods"):
            self.fake.command(kind, "malformed")
        for kind in ("services", "endpointslices", "pods"):
            self.assertTrue(wait_for(lambda: self.metric(
                "meshlet_cp_kubernetes_watches_total", resource=kind, result="malformed") >= 1,
                5), self.cp_log())
        self.assertIsNone(self.cp.poll(), self.cp_log())
        # Still following: a change after the resumed watch arrives.
        self.fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", self.port, [
            endpoint("127.0.0.2", "ratings-a"), endpoint("127.0.0.3", "ratings-b")]))
        self.assertTrue(wait_for(lambda: len(self.hosts()) == 2, 10), self.hosts())
        self.fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", self.port, [
            endpoint(h.split(":")[0], "ratings-a") for h in before]))
        self.assertTrue(wait_for(lambda: self.hosts() == before, 10), self.hosts())

    def test_6_a_pod_with_a_connected_sidecar_is_reached_through_it(self):
        # A sidecar registered as a member of ratings: not a destination by its registration
        # alone (the EndpointSlices decide), then through its inbound listener once its address
        # is in them.
        self.fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", self.port, [
            endpoint("127.0.0.2", "ratings-a")]))
        only_a = [f"127.0.0.2:{self.port}"]
        self.assertTrue(wait_for(lambda: self.hosts() == only_a, 5), self.hosts())
        app = sidecar_test.HttpUpstream("ratings-c")
        self.apps.append(app)
        # Its own address, as every pod has (the caller's sidecar is on 127.0.0.1).
        member = start_xds_sidecar(self.tmp, self.ads, "ratings-c", "shop",
                                   "--node-service=ratings", f"--node-port={app.port}",
                                   address="127.0.0.4")
        self.sidecars.append(member)
        time.sleep(0.5)
        self.assertEqual(self.hosts(), only_a, f"ratings-c inbound {member.inbound}")
        self.fake.put("endpointslices", slice_("ratings-x7k2p", "ratings", self.port, [
            endpoint("127.0.0.4", "ratings-c")]))
        self.assertTrue(wait_for(lambda: self.hosts() == [f"127.0.0.4:{member.inbound}"], 5),
                        self.hosts())
        code, body = call_service(self.caller.outbound, "ratings.shop", "/c")
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["upstream"], "ratings-c")
        self.assertIn("/c", app.paths)

    def test_8_a_deleted_service_leaves(self):
        self.assertTrue(wait_for(lambda: self.hosts() is not None, 10))
        self.fake.delete("services", "shop", "ratings")
        self.assertTrue(wait_for(lambda: self.hosts() is None, 5), self.hosts())
        # ratings-c's registration still names a service "ratings" (on its app port), as it
        # would without Kubernetes: the name now leads there, not to the Service's pods.
        code, body = call_service(self.caller.outbound, "ratings.shop", "/")
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["upstream"], "ratings-c")
        self.assertGreaterEqual(self.metric("meshlet_cp_kubernetes_events_total",
                                            resource="services", type="deleted"), 1)
        self.assertEqual(self.metric("meshlet_cp_kubernetes_services"), 0)

    def test_9_a_namespace_label_sets_its_sidecars_outbound_traffic_policy(self):
        # A captured sidecar of namespace shop (capture as registered; nothing redirects here):
        # its outbound listener passes unknown destinations through (MeshConfig's ALLOW_ANY),
        # until the Namespace's label says REGISTRY_ONLY, and again once it is removed.
        guard = start_xds_sidecar(self.tmp, self.ads, "guard-0", "shop", "--node-service=guard",
                                  "--node-label=meshlet.io/capture=iptables")
        self.sidecars.append(guard)

        def outbound():
            _, body, _ = guard.get("/config_dump")
            for listener in json.loads(body).get("resources", {}).get("listeners", []):
                if listener.get("name") == "outbound":
                    return listener
            return {}

        def refusing():
            text = json.dumps(outbound())
            return "REFUSE" in text and "Namespace" in text and '"shop"' in text

        self.assertTrue(wait_for(lambda: outbound() != {}, 10))
        self.assertNotIn("REFUSE", json.dumps(outbound()))
        namespace = {"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "shop",
                                  "labels": {"meshlet.io/outbound-traffic-policy":
                                             "REGISTRY_ONLY"}}}
        self.fake.put("namespaces", namespace)
        self.assertTrue(wait_for(refusing, 10), json.dumps(outbound()))
        namespace["metadata"]["labels"] = {}
        self.fake.put("namespaces", namespace)
        self.assertTrue(wait_for(lambda: "REFUSE" not in json.dumps(outbound()), 10),
                        json.dumps(outbound()))


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv[1])
    sidecar_test.SIDECAR = os.path.abspath(sys.argv[2])
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
