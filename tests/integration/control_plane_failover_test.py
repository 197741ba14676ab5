"""Control-plane replicas share registrations through etcd leases, and one dying fails nothing.

Usage: control_plane_failover_test.py CONTROL_PLANE MESHCTL SIDECAR SERVICES_YAML [unittest args]

A real 3-member etcd cluster on 127.0.0.1, started by the test, and two control planes A and B on
it (--etcd-lease-ttl 2s, --deregister-grace 6s). Sidecars, each given the replicas in an order
that picks the one it talks to:

  reviews-1  (app v1)   A first, then B
  reviews-2  (app v2)   B first, then A
  ratings-1             A only
  client                B first, then A: the caller, sending requests for reviews

1. Every replica pushes every endpoint: the client, on B, reaches reviews-1, whose sidecar is
   registered with A only, and reviews-2; `meshctl get workloads` through B says which replica
   each sidecar is connected to.
   Every replica shows the whole mesh's telemetry: the client reports golden metrics to B and
   sends its spans to A's collector, reviews-1 reports to A and sends its spans to B's; through
   either replica `meshctl stat` shows the client's edge to reviews, both answer the same
   history of that edge (/api/v1/stat/history) with the same policy-change markers (who made
   them only on A, which took the writes), and one trace holds the spans of both sidecars
   (the replicas forward to each other over the discovery port). A forward
   without the shared API token is refused. A third replica C that starts later is handed the
   traces kept so far, by A (the lowest-named of the others), not by B. A live tap asked of B
   (`meshctl tap`) streams the requests of reviews-1, on A, with those of reviews-2, on B;
   asked for a workload on no replica it ends saying so; when its caller goes away it ends on A
   too; a tap forwarded without the token is refused.
2. A is killed (SIGKILL) while the client sends requests for reviews without pause: not one
   fails. reviews-1 reconnects to B (the time is printed) and stays registered after A's lease
   has run out; ratings-1, which cannot reconnect, is removed after the lease's time to live and
   the grace period (the time is printed); both reviews apps keep answering.

Without the etcd binary the test prints SKIP.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

import grpc

import sidecar_test
from etcd_util import EtcdMeshTest, Replica
from mesh_util import meshctl, start_xds_sidecar
from sidecar_test import HttpUpstream, free_port, wait_for

CONTROL_PLANE = MESHCTL = SERVICES = None  # set from argv
LEASE_TTL = 2
GRACE = 6


class Load:
    """Requests for reviews through the client sidecar's outbound listener, back to back on two
    kept-alive connections; counts which app answered and keeps every failure."""

    def __init__(self, outbound):
        self.outbound = outbound
        self.answers = {}
        self.failures = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(2)]
        for t in self._threads:
            t.start()

    def _run(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.outbound, timeout=5)
                conn.request("GET", "/load", headers={"Host": "reviews"})
                response = conn.getresponse()
                body = response.read()
                with self.lock:
                    if response.status != 200:
                        self.failures.append((time.time(), response.status, body[:200]))
                    else:
                        upstream = json.loads(body)["upstream"]
                        self.answers[upstream] = self.answers.get(upstream, 0) + 1
            except Exception as e:  # any failure counts
                with self.lock:
                    self.failures.append((time.time(), repr(e)))
                conn = None
        if conn is not None:
            conn.close()

    def snapshot(self):
        with self.lock:
            return dict(self.answers), list(self.failures)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join()


def telemetry_config(otlp_port):
    """A sidecar bootstrap: every request traced to the collector at `otlp_port`, golden metrics
    reported every 200 ms to the xDS server the sidecar is connected to."""
    return (f"tracing:\n  sampling_percent: 100\n  collector_address: 127.0.0.1:{otlp_port}\n"
            "  protocol: OTLP_PROTO\n  flush_interval: 0.1s\n"
            "metrics_report:\n  interval: 0.2s\n")


class ControlPlaneFailoverTest(EtcdMeshTest):
    TMP_PREFIX = "cp-failover-"
    ETCD_MEMBERS = 3

    @classmethod
    def start_mesh(cls):
        cls.etcd.start()
        cls.otlp = {}
        for name in ("a", "b"):
            cls.otlp[name] = free_port()
            cls.replicas.append(Replica(
                CONTROL_PLANE, MESHCTL, cls.tmp, name, cls.etcd,
                "--etcd-prefix", "/failover-test/", "--etcd-lease-ttl", f"{LEASE_TTL}s",
                "--deregister-grace", f"{GRACE}s", "--replica-name", name,
                f"--otlp-address=127.0.0.1:{cls.otlp[name]}", "--zipkin-address=",
                "--peer-telemetry-interval=200ms"))
        cls.a, cls.b = cls.replicas
        with open(SERVICES) as f:
            cls.a.apply(f.read())
        a, b = cls.a.ads, cls.b.ads
        for node, xds, service, version in [("reviews-1", f"{a},{b}", "reviews", "v1"),
                                            ("reviews-2", f"{b},{a}", "reviews", "v2"),
                                            ("ratings-1", a, "ratings", "v1")]:
            app = HttpUpstream(node)
            cls.apps.append(app)
            # reviews-1, on A, sends its spans to B's collector.
            config = telemetry_config(cls.otlp["b"]) if node == "reviews-1" else "{}\n"
            cls.sidecars.append(start_xds_sidecar(
                cls.tmp, xds, node, "default", f"--node-service={service}",
                f"--node-port={app.port}", f"--node-label=version={version}", config=config))
        # The client, on B, sends its spans to A's collector.
        cls.client = start_xds_sidecar(cls.tmp, f"{b},{a}", "client", "default",
                                       "--node-service=frontend",
                                       config=telemetry_config(cls.otlp["a"]))
        cls.sidecars.append(cls.client)


    def reached(self, count=20):
        """The apps that answered `count` requests for reviews through the client."""
        seen = set()
        for _ in range(count):
            conn = http.client.HTTPConnection("127.0.0.1", self.client.outbound, timeout=5)
            try:
                conn.request("GET", "/probe", headers={"Host": "reviews"})
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    seen.add(json.loads(body)["upstream"])
            except OSError:
                pass
            finally:
                conn.close()
        return seen

    def test_1_every_replica_pushes_every_endpoint(self):
        self.assertTrue(wait_for(lambda: self.reached() == {"reviews-1", "reviews-2"},
                                 timeout=15),
                        "the client on B reaches reviews-1, registered with A, and reviews-2")
        for replica in (self.a, self.b):
            workloads = replica.workloads()
            self.assertEqual({w: workloads[w]["replica"] for w in workloads},
                             {"reviews-1": "a", "reviews-2": "b", "ratings-1": "a",
                              "client": "b"}, replica.name)
            self.assertTrue(all(w["connected"] for w in workloads.values()))
        table = meshctl(MESHCTL, self.b.context, "get", "workloads")
        self.assertIn("REPLICA", table)
        row = next(line for line in table.splitlines() if line.startswith("reviews-1 "))
        self.assertEqual(row.split()[-1], "a")

    def whole_trace(self, replica):
        """A trace with spans of both the client and reviews-1 (ids from each replica)."""
        status, body = replica.request("GET", "/api/v1/traces?service=frontend.default&limit=50")
        self.assertEqual(status, 200, body)
        for summary in json.loads(body)["items"]:
            status, body = replica.request("GET", f"/api/v1/traces/{summary['traceId']}")
            self.assertEqual(status, 200, body)
            services = {span["service"] for span in json.loads(body)["spans"]}
            if {"frontend.default", "reviews.default"} <= services:
                return summary["traceId"]
        return None

    def span_ids(self, replica, trace):
        status, body = replica.request("GET", f"/api/v1/traces/{trace}")
        return {span["spanId"] for span in json.loads(body)["spans"]} if status == 200 else set()

    def test_1b_every_replica_shows_the_whole_meshs_telemetry(self):
        self.assertTrue(wait_for(lambda: "reviews-1" in self.reached(), timeout=15))

        def edge(replica):
            status, body = replica.request("GET", "/api/v1/stat?window=1m&service=frontend.default")
            self.assertEqual(status, 200, body)
            return next((e for e in json.loads(body)["items"]
                         if e["source"] == "frontend.default"
                         and e["destination"] == "reviews.default"), None)

        # Requests until reviews-1 answered some (it is half of the endpoints).
        self.assertTrue(wait_for(lambda: "reviews-1" in self.reached(count=10), timeout=10))
        for replica in (self.a, self.b):
            self.assertTrue(wait_for(lambda: edge(replica) is not None, timeout=10),
                            f"the client's edge (reported to B) through {replica.name}")
            self.assertGreater(edge(replica)["requests"], 0)
            self.assertTrue(wait_for(lambda: self.whole_trace(replica) is not None, timeout=10),
                            f"a trace with the spans of both sidecars through {replica.name}")
            table = meshctl(MESHCTL, replica.context, "stat")
            self.assertRegex(table, r"frontend\.default\s+reviews\.default")

        # The history, built on each replica from the reports it got and those forwarded to it
        # (at the reports' own times), is the same on both once no more requests are made.
        end = int(time.time()) + 60
        path = ("/api/v1/stat/history?edge=frontend.default,reviews.default"
                f"&from={end - 600}&to={end}&step=10s")
        answers = {}

        def same_history():
            for replica in (self.a, self.b):
                status, body = replica.request("GET", path)
                self.assertEqual(status, 200, body)
                answers[replica.name] = json.loads(body)
            requests = [sum(p["requests"] for p in h["points"]) for h in answers.values()]
            return requests[0] > 0 and all(answers["a"][k] == answers["b"][k]
                                           for k in answers["a"] if k != "events")
        self.assertTrue(wait_for(same_history, timeout=15), answers)
        # Their markers: the same policy changes on both (each watches the store), who made them
        # only on A, which took the writes (ADR 0095, amended).
        policy = {name: [e for e in h["events"] if e["type"] == "policy"]
                  for name, h in answers.items()}

        def change(e):
            return e["revision"], e["kind"], e["namespace"], e["name"], e["verb"], e["services"]
        self.assertIn(("Service", "default", "reviews", "created", ["reviews.default"]),
                      [change(e)[1:] for e in policy["a"]], policy["a"])
        self.assertEqual([change(e) for e in policy["a"]], [change(e) for e in policy["b"]])
        self.assertTrue(all(e["whoKnown"] and e["who"] for e in policy["a"]), policy["a"])
        self.assertFalse([e for e in policy["b"] if e["whoKnown"]], policy["b"])
        status, metrics = self.a.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("meshlet_cp_peer_replicas 1", metrics)
        self.assertRegex(metrics, r'meshlet_cp_peer_telemetry_batches_total\{result="sent"\} [1-9]')
        self.assertRegex(metrics,
                         r'meshlet_cp_peer_telemetry_received_total\{result="accepted"\} [1-9]')

    def test_1d_a_replica_that_joins_is_handed_the_traces_kept(self):
        self.assertTrue(wait_for(lambda: "reviews-1" in self.reached(count=10), timeout=15))
        self.assertTrue(wait_for(lambda: self.whole_trace(self.a) is not None, timeout=10))
        trace = self.whole_trace(self.a)
        c = Replica(CONTROL_PLANE, MESHCTL, self.tmp, "c", self.etcd,
                    "--etcd-prefix", "/failover-test/", "--etcd-lease-ttl", f"{LEASE_TTL}s",
                    "--replica-name", "c", f"--otlp-address=127.0.0.1:{free_port()}",
                    "--zipkin-address=", "--peer-telemetry-interval=200ms")
        try:
            # A sorts first of the replicas other than C: it hands C the traces it keeps.
            self.assertTrue(wait_for(lambda: self.span_ids(c, trace) == self.span_ids(self.a, trace),
                                     timeout=10),
                            "a trace recorded before C started, through C")
            # A counts a batch once C answered it, which can be after C shows its spans.
            sent = re.compile(r'meshlet_cp_peer_telemetry_history_total\{result="sent"\} [1-9]')
            self.assertTrue(wait_for(lambda: sent.search(self.a.request("GET", "/metrics")[1]),
                                     timeout=10),
                            "A counted the history it handed C")
            _, metrics = self.b.request("GET", "/metrics")
            self.assertNotRegex(metrics,
                                r'meshlet_cp_peer_telemetry_history_total\{result="sent"\} [1-9]')
        finally:
            c.stop()

    def test_1c_forwarding_needs_the_api_token(self):
        method = "/meshlet.telemetry.peer.v1.PeerTelemetry/Forward"
        with grpc.insecure_channel(self.a.ads) as channel:
            forward = channel.unary_unary(method)
            for metadata in ([], [("authorization", "Bearer not-the-token")]):
                with self.assertRaises(grpc.RpcError) as refused:
                    forward(b"", metadata=metadata, timeout=5)
                self.assertEqual(refused.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
                self.assertIn("API token", refused.exception.details())
            # With it, an empty batch is accepted.
            self.assertEqual(forward(b"", metadata=[("authorization", "Bearer " + self.a.token)],
                                     timeout=5), b"")
        _, metrics = self.a.request("GET", "/metrics")
        self.assertIn('meshlet_cp_peer_telemetry_received_total{result="unauthenticated"} 2',
                      metrics)

    def tap(self, replica, *args):
        """The NDJSON lines of `meshctl tap ARGS -o json` asked of `replica`."""
        p = subprocess.run([MESHCTL, "tap", *args, "-o", "json"], capture_output=True, text=True,
                           env=dict(os.environ, MESHCTL_CONFIG=replica.context), timeout=40)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def metric(self, replica, name):
        _, metrics = replica.request("GET", "/metrics")
        found = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.M)
        return float(found.group(1)) if found else 0.0

    def test_1e_a_live_tap_reaches_the_sidecars_of_every_replica(self):
        self.assertTrue(wait_for(lambda: self.reached(count=10) == {"reviews-1", "reviews-2"},
                                 timeout=15))
        stop = threading.Event()
        traffic = threading.Thread(target=lambda: [self.reached(1) for _ in iter(stop.is_set,
                                                                                   True)])
        traffic.start()
        try:
            # Asked of B: reviews-2 is connected to B, reviews-1 to A.
            lines = self.tap(self.b, "svc/reviews", "--rate", "50", "--duration", "3s")
            by_workload = self.tap(self.b, "default/reviews-1", "--rate", "20", "--duration",
                                   "2s")
        finally:
            stop.set()
            traffic.join()
        started = lines[0]
        self.assertEqual((started["kind"], started["proxies"]), ("TapStarted", ["reviews-2"]),
                         lines[:3])
        self.assertIn("a", started["replicas"])
        from_a = [l for l in lines if l["kind"] == "TapReplica" and l["replica"] == "a"]
        self.assertEqual([(l["status"], l["proxies"]) for l in from_a],
                         [("started", ["reviews-1"])], lines[:5])
        self.assertEqual({l["proxy"] for l in lines if l["kind"] == "TapEvent"},
                         {"reviews-1", "reviews-2"})
        self.assertEqual(lines[-1]["kind"], "TapEnded", lines[-1])
        # A workload connected to A only, asked of B.
        self.assertEqual(by_workload[0]["proxies"], [])
        self.assertEqual({l["proxy"] for l in by_workload if l["kind"] == "TapEvent"},
                         {"reviews-1"})
        self.assertGreaterEqual(self.metric(self.a, "meshlet_cp_tap_forwarded_total"), 2)
        # Nowhere: the replicas answer that they have none.
        nowhere = self.tap(self.b, "default/nobody-0", "--duration", "2s")
        self.assertEqual(nowhere[-1]["reason"],
                         "no sidecar of the target is connected to any replica", nowhere)
        # The caller goes away (with traffic: a caller that went is noticed on the next write):
        # the tap ends on A too.
        stop.clear()
        traffic = threading.Thread(target=lambda: [self.reached(1) for _ in iter(stop.is_set,
                                                                                   True)])
        traffic.start()
        p = subprocess.Popen([MESHCTL, "tap", "svc/reviews", "--duration", "60s", "-o", "json"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=dict(os.environ, MESHCTL_CONFIG=self.b.context))
        try:
            for line in p.stdout:
                if json.loads(line)["kind"] == "TapReplica":
                    break
            self.assertEqual(self.metric(self.a, "meshlet_cp_tap_active"), 1)
            p.kill()
            p.wait()
            self.assertTrue(wait_for(lambda: self.metric(self.a, "meshlet_cp_tap_active") == 0 and
                                     self.metric(self.b, "meshlet_cp_tap_active") == 0,
                                     timeout=10))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            stop.set()
            traffic.join()
        with open(os.path.join(self.a.dir, "cp.log")) as f:
            self.assertIn("forwarded by replica b for api-token", f.read())
        # Only a replica may forward a tap.
        with grpc.insecure_channel(self.a.ads) as channel:
            forward = channel.unary_stream("/meshlet.xds.TapForwarding/Tap")
            with self.assertRaises(grpc.RpcError) as refused:
                list(forward(b"", metadata=[("authorization", "Bearer not-the-token")],
                             timeout=5))
            self.assertEqual(refused.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_2_replica_a_dies_and_no_request_fails(self):
        self.assertTrue(wait_for(lambda: self.reached() == {"reviews-1", "reviews-2"},
                                 timeout=15))
        load = Load(self.client.outbound)
        try:
            time.sleep(1)
            self.a.proc.kill()
            self.a.proc.wait()
            killed = time.time()

            def moved():
                w = self.b.workloads().get("reviews-1", {})
                return w.get("replica") == "b" and w.get("connected")

            self.assertTrue(wait_for(moved, timeout=10), "reviews-1 reconnects to B")
            print(f"reviews-1 registered through B {(time.time() - killed) * 1000:.0f} ms after "
                  "A died", file=sys.stderr)
            self.assertTrue(wait_for(lambda: "ratings-1" not in self.b.workloads(),
                                     timeout=LEASE_TTL + GRACE + 10),
                            "ratings-1, connected to A only, leaves after the lease and grace")
            gone = time.time() - killed
            print(f"ratings-1 removed {gone:.1f} s after A died (lease {LEASE_TTL} s + grace "
                  f"{GRACE} s)", file=sys.stderr)
            self.assertGreaterEqual(gone, GRACE)
            before, _ = load.snapshot()
            time.sleep(1)
            after, failures = load.snapshot()
        finally:
            load.stop()
        total = sum(after.values())
        print(f"{total} requests while A died and its registrations expired, "
              f"{len(failures)} failed", file=sys.stderr)
        self.assertEqual(failures, [])
        self.assertGreater(total, 100)
        # Both apps still answer, after A's lease ran out and its ghosts expired.
        for app in ("reviews-1", "reviews-2"):
            self.assertGreater(after.get(app, 0), before.get(app, 0), app)
        workloads = self.b.workloads()
        self.assertTrue(workloads["reviews-1"]["connected"])
        self.assertEqual(workloads["reviews-1"]["replica"], "b")


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, sidecar_test.SIDECAR, SERVICES = (
        os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=sys.argv[:1] + sys.argv[5:], verbosity=2)
