"""`./dev demo`'s script, run the way ./dev runs it, with its own state directory and ports.

Usage: demo_test.py DEMO_PY CONTROL_PLANE MESHCTL SIDECAR DEMO_DASHBOARD_JS TAP_JS [unittest args]

Starts the demo (control plane, four workloads behind their sidecars, the example policies, one
second of traffic), checks from its summary, the sidecars' access logs and meshctl that requests
crossed every hop and that the policies acted (90/10 split, canary header, retries, the 300 ms
timeout), and that the golden metrics of the sidecars (started by flags, as Kubernetes injection
will start them) reach the control plane: `meshctl stat` shows frontend -> reviews and reviews ->
ratings; `traffic` prints its summary again, the /slow calls on one line; starts it again over
the running one (the old processes must go); then `stop` must leave no process and no file.
On the same run, after a `meshctl apply` that updates TrafficPolicy default/reviews, the dashboard
in headless Chromium (tests/browser/demo_dashboard_test.js): node colours, reviews' service page
against the API's figures, its charts with the apply's marker, links to callers, callees and a
failed request's explanation, the route rules' figures and a rule's chart; then, with the demo's
traffic flowing, the Live tab tapping the frontend's calls through HTTPRoute default/reviews
(tests/browser/tap_test.js); screenshots in TEST_UNDECLARED_OUTPUTS_DIR. Without node_modules or
chromium that part prints SKIP, unless MESHLET_REQUIRE_BROWSER=1 (./dev test sets it).
And `./dev demo --clusters 2` (clusters.py): two linked clusters, frontend's calls failing over
from west's reviews to east's through the east-west gateway and back, then a clean stop.
"""

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import unittest

import browser
import cp_api

DEMO = BIN_DIR = DASHBOARD_JS = TAP_JS = None  # set from argv
NODES = ("frontend-0", "reviews-v1-0", "reviews-v2-0", "ratings-0")


def processes_naming(text):
    """Pids of live processes whose command line contains text."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def pids_of(state_dir):
    run = os.path.join(state_dir, "run")
    pids = {}
    for name in os.listdir(run):
        with open(os.path.join(run, name)) as f:
            pids[name[:-len(".pid")]] = int(f.read())
    return pids


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


class DemoTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.state = os.path.join(self.tmp, "demo")
        self.summary = os.path.join(self.tmp, "summary.json")

    def tearDown(self):
        # Whatever happened, nothing of the demo may outlive the test.
        subprocess.run([sys.executable, DEMO, "stop", "--state-dir", self.state],
                       capture_output=True, timeout=30)
        for pid in processes_naming(self.state):
            os.kill(pid, 9)

    def demo(self, *args):
        return subprocess.run([sys.executable, DEMO] + list(args) + ["--state-dir", self.state],
                              capture_output=True, text=True, timeout=60)

    def start(self, *extra):
        # A port range outside the kernel's ephemeral range (where other tests' ports come
        # from) and away from the demo's default 17000; another one if it happens to be taken.
        for _ in range(5):
            base = random.randrange(20000, 30000, 200)
            p = self.demo("start", "--bin-dir", BIN_DIR, "--port-base", str(base),
                          "--traffic-seconds", "1", "--summary-json", self.summary, *extra)
            if "ports already in use" not in p.stderr:
                break
        self.assertEqual(p.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr))
        with open(self.summary) as f:
            return p, base, json.load(f)

    def assert_policies_acted(self, s):
        """The example policies' effects, read from the demo's traffic summary."""
        # Every request reached the frontend, one of the reviews versions and ratings.
        self.assertGreater(s["total"], 20, s)
        self.assertEqual(s["ok"], s["total"], s)
        # Calls to reviews that still failed after the frontend's sidecar retried them: a call
        # whose four attempts all land in failure bursts (two clients share reviews-v1's burst
        # pattern, 3 of every 20 requests, and backoff can carry a retry into the next burst;
        # on a busy machine the clients' requests interleave more, and up to about 3 % of the
        # calls were seen to fail so). Without the retries about 15 % would fail.
        failed_after_retries = s["total"] - s["v1"] - s["v2"]
        self.assertLessEqual(failed_after_retries, max(2, s["total"] // 25), s)
        self.assertEqual(s["ratings"], s["v1"] + s["v2"], s)
        # HTTPRoute reviews: 90/10 by version, and the canary header always to v2.
        self.assertTrue(0.02 <= s["v2"] / s["total"] <= 0.25, s)
        self.assertEqual(s["canary"], {"v2": 5}, s)
        # The injected 503s were retried (by reviews-v1's sidecar or the frontend's); only a
        # call's last failed attempt goes unretried, when its retries are used up.
        self.assertGreater(s["injected_failures"], 0, s)
        self.assertGreaterEqual(sum(s["retries"].values()) + failed_after_retries,
                                s["injected_failures"], s)
        # HTTPRoute ratings: /slow cut at 300 ms by reviews' sidecar; the chain still answers.
        for status, ratings_status, ms, took in s["slow"]:
            self.assertEqual((status, ratings_status), (200, 504), s)
            self.assertTrue(250 <= ms < 900, s)

    def test_two_linked_clusters_fail_over_and_stop_clean(self):
        # `./dev demo --clusters 2`: west's frontend calls reviews, answered in west while its
        # sidecar runs, in east (through its east-west gateway, mTLS from frontend to east's
        # reviews) while it is stopped, in west again once it is back.
        clusters = os.path.join(os.path.dirname(DEMO), "clusters.py")
        for _ in range(5):
            base = random.randrange(20000, 30000, 200)
            p = subprocess.run([sys.executable, clusters, "start", "--bin-dir", BIN_DIR,
                                "--port-base", str(base), "--state-dir", self.state,
                                "--summary-json", self.summary],
                               capture_output=True, text=True, timeout=120)
            if "ports already in use" not in p.stderr:
                break
        self.assertEqual(p.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr))
        with open(self.summary) as f:
            s = json.load(f)
        print("two clusters: %s" % s, file=sys.stderr)
        self.assertEqual(set(s["healthy"]), {"west-reviews"}, s)
        self.assertEqual(set(s["during"]), {"east-reviews"}, s)
        self.assertEqual(s["caller"], "spiffe://west.example/ns/default/sa/frontend", s)
        self.assertIn("default/reviews", p.stdout)
        self.assertIn("docs/multicluster.md", p.stdout)
        pids = pids_of(self.state)
        self.assertEqual(len(pids), 9, pids)
        stop = subprocess.run([sys.executable, clusters, "stop", "--state-dir", self.state],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(stop.returncode, 0, stop.stderr)
        self.assertFalse([pid for pid in pids.values() if alive(pid)], pids)
        self.assertFalse(os.path.exists(self.state))

    def test_gateway_api_routes_act_like_the_meshlet_routes(self):
        # The same routes written as Gateway API HTTPRoutes (examples/gateway-api) attached to
        # the reviews and ratings Services: the same split, canary and /slow timeout.
        p, _, s = self.start("--routes", "gateway-api")
        print("demo with Gateway API routes: %s" % s, file=sys.stderr)
        self.assert_policies_acted(s)
        self.assertIn("meshctl apply -f examples/gateway-api", p.stderr)
        # The frontend's calls went to the Services the backendRefs name (their clusters), not
        # to label subsets of reviews.
        with open(os.path.join(self.state, "logs", "frontend-0.access.log")) as f:
            clusters = {json.loads(line).get("upstream_cluster") for line in f}
        self.assertIn("outbound|9080||reviews-v1.default", clusters)
        self.assertIn("outbound|9080||reviews-v2.default", clusters)
        self.assertFalse([c for c in clusters if c and "version=" in c], clusters)

    def test_demo_runs_traffic_through_every_hop_and_stops_clean(self):
        started = time.monotonic()
        p, base, s = self.start()
        print("demo up and traffic done in %.1f s: %s" % (time.monotonic() - started, s),
              file=sys.stderr)

        self.assert_policies_acted(s)

        # The /slow calls are summed up on one line.
        self.assertEqual(p.stdout.count("timeout: GET /slow"), 1, p.stdout)

        # Golden metrics: each sidecar reports to the control plane it was given by --xds (its
        # bootstrap has no xds block), so `meshctl stat`, as the guide prints it, shows both
        # hops with a success rate within seconds of the traffic.
        self.assertIn("bin/meshctl stat", p.stdout)
        edges = [r"^frontend\.default\s+reviews\.default\s+\d+\.\d+%",
                 r"^reviews\.default\s+ratings\.default\s+\d+\.\d+%"]
        stat = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stat = subprocess.run([os.path.join(self.state, "bin", "meshctl"), "stat"],
                                  capture_output=True, text=True, timeout=20)
            if stat.returncode == 0 and all(re.search(e, stat.stdout, re.M) for e in edges):
                break
            time.sleep(0.5)
        self.assertEqual(stat.returncode, 0, stat.stderr)
        for edge in edges:
            self.assertRegex(stat.stdout, re.compile(edge, re.M))

        # More traffic on demand: the same summary, the /slow line once.
        more = self.demo("traffic", "--seconds", "0.5")
        self.assertEqual(more.returncode, 0, more.stderr)
        self.assertIn("Traffic: ", more.stdout)
        self.assertEqual(more.stdout.count("timeout: GET /slow"), 1, more.stdout)

        # Each sidecar logged requests: inbound from its caller, outbound to the next hop.
        for node in NODES:
            with open(os.path.join(self.state, "logs", node + ".access.log")) as f:
                lines = [json.loads(line) for line in f]
            # A pooled connection idle past the inbound's detect_timeout is proxied as TCP: its
            # line names the cluster as "cluster" (operations.md, Access log).
            clusters = {l["cluster"] if l.get("protocol") == "tcp" else l["upstream_cluster"]
                        for l in lines}
            self.assertTrue(any(c.startswith("inbound|") for c in clusters), (node, clusters))
        with open(os.path.join(self.state, "logs", "frontend-0.access.log")) as f:
            self.assertIn("outbound|9080|version=v2|reviews.default", f.read())

        # The printed guide, and meshctl working from the context the demo wrote.
        for text in ("meshctl proxy-status", "meshctl get httproutes -A",
                     "meshctl proxy-config frontend-0", "/stats/prometheus", "/config_dump",
                     "/clusters", "./dev demo --stop", "access.log"):
            self.assertIn(text, p.stdout)
        status = subprocess.run([os.path.join(self.state, "bin", "meshctl"), "proxy-status"],
                                capture_output=True, text=True, timeout=20)
        self.assertEqual(status.returncode, 0, status.stderr)
        for node in NODES:
            self.assertRegex(status.stdout, node + r"\s.*ACKED.*ACKED.*ACKED.*ACKED")
        # Every sidecar traces to the control plane: the traffic's traces cross three services.
        traces = subprocess.run([os.path.join(self.state, "bin", "meshctl"), "traces",
                                 "--service", "ratings"], capture_output=True, text=True,
                                timeout=20)
        self.assertEqual(traces.returncode, 0, traces.stderr)
        self.assertIn("frontend.default: GET /", traces.stdout)
        self.assertEqual(len(pids_of(self.state)), 9)  # control plane, 4 apps, 4 sidecars

        self.check_dashboard(base)

        # Starting again replaces the running demo.
        old = pids_of(self.state)
        p, base, s = self.start()
        self.assertGreater(s["ok"], 0, s)
        new = pids_of(self.state)
        self.assertFalse([pid for pid in old.values() if alive(pid)], old)
        self.assertTrue(all(alive(pid) for pid in new.values()), new)

        # stop: no process left, no file left.
        p = self.demo("stop")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse([pid for pid in new.values() if alive(pid)], new)
        self.assertEqual(processes_naming(self.state), [])
        self.assertFalse(os.path.exists(self.state))
        self.assertEqual(os.listdir(self.tmp), ["summary.json"])
        print("whole test %.1f s" % (time.monotonic() - started), file=sys.stderr)

    def check_dashboard(self, base):
        """A policy change applied with meshctl, then the dashboard on the demo's data."""
        message = browser.missing_for(DASHBOARD_JS)
        if message:
            if browser.required():
                self.fail(message)
            print("SKIP: the demo's dashboard " + message, file=sys.stderr)
            return
        started = time.monotonic()
        # The reviews TrafficPolicy with a label more: updated, same behaviour.
        with open(os.path.join(BIN_DIR, "examples", "policies", "10-reviews-retries.yaml")) as f:
            policy = f.read().replace("\n  name: reviews\n",
                                      "\n  name: reviews\n  labels:\n    changed-by: demo-test\n")
        changed = os.path.join(self.tmp, "reviews-policy.yaml")
        with open(changed, "w") as f:
            f.write(policy)
        meshctl = os.path.join(self.state, "bin", "meshctl")
        applied = subprocess.run([meshctl, "apply", "-f", changed], capture_output=True,
                                 text=True, timeout=20)
        self.assertEqual(applied.returncode, 0, applied.stderr)
        self.assertIn("trafficpolicy.meshlet.io/reviews configured", applied.stdout)
        os.remove(changed)
        # The history carries the apply as a policy event for reviews, with who made it.
        api = "127.0.0.1:%d" % (base + 14)
        data = os.path.join(self.state, "control-plane")
        cp_api.trust(api, cp_api.root_file(data))
        with open(os.path.join(data, "api-token")) as f:
            token = f.read().strip()
        events = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not events:
            status, body = cp_api.request(
                api, "GET", "/api/v1/stat/history?service=reviews.default&window=15m",
                token=token)
            self.assertEqual(status, 200, body)
            events = [e for e in json.loads(body)["events"]
                      if e["type"] == "policy" and e["kind"] == "TrafficPolicy"
                      and e["verb"] == "updated"]
            time.sleep(0.2)
        self.assertEqual(len(events), 1, json.loads(body)["events"])
        self.assertEqual((events[0]["name"], events[0]["services"], events[0]["who"]),
                         ("reviews", ["reviews.default"], "api-token"), events)

        shots = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or self.tmp
        r = subprocess.run(["node", DASHBOARD_JS, "https://" + api, token, shots],
                           capture_output=True, text=True, timeout=120)
        print(r.stdout, r.stderr, file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("PASS demo dashboard", r.stdout)
        self.check_live(api, token, data, shots)
        for name in ("demo-graph.png", "demo-service.png", "demo-explain.png", "demo-route.png",
                     "demo-live.png"):
            path = os.path.join(shots, name)
            self.assertGreater(os.path.getsize(path), 10000, name)
            if shots == self.tmp:
                os.remove(path)
        print("dashboard on the demo's data checked in %.1f s" % (time.monotonic() - started),
              file=sys.stderr)

    def check_live(self, api, token, data, shots):
        """The Live tab taps frontend-0's outbound calls while the demo's traffic flows: each row
        names reviews, the frontend as the caller and the HTTPRoute rule that routed it."""
        traffic = subprocess.Popen([sys.executable, DEMO, "traffic", "--seconds", "25",
                                    "--state-dir", self.state],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = int(api.rsplit(":", 1)[1])
            expect = {"target": "workload=default%2Ffrontend-0", "direction": "outbound",
                      "proxies": "frontend-0", "proxy": "frontend-0", "cellDirection": "outbound",
                      "authority": "reviews:9080", "path": "^/", "status": "^(200|503)$",
                      "route": "^HTTPRoute/default/reviews#[01]$", "shot": "demo-live.png"}
            r = subprocess.run(["node", TAP_JS, "https://" + api, token, shots,
                                cp_api.certificate_spki(port, cp_api.root_file(data)),
                                "spiffe://cluster.local/ns/default/sa/frontend",
                                json.dumps(expect)],
                               capture_output=True, text=True, timeout=120)
        finally:
            traffic.kill()
            traffic.wait()
        print(r.stdout, r.stderr, file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("PASS live", r.stdout)

    def test_refuses_a_directory_it_did_not_make(self):
        os.makedirs(self.state)
        keep = os.path.join(self.state, "precious")
        open(keep, "w").close()
        p = self.demo("stop")
        self.assertEqual(p.returncode, 1)
        self.assertIn("was not made by the demo", p.stderr)
        self.assertTrue(os.path.exists(keep))
        os.remove(keep)
        os.rmdir(self.state)


if __name__ == "__main__":
    DEMO = os.path.abspath(sys.argv[1])
    TAP_JS = os.path.abspath(sys.argv.pop(6))
    DASHBOARD_JS = os.path.abspath(sys.argv.pop(5))
    binaries = [os.path.abspath(a) for a in sys.argv[2:5]]
    # demo.py takes a bazel-bin directory; the runfiles tree has the same layout.
    BIN_DIR = os.getcwd()
    expected = ["control-plane/control-plane", "control-plane/cli/meshctl", "sidecar/sidecar"]
    assert [os.path.relpath(b, BIN_DIR) for b in binaries] == expected, binaries
    unittest.main(argv=[sys.argv[0]] + sys.argv[5:], verbosity=2)
