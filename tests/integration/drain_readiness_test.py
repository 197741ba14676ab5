"""A workload whose sidecar gets SIGTERM leaves its callers' load balancing within a second.

Usage: drain_readiness_test.py CONTROL_PLANE MESHCTL SIDECAR SERVICES_YAML [unittest args]

The real control plane, meshctl and sidecars on 127.0.0.1 (plaintext xDS): Service reviews (from
the examples' services file) with two workloads, each a sidecar in front of a Python app, and a
caller, frontend, whose app sends a steady stream of requests to reviews through its sidecar.
reviews-1's sidecar gets SIGTERM while a slow request keeps it draining (--drain-time 30s). Its
drain reports "not ready: draining" on its xDS stream, so within 1 s the caller's /clusters no
longer lists its endpoint, `meshctl get workloads` shows it READY false while it is still
connected, and none of the caller's requests fails meanwhile (those that meet the draining
sidecar's closed listener are retried on the other member). Prints the measured SIGTERM ->
endpoint-gone time.

What the control plane hears is what the sidecar's /ready says: a member whose /ready is 503
(--capture-check with a capture listener that has not seen a redirected connection) is reported
not ready, shown READY false and left out of its callers' endpoints; once /ready says 200 (the
bootstrap reloaded without the capture listener) it is reported ready and the callers get it.
"""

import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
import unittest

import cp_api
import sidecar_test
from mesh_util import (meshctl, start_plaintext_control_plane, start_xds_sidecar, stop_all,
                       write_meshctl_context)
from ports import free_port
from sidecar_test import EchoServer, HttpUpstream, wait_for

CONTROL_PLANE = MESHCTL = SERVICES = None  # set from argv

CLUSTER = "outbound|9080||reviews.default"
# Longer than the test takes after SIGTERM: the draining sidecar must not exit meanwhile.
SLOW = "/slow/8"


class RequestStream:
    """The caller's app: `threads` clients, each sending GET / for reviews:9080 through its
    sidecar every 5 ms on its own keep-alive connection (a new one after an error). `results`
    holds (start time, status, the answering upstream's name or the error); status 0 when no HTTP
    answer came.

    Six clients, more at once than the 3 retries in flight the caller once allowed per cluster:
    with the retry budget enabled and circuit_breakers.max_retries unset there is no such limit
    (ADR 0043), so every request that meets the draining member at once is still retried."""

    def __init__(self, port, threads=6):
        self.port = port
        self.results = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self):
        conn = None
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/", headers={"Host": "reviews:9080"})
                response = conn.getresponse()
                body = response.read().decode()
                if response.status == 200:
                    body = json.loads(body)["upstream"]
                self.results.append((started, response.status, body))
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.results.append((started, 0, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    def bodies(self):
        return {body for _, _, body in list(self.results)}

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=10)


def slow_request(port):
    """A slow GET straight to a sidecar's inbound listener: an open connection that keeps its
    drain going. Errors are expected once the test kills the sidecar."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", SLOW, headers={"Host": "reviews:9080"})
        conn.getresponse().read()
        conn.close()
    except (OSError, http.client.HTTPException):
        pass


class DrainReadinessTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.sidecars, self.apps = [], []
        self.cp, self.api, self.ads, _ = start_plaintext_control_plane(
            CONTROL_PLANE, self.tmp, "--xds-listen-host", "127.0.0.1")
        self.context = write_meshctl_context(os.path.join(self.tmp, "meshctl.yaml"), self.api,
                                             os.path.join(self.tmp, "cp-data", "api-token"))

    def tearDown(self):
        stop_all(self.sidecars, self.apps, self.cp)

    def meshctl(self, *args, stdin=None):
        return meshctl(MESHCTL, self.context, *args, stdin=stdin)

    def workload(self, node_id):
        """`meshctl get workloads`' row of `node_id` as {column: cell}; cells are cut at the
        header's column starts (an empty cell stays a column)."""
        lines = self.meshctl("get", "workloads").splitlines()
        header = lines[0]
        names = header.split()
        starts = [header.index(name) for name in names]
        for line in lines[1:]:
            cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [len(line)])]
            if cells[0] == node_id:
                return dict(zip(names, cells))
        return None

    def control_plane_log(self):
        with open(os.path.join(self.tmp, "cp.log")) as f:
            return f.read()

    def test_a_draining_workload_leaves_its_callers_within_a_second(self):
        self.meshctl("apply", "-f", SERVICES)  # reviews: port 9080
        self.apps = [HttpUpstream("a"), HttpUpstream("b")]
        members = [start_xds_sidecar(self.tmp, self.ads, f"reviews-{i}", "default",
                                     "--node-service=reviews", f"--node-port={app.port}",
                                     drain_time="30s")
                   for i, app in enumerate(self.apps)]
        self.sidecars += members
        # The caller declares reviews (pushed, not discovered on first use): its hosts are read
        # before it sends anything.
        caller = start_xds_sidecar(self.tmp, self.ads, "frontend-0", "default",
                                   "--node-service=frontend",
                                   "--node-label=meshlet.io/dependencies=reviews")
        self.sidecars.append(caller)
        draining = members[1]
        endpoint = f"127.0.0.1:{draining.inbound}"

        def hosts():
            """The caller's hosts of the reviews cluster, by address."""
            for cluster in json.loads(caller.get("/clusters")[1])["clusters"]:
                if cluster["name"] == CLUSTER:
                    return {h["address"]: h for h in cluster["hosts"]}
            return {}

        self.assertTrue(wait_for(lambda: len(hosts()) == 2 and
                                 all(h["healthy"] for h in hosts().values()), timeout=10),
                        f"{hosts()}\n{caller.log()}")
        self.assertEqual(self.workload("reviews-1")["READY"], "true")
        reports_before_drain = self.readiness_reports(False)

        stream = RequestStream(caller.outbound)
        try:
            # Both members take requests before the drain.
            self.assertTrue(wait_for(lambda: stream.bodies() >= {"a", "b"}, timeout=5),
                            stream.results[-5:])
            threading.Thread(target=slow_request, args=(draining.inbound,), daemon=True).start()
            self.assertTrue(wait_for(lambda: SLOW in self.apps[1].paths, timeout=5))

            sigterm = time.monotonic()
            draining.proc.send_signal(signal.SIGTERM)
            while endpoint in hosts():
                self.assertLess(time.monotonic() - sigterm, 5, "the endpoint did not leave")
                time.sleep(0.005)
            gone = time.monotonic()
            print(f"SIGTERM -> {endpoint} gone from the caller's {CLUSTER}: "
                  f"{(gone - sigterm) * 1000:.0f} ms", file=sys.stderr)
            self.assertLess(gone - sigterm, 1.0, draining.log())
            self.assertEqual(list(hosts()), [f"127.0.0.1:{members[0].inbound}"])

            # Still draining (the slow request is open), still connected, not ready.
            self.assertIsNone(draining.proc.poll())
            row = self.workload("reviews-1")
            self.assertEqual((row["READY"], row["STATUS"]), ("false", "connected"), row)
            self.assertEqual(self.workload("reviews-0")["READY"], "true")
            time.sleep(0.5)  # more requests, now to the remaining member only
        finally:
            stream.stop()

        failures = [(f"{(started - sigterm) * 1000:.0f} ms after SIGTERM", status, body)
                    for started, status, body in stream.results if status != 200]
        self.assertEqual(failures, [], f"of {len(stream.results)} requests; the caller's stats:\n" +
                         caller.get("/stats?filter=meshlet_upstream")[1])
        during = [r for r in stream.results if sigterm <= r[0] <= gone]
        after = {body for started, _, body in stream.results if started > gone + 0.05}
        self.assertEqual(after, {"a"})
        print(f"{len(stream.results)} requests through the caller, {len(during)} of them between "
              "SIGTERM and the endpoint's removal, none failed; the caller sent "
              f"{caller.stat('meshlet_upstream_rq_retry_total')} retries", file=sys.stderr)

        # The report: logged once by the control plane, counted, sent by the draining sidecar.
        self.assertEqual(self.control_plane_log().count("workload reviews-1 not ready: draining"),
                         1)
        self.assertIn("xds: reporting not ready: draining to the control plane", draining.log())
        self.assertEqual(self.readiness_reports(False), reports_before_drain + 1)

    def readiness_reports(self, ready):
        """meshlet_xds_readiness_reports_total{ready} of the control plane."""
        with cp_api.urlopen(f"https://{self.api}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        series = 'meshlet_xds_readiness_reports_total{ready="%s"} ' % str(ready).lower()
        for line in metrics.splitlines():
            if line.startswith(series):
                return int(line[len(series):])
        return 0

    def test_the_control_plane_hears_what_ready_says(self):
        # A member whose /ready is 503 (its capture listener has not seen a redirected
        # connection: --capture-check dials a plain server, which nothing redirects) must not
        # be among its callers' endpoints; once /ready is 200 it must be.
        self.meshctl("apply", "-f", SERVICES)  # reviews: port 9080
        self.apps = [HttpUpstream("a"), HttpUpstream("b")]
        not_redirected = EchoServer()
        self.addCleanup(not_redirected.close)
        capture_port = free_port()
        capture = (f"static_resources:\n  listeners:\n"
                   f"  - name: capture\n    address: 127.0.0.1:{capture_port}\n"
                   f"    direction: INBOUND\n    protocol: PROTOCOL_TCP\n"
                   f"    tcp_cluster: not-redirected\n    use_original_destination: true\n"
                   f"  clusters:\n  - name: not-redirected\n    load_assignment:\n"
                   f"      endpoints: [{{address: 127.0.0.1:{not_redirected.port}}}]\n")
        ready = start_xds_sidecar(self.tmp, self.ads, "reviews-0", "default",
                                  "--node-service=reviews", f"--node-port={self.apps[0].port}")
        waiting = start_xds_sidecar(self.tmp, self.ads, "reviews-1", "default",
                                    "--node-service=reviews", f"--node-port={self.apps[1].port}",
                                    f"--capture-check=127.0.0.1:{not_redirected.port}",
                                    config=capture, wait_ready=False)
        # The caller declares reviews (pushed, not discovered on first use): its hosts are read
        # before it sends anything.
        caller = start_xds_sidecar(self.tmp, self.ads, "frontend-0", "default",
                                   "--node-service=frontend",
                                   "--node-label=meshlet.io/dependencies=reviews")
        self.sidecars += [ready, waiting, caller]

        def hosts():
            for cluster in json.loads(caller.get("/clusters")[1])["clusters"]:
                if cluster["name"] == CLUSTER:
                    return sorted(h["address"] for h in cluster["hosts"])
            return []

        def not_ready_for_capture():
            status, body, _ = waiting.get("/ready")
            return status == 503 and "traffic capture not in effect" in body

        self.assertTrue(wait_for(not_ready_for_capture, timeout=10), waiting.get("/ready"))
        # The caller has its configuration (the ready member) ...
        self.assertTrue(wait_for(lambda: hosts() == [f"127.0.0.1:{ready.inbound}"], timeout=10),
                        hosts())
        # ... and through more than two capture dials, the one whose /ready says 503 is not there.
        time.sleep(2.5)
        self.assertTrue(not_ready_for_capture())
        self.assertEqual(hosts(), [f"127.0.0.1:{ready.inbound}"])
        row = self.workload("reviews-1")
        self.assertEqual((row["READY"], row["STATUS"]), ("false", "connected"), row)
        self.assertIn("workload reviews-1 not ready: traffic capture not in effect",
                      self.control_plane_log())

        # Without the capture listener (SIGHUP re-reads the bootstrap) /ready says 200: the
        # control plane hears it and the callers get the endpoint.
        with open(waiting.config, "w") as f:
            f.write("{}\n")
        waiting.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: waiting.get("/ready")[0] == 200, timeout=5),
                        waiting.get("/ready"))
        both = sorted([f"127.0.0.1:{ready.inbound}", f"127.0.0.1:{waiting.inbound}"])
        self.assertTrue(wait_for(lambda: hosts() == both, timeout=5), hosts())
        self.assertEqual(self.workload("reviews-1")["READY"], "true")


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, sidecar_test.SIDECAR, SERVICES = (
        os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=sys.argv[:1] + sys.argv[5:], verbosity=2)
