"""Two control-plane replicas on one etcd (--store https://): what one is told, the other serves.

Usage: control_plane_etcd_test.py CONTROL_PLANE MESHCTL SIDECAR SERVICES_YAML [unittest args]

A real etcd (Debian's etcd-server) on 127.0.0.1, started by the test over TLS with client
certificates required (etcd_util.py), and two control planes A and B with their own data
directories, API and xDS ports, sharing it. A sidecar of Service reviews (version v2) is
connected to B only.

0. The replicas share the API token (one meshctl context works with both) and the generated
   CA root: both serve the same trust bundle.
1. An HTTPRoute applied with meshctl through A reaches the sidecar on B within 1 s (the time is
   printed), and B's API serves it with A's resourceVersion.
2. Two writes of one resource from the same read, one through each replica: exactly one wins,
   the other is answered 409.
3. etcd stops: `meshctl apply` through A exits non-zero and says the policy store is
   unavailable; the sidecar keeps its configuration. etcd starts again: an apply through A
   reaches the sidecar on B again.
4. Wrong --store/--etcd-* flags stop the control plane with a message naming the problem.
5. A sidecar given both replicas (--xds=A,B) is configured through A; A is killed: it moves to
   B and follows a route applied through B (the time is printed).
6. Two more replicas C and D, a mesh of their own (another --etcd-prefix) with TLS discovery
   ports (the certificates their shared CA issues them): a span sent to C's collector is found
   through D, forwarded over mutual TLS checked against the shared root and the control plane's
   SPIFFE id.
7. The etcd refuses clients without its client certificate: etcdctl, a TLS connection without
   one, a plaintext connection.
8. A control plane given a plaintext etcd (http://) refuses to start, saying why and how to ask
   for it; with --etcd-insecure-plaintext it starts and logs INSECURE.
9. The secrets the replicas share (ControlPlaneSecret/ca-root and api-token) are encrypted in
   etcd: no PEM key, no token.
10. A replica without the store key (no --store-encryption-key-file, or another key) refuses to
   start, naming the key that encrypted them.
11. Secrets an older version stored in plaintext are read, encrypted in place and logged.
12. The per-identity report limit is the mesh's: two replicas E and F (a mesh of their own) each
   admit half of --report-burst from one sender, and refuse the rest saying so; when F stops,
   E admits the whole rate again.

Without the etcd binary the test prints SKIP.
"""

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import unittest
import urllib.request

import grpc

import sidecar_test
from mesh_util import make_ca, reviews_route_to, reviews_subset_cluster, start_xds_sidecar
from etcd_util import EtcdCluster, EtcdMeshTest, Replica
from sidecar_test import HttpUpstream, free_port, wait_for

CONTROL_PLANE = MESHCTL = SERVICES = None  # set from argv
V1 = reviews_subset_cluster("v1")
V2 = reviews_subset_cluster("v2")


class ControlPlaneEtcdTest(EtcdMeshTest):
    TMP_PREFIX = "cp-etcd-"

    @classmethod
    def start_mesh(cls):
        cls.etcd.start()
        cls.a = Replica(CONTROL_PLANE, MESHCTL, cls.tmp, "a", cls.etcd,
                        "--etcd-prefix", "/etcd-test/")
        cls.replicas.append(cls.a)
        cls.b = Replica(CONTROL_PLANE, MESHCTL, cls.tmp, "b", cls.etcd,
                        "--etcd-prefix", "/etcd-test/")
        cls.replicas.append(cls.b)
        with open(SERVICES) as f:
            cls.a.apply(f.read() + "---\n" + reviews_route_to("v1"))
        cls.apps.append(HttpUpstream("v2"))
        cls.sidecar = start_xds_sidecar(
            cls.tmp, cls.b.ads, "reviews-v2-0", "default", "--node-service=reviews",
            f"--node-port={cls.apps[0].port}", "--node-label=version=v2")
        cls.sidecars.append(cls.sidecar)


    def clusters(self):
        return {c["name"] for c in json.loads(self.sidecar.get("/clusters")[1])["clusters"]}

    def test_1_a_write_through_one_replica_reaches_a_sidecar_on_the_other(self):
        self.assertTrue(wait_for(lambda: V1 in self.clusters(), timeout=10),
                        "the sidecar on B holds v1")
        start = time.time()
        self.a.apply(reviews_route_to("v2"))
        # Carried by etcd's watch (nothing else re-reads the store). The time is printed, not
        # asserted: a sanitizer build or a loaded machine takes longer.
        self.assertTrue(wait_for(lambda: V2 in self.clusters() and V1 not in self.clusters(),
                                 timeout=5),
                        "the route applied through A reaches the sidecar on B")
        elapsed = time.time() - start
        print(f"apply through A -> sidecar on B: {elapsed * 1000:.0f} ms", file=sys.stderr)
        path = "/apis/meshlet.io/v1/namespaces/default/httproutes/reviews"
        (sa, body_a), (sb, body_b) = self.a.request("GET", path), self.b.request("GET", path)
        self.assertEqual((sa, sb), (200, 200))
        version = json.loads(body_a)["metadata"]["resourceVersion"]
        self.assertEqual(json.loads(body_b)["metadata"]["resourceVersion"], version)

    def test_2_two_replicas_writing_from_one_read_exactly_one_wins(self):
        path = "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/race"
        status, body = self.a.request("PUT", path, "kind: TrafficPolicy\nmetadata: {name: race}\n"
                                      "spec: {target: reviews, retries: {attempts: 1}}\n")
        self.assertIn(status, (200, 201), body)
        version = json.loads(body)["metadata"]["resourceVersion"]

        def write(replica, attempts):
            return replica.request(
                "PUT", path, f"kind: TrafficPolicy\nmetadata: {{name: race, resourceVersion: "
                f"\"{version}\"}}\nspec: {{target: reviews, retries: {{attempts: {attempts}}}}}\n")

        results = sorted([write(self.a, 2)[0], write(self.b, 3)[0]])
        self.assertEqual(results, [200, 409])

    def test_3_without_etcd_writes_are_refused_clearly_and_the_data_plane_keeps_going(self):
        self.assertTrue(wait_for(lambda: V2 in self.clusters(), timeout=10),
                        "the sidecar on B holds v2")
        self.etcd.stop_all()
        try:
            p = subprocess.run([MESHCTL, "apply", "-f", "-"], input=reviews_route_to("v1"),
                               capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, MESHCTL_CONFIG=self.a.context))
            self.assertNotEqual(p.returncode, 0, p.stdout)
            self.assertIn("policy store is unavailable", p.stdout + p.stderr)
            self.assertIn(V2, self.clusters())
        finally:
            self.etcd.start()
        self.assertTrue(wait_for(lambda: self.try_apply(reviews_route_to("v1")), timeout=20),
                        "an apply through A once etcd is back")
        self.assertTrue(wait_for(lambda: V1 in self.clusters() and V2 not in self.clusters(),
                                 timeout=10),
                        "the sidecar on B follows again")

    def run_control_plane(self, *args):
        """The control plane with `args`, expected to stop at once: (exit code, its output)."""
        data = os.path.join(self.tmp, "flags")
        p = subprocess.run([CONTROL_PLANE, "--data-dir", data, "--api-address", "127.0.0.1:0",
                            "--xds-plaintext", "--xds-address", "127.0.0.1:0", *args],
                           capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def test_4_store_flags_are_checked_with_a_clear_error(self):
        ca = self.etcd.ca[0]
        # The store and its key, without TLS flags.
        store = ["--store", self.etcd.url, "--store-encryption-key-file", self.etcd.key_file]
        for args, message in [
                (["--store", "etcd://127.0.0.1:2379"], "expected https://HOST:PORT"),
                (["--store", "https://127.0.0.1:2379,nope"], '"nope" is not host:port'),
                (["--etcd-cacert", "/nonexistent"], "--etcd-* flags need --store"),
                (["--store-encryption-key-file", self.etcd.key_file],
                 "--store-encryption-key-file: only with --store"),
                ([*store], "etcd over TLS needs --etcd-cacert"),
                ([*store, "--etcd-cacert", ca, "--etcd-cert", "/x"], "--etcd-cert and --etcd-key"),
                ([*store, "--etcd-cacert", "/nonexistent/ca.pem"], "--etcd-cacert: "),
                ([*store, "--etcd-cacert", ca, "--etcd-insecure-plaintext"],
                 "--etcd-insecure-plaintext: the store"),
                ([*store, "--etcd-cacert", ca, "--store-encryption-key-file", "/nonexistent"],
                 "--store-encryption-key-file: "),
                ([*self.etcd.store_args(), "--etcd-password-file", "/x"],
                 "--etcd-password-file needs --etcd-username")]:
            code, output = self.run_control_plane(*args)
            self.assertNotEqual(code, 0, args)
            self.assertIn(message, output, args)

    def test_7_etcd_refuses_clients_without_its_certificate(self):
        # etcd's own client without a client certificate; a raw TLS connection without one (the
        # member closes it during or right after the handshake); a plaintext connection.
        anonymous = self.etcd.etcdctl("get", "/etcd-test/", "--prefix", "--keys-only",
                                      anonymous=True)
        self.assertNotEqual(anonymous.returncode, 0, anonymous.stdout)
        port = self.etcd.client["m0"]
        context = ssl.create_default_context(cafile=self.etcd.ca[0])
        context.set_alpn_protocols(["h2"])
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                    conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                    if not conn.recv(100):
                        raise ConnectionError("closed")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            try:
                answer = raw.recv(100)
            except ConnectionError:
                answer = b""
            self.assertFalse(answer.startswith(b"\x00\x00"), "no HTTP/2 frame in clear")
        # With the certificate: let in.
        self.assertEqual(
            self.etcd.etcdctl("get", "/etcd-test/", "--prefix", "--keys-only").returncode, 0)

    def test_8_a_plaintext_etcd_is_refused_unless_asked_for(self):
        plain = EtcdCluster(os.path.join(self.tmp, "plain"), plaintext=True)
        plain.start()
        try:
            code, output = self.run_control_plane("--store", plain.url,
                                                  "--store-encryption-key-file", plain.key_file)
            self.assertNotEqual(code, 0)
            self.assertIn(f"--store {plain.url}: plaintext etcd is refused", output)
            self.assertIn("--etcd-insecure-plaintext", output)
            # Asked for: it starts, saying loudly what it does.
            replica = Replica(CONTROL_PLANE, MESHCTL, self.tmp, "plain-replica", plain)
            self.replicas.append(replica)
            with open(os.path.join(replica.dir, "cp.log")) as f:
                self.assertIn(f"INSECURE: etcd at {plain.url} in plaintext", f.read())
            replica.stop()
        finally:
            plain.stop_all()

    def test_5_a_sidecar_given_both_replicas_moves_to_b_when_a_dies(self):
        both = start_xds_sidecar(
            self.tmp, f"{self.a.ads},{self.b.ads}", "reviews-v1-0", "default",
            "--node-service=reviews", f"--node-port={self.apps[0].port}",
            "--node-label=version=v1")
        self.sidecars.append(both)

        def clusters():
            return {c["name"] for c in json.loads(both.get("/clusters")[1])["clusters"]}

        self.assertTrue(wait_for(lambda: V1 in clusters(), timeout=10), "configured through A")
        self.assertIn(self.a.ads, both.log())
        self.a.proc.kill()
        self.a.proc.wait()
        start = time.time()
        self.b.apply(reviews_route_to("v2"))
        self.assertTrue(wait_for(lambda: V2 in clusters() and V1 not in clusters(), timeout=15),
                        "a route applied through B after A died")
        print(f"A killed -> sidecar configured by B: {(time.time() - start) * 1000:.0f} ms",
              file=sys.stderr)
        self.assertIn(f"xds: connected to {self.b.ads}", both.log())

    def try_apply(self, text):
        try:
            self.a.apply(text)
            return True
        except AssertionError:
            return False

    def test_6_replicas_with_tls_discovery_ports_share_spans(self):
        otlp = {name: free_port() for name in ("c", "d")}
        for name in ("c", "d"):
            replica = Replica(CONTROL_PLANE, MESHCTL, self.tmp, name, self.etcd,
                              "--etcd-prefix", "/etcd-tls-test/", "--replica-name", name,
                              f"--otlp-address=127.0.0.1:{otlp[name]}", "--zipkin-address=",
                              "--peer-telemetry-interval=100ms",
                              # An IP alone: the discovery port's own port is added.
                              "--replica-address=127.0.0.1", plaintext=False)
            self.replicas.append(replica)  # stopped with the mesh
        c, d = self.replicas[-2:]
        trace_id = os.urandom(16).hex()
        span = {"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name",
                                         "value": {"stringValue": "tls-check"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": trace_id, "spanId": os.urandom(8).hex(), "name": "GET /", "kind": 2,
                "startTimeUnixNano": str(time.time_ns()),
                "endTimeUnixNano": str(time.time_ns() + 1000000)}]}]}]}

        def sent():
            """C knows D (each publishes itself when it starts): the span goes out to D."""
            req = urllib.request.Request(f"http://127.0.0.1:{otlp['c']}/v1/traces",
                                         data=json.dumps(span).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status == 200

        def peers(replica):
            status, metrics = replica.request("GET", "/metrics")
            return (status == 200 and "meshlet_cp_peer_replicas 1" in metrics
                    and "meshlet_cp_identity_limit_replicas 2" in metrics)

        self.assertTrue(wait_for(lambda: peers(c) and peers(d), timeout=10))
        self.assertTrue(sent())
        self.assertTrue(wait_for(lambda: d.request("GET", f"/api/v1/traces/{trace_id}")[0] == 200,
                                 timeout=10),
                        "the span sent to C is found through D")
        _, body = d.request("GET", f"/api/v1/traces/{trace_id}")
        self.assertEqual([s["service"] for s in json.loads(body)["spans"]], ["tls-check"])
        _, metrics = c.request("GET", "/metrics")
        self.assertRegex(metrics, r'meshlet_cp_peer_telemetry_batches_total\{result="sent"\} [1-9]')
        self.assertRegex(metrics, r'meshlet_cp_peer_telemetry_batches_total\{result="failed"\} 0')

    def raw(self, prefix, name):
        """The value etcd holds for the ControlPlaneSecret `name` under `prefix`."""
        got = self.etcd.etcdctl("get", f"{prefix}ControlPlaneSecret/_cluster/{name}",
                                "--print-value-only")
        self.assertEqual(got.returncode, 0, got.stderr)
        return got.stdout.strip()

    def test_9_the_secrets_in_etcd_are_encrypted(self):
        root = self.raw("/etcd-test/", "ca-root")
        self.assertTrue(root.startswith("meshlet-sealed:v1:"), root[:80])
        self.assertNotIn("PRIVATE KEY", root)
        self.assertNotIn("BEGIN", root)
        token = self.raw("/etcd-test/", "api-token")
        self.assertTrue(token.startswith("meshlet-sealed:v1:"), token[:80])
        self.assertNotIn(self.a.token, token)

    def test_10_a_replica_without_the_key_cannot_read_them(self):
        store = ["--store", self.etcd.url, *self.etcd.tls_args(), "--etcd-prefix", "/etcd-test/"]
        code, output = self.run_control_plane(*store)
        self.assertNotEqual(code, 0)
        self.assertIn("needs --store-encryption-key-file", output)
        other = os.path.join(self.tmp, "other-key")
        with open(other, "w") as f:
            f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        code, output = self.run_control_plane(*store, "--store-encryption-key-file", other)
        self.assertNotEqual(code, 0)
        key_id = self.raw("/etcd-test/", "api-token").split(":")[2]
        self.assertIn(f"ControlPlaneSecret/api-token in the store: encrypted with key {key_id}, "
                      "which this replica does not have", output)

    def test_11_secrets_stored_in_plaintext_by_an_older_version_are_encrypted(self):
        # A mesh of its own whose secrets an older version wrote: the token and the root (its
        # certificate, then its key) in plaintext.
        ca = make_ca(self.tmp, "old-root")
        with open(ca[0]) as c, open(ca[1]) as k:
            cert = c.read()
            root = cert + k.read()
        token = os.urandom(32).hex()
        for name, value in (("api-token", token), ("ca-root", root)):
            put = self.etcd.etcdctl("put", f"/migrate-test/ControlPlaneSecret/_cluster/{name}",
                                    stdin=value)
            self.assertEqual(put.returncode, 0, put.stderr)
        replica = Replica(CONTROL_PLANE, MESHCTL, self.tmp, "migrated", self.etcd,
                          "--etcd-prefix", "/migrate-test/")
        self.replicas.append(replica)
        self.assertEqual(replica.token, token)
        status, bundle = replica.request("GET", "/api/v1/trust-bundle")
        self.assertEqual(status, 200)
        self.assertIn(cert.strip(), bundle)
        with open(os.path.join(replica.dir, "cp.log")) as f:
            log = f.read()
        for name in ("api-token", "ca-root"):
            self.assertIn(f"ControlPlaneSecret/{name} in the store was stored unencrypted (by an "
                          "older version); encrypted it with key", log)
            value = self.raw("/migrate-test/", name)
            self.assertTrue(value.startswith("meshlet-sealed:v1:"), value[:80])
        self.assertNotIn("PRIVATE KEY", self.raw("/migrate-test/", "ca-root"))
        replica.stop()

    def test_12_the_report_limit_is_divided_among_the_replicas(self):
        # A rate so low that nothing refills while the reports are sent: each replica admits its
        # share of the burst, 10 of 20.
        replicas = []
        for name in ("e", "f"):
            replica = Replica(CONTROL_PLANE, MESHCTL, self.tmp, name, self.etcd,
                              "--etcd-prefix", "/limit-test/", "--replica-name", name,
                              "--otlp-address=", "--zipkin-address=",
                              "--report-rate-per-identity=0.01", "--report-burst=20")
            self.replicas.append(replica)  # stopped with the mesh
            replicas.append(replica)

        def divisor(replica):
            status, metrics = replica.request("GET", "/metrics")
            found = re.search(r"^meshlet_cp_identity_limit_replicas (\d+)$", metrics, re.M)
            return int(found.group(1)) if status == 200 and found else None

        self.assertTrue(wait_for(lambda: all(divisor(r) == 2 for r in replicas), timeout=10))
        # A MetricsReport naming only its node (field 1): on a plaintext port the node is the key.
        node = b"limit-probe"
        report = bytes([0x0A, len(node)]) + node
        for replica in replicas:
            codes, details = [], set()
            with grpc.insecure_channel(replica.ads) as channel:
                call = channel.unary_unary("/meshlet.metrics.v1.MetricsService/Report")
                for _ in range(20):
                    try:
                        call(report, timeout=10)
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as e:
                        codes.append(e.code())
                        details.add(e.details())
            self.assertEqual(codes.count(grpc.StatusCode.OK), 10, f"{replica.name}: {codes}")
            self.assertEqual(codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED), 10)
            self.assertEqual(details, {
                "more than 0.005 per second (metrics reports) from limit-probe on this replica, "
                "its share of 0.01 across 2 control-plane replicas"})
        # F stops: once its lease is gone E shares with nobody, and its bucket (full at 10 of 10)
        # is full at 20 of 20, not reset.
        replicas[1].stop()
        self.assertTrue(wait_for(lambda: divisor(replicas[0]) == 1, timeout=20))
        with grpc.insecure_channel(replicas[0].ads) as channel:
            call = channel.unary_unary("/meshlet.metrics.v1.MetricsService/Report")
            with self.assertRaises(grpc.RpcError) as refused:
                call(report, timeout=10)
        self.assertEqual(refused.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(refused.exception.details(),
                         "more than 0.01 per second (metrics reports) from limit-probe")
        replicas[0].stop()

    def test_0_the_replicas_share_the_api_token_and_the_ca_root(self):
        self.assertEqual(self.a.token, self.b.token)
        with open(os.path.join(self.b.dir, "cp-data", "api-token")) as f:
            self.assertEqual(f.read().strip(), self.a.token)
        # meshctl with A's context, pointed at B, is let in.
        status, _ = self.b.request("GET", "/api/v1/workloads")
        self.assertEqual(status, 200)
        (sa, bundle_a), (sb, bundle_b) = (self.a.request("GET", "/api/v1/trust-bundle"),
                                          self.b.request("GET", "/api/v1/trust-bundle"))
        self.assertEqual((sa, sb), (200, 200))
        self.assertIn("BEGIN CERTIFICATE", bundle_a)
        self.assertEqual(bundle_a, bundle_b)


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, sidecar_test.SIDECAR, SERVICES = (
        os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=sys.argv[:1] + sys.argv[5:], verbosity=2)
