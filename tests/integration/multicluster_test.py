"""Two clusters linked through an east-west gateway, on loopback (docs/multicluster.md, ADR 0106).

Usage: multicluster_test.py CONTROL_PLANE SIDECAR MAKE_CA MESHCTL [unittest args]

Two control planes, `west` (trust domain west.example) and `east` (east.example), each the
other's federated domain (--federate with the other's root, so a workload of one is verified by
the other's roots only and named by its own id). Both run a `reviews` sidecar with an app that
answers with its name and the caller's verified SPIFFE id; west runs the caller `frontend`; east
exports reviews (label meshlet.io/export=true) and runs an east-west gateway: a gateway proxy of
Gateway default/east-west, whose one listener has protocol meshlet.io/east-west. Shown, in order:

- east's gateway refuses what is not mesh TLS for an exported Service: plain HTTP, and TLS
  naming another Service, are closed without a byte;
- a peer token reads east's exports and nothing else (403 elsewhere);
- `meshctl multicluster link --remote-context east.yaml` (on west) creates a peer token in east
  and the link in west; `meshctl multicluster check` shows it up, reviews shared, the gateway;
- frontend's calls stay on west's reviews while it is healthy (the gateway is the farthest
  locality level);
- west's reviews sidecar killed under traffic: the calls move to east's reviews through the
  gateway, mTLS end to end (east's app sees west's frontend's SPIFFE id, which east's
  AuthorizationPolicy names); failed calls and the time to fail over are printed; a new west
  reviews brings them back;
- east's control plane stopped: the link turns stale and the calls still reach east (the last
  endpoints are kept); restarted: the link is up again;
- east's AuthorizationPolicy no longer admitting west's frontend: its calls to east get 403;
- `meshctl multicluster unlink east --remote-context east.yaml`: the gateway leaves frontend's
  cluster and the peer token is revoked in east (401 there).
About 40 s.
"""

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import cp_api
import root_rotation_test
import sidecar_test
from mesh_util import (call_service, create_join_token, make_ca, make_server_cert,
                       start_control_plane, stop_all, stop_process, write_meshctl_context)
from sidecar_test import HttpUpstream, free_port, wait_for

MESHCTL = None  # set from argv
NAMESPACE = "default"
MESHLET_API = "/apis/meshlet.io/v1/namespaces/default"
GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"


def spiffe(trust_domain, service_account):
    return f"spiffe://{trust_domain}/ns/{NAMESPACE}/sa/{service_account}"


def reviews_service(exported):
    labels = {"meshlet.io/export": "true"} if exported else {}
    return json.dumps({"apiVersion": "meshlet.io/v1", "kind": "Service",
                       "metadata": {"name": "reviews", "namespace": NAMESPACE, "labels": labels},
                       "spec": {"ports": [{"name": "http", "port": 9080}]}}).encode()


def callers_policy(principals):
    return json.dumps({"apiVersion": "meshlet.io/v1", "kind": "AuthorizationPolicy",
                       "metadata": {"name": "reviews-callers", "namespace": NAMESPACE},
                       "spec": {"target": "reviews",
                                "rules": [{"from": [{"principals": principals}]}]}}).encode()


class Cluster:
    """A control plane (its own data directory, trust domain, API and discovery ports) and the
    sidecars and apps it serves."""

    def __init__(self, tmp, name, server_cert, server_ca):
        self.name = name
        self.trust_domain = f"{name}.example"
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "cp.log")
        self.api = f"127.0.0.1:{free_port()}"
        self.ads = f"127.0.0.1:{free_port()}"
        self.server_cert, self.server_ca = server_cert, server_ca
        self.federated = os.path.join(self.dir, "federated-roots.pem")
        self.cp = None
        self.sidecars, self.apps = {}, []

    def start(self, other):
        self.cp, api, _ = start_control_plane(
            root_rotation_test.CONTROL_PLANE, self.log, "--data-dir", self.data,
            "--api-address", self.api, "--xds-address", self.ads,
            "--xds-tls-cert", self.server_cert[0], "--xds-tls-key", self.server_cert[1],
            "--xds-listen-host", "127.0.0.1", "--xds-debounce", "20ms",
            "--trust-domain", self.trust_domain, "--cluster-name", self.name,
            "--multicluster-poll-interval", "200ms", "--multicluster-read-timeout", "1s",
            "--federate", f"{other.trust_domain}=file:{other.federated_for(self)}",
            "--federation-refresh-min", "200ms", "--federation-refresh-max", "1s")
        assert api == self.api, (api, self.api)
        with open(os.path.join(self.data, "api-token")) as f:
            self.token = f.read().strip()
        token_file = os.path.join(self.dir, "api-token")
        with open(token_file, "w") as f:
            f.write(self.token + "\n")
        self.context = write_meshctl_context(
            os.path.join(self.dir, "context.yaml"), self.api, token_file,
            f"serverIdentity: spiffe://{self.trust_domain}/ns/meshlet-system/sa/"
            "meshlet-control-plane\n")

    def federated_for(self, other):
        """Where `other` reads this cluster's roots (written once this one's CA made them)."""
        return os.path.join(other.dir, f"roots-of-{self.name}.pem")

    def publish_roots(self, other):
        with open(cp_api.root_file(self.data)) as f:
            roots = f.read()
        path = self.federated_for(other)
        with open(path + ".new", "w") as f:
            f.write(roots)
        os.rename(path + ".new", path)

    def request(self, method, path, body=None, token=None):
        """(status, body) of an API request with the bootstrap token (or `token`)."""
        req = urllib.request.Request(f"https://{self.api}{path}", method=method, data=body,
                                     headers={"Authorization": "Bearer " + (token or self.token)})
        try:
            with cp_api.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def put(self, path, body):
        status, text = self.request("PUT", path, body)
        assert status in (200, 201), (path, status, text)

    def start_sidecar(self, service, *args, gateway=None, service_account=None):
        service_account = service_account or service
        workdir = tempfile.mkdtemp(dir=self.dir)
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(create_join_token(self.api, self.token, service_account, "10m", NAMESPACE)
                    + "\n")
        flags = [f"--xds={self.ads}", f"--xds-ca={self.server_ca}",
                 f"--node-service-account={service_account}", "--node-address=127.0.0.1",
                 f"--node-namespace={NAMESPACE}", f"--join-token-file={token_file}",
                 "--cert-ttl=40s", f"--trust-domain={self.trust_domain}", *args]
        s = None
        if gateway is not None:
            s = sidecar_test.Sidecar(workdir, "{}\n", *flags, f"--node-id={self.name}-ew",
                                     f"--gateway={gateway}", concurrency=1)
            s.name = service
        else:
            app = HttpUpstream(f"{self.name}-{service}")
            self.apps.append(app)
            outbound, inbound = free_port(), free_port()
            s = sidecar_test.Sidecar(
                workdir, "{}\n", *flags, f"--node-id={self.name}-{service}-{len(self.apps)}",
                f"--node-service={service}", f"--node-port={app.port}",
                f"--node-label=meshlet.io/inbound-port={inbound}",
                f"--node-label=meshlet.io/outbound-port={outbound}", concurrency=1)
            s.name, s.outbound, s.inbound, s.app = service, outbound, inbound, app
        self.sidecars[s.name if gateway is None else "gateway"] = s
        return s

    def meshctl(self, *args, timeout=20):
        p = subprocess.run([MESHCTL, *args], capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, MESHCTL_CONFIG=self.context))
        return p.returncode, p.stdout + p.stderr

    def stop(self):
        if self.cp is not None:
            stop_all(list(self.sidecars.values()), self.apps, self.cp)


class MulticlusterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        server_ca = make_ca(self.tmp, "server-ca")
        server_cert = make_server_cert(self.tmp, "server", server_ca, san="IP:127.0.0.1")
        self.west = Cluster(self.tmp, "west", server_cert, server_ca[0])
        self.east = Cluster(self.tmp, "east", server_cert, server_ca[0])

    def tearDown(self):
        self.east.stop()
        self.west.stop()

    def reviews(self):
        """Who answered frontend's call to reviews, and whom that app saw calling:
        ("west-reviews" | "east-reviews", caller id), or (status, body) of a failure."""
        status, body = call_service(self.frontend.outbound, "reviews:9080", "/who")
        if status != 200:
            return status, body[:200]
        answer = json.loads(body)
        return answer["upstream"], answer["headers"].get("x-meshlet-peer-identity")

    def gateway_endpoint_in_frontend(self):
        """Whether frontend's reviews cluster holds east's gateway."""
        clusters = json.loads(self.frontend.get("/clusters")[1])["clusters"]
        for c in clusters:
            if c["name"] == "outbound|9080||reviews.default":
                return any(h["address"] == f"127.0.0.1:{self.ew_port}" for h in c["hosts"])
        return False

    def test_linked_clusters_fail_over_through_the_east_west_gateway(self):
        west, east = self.west, self.east
        east.start(west)
        west.start(east)
        west.publish_roots(east)
        east.publish_roots(west)

        # east: reviews exported, its callers named, the east-west gateway.
        self.ew_port = free_port()
        east.put(f"{MESHLET_API}/services/reviews", reviews_service(exported=True))
        east.put(f"{MESHLET_API}/authorizationpolicies/reviews-callers",
                 callers_policy([spiffe("west.example", "frontend")]))
        east.put(f"{GATEWAY_API}/gatewayclasses/meshlet", json.dumps({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "meshlet"},
            "spec": {"controllerName": "meshlet.io/gateway-controller"}}).encode())
        east.put(f"{GATEWAY_API}/namespaces/default/gateways/east-west", json.dumps({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "east-west", "namespace": NAMESPACE},
            "spec": {"gatewayClassName": "meshlet", "listeners": [
                {"name": "mesh", "port": self.ew_port, "protocol": "meshlet.io/east-west"}]}
        }).encode())
        east_reviews = east.start_sidecar("reviews")
        east.start_sidecar("east-west", gateway=f"{NAMESPACE}/east-west",
                           service_account="east-west-meshlet")
        # west: reviews (not exported) and the caller.
        west.put(f"{MESHLET_API}/services/reviews", reviews_service(exported=False))
        west_reviews = west.start_sidecar("reviews")
        self.frontend = west.start_sidecar("frontend")
        self.assertTrue(wait_for(lambda: self.reviews()[0] == "west-reviews", timeout=20),
                        self.reviews())

        # The gateway: only mesh TLS naming an exported Service port is forwarded.
        self.assertTrue(wait_for(lambda: self.gateway_listens(), timeout=15))
        self.assertEqual(self.gateway_answer(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n"), b"")
        self.assertEqual(self.gateway_tls_answer("9080.ratings.default.meshlet.internal"), None)
        # What east exports, read with a peer token that reads nothing else.
        status, created = east.request("POST", "/api/v1/operator-tokens",
                                       json.dumps({"name": "probe", "role": "peer"}).encode())
        self.assertEqual(status, 201, created)
        peer = json.loads(created)["token"]
        self.assertTrue(wait_for(lambda: self.exported(peer), timeout=10),
                        east.request("GET", "/api/v1/multicluster/exports", token=peer))
        status, exports = east.request("GET", "/api/v1/multicluster/exports", token=peer)
        exports = json.loads(exports)
        self.assertEqual(exports["cluster"], "east")
        self.assertEqual(exports["gateways"][0]["address"], "127.0.0.1")
        self.assertEqual(exports["gateways"][0]["port"], self.ew_port)
        self.assertEqual(exports["services"][0]["identities"],
                         [spiffe("east.example", "reviews")])
        for path in ("/api/v1/workloads", f"{MESHLET_API}/services"):
            self.assertEqual(east.request("GET", path, token=peer)[0], 403, path)

        # The link, made from west with both control planes' contexts.
        code, out = west.meshctl("multicluster", "link", "--remote-context", east.context)
        self.assertEqual(code, 0, out)
        self.assertIn("peer token link-west", out)
        self.assertTrue(wait_for(lambda: west.meshctl("multicluster", "check")[0] == 0,
                                 timeout=10), west.meshctl("multicluster", "check"))
        code, out = west.meshctl("multicluster", "check")
        print(out)
        self.assertIn("default/reviews", out)
        self.assertIn(f"127.0.0.1:{self.ew_port}", out)
        self.assertTrue(wait_for(self.gateway_endpoint_in_frontend, timeout=10))
        # east links to nobody (exit 1) and says what it exports, and where.
        code, out = east.meshctl("multicluster", "check")
        self.assertEqual(code, 1, out)
        self.assertIn("exports: default/reviews (1 members)", out)
        self.assertIn(f"east-west gateways: 127.0.0.1:{self.ew_port}", out)

        # Healthy here: every call stays in west.
        answers = [self.reviews()[0] for _ in range(30)]
        self.assertEqual(answers, ["west-reviews"] * 30)

        # west's reviews dies under traffic: the calls move to east, mTLS end to end.
        traffic = Traffic(self)
        killed = time.time()
        west_reviews.stop()
        west_reviews.app.close()
        self.assertTrue(wait_for(lambda: traffic.last() == "east-reviews", timeout=20),
                        traffic.summary())
        failover = traffic.first_after(killed, "east-reviews") - killed
        self.assertEqual(self.reviews(), ("east-reviews", spiffe("west.example", "frontend")))
        # Back when west has a reviews again.
        west.sidecars.pop("reviews")
        restored = time.time()
        west.start_sidecar("reviews")
        self.assertTrue(wait_for(lambda: traffic.last() == "west-reviews", timeout=20),
                        traffic.summary())
        failback = traffic.first_after(restored, "west-reviews") - restored
        traffic.stop()
        # Retries on the connect failures: no call failed.
        self.assertEqual({who for _, who in traffic.seen}, {"west-reviews", "east-reviews"},
                         traffic.summary())
        print(f"failover {failover:.2f}s, back {failback:.2f}s after the new sidecar started; "
              f"{traffic.summary()}")

        # A lost link keeps its last endpoints, marked stale, and recovers.
        stop_process(east.cp)
        self.assertTrue(wait_for(lambda: "stale" in west.meshctl("multicluster", "check")[1],
                                 timeout=10), west.meshctl("multicluster", "check"))
        west.sidecars["reviews"].stop()  # so that the calls go to east
        self.assertTrue(wait_for(lambda: self.reviews()[0] == "east-reviews", timeout=20),
                        self.reviews())
        east.start(west)
        self.assertTrue(wait_for(lambda: west.meshctl("multicluster", "check")[0] == 0,
                                 timeout=15), west.meshctl("multicluster", "check"))

        # east's callers policy no longer names west's frontend: refused there.
        east.put(f"{MESHLET_API}/authorizationpolicies/reviews-callers",
                 callers_policy([spiffe("east.example", "someone-else")]))
        self.assertTrue(wait_for(lambda: self.reviews()[0] == 403, timeout=10), self.reviews())

        # Unlinked: the gateway leaves frontend's cluster, the token is revoked in east.
        code, out = west.meshctl("multicluster", "unlink", "east", "--remote-context",
                                 east.context)
        self.assertEqual(code, 0, out)
        self.assertIn("peer token link-west revoked in east", out)
        self.assertTrue(wait_for(lambda: not self.gateway_endpoint_in_frontend(), timeout=10))
        code, out = west.meshctl("multicluster", "check")
        self.assertEqual(code, 1, out)
        self.assertIn("No links", out)

    def exported(self, peer):
        status, body = self.east.request("GET", "/api/v1/multicluster/exports", token=peer)
        if status != 200:
            return False
        exports = json.loads(body)
        return bool(exports["gateways"]) and any(
            s["name"] == "reviews" and s["members"] == 1 for s in exports["services"])

    def gateway_listens(self):
        try:
            socket.create_connection(("127.0.0.1", self.ew_port), timeout=1).close()
            return True
        except OSError:
            return False

    def gateway_answer(self, data):
        """What east's gateway sends back to `data` before closing (b"": nothing)."""
        with socket.create_connection(("127.0.0.1", self.ew_port), timeout=5) as s:
            s.sendall(data)
            out = b""
            try:
                while chunk := s.recv(4096):
                    out += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            return out

    def gateway_tls_answer(self, server_name):
        """The certificate east's gateway leads a TLS client naming `server_name` to, or None
        when the connection is closed first."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", self.ew_port), timeout=5) as s:
                with context.wrap_socket(s, server_hostname=server_name) as tls:
                    return tls.getpeercert(binary_form=True)
        except (ssl.SSLError, OSError):
            return None


class Traffic:
    """frontend's calls to reviews in a loop on a thread, each (time, who answered)."""

    def __init__(self, test):
        self.test = test
        self.seen = []
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.seen.append((time.time(), self.test.reviews()[0]))
            time.sleep(0.01)

    def last(self):
        return self.seen[-1][1] if self.seen else None

    def first_after(self, when, who):
        return next(t for t, w in self.seen if t >= when and w == who)

    def stop(self):
        self.running = False
        self.thread.join()

    def summary(self):
        counts = {}
        for _, who in self.seen:
            counts[str(who)] = counts.get(str(who), 0) + 1
        return f"{len(self.seen)} calls: {counts}"


if __name__ == "__main__":
    root_rotation_test.CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    root_rotation_test.MAKE_CA = os.path.abspath(sys.argv.pop(1))
    MESHCTL = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
