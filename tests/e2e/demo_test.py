"""End-to-end: `./dev demo` as pods (examples/demo/pods.py), as a user runs it, then stopped.

    demo_test.py --bin-dir DIR [--cni]

DIR is a Bazel output tree with the sidecar, control plane, meshctl and testapp binaries. The
test runs `pods.py start` with a state directory of its own and a short traffic phase, then
checks what the demo tells its user to look at, one line each:

  start          the summary: every request from the client pod answered 200, the 90/10 split
                 reached both reviews versions, the canary header only v2, ratings' failures
                 were all retried by reviews-v2's proxy, the timeout answered, and requests
                 from the host (outside the mesh) through the Gateway bookinfo's proxy pod
                 (examples/demo/gateway.yaml) all reached productpage, and the client's calls
                 to the ExternalService api.partner.example through the egress gateway
                 (examples/demo/egress.yaml) were all answered
  proxy-status   the state directory's `bin/meshctl proxy-status`: every proxy ACKed all four
                 resource types
  app config     no app container of the injected pods carries meshlet configuration: no
                 MESHLET_* variables, no meshlet volume mounts, no meshlet arguments
  dashboard      the dashboard's page answers from the host at the URL the demo printed
  golden metrics /api/v1/stat (what the dashboard draws) has the edges client -> productpage ->
                 reviews -> ratings with requests and a success rate of 1 at the callers
  discovery      the sidecars discovered what they call on first use (on-demand, the default):
                 /api/v1/proxies shows lookup keys answered found for the client's,
                 productpage's and reviews-v2's sidecars (reviews v1 calls nothing)
  traces         /api/v1/traces (the dashboard's trace list) holds a trace across productpage,
                 reviews and ratings
  gateway routes the demo's routes deleted and applied again as Gateway API HTTPRoutes
                 (examples/gateway-api): `pods.py traffic` gives the same split, canary and
                 timeout
  stop           `pods.py stop` removes the pods, images, network and state directory
     cleanup     nothing of the demo remains

With --cni, `pods.py start --cni` (`./dev demo --cni`): start, proxy-status, then

  cni capture    every pod of the demo but the control plane's and the gateway's was captured
                 by meshlet-cni (a `captured` line in its log), has no meshlet-init and a proxy
                 with no capabilities; the gateways' pods were skipped; meshlet-cni-agent and its
                 API server run
  stop           as above, the agent and its API server ended too

Without root or a working podman it prints a SKIP line and exits 0, unless
MESHLET_REQUIRE_E2E=1 (./dev test as root sets it).
"""

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
PODS_PY = os.path.join(REPO, "examples", "demo", "pods.py")
APPS = ("productpage", "reviews", "ratings")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def api_context(state_dir):
    """Verifies the control plane's HTTPS certificate with the CA roots the demo wrote (its
    names are the control plane's Service and SPIFFE id, not the pod's address)."""
    context = ssl.create_default_context(cafile=os.path.join(state_dir, "ca.pem"))
    context.check_hostname = False
    return context


def get_json(url, token, context):
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=10, context=context) as r:
        return json.loads(r.read())


class Demo:
    def __init__(self, bin_dir, cni=False):
        self.bin_dir = bin_dir
        self.cni = cni
        self.base = tempfile.mkdtemp(prefix="meshlet-demo-test.")
        self.state_dir = os.path.join(self.base, "state")
        self.summary_path = os.path.join(self.base, "summary.json")
        self.state = None
        self.output = ""

    def pods_py(self, *args, timeout=600):
        return subprocess.run(["/usr/bin/python3", PODS_PY] + list(args) +
                              ["--state-dir", self.state_dir],
                              capture_output=True, text=True, timeout=timeout)

    def meshctl(self, *args):
        r = subprocess.run([os.path.join(self.state_dir, "bin", "meshctl")] + list(args),
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, "meshctl %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                              r.stderr.strip()[-500:]))
        return r.stdout

    def podman(self, *args):
        r = subprocess.run(harness.podman_command(self.state["run_dir"]) + list(args),
                           capture_output=True, text=True,
                           env=harness.podman_env(self.state["run_dir"]), timeout=60)
        check(r.returncode == 0, "podman %s: %s" % (" ".join(args), r.stderr.strip()[-300:]))
        return r.stdout

    def start(self):
        r = self.pods_py("start", "--bin-dir", self.bin_dir, "--traffic-seconds", "3",
                         "--summary-json", self.summary_path, *(["--cni"] if self.cni else []))
        self.output = r.stdout
        sys.stdout.write(r.stdout)
        if os.path.exists(os.path.join(self.state_dir, "pods.json")):
            with open(os.path.join(self.state_dir, "pods.json")) as f:
                self.state = json.load(f)
        check(r.returncode == 0, "pods.py start: exit %d: %s" % (r.returncode,
                                                                 r.stderr.strip()[-2000:]))
        return self.check_summary(r.stdout)

    def check_summary(self, output):
        with open(self.summary_path) as f:
            s = json.load(f)
        check(s["requests"] > 0 and s["ok"] == s["requests"],
              "%d of %d requests answered 200" % (s["ok"], s["requests"]))
        check(s["split"].get("reviews-v1-0", 0) > s["split"].get("reviews-v2-0", 0) > 0,
              "the 90/10 split gave %s" % s["split"])
        check(s["canary"] == {"reviews-v2-0": 5}, "x-canary: always went to %s" % s["canary"])
        retried = sum(s["retried"].values())
        # Every failure is retried, but for the one the /slow call may draw (one in ten): ratings
        # answers it after its caller's 300 ms timeout, to nobody.
        check(s["ratings_failed"] > 0 and retried >= s["ratings_failed"] - 1,
              "ratings failed %d on purpose, the proxies retried %s" % (s["ratings_failed"],
                                                                       s["retried"]))
        check("upstream request timeout" in output, "the /slow call did not time out: %s"
              % output[-500:])
        way_in = s["gateway"]
        check(way_in["requests"] > 0 and way_in["ok"] == way_in["requests"] and
              set(way_in["pods"]) == {"productpage-v1-0"},
              "through the Gateway bookinfo from the host: %s" % way_in)
        way_out = s["egress"]
        check(way_out["requests"] > 0 and way_out["statuses"] == {"200": way_out["requests"]},
              "from client-0 to the ExternalService through the egress gateway: %s" % way_out)
        return ("%d requests, all 200; split %s; %d failures of ratings, all retried; %d through "
                "the Gateway, all 200; %d out through the egress gateway, all 200" % (
                    s["requests"], s["split"], s["ratings_failed"], way_in["requests"],
                    way_out["requests"]))

    def gateway_routes(self):
        """The demo's routes swapped for their Gateway API form (examples/gateway-api), as
        `--routes gateway-api` applies them: the next traffic behaves the same."""
        policies = os.path.join(REPO, "examples", "policies")
        gateway = os.path.join(REPO, "examples", "gateway-api")
        self.meshctl("delete", "-f", os.path.join(policies, "20-reviews-canary.yaml"),
                     "-f", os.path.join(policies, "30-ratings-timeout.yaml"))
        self.meshctl("apply", "-f", gateway)
        routes = self.meshctl("get", "httproutes.gateway.networking.k8s.io")
        check("reviews" in routes and "ratings" in routes, "Gateway routes: %s" % routes)
        time.sleep(2)  # the sidecars' configuration follows within a second
        r = self.pods_py("traffic", "--seconds", "3", "--summary-json", self.summary_path)
        sys.stdout.write(r.stdout)
        check(r.returncode == 0, "pods.py traffic: exit %d: %s" % (r.returncode,
                                                                   r.stderr.strip()[-2000:]))
        return "as Gateway API HTTPRoutes: " + self.check_summary(r.stdout)

    def proxy_status(self):
        out = self.meshctl("proxy-status")
        rows = [l for l in out.splitlines()[1:] if l.strip()]
        names = [row.split()[0] for row in rows]
        for pod in ("client-0", "productpage-v1-0", "reviews-v1-0", "reviews-v2-0",
                    "ratings-v1-0", "bookinfo-meshlet-0"):
            check(any(n.startswith(pod) for n in names), "%s not in proxy-status:\n%s" % (pod,
                                                                                        out))
        for row in rows:
            check(row.count("ACKED") == 4 and "NACKED" not in row, "not all ACKed: %s" % row)
        return "%d proxies, every resource type ACKED" % len(rows)

    def app_config(self):
        """The app containers of the injected pods: what the user wrote, nothing of meshlet's."""
        ids = self.podman("ps", "-a", "-q").split()
        inspected = json.loads(self.podman("inspect", *ids))
        apps = [c for c in inspected if "meshlet-testapp" in c["Config"]["Image"]]
        check(apps, "no app containers among %s" % [c["Name"] for c in inspected])
        for c in apps:
            env = [e for e in c["Config"].get("Env") or [] if e.startswith("MESHLET")]
            check(not env, "%s has %s" % (c["Name"], env))
            mounts = [m.get("Destination", "") for m in c.get("Mounts") or []]
            check(not [m for m in mounts if "meshlet" in m],
                  "%s mounts %s" % (c["Name"], mounts))
            args = " ".join(str(c["Config"].get(k) or "") for k in ("Entrypoint", "Cmd"))
            check("meshlet" not in args and "15001" not in args, "%s runs %s" % (c["Name"], args))
        return "%d app containers: no MESHLET_* env, no meshlet mounts or arguments" % len(apps)

    def dashboard(self):
        m = re.search(r"dashboard\s+(https://\S+)", self.output)
        check(m, "the demo printed no dashboard URL:\n" + self.output[-1500:])
        url = m.group(1)
        with urllib.request.urlopen(url, timeout=10, context=api_context(self.state_dir)) as r:
            page = r.read().decode(errors="replace")
            check(r.status == 200 and "<html" in page.lower(), "%s: %d" % (url, r.status))
        self.api = url.split("/", 3)[:3]
        return "%s answers 200 with the dashboard page" % url

    def api_get(self, path):
        """The control plane's API as the dashboard calls it, with the demo's API token."""
        with open(os.path.join(self.state_dir, "api-token")) as f:
            return get_json("/".join(self.api) + path, f.read().strip(),
                            api_context(self.state_dir))

    def discovery(self):
        proxies = self.api_get("/api/v1/proxies")["items"]
        found = {}
        # The callers (reviews v1 calls nothing): client -> productpage -> reviews, v2 -> ratings.
        for pod in ("client-0", "productpage-v1-0", "reviews-v2-0"):
            mine = [p for p in proxies if p["id"].startswith(pod)]
            check(mine, "%s not in /api/v1/proxies" % pod)
            on_demand = mine[0].get("onDemand", {})
            check(on_demand.get("found", 0) >= 1,
                  "%s did not discover what it calls on first use: %s" % (pod, on_demand))
            found[pod] = "%d found, %d missing" % (on_demand["found"], on_demand.get("missing", 0))
        return "lookup keys: %s" % ", ".join("%s %s" % (pod, n) for pod, n in found.items())

    def golden_metrics(self):
        want = [("client", "productpage"), ("productpage", "reviews"), ("reviews", "ratings")]

        def missing(edges):
            return [(source, destination) for source, destination in want
                    if not [e for (s, d), e in edges.items() if s.split(".")[0] == source and
                            d.split(".")[0] == destination and e["requests"] > 0]]
        # Sidecars report every 10 s: a user refreshing the dashboard sees every edge by then.
        deadline = time.monotonic() + 25
        while True:
            stat = self.api_get("/api/v1/stat?window=5m")
            edges = {(e["source"], e["destination"]): e for e in stat["items"]}
            if not missing(edges) or time.monotonic() > deadline:
                break
            time.sleep(1)
        check(not missing(edges), "no traffic on %s in %s" % (missing(edges), sorted(edges)))
        callers = [e for (s, d), e in edges.items()
                   if s.split(".")[0] == "client" and d.split(".")[0] == "productpage"]
        check(callers[0]["successRate"] == 1, "client -> productpage success rate %s" %
              callers[0]["successRate"])
        return "edges %s" % ", ".join("%s->%s %d" % (s.split(".")[0], d.split(".")[0],
                                                     e["requests"])
                                      for (s, d), e in sorted(edges.items()))

    def traces(self):
        # Traces through ratings (the 90/10 split sends only one request in ten that way), the
        # dashboard's service filter: one of them goes productpage -> reviews -> ratings.
        traces = self.api_get("/api/v1/traces?service=ratings.default&limit=100")["items"]
        full = [t for t in traces
                if all(any(s.split(".")[0] == app for s in t["services"]) for app in APPS)]
        check(full, "no trace across %s among %d: %s" % (APPS, len(traces),
                                                          [t["services"] for t in traces[:5]]))
        return "%d traces, %s across %s" % (len(traces), full[0]["traceId"][:12],
                                            ", ".join(full[0]["services"]))

    def node_processes(self):
        """--cni: the pids of meshlet-cni-agent and its API server still running."""
        return [self.state[k + "_pid"] for k in ("agent", "api")
                if harness._process_start(self.state[k + "_pid"]) == self.state[k + "_start"]]

    def cni_capture(self):
        with open(os.path.join(self.state["run_dir"], "cni-node", "state", "cni.log")) as f:
            log = f.read().splitlines()
        # The Gateways' proxy pods (the way in, the way out) serve their own ports: nothing of
        # them is captured.
        gateways = ("bookinfo-meshlet-0", "egress-meshlet-0")
        for gateway in gateways:
            check(any(" ADD pod=default/%s " % gateway in l and "outcome=skipped" in l
                      for l in log),
                  "meshlet-cni did not leave %s alone: %s" % (gateway, [
                      l for l in log if gateway in l][-3:]))
        pods = sorted(p for p in self.state["pods"] if p not in gateways)
        for pod in pods:
            check(any(" ADD pod=default/%s " % pod in l and "outcome=captured" in l for l in log),
                  "meshlet-cni did not capture %s: %s" % (pod, log[-10:]))
            names = self.podman("pod", "inspect", pod, "--format",
                                "{{range .Containers}}{{.Name}} {{end}}").split()
            check(pod + "-meshlet-proxy" in names and pod + "-meshlet-init" not in names,
                  "%s's containers: %s" % (pod, names))
            caps = self.podman("inspect", "--format", "{{json .EffectiveCaps}}",
                               pod + "-meshlet-proxy").strip()
            check(json.loads(caps) in (None, []), "%s's proxy has capabilities %s" % (pod, caps))
        # The node's fake API server ends once `start` has exited (its stdin closes), which
        # may take a moment after `start` returns; the agent keeps running with the pods.
        def alive(key):
            return harness._process_start(self.state[key + "_pid"]) == self.state[key + "_start"]
        deadline = time.monotonic() + 10
        while alive("api") and time.monotonic() < deadline:
            time.sleep(0.1)
        check(not alive("api"), "the node's fake API server still runs 10 s after start")
        check(alive("agent"), "meshlet-cni-agent is not running after start")
        return "%d pods captured by meshlet-cni (%s): no meshlet-init, proxies with no " \
               "capabilities; the gateways' pods not captured" % (len(pods), ", ".join(pods))

    def stop(self):
        r = self.pods_py("stop")
        check(r.returncode == 0, "pods.py stop: exit %d: %s" % (r.returncode, r.stderr[-500:]))
        left = self.leftovers()
        check(not left, "left behind: %s" % left)
        return "pods, images, network %s and the state directory removed" % self.state["network"]

    def leftovers(self):
        out = {}
        if self.state is not None:
            if os.path.exists(self.state["run_dir"]):
                out["run directory"] = self.state["run_dir"]
            r = subprocess.run(["podman", "network", "exists", self.state["network"]],
                               env=harness.podman_env(), capture_output=True, timeout=60)
            if r.returncode == 0:
                out["network"] = self.state["network"]
            if os.path.exists("/sys/class/net/" + self.state["bridge"]):
                out["bridge"] = self.state["bridge"]
        if os.path.exists(self.state_dir):
            out["state directory"] = self.state_dir
        if self.state is not None and self.state.get("cni") and self.node_processes():
            out["meshlet-cni-agent and its API server"] = self.node_processes()
        return out

    def remove(self):
        """Whatever start left, also after a failure."""
        if os.path.exists(os.path.join(self.state_dir, "pods.json")):
            self.pods_py("stop")
        if self.state is not None and os.path.exists(self.state["run_dir"]):
            harness.remove_run(self.state["run_dir"], self.state["network"])
        shutil.rmtree(self.base, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--cni", action="store_true", help="the demo with capture by meshlet-cni")
    args = p.parse_args()
    reason = harness.skip_reason(cni=args.cni)
    if reason is not None:
        if os.environ.get("MESHLET_REQUIRE_E2E") == "1":
            print("FAIL  e2e demo needs root and podman here (MESHLET_REQUIRE_E2E=1): %s" % reason)
            return 1
        print("SKIP: e2e demo (needs root and podman): %s" % reason)
        return 0
    suite = harness.Suite("demo-cni" if args.cni else "demo")
    demo = Demo(os.path.abspath(args.bin_dir), cni=args.cni)
    scenarios = (("proxy-status", demo.proxy_status), ("app config", demo.app_config),
                 ("dashboard", demo.dashboard),
                 ("discovery", demo.discovery),
                 ("golden metrics", demo.golden_metrics), ("traces", demo.traces),
                 ("gateway routes", demo.gateway_routes))
    if args.cni:  # what capture changes; the rest is the same once pods are captured
        scenarios = (("proxy-status", demo.proxy_status), ("cni capture", demo.cni_capture))
    try:
        if suite.scenario("start", demo.start):
            for name, fn in scenarios:
                if name in ("discovery", "golden metrics", "traces") and not hasattr(demo, "api"):
                    continue
                suite.scenario(name, fn)
            suite.scenario("stop", demo.stop)
    finally:
        demo.remove()
    t0 = time.monotonic()
    left = demo.leftovers()
    suite.report(not left, "cleanup", "nothing of the demo remains" if not left else
                 "left behind: %s" % left, t0)
    print("e2e demo: %d passed, %d failed in %.0f s" % (
        suite.results.count(True), suite.results.count(False), time.monotonic() - suite.started))
    return 0 if all(suite.results) else 1


if __name__ == "__main__":
    sys.exit(main())
