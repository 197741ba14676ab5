"""Policy applied with meshctl reaches real sidecars through the real control plane, on 127.0.0.1.

Usage: mesh_policy_test.py CONTROL_PLANE MESHCTL SIDECAR EXAMPLES_DIR [unittest args]

Three sidecars register with the control plane (frontend, reviews v1, reviews v2; loopback, so
each announces its own listener ports), two python upstreams serve the reviews versions. With no
policy at all the registry alone makes reviews reachable; `meshctl apply -f examples/policies/`
then splits traffic 90/10 by version and sends `x-canary: always` to v2; an invalid policy is
refused and traffic is unchanged; `meshctl get workloads` and `proxy-status` show the sidecars.
"""

import http.client
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from xds_util import free_port  # ports below the ephemeral range (see there)

CONTROL_PLANE = MESHCTL = SIDECAR = EXAMPLES = None  # set from argv


def read(path):
    with open(path) as f:
        return f.read()


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class App:
    """An HTTP server answering every GET with its name."""

    def __init__(self, name):
        body = name.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out in two writes; without this, Nagle holds the body
                # until the proxy's delayed ACK (40 ms per request).
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def get(port, host, headers=None):
    req = urllib.request.Request("http://127.0.0.1:%d/" % port, headers=dict(headers or {},
                                                                             Host=host))
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)
    except (urllib.error.URLError, ConnectionError) as e:  # listener not there yet
        return 0, str(e), {}


class MeshPolicyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.procs = []
        self.apps = [App("v1"), App("v2")]
        data = os.path.join(self.tmp.name, "data")
        self.cp_log = os.path.join(self.tmp.name, "cp.log")
        self.xds_port = free_port()
        self.spawn([CONTROL_PLANE, "--data-dir", data, "--api-address", "127.0.0.1:0",
                    "--xds-plaintext", "--xds-address", "127.0.0.1:%d" % self.xds_port,
                    "--xds-listen-host", "127.0.0.1"], self.cp_log)
        api = wait_for(lambda: re.findall(r"API on (127\.0\.0\.1:\d+)", read(self.cp_log)),
                       what="the control plane's API")[0]
        self.context = os.path.join(self.tmp.name, "meshctl.yaml")
        with open(self.context, "w") as f:
            f.write("server: %s\ntokenFile: data/api-token\n"
                    "certificateAuthority: data/ca/root-cert.pem\n" % api)
        self.frontend_outbound = self.sidecar("frontend-0", "frontend", free_port(), [])
        self.sidecar("reviews-v1-0", "reviews", self.apps[0].port, ["version=v1"])
        self.sidecar("reviews-v2-0", "reviews", self.apps[1].port, ["version=v2"])

    def spawn(self, args, log_path):
        log = open(log_path, "ab")
        self.procs.append((subprocess.Popen(args, stdout=log, stderr=log), log))

    def sidecar(self, node_id, service, app_port, labels):
        inbound, outbound, admin = free_port(), free_port(), free_port()
        args = [SIDECAR, "--xds", "127.0.0.1:%d" % self.xds_port, "--xds-plaintext", "true",
                "--node-id", node_id, "--node-service", service, "--node-address", "127.0.0.1",
                "--node-port", str(app_port), "--admin-address", "127.0.0.1:%d" % admin,
                "--concurrency", "1",
                "--node-label", "meshlet.io/inbound-port=%d" % inbound,
                "--node-label", "meshlet.io/outbound-port=%d" % outbound]
        for label in labels:
            args += ["--node-label", label]
        self.spawn(args, os.path.join(self.tmp.name, node_id + ".log"))
        return outbound

    def tearDown(self):
        for proc, log in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            log.close()
        for app in self.apps:
            app.close()
        self.tmp.cleanup()

    def meshctl(self, *args, stdin=None, expect=0):
        env = dict(os.environ, MESHCTL_CONFIG=self.context)
        p = subprocess.run([MESHCTL] + list(args), input=stdin, capture_output=True, text=True,
                           env=env, timeout=20)
        if expect is not None:
            self.assertEqual(p.returncode, expect,
                             "meshctl %s\nstdout:\n%s\nstderr:\n%s" % (args, p.stdout, p.stderr))
        return p

    def share_of_v2(self, n=200, headers=None):
        # One keep-alive connection, as an app would use.
        conn = http.client.HTTPConnection("127.0.0.1", self.frontend_outbound, timeout=5)
        counts = {}
        try:
            for _ in range(n):
                conn.request("GET", "/", headers=dict(headers or {}, Host="reviews:9080"))
                r = conn.getresponse()
                body = r.read().decode()
                self.assertEqual(r.status, 200, body)
                counts[body] = counts.get(body, 0) + 1
        finally:
            conn.close()
        return counts.get("v2", 0) / n, counts

    def test_policy_applied_with_meshctl_moves_traffic(self):
        t0 = time.time(); print("T", file=sys.stderr)
        # Registration alone: reviews is reachable (both versions) before any policy exists.
        wait_for(lambda: get(self.frontend_outbound, "reviews")[0] == 200, what="reviews via mesh")
        p = self.meshctl("get", "workloads")
        for node in ("frontend-0", "reviews-v1-0", "reviews-v2-0"):
            self.assertIn(node, p.stdout)
        wait_for(lambda: self.meshctl("proxy-status").stdout.count("ACKED") >= 12,
                 what="every sidecar to ACK all four types")

        self.meshctl("apply", "-f", EXAMPLES)
        applied = time.time()
        wait_for(lambda: get(self.frontend_outbound, "reviews:9080")[2].get("x-meshlet-route")
                 == "split", timeout=3, what="the route to apply")
        elapsed = time.time() - applied
        print("route in effect %.0f ms after meshctl apply returned" % (elapsed * 1000),
              file=sys.stderr)
        self.assertLess(elapsed, 1.0, "the route took more than 1 s to apply")
        share, counts = self.share_of_v2(300)
        self.assertTrue(0.03 <= share <= 0.20, "v2 share %.2f, counts %s" % (share, counts))
        share, counts = self.share_of_v2(20, {"x-canary": "always"})
        self.assertEqual(share, 1.0, counts)
        # What the control plane sent, as meshctl shows it.
        p = self.meshctl("proxy-config", "frontend-0")
        self.assertIn("outbound|9080|version=v2|reviews.default", p.stdout)

        # An invalid policy is refused; what runs does not change.
        bad = os.path.join(self.tmp.name, "bad.yaml")
        with open(bad, "w") as f:
            f.write(read(os.path.join(EXAMPLES, "20-reviews-canary.yaml"))
                    .replace("weight: 90", "weight: 9000000"))
        p = self.meshctl("apply", "-f", bad, expect=1)
        self.assertIn("spec.rules[1].backends[0].weight", p.stderr)
        share, counts = self.share_of_v2(100)
        self.assertTrue(share <= 0.25, counts)

        # Deleting the route brings back the even spread over every reviews workload.
        self.meshctl("delete", "httproute", "reviews")
        wait_for(lambda: "x-meshlet-route" not in get(self.frontend_outbound, "reviews:9080")[2],
                 timeout=2, what="the route removal")
        share, counts = self.share_of_v2(200)
        self.assertTrue(0.3 <= share <= 0.7, counts)


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, SIDECAR, EXAMPLES = (os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=[sys.argv[0]] + sys.argv[5:], verbosity=2)
