"""End-to-end: a meshed application on pods, injected by meshctl and played by podman.

    mesh_test.py --bin-dir DIR [--only a,b,...]

DIR is a Bazel output tree with the sidecar, control plane, meshctl and testapp binaries. The
run builds the images from them, plays the control plane as a pod, and deploys the sample
application of examples/pods (productpage -> reviews v1|v2 -> ratings, which fails one request
in ten) with the test's own manifests in tests/e2e/manifests (a client pod, a server-first TCP
service, a server outside the mesh), every one plain Kubernetes YAML run through `meshctl
inject` (cluster.py). Apps reach each other by service name only. Then one line per scenario:

  a  mtls          every connection between pods is TLS: a capture on the pod network sees
                   TLS handshakes for every app connection and no plaintext HTTP (span export
                   to the control plane included)
  b  retries       ratings' failures are retried by reviews' proxy: no caller sees one
  c  breaker       a TrafficPolicy circuit breaker on a slowed ratings answers the overflow
                   with fast 503s flagged UO while the rest succeed; `meshctl explain` of a
                   refused call's request id names client-0's sidecar, the breaker limit and
                   the TrafficPolicy with the file it was applied from
  p  timeout       the demo's 300 ms route timeout on ratings' /slow (an HTTPRoute applied from
                   examples/policies): a 504, which `meshctl explain` blames on that HTTPRoute
                   and client-0's sidecar
  d  ejection      a reviews replica answering 503 to everything is ejected by its callers'
                   outlier detection and gets no more requests
  e  route shift   an HTTPRoute moved from v1 to v2 with meshctl apply under load: zero failed
                   requests, every later answer from v2
  f  rotation      every proxy's certificate is renewed under load (60 s certificates):
                   zero failed requests
  g  control plane the control plane's pod killed under load: zero failed requests; back, it
                   pushes a new route that every proxy ACKs
  h  pod deleted   a reviews pod deleted (SIGTERM) under load: zero failed requests, its
                   endpoint gone from the caller's proxy within 1 s
  i  trace         one request's trace holds spans of productpage, reviews and ratings in the
                   control plane's collector
  j  outside       a destination outside the mesh is passed through under ALLOW_ANY and
                   refused (502, NM) under REGISTRY_ONLY, which `meshctl explain` blames on
                   the MeshConfig and its file
  z  external      under REGISTRY_ONLY, ExternalServices let through TLS to `outside` by its
                   server name (to its registered endpoint, whatever address the client used),
                   TCP by its address and port, and plain HTTP by its Host; no name (an IP
                   literal), another name, another Host, a Host against the absolute URI,
                   CONNECT and another port are refused; plain HTTP to a TLS port gets TLS
                   originated, and an expired certificate, one for another name and one of
                   another CA each a 503 saying why
  k  server-first  a TCP protocol whose server speaks first works through capture
  l  webhook       a pod injected by the control plane's webhook (an AdmissionReview to its
                   pod's port 15017, the JSONPatch applied with python3-jsonpatch) runs and
                   serves a caller through its sidecar
  m  job           a Job's pod (classic sidecar) completes: its app ends the proxy with
                   POST /quitquitquit, and both containers exit 0
  n  discovery     Kubernetes Services the control plane discovers through the API server
                   (cluster.py's fake): their ClusterIPs route by original destination, to
                   meshed pods over mTLS and to a pod without a sidecar in plaintext; an
                   endpoint removed from the EndpointSlice leaves the caller's proxy
  o  attacks       a pod without a sidecar attacks the discovery port under load (streams as
                   another workload's node, with and without a certificate of its own, forged
                   golden-metrics reports): each refused, no request fails
  t  egress        an egress gateway, the only pod that reaches an outside network of its
                   own, carries client-0's plain HTTP to an ExternalService over mesh mTLS and
                   originates TLS to it; another identity and another host are refused (403) by
                   an AuthorizationPolicy on the Gateway; its access log names each call
  y  gateway       a client outside the mesh calls a Gateway's proxy pod over HTTPS (its
                   certificate a Secret in the API server): productpage answers through mTLS
                   under the gateway's identity, the Gateway is Programmed with the pod's
                   address; under load the Secret is rotated and a route moved: zero failed
                   requests
  w  ca rotate     under load, `meshctl ca rotate --intermediate` from the generated root's own
                   signing to an intermediate under it that expires in a day (`meshctl check`
                   warns), then `meshctl ca rotate` to a new root: zero failed requests, no pod
                   restarted, every proxy's certificate from the new intermediate and its bundle
                   the new root alone, and the proxies still take a pushed route (their xDS
                   streams, reconnecting to the discovery port's certificate from the new root,
                   trust the roots pushed to them)
     cleanup       nothing of the run remains

With --cni (mesh_test.py --cni, //tests/e2e:mesh_cni_test) the run's network is on podman's CNI
backend with meshlet-cni-agent putting meshlet-cni into its chain, the pods are injected with
`meshctl inject --cni`, and the scenarios are CNI_SCENARIOS (README.md, CNI mode):

  q  cni capture   every injected pod captured by the plugin, none holding a capability
  a  mtls          as above
  r  cni rewrite   the conflist rewritten without the plugin: repaired, a new pod captured
  v  cni probe     a pod's readiness probe, rewritten to the proxy's 15020, answered from
                   outside the mesh; its app port captured
  h  pod deleted   as above
  u  cni uninstall the app pods removed, the agent stopped: podman's conflist byte for byte
  x  cni race      a pod started with no plugin in the chain stays not ready; the agent,
                   started, evicts it; its replacement is captured
     cleanup       nothing of the run remains

Without root or a working podman it prints a SKIP line and exits 0, unless
MESHLET_REQUIRE_E2E=1 (./dev test as root sets it).
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster as cluster_lib  # noqa: E402
import harness  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
APP_MANIFESTS = [os.path.join(REPO, "examples", "pods"), os.path.join(HERE, "manifests")]
CERT_TTL = "60s"
# How soon the node agent must put meshlet-cni back into a rewritten configuration (its
# --check-interval is 1 s; it also watches the directory).
CNI_REPAIR_BOUND = 3.0
# Requests per second of the loads that scenarios run while they change something.
LOAD_RATE = 200


class Failed(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


class Load:
    """`testapp get URL --duration D` in the client pod, in the background. podman exec does
    not pass signals on, so stop() signals the testapp process itself (found by a header value
    only its command line has)."""

    def __init__(self, mesh, url, seconds, concurrency=4, rate=LOAD_RATE, extra=()):
        self.mesh = mesh
        self.started = time.monotonic()
        self.marker = "load-" + secrets.token_hex(8)
        cmd = mesh.run.podman_prefix() + [
            "exec", mesh.cluster.app("client-0"), "testapp", "get", url,
            "--duration", "%gs" % seconds, "--concurrency", str(concurrency), "--rate", str(rate),
            "-H", "x-e2e-load: " + self.marker] + list(extra)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=harness.podman_env())

    def stop(self):
        """Ends the load early; it prints its summary as it would at the end."""
        for found in harness.processes_mentioning(self.marker):
            pid, _, cmdline = found.partition(": ")
            if not cmdline.startswith("podman"):
                os.kill(int(pid), signal.SIGTERM)

    def result(self, timeout=120):
        out, err = self.proc.communicate(timeout=timeout)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise Failed("load gave no summary (exit %d): %s %s" % (
                self.proc.returncode, out[-500:], err[-500:]))


def failures_of(summary):
    ok = summary["statuses"].get("200", 0)
    return summary["requests"] - ok


def describe_failures(summary):
    return "%d of %d failed: statuses %s, errors %s, first failures %s" % (
        failures_of(summary), summary["requests"], summary["statuses"], summary["errors"],
        summary.get("failures", [])[:5])


class Mesh:
    def __init__(self, run, bin_dir, cni=False):
        self.run = run
        self.bin_dir = bin_dir
        self.cni = cni
        self.podman_conflist = None  # CNI: the run's conflist as podman wrote it
        self.cluster = cluster_lib.Cluster(
            run, os.path.join(bin_dir, "control-plane", "cli", "meshctl"),
            control_plane_args=["--cert-ttl", CERT_TTL], cni=cni)

    # --- helpers --------------------------------------------------------------------------------

    def get(self, url, *args, pod="client-0", check_status=True):
        r = self.cluster.exec(pod, ["testapp", "get", url] + list(args), check=False)
        if check_status and r.returncode != 0:
            raise Failed("GET %s from %s: exit %d %s%s" % (url, pod, r.returncode, r.stdout,
                                                          r.stderr))
        return r

    def count(self, url, n, concurrency=4, *args):
        r = self.get(url, "--count", str(n), "--concurrency", str(concurrency), *args,
                     check_status=False)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def app_stats(self, pod):
        return json.loads(self.cluster.exec(pod, ["testapp", "get",
                                                  "http://127.0.0.1:9080/__stats"]))

    def app_set(self, pod, query):
        """POST /__set?QUERY to the pod's own app, over its loopback (not captured)."""
        self.cluster.exec(pod, ["testapp", "get", "--method", "POST",
                                "http://127.0.0.1:9080/__set?" + query])

    def proxy_stats(self, pod, prefix):
        """{series: value} of the proxy's Prometheus counters whose name starts with `prefix`."""
        status, body = self.cluster.pod_http(pod, "http://127.0.0.1:15020/stats/prometheus")
        check(status == 200, "%s's proxy /stats/prometheus: %s" % (pod, status))
        out = {}
        for line in body.splitlines():
            if line.startswith(prefix):
                series, _, value = line.rpartition(" ")
                out[series] = float(value)
        return out

    def proxy_stat_sum(self, pod, prefix, match=""):
        return sum(v for k, v in self.proxy_stats(pod, prefix).items() if match in k)

    def explain(self, request_ids, timeout=20):
        """`meshctl explain REQUEST_ID` in the control plane's pod, as an operator runs it with the
        x-request-id a failed call was answered with: for the first of `request_ids` whose spans
        have reached the collector (a sidecar exports the span of a request it failed, sampled or
        not, within its flush interval, 1 s by default). Returns (request id, the text)."""
        found, last = {}, {}

        def explained():
            for request_id in request_ids:
                r = self.cluster.meshctl("explain", request_id, check=False)
                if r.returncode == 0:
                    found["id"], found["text"] = request_id, r.stdout
                    return True
                last["error"] = r.stderr.strip()
            return False
        check(request_ids, "no request id to explain")
        self.run.wait_until(explained, timeout, "meshctl explain %s" % ", ".join(request_ids[:3]),
                            lambda: last.get("error", ""))
        return found["id"], found["text"]

    @staticmethod
    def verdict(text):
        """The Verdict line of `meshctl explain`'s text."""
        m = re.search(r"^Verdict: (.*)$", text, re.M)
        check(m, "no verdict in:\n" + text)
        return m.group(1)

    @staticmethod
    def attribution(stderr):
        """(x-meshlet-error, x-request-id) of a failed `testapp get` (it prints them on stderr)."""
        found = [re.search(r"^%s: (.+)$" % name, stderr, re.M)
                 for name in ("x-meshlet-error", "x-request-id")]
        return tuple(m.group(1).strip() if m else "" for m in found)

    def admin(self, pod, path):
        status, body = self.cluster.pod_http(pod, "http://127.0.0.1:15000" + path)
        check(status == 200, "%s's proxy admin %s: %s %s" % (pod, path, status, body[:300]))
        return body

    def wait_acked(self, timeout=30):
        """Until every connected proxy has ACKed the control plane's latest push of every type;
        returns the proxy-status JSON."""
        def acked():
            proxies = json.loads(self.cluster.meshctl("proxy-status", "-o", "json"))
            items = proxies.get("items", [])
            if len(items) < len(self.meshed_pods()):
                return None
            for p in items:
                for state in p.get("types", {}).values():
                    if state.get("state") != "ACKED" or state.get("acked") != state.get("sent"):
                        return None
            return proxies
        return self.run.wait_until(acked, timeout, "every proxy to ACK the latest push",
                                   lambda: self.cluster.meshctl("proxy-status"))

    def meshed_pods(self):
        return self.cluster.meshed_pods()

    def endpoints(self, pod, service):
        """The endpoint addresses of `service`'s outbound cluster in `pod`'s proxy, with their
        health, from /clusters (JSON)."""
        doc = json.loads(self.admin(pod, "/clusters?format=json"))
        found = {}
        for c in doc.get("clusters", []):
            if c["name"].startswith("outbound|") and c["name"].endswith("|%s.%s" % (
                    service, self.cluster.namespace)):
                for h in c.get("hosts", []):
                    found[h["address"]] = h
        return found

    def logged_at(self, pod, pattern):
        """The times (host clock, seconds since the epoch) of the lines of `pod`'s proxy log that
        match `pattern`, in order."""
        saved = os.path.join(self.run.dir, "logs", pod + "-meshlet-proxy.log")
        if os.path.exists(saved):  # a deleted pod's, saved before it went
            with open(saved) as f:
                text = f.read()
        else:
            text = self.run.logs(pod + "-meshlet-proxy")
        return [datetime.datetime.fromisoformat(m.group(1)).replace(
            tzinfo=datetime.timezone.utc).timestamp()
            for m in re.finditer(r"^\[(\S+)Z \S+ \d+ \S+\] " + pattern, text, re.M)]

    # --- the scenarios --------------------------------------------------------------------------

    def ratings_policy(self, **extra):
        """ratings fails one request in ten on purpose: its callers retry up to 4 times (the
        default 2 leave about one request in a thousand failed under load)."""
        spec = {"target": "ratings", "retries": {"attempts": 4}}
        spec.update(extra)
        return {"apiVersion": "meshlet.io/v1", "kind": "TrafficPolicy",
                "metadata": {"name": "ratings", "namespace": "default"}, "spec": spec}

    def setup(self):
        if self.cni:
            return self.setup_cni()
        self.cluster.start_kubernetes_api()
        t = self.cluster.start_control_plane()
        self.cluster.apply([self.ratings_policy()])
        self.cluster.deploy(APP_MANIFESTS)
        ready = self.cluster.wait_ready()
        self.wait_acked()
        return "control plane ready in %.1f s; %d pods (%s) ready %.1f s later" % (
            t, len(self.cluster.pods), ", ".join(self.cluster.pods), ready)

    def setup_cni(self):
        """The node agent puts meshlet-cni into the run's network configuration before any pod
        starts; the pods are injected with `meshctl inject --cni`. No API server for the control
        plane (the discovery scenario is not run in this mode)."""
        with open(self.run.conflist(), "rb") as f:
            self.podman_conflist = f.read()
        self.cluster.start_node_agent(os.path.join(self.bin_dir, "cni", "meshlet-cni-agent"),
                                      os.path.join(self.bin_dir, "cni", "meshlet-cni"))
        t = self.cluster.start_control_plane()
        self.cluster.apply([self.ratings_policy()])
        self.cluster.deploy(APP_MANIFESTS)
        try:
            ready = self.cluster.wait_ready()
        except harness.E2EError as e:
            raise harness.E2EError("%s\nmeshlet-cni's log:\n%s" % (
                e, "\n".join(self.cluster.plugin_log()[-20:])))
        self.wait_acked()
        return ("meshlet-cni in the run's chain (%s); control plane ready in %.1f s; %d pods "
                "(%s) ready %.1f s later" % (
                    " -> ".join(p["type"] for p in self.chain()), t, len(self.cluster.pods),
                    ", ".join(self.cluster.pods), ready))

    def chain(self):
        with open(self.run.conflist()) as f:
            return json.load(f)["plugins"]

    def node_metric(self, name):
        status, text = self.cluster.node_agent_get("/metrics")
        check(status == 200, "the node agent's /metrics: %d %s" % (status, text[:200]))
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def check_captured_by_plugin(self, pod):
        """`pod` was captured by meshlet-cni (its log says so, its network namespace has the
        rules) and holds no capabilities: no meshlet-init, a proxy with none and not root."""
        lines = [l for l in self.cluster.plugin_log()
                 if " ADD pod=%s/%s " % (self.cluster.namespace, pod) in l]
        check(any("outcome=captured" in l for l in lines),
              "meshlet-cni did not capture %s: %s" % (pod, lines))
        containers = self.cluster.containers(pod)
        check(not any(c.endswith("-meshlet-init") for c in containers),
              "%s has an init container: %s" % (pod, containers))
        proxy = pod + "-meshlet-proxy"
        caps, user, privileged = self.run.podman([
            "inspect", "--format", "{{json .EffectiveCaps}}|{{.Config.User}}|"
            "{{.HostConfig.Privileged}}", proxy]).strip().split("|")
        check(json.loads(caps) in (None, []), "%s has capabilities %s" % (proxy, caps))
        check(user not in ("", "0", "root"), "%s runs as %r" % (proxy, user))
        check(privileged == "false", "%s is privileged" % proxy)
        rules = self.run.in_pod_network(pod, ["iptables-save", "-t", "nat"]).stdout
        check("MESHLET_OUTPUT" in rules, "no capture rules in %s's network namespace" % pod)

    def cni_capture(self):
        meshed = self.cluster.meshed_pods()
        for pod in meshed:
            self.check_captured_by_plugin(pod)
        others = [p for p in self.cluster.pods if p not in meshed]
        for pod in others:
            lines = [l for l in self.cluster.plugin_log()
                     if " ADD pod=%s/%s " % (self.cluster.namespace, pod) in l]
            check(lines and all("outcome=skipped" in l for l in lines),
                  "meshlet-cni did not pass %s through: %s" % (pod, lines))
            rules = self.run.in_pod_network(pod, ["iptables-save", "-t", "nat"]).stdout
            check("MESHLET" not in rules, "capture rules in %s, not injected" % pod)
        failed = self.node_metric('meshlet_cni_pods_total{outcome="failed"}')
        check(failed == 0, "meshlet-cni failed %d times: %s" % (failed, [
            l for l in self.cluster.plugin_log() if "outcome=failed" in l][:3]))
        return ("%d injected pods captured by meshlet-cni in the chain (no init container, "
                "proxies with no capabilities, not root, ready); not injected, passed through: "
                "%s" % (len(meshed), ", ".join(others) or "none"))

    def cni_rewrite(self):
        """Another agent writes the network configuration without meshlet-cni: the node agent
        puts it back, and a pod started afterwards is captured."""
        repairs = self.node_metric("meshlet_cni_conflist_repairs_total")
        with open(self.run.conflist(), "wb") as f:
            f.write(self.podman_conflist)
        started = time.monotonic()
        self.run.wait_until(lambda: self.chain()[-1]["type"] == "meshlet-cni", CNI_REPAIR_BOUND,
                            "meshlet-cni back in the rewritten configuration")
        took = time.monotonic() - started
        check(self.node_metric("meshlet_cni_conflist_repairs_total") == repairs + 1,
              "the repair was not counted")
        client = [d for d in self.cluster.inject(APP_MANIFESTS)
                  if d["kind"] == "Deployment" and d["metadata"]["name"] == "client"][0]
        pod = self.cluster.play_pod("client-rewritten-0", client["spec"]["template"])
        self.cluster.wait_ready([pod])
        self.check_captured_by_plugin(pod)
        r = self.cluster.exec(pod, ["testapp", "get", "http://productpage:9080/products"],
                              check=False)
        check(r.returncode == 0, "a call from %s: %s %s" % (pod, r.stdout, r.stderr))
        return ("configuration rewritten without meshlet-cni: back in the chain in %.1f s "
                "(counted); %s, started afterwards, captured, ready and calling" % (took, pod))

    def cni_probe(self):
        """The kubelet's probe of a pod captured by meshlet-cni: `meshctl inject --cni` rewrites
        the app's readiness probe to the proxy's 15020, which the plugin's rules leave
        uncaptured, so the probe reaches the proxy in plaintext from outside the mesh and the
        proxy asks the app on loopback; the app's own port is captured (its inbound listener
        counts the call)."""
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "probed", "namespace": self.cluster.namespace,
                            "labels": {"app": "probed"}},
               "spec": {"serviceAccountName": "probed", "containers": [{
                   "name": "probed", "image": "localhost/meshlet-testapp:%s" % cluster_lib.IMAGE_TAG,
                   "env": [{"name": "TESTAPP_SERVICE", "value": "probed"},
                           {"name": "TESTAPP_LISTEN", "value": "0.0.0.0:9080"}],
                   "ports": [{"name": "http", "containerPort": 9080}],
                   "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}}]}}
        path = os.path.join(self.run.dir, "probed.json")
        with open(path, "w") as f:
            json.dump(pod, f)
        injected = [d for d in self.cluster.inject([path]) if d["kind"] == "Pod"][0]
        app = [c for c in injected["spec"]["containers"] if c["name"] == "probed"][0]
        probe = app["readinessProbe"]["httpGet"]
        check(probe == {"path": "/app-health/probed/readyz", "port": 15020}, "probe %s" % probe)
        self.cluster.create_join_token("probed")
        name = self.cluster.play_pod("probed-0", injected)
        self.cluster.wait_ready([name])
        self.check_captured_by_plugin(name)
        ip = self.cluster.pods[name]["ip"]
        status, body = self.cluster.pod_http(
            "outside", "http://%s:15020/app-health/probed/readyz" % ip)
        check(status == 200 and "app probe 9080/healthz: HTTP 200" in body,
              "the rewritten probe from outside the mesh: %s %s" % (status, body))
        before = self.proxy_stat_sum(name, "meshlet_downstream_cx_total", 'listener="inbound"')
        self.cluster.pod_http("outside", "http://%s:9080/" % ip)
        after = self.proxy_stat_sum(name, "meshlet_downstream_cx_total", 'listener="inbound"')
        check(after > before, "a connection to %s:9080 did not reach its inbound listener "
              "(%d before, %d after)" % (name, before, after))
        return ("%s captured by meshlet-cni; its readiness probe, rewritten to 15020, answered "
                "by the app through the proxy in plaintext from outside the mesh; a connection "
                "to its port 9080 reached its inbound listener (%d -> %d)" % (name, before, after))

    def cni_uninstall(self):
        """The node agent stopped with --uninstall-on-exit: the configuration exactly as podman
        wrote it, the plugin gone from the plugin directory. The pods go first: podman tears a
        pod's network down with the chain it cached at the pod's ADD, so a pod set up through
        meshlet-cni needs the plugin until it is gone (as a node is drained before its agent is
        removed). The control plane's pod stays for x; the agent x starts puts the plugin
        back for its teardown."""
        pods = list(self.cluster.pods)
        self.run.podman(["pod", "stop", "--time", "0"] + pods, timeout=120)
        self.run.podman(["pod", "rm", "--force"] + pods, timeout=120)
        self.cluster.pods.clear()
        removed = [l for l in self.cluster.plugin_log() if " DEL " in l]
        check(removed and all("outcome=removed" in l for l in removed),
              "meshlet-cni's DEL lines: %s" % removed[-5:])
        agent = self.cluster.node["agent"]
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=20)
        check(code == 0, "meshlet-cni-agent exited %d" % code)
        with open(self.run.conflist(), "rb") as f:
            now = f.read()
        check(now == self.podman_conflist, "the configuration is not podman's:\n%s\n---\n%s" % (
            now.decode(errors="replace"), self.podman_conflist.decode(errors="replace")))
        check(not os.path.exists(os.path.join(self.run.cni_bin_dir, "meshlet-cni")),
              "meshlet-cni is still in the plugin directory")
        return ("pods removed (%d DELs through meshlet-cni), then meshlet-cni-agent stopped: the "
                "conflist is podman's byte for byte (%d bytes)" % (len(removed), len(now)))

    def cni_race(self):
        """A pod started while meshlet-cni was not in the chain (after u the agent is gone, as
        on a node whose agent has not started yet): its proxy keeps it not ready, so it serves
        nothing uncaptured. The agent, started with its race repair, puts the plugin back,
        finds the pod on its node and evicts it; recreated by its ReplicaSet (played here), the
        pod is captured and ready."""
        check(self.chain()[-1]["type"] != "meshlet-cni", "meshlet-cni is in the chain already")
        client = [d for d in self.cluster.inject(APP_MANIFESTS)
                  if d["kind"] == "Deployment" and d["metadata"]["name"] == "client"][0]
        template = client["spec"]["template"]
        late = self.cluster.play_pod("client-late-0", template)
        time.sleep(2)
        status, body = self.cluster.pod_http(late, "http://127.0.0.1:15020/ready")
        check(status == 503 and "traffic capture not in effect" in body,
              "%s, set up without meshlet-cni, answers /ready %d %r" % (late, status, body))
        rules = self.run.in_pod_network(late, ["iptables-save", "-t", "nat"]).stdout
        check("MESHLET" not in rules, "%s has capture rules without the plugin" % late)
        started = time.monotonic()
        self.cluster.start_node_agent(os.path.join(self.bin_dir, "cni", "meshlet-cni-agent"),
                                      os.path.join(self.bin_dir, "cni", "meshlet-cni"),
                                      repair=True)
        self.run.wait_until(
            lambda: self.node_metric('meshlet_cni_pods_repaired_total{action="evict"}') == 1,
            20, "the agent to evict %s" % late,
            lambda: open(self.cluster.node["agent_log"]).read()[-2000:])
        evicted = time.monotonic() - started
        check(self.node_metric('meshlet_cni_pods_repaired_total{action="report"}') == 0,
              "the agent reported pods it should have left alone")
        # The ReplicaSet: the evicted pod goes, a new one takes its place.
        self.cluster.delete_pod(late, grace=5)
        pod = self.cluster.play_pod("client-late-1", template)
        self.cluster.wait_ready([pod])
        self.check_captured_by_plugin(pod)
        return ("%s, set up without meshlet-cni, not ready (capture not in effect); the agent "
                "started, evicted it in %.1f s (counted); its replacement %s captured and ready"
                % (late, evicted, pod))

    def mtls(self):
        capture = os.path.join(self.run.dir, "pod-network.pcap")
        tshark = subprocess.Popen(
            ["tshark", "-q", "-i", self.run.bridge, "-f", "tcp", "-w", capture],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            self.run.wait_until(lambda: os.path.exists(capture) and os.path.getsize(capture) > 0,
                                10, "tshark to start capturing")
            time.sleep(0.5)
            summary = self.count("http://productpage:9080/products", 40)
            check(failures_of(summary) == 0, describe_failures(summary))
            ledger = self.cluster.exec("client-0", ["testapp", "tcp", "ledger:3306", "--send",
                                                    "ping"], check=False)
            check(ledger.returncode == 0, "ledger: %s %s" % (ledger.stdout, ledger.stderr))
            time.sleep(1)
        finally:
            tshark.terminate()
            tshark.wait(timeout=10)
        streams, plaintext = harness.tcp_streams(capture)
        check(not plaintext, "plaintext HTTP on the pod network: %s" % plaintext[:5])
        # How a connection starts shows only for those opened while capturing (their SYN is in
        # the capture); a kept one (a sidecar's discovery or span export stream) is mid-way.
        syns = subprocess.run(
            ["tshark", "-r", capture, "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0", "-T",
             "fields", "-e", "tcp.stream"], capture_output=True, text=True, timeout=60)
        check(syns.returncode == 0, "tshark -r: " + syns.stderr[-500:])
        opened = set(syns.stdout.split())
        not_tls = ["%s:%d -> %s:%d starts %r" % (s, sp, d, dp, first)
                   for stream, (s, sp, d, dp, first) in streams.items()
                   if stream in opened and not (first[0] == 0x16 and first[1] == 0x03)]
        check(not not_tls, "connections that do not start with a TLS handshake: %s" % not_tls[:5])
        app = [v for v in streams.values() if v[3] in (9080, 3306)]
        check(len(app) >= 3, "only %d app connections captured: %s" % (len(app), streams))
        ports = sorted({v[3] for v in streams.values()})
        return ("%d TCP connections between pods (to ports %s), %d of them app calls: every one "
                "starts with a TLS handshake, no plaintext HTTP" % (
                    len(streams), ", ".join(map(str, ports)), len(app)))

    def retries(self):
        before = self.app_stats("ratings-v1-0")["failed"]
        retried_before = self.proxy_stat_sum("reviews-v2-0", "meshlet_upstream_rq_retry_total",
                                             "ratings")
        summary = self.count("http://reviews:9080/reviews", 200,
                             4, "-H", "x-canary: always")
        check(failures_of(summary) == 0, describe_failures(summary))
        failed = self.app_stats("ratings-v1-0")["failed"] - before
        retried = self.proxy_stat_sum("reviews-v2-0", "meshlet_upstream_rq_retry_total",
                                      "ratings") - retried_before
        check(failed >= 5, "ratings failed only %d requests (pattern x9.)" % failed)
        check(retried >= failed, "reviews-v2-0's proxy retried %d, ratings failed %d" % (
            retried, failed))
        return ("%d calls through reviews -> ratings, all 200; ratings answered %d of them 503 on "
                "purpose, reviews-v2-0's proxy retried %d" % (summary["requests"], failed,
                                                               retried))

    def breaker(self):
        policy_file = self.cluster.apply_file("ratings-breaker.yaml", [self.ratings_policy(
            circuitBreaker={"maxRequests": 2, "maxPendingRequests": 1})])
        self.wait_acked()
        self.app_set("ratings-v1-0", "latency=300ms&fail-pattern=")
        try:
            summary = self.count("http://ratings:9080/ratings", 40, 12)
            # Why the 503s? Asked as an operator would, with a refused call's request id, while
            # the policy is still the one that refused it (the file it was applied from).
            refused = [f for f in summary.get("failures", []) if f.get("status") == 503]
            check(refused and all("; flag=UO; " in f.get("proxy_error", "") and
                                  f.get("request_id") for f in refused),
                  "refused calls without x-meshlet-error flag=UO and x-request-id: %s" % refused)
            request_id, text = self.explain([f["request_id"] for f in refused])
        finally:
            self.app_set("ratings-v1-0", "latency=0s&fail-pattern=x9.")
            self.cluster.apply([self.ratings_policy()])
        overflow = summary["statuses"].get("503", 0)
        ok = summary["statuses"].get("200", 0)
        check(overflow > 0 and ok > 0, "expected some 200 and some 503: %s" % summary)
        flagged = self.proxy_stat_sum("client-0", "meshlet_http_response_flags_total",
                                      'flag="UO"')
        check(flagged >= overflow, "UO flags %d < 503s %d" % (flagged, overflow))
        verdict = self.verdict(text)
        check(re.match(r"503 at \S+ outbound sidecar \(client-0[^)]*\): a circuit-breaker limit "
                       r"of cluster \S*ratings\S* refused the request \(limits from "
                       r"TrafficPolicy/default/ratings \(from %s\)\)" % re.escape(policy_file),
                       verdict) and "UO: upstream overloaded (the proxy answered itself)" in text,
              "meshctl explain %s:\n%s" % (request_id, text))
        self.wait_acked()
        return ("12 at a time at ratings (300 ms each) with maxRequests 2, maxPending 1: %d "
                "answered 200, %d refused 503 by the client's proxy (flag UO, p50 %.0f ms); "
                "meshctl explain: \"%s\"" % (ok, overflow, summary["latency_ms"]["p50"],
                                             verdict))

    def timeout(self):
        """The demo's route timeout (examples/policies/30-ratings-timeout.yaml: 300 ms under
        /slow, which ratings answers after 1 s), applied from its file: a 504, and meshctl explain
        blames that HTTPRoute and the caller's sidecar whose route timeout it set. ratings'
        inbound sidecar, told the caller's deadline, usually answers 504 a little before the
        caller's own timer would; either way the policy object is the HTTPRoute."""
        policy_file = self.cluster.apply_file(
            "30-ratings-timeout.yaml",
            source=os.path.join(REPO, "examples", "policies", "30-ratings-timeout.yaml"))
        self.wait_acked()
        self.app_set("ratings-v1-0", "fail-pattern=")  # no 503 on purpose instead
        try:
            r = self.get("http://ratings:9080/slow", check_status=False)
            proxy_error, request_id = self.attribution(r.stderr)
            check(r.returncode == 1 and "answered 504" in r.stderr and "; flag=UT; " in proxy_error
                  and request_id, "GET /slow: exit %d %s" % (r.returncode, r.stderr))
            request_id, text = self.explain([request_id])
        finally:
            self.app_set("ratings-v1-0", "fail-pattern=x9.")
            self.cluster.meshctl("delete", "httproute", "ratings")
            self.wait_acked()
        verdict = self.verdict(text)
        check(re.search(r"\S+ outbound sidecar \(client-0[^)]*\)", verdict) and
              re.search(r"request timeout 300ms from HTTPRoute/default/ratings \(from %s\)" %
                        re.escape(policy_file), verdict) and
              "UT: upstream request timeout (the proxy answered itself)" in text,
              "meshctl explain %s:\n%s" % (request_id, text))
        return "GET http://ratings:9080/slow: 504 (%s); meshctl explain: \"%s\"" % (
            proxy_error, verdict)

    def ejection(self):
        policy = {"apiVersion": "meshlet.io/v1", "kind": "TrafficPolicy",
                  "metadata": {"name": "reviews-outliers", "namespace": "default"},
                  "spec": {"target": "reviews",
                           "outlierDetection": {"consecutive5xx": 3, "baseEjectionTime": "60s",
                                                "maxEjectionPercent": 50}}}
        self.cluster.apply([policy])
        self.wait_acked()
        self.app_set("reviews-v1-0", "fail-fraction=1")
        try:
            first = self.count("http://reviews:9080/reviews", 60, 2)
            v1_ip = self.cluster.pods["reviews-v1-0"]["ip"]
            hosts = self.endpoints("client-0", "reviews")
            ejected = [a for a, h in hosts.items() if "outlier_ejected" in h["health_flags"]]
            check(any(a.startswith(v1_ip + ":") for a in ejected),
                  "reviews-v1-0 (%s) not ejected by client-0's proxy: %s" % (v1_ip, hosts))
            v1_before = self.app_stats("reviews-v1-0")["requests"]
            second = self.count("http://reviews:9080/reviews", 100, 4)
            v1_after = self.app_stats("reviews-v1-0")["requests"]
        finally:
            self.app_set("reviews-v1-0", "fail-fraction=0")
            self.cluster.meshctl("delete", "trafficpolicy", "reviews-outliers")
        check(failures_of(first) == 0, "while ejecting: " + describe_failures(first))
        check(failures_of(second) == 0, "after: " + describe_failures(second))
        check(v1_after == v1_before, "reviews-v1-0 still got %d requests after its ejection" % (
            v1_after - v1_before))
        return ("reviews-v1-0 answering 503 to everything: ejected by client-0's proxy after "
                "its failures (all %d calls 200 through retries); the next %d calls all went to "
                "reviews-v2-0" % (first["requests"], second["requests"]))

    def route(self, version, name="reviews"):
        return {"apiVersion": "meshlet.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"target": "reviews", "rules": [{"name": "all-" + version, "backends": [
                    {"service": "reviews", "subset": {"version": version}}]}]}}

    def route_shift(self):
        self.cluster.apply([self.route("v1")])
        self.wait_acked()
        # The load runs until 3 s after every proxy ACKed the shift (not for a fixed time a slow
        # push could outlast), so it crosses the shift whatever the push takes.
        load = Load(self, "http://reviews:9080/reviews", 120)
        try:
            time.sleep(3)
            applied = time.monotonic()
            self.cluster.apply([self.route("v2")])
            self.wait_acked()
            acked = time.monotonic() - applied
            time.sleep(3)
        finally:
            load.stop()
        summary = load.result()
        seconds = time.monotonic() - load.started
        after = self.count("http://reviews:9080/reviews", 40)
        check(failures_of(summary) == 0, describe_failures(summary))
        pods = summary.get("pods", {})
        check(pods.get("reviews-v1-0", 0) > 0 and pods.get("reviews-v2-0", 0) > 0,
              "load saw %s" % pods)
        check(after.get("pods", {}) == {"reviews-v2-0": after["requests"]},
              "after the shift: %s" % after.get("pods"))
        return ("%d requests in %.1f s, route v1 -> v2 applied at 3 s (every proxy ACKed %.2f s "
                "later): 0 failed; %s; the next %d all v2" % (
                    summary["requests"], seconds, acked, pods, after["requests"]))

    def certificate_serials(self):
        serials = {}
        for pod in self.meshed_pods():
            serials[pod] = json.loads(self.admin(pod, "/certs"))["workload_certificate"]["serial"]
        return serials

    def rotation(self):
        before = self.certificate_serials()
        load = Load(self, "http://productpage:9080/products", 75, concurrency=3,
                    extra=["-H", "x-canary: always"])

        def all_rotated():
            now = self.certificate_serials()
            return all(now[p] != before[p] for p in before)
        try:
            self.run.wait_until(all_rotated, 70, "every proxy's certificate to be renewed")
            took = time.monotonic() - load.started
        finally:
            load.stop()
        summary = load.result()
        check(failures_of(summary) == 0, describe_failures(summary))
        return ("every one of %d proxies renewed its %s certificate within %.0f s under load: "
                "%d requests through productpage -> reviews -> ratings, 0 failed" % (
                    len(before), CERT_TTL, took, summary["requests"]))

    def control_plane_down(self):
        load = Load(self, "http://productpage:9080/products", 20, concurrency=3)
        time.sleep(2)
        self.run.podman(["pod", "kill", cluster_lib.CONTROL_PLANE_NAME])
        time.sleep(6)
        during = self.count("http://reviews:9080/reviews", 20)
        self.run.podman(["pod", "start", cluster_lib.CONTROL_PLANE_NAME])
        self.run.wait_ready(cluster_lib.CONTROL_PLANE_CONTAINER,
                            self.cluster.meshctl_args("check"), timeout=30)
        back = time.monotonic()
        self.cluster.apply([self.route("v1")])
        self.wait_acked(timeout=30)
        pushed = time.monotonic() - back
        summary = load.result()
        check(failures_of(summary) == 0, describe_failures(summary))
        check(failures_of(during) == 0, "while down: " + describe_failures(during))
        after = self.count("http://reviews:9080/reviews", 20)
        check(after.get("pods") == {"reviews-v1-0": 20}, "the new route: %s" % after.get("pods"))
        return ("control plane killed for 6 s under load: %d requests, 0 failed; back, its new "
                "route reached and was ACKed by every proxy in %.1f s" % (
                    summary["requests"] + during["requests"], pushed))

    def pod_deleted(self):
        self.cluster.apply([{"apiVersion": "meshlet.io/v1", "kind": "HTTPRoute",
                             "metadata": {"name": "reviews", "namespace": "default"},
                             "spec": {"target": "reviews", "rules": [{"name": "any", "backends": [
                                 {"service": "reviews"}]}]}}])
        self.wait_acked()
        # Calls first: a proxy builds a service's cluster on its first use (ADR 0091), and the
        # scenarios before this one may not have called reviews from client-0.
        self.count("http://reviews:9080/reviews", 4)
        v1_ip = self.cluster.pods["reviews-v1-0"]["ip"]
        check(any(a.startswith(v1_ip + ":") for a in self.endpoints("client-0", "reviews")),
              "reviews-v1-0 is not an endpoint of client-0's proxy")
        load = Load(self, "http://reviews:9080/reviews", 8, concurrency=4)
        time.sleep(2)
        gone = {}

        def watch():
            # Each poll through podman takes tens of milliseconds, and longer under load: the
            # polls only bracket the moment; client-0's proxy's log says when it applied it.
            started = time.monotonic()
            while time.monotonic() - started < 15:
                polled = time.time()
                if not any(a.startswith(v1_ip + ":") for a in self.endpoints("client-0",
                                                                               "reviews")):
                    gone["at"] = time.time()
                    return
                gone["present_at"] = polled
                time.sleep(0.05)
        watcher = threading.Thread(target=watch)
        watcher.start()
        self.cluster.delete_pod("reviews-v1-0", grace=10)
        watcher.join()
        summary = load.result()
        check(failures_of(summary) == 0, describe_failures(summary))
        check("at" in gone, "reviews-v1-0's endpoint still in client-0's proxy 15 s later")
        # From the SIGTERM the proxy logged (the host's clock, like gone["at"]).
        sigterm = self.logged_at("reviews-v1-0", r"SIGTERM: draining")
        check(sigterm, "no SIGTERM line in reviews-v1-0's proxy log")
        sigterm = sigterm[0]
        # The endpoint update that removed it: applied by client-0's proxy after the last poll
        # that still saw the endpoint began, and before the poll that no longer saw it ended.
        # Should several fall in that window, the last one is taken (never an earlier time).
        since = max(sigterm, gone.get("present_at", sigterm))
        applied = [t for t in self.logged_at("client-0", r"xds: applied endpoints version")
                   if since < t <= gone["at"]]
        removed = applied[-1] if applied else gone["at"]
        after = removed - sigterm
        check(after <= 1.0, "the endpoint went %.2f s after SIGTERM (client-0's proxy applied "
              "endpoint updates at %s s after it; the polls through podman saw it gone %.2f s "
              "after it)" % (after, ["%.2f" % (t - sigterm) for t in applied],
                             gone["at"] - sigterm))
        return ("reviews-v1-0 deleted (SIGTERM) under load: %d requests, 0 failed; its endpoint "
                "left client-0's proxy %.2f s after its proxy's SIGTERM" % (summary["requests"],
                                                                         after))

    def trace(self):
        self.cluster.apply([self.route("v2")])  # reviews v2 calls ratings
        self.wait_acked()
        trace_id = secrets.token_hex(16)
        traceparent = "00-%s-%s-01" % (trace_id, secrets.token_hex(8))
        self.get("http://productpage:9080/products/7", "-H", "traceparent: " + traceparent,
                 "-H", "x-canary: always")

        def services():
            r = self.cluster.meshctl("trace", trace_id, "-o", "json", check=False)
            if r.returncode != 0:
                return None
            names = set(re.findall(r'"service(?:Name)?"\s*:\s*"([^"]+)"', r.stdout))
            want = {"productpage.default", "reviews.default", "ratings.default"}
            return names if want <= names else None
        names = self.run.wait_until(services, 20, "the trace in the collector",
                                    lambda: self.cluster.meshctl("trace", trace_id,
                                                                 check=False).stdout)
        return "trace %s... holds spans of %s" % (trace_id[:12], ", ".join(sorted(names)))

    def ca_rotate(self):
        """Two rotations under load, each one command in the control plane's pod, with the new
        material made offline by certs/make-ca.sh and copied into the pod as files."""
        work = os.path.join(self.run.dir, "ca-rotate")
        os.makedirs(work)
        container = cluster_lib.CONTROL_PLANE_CONTAINER
        self.run.podman(["cp", "%s:%s/ca" % (container, cluster_lib.CONTROL_PLANE_DATA),
                         os.path.join(work, "r0")])
        make_ca = os.path.join(harness.REPO, "certs", "make-ca.sh")
        for args in (["intermediate", "--root", "r0", "--out", "m", "--name", "meshlet CA M",
                      "--days", "1"],
                     ["root", "--out", "r1"],
                     ["intermediate", "--root", "r1", "--out", "n", "--name", "meshlet CA N"]):
            subprocess.run([make_ca] + args, cwd=work, check=True, capture_output=True)
        # meshctl's trust for the API, whose certificate moves to the new root with the rest.
        with open(os.path.join(work, "api-ca.pem"), "w") as out:
            for root in ("r0", "r1"):
                with open(os.path.join(work, root, "root-cert.pem")) as f:
                    out.write(f.read())
        os.remove(os.path.join(work, "r0", "root-key.pem"))
        # podman cp leaves the files root's: readable by the control plane's user (65532).
        for dirpath, _, files in os.walk(work):
            os.chmod(dirpath, 0o755)
            for f in files:
                os.chmod(os.path.join(dirpath, f), 0o644)
        inside = cluster_lib.CONTROL_PLANE_DATA + "/rotation"
        self.run.podman(["cp", work, "%s:%s" % (container, inside)])
        self.cluster.api_ca = inside + "/api-ca.pem"

        def started():
            return {p: self.run.podman(["inspect", "-f", "{{.State.StartedAt}}",
                                        p + "-meshlet-proxy"]).strip()
                    for p in self.meshed_pods()}
        before = started()
        load = Load(self, "http://productpage:9080/products", 240, concurrency=3)
        took = {}
        try:
            for name, args in (("intermediate", ["--intermediate", "--cert", inside + "/m/ca-chain.pem",
                                                 "--key", inside + "/m/ca-key.pem"]),
                               ("root", ["--cert", inside + "/n/ca-chain.pem", "--key",
                                         inside + "/n/ca-key.pem"])):
                t = time.monotonic()
                r = self.cluster.meshctl("ca", "rotate", *args, "--renewal-jitter", "5s",
                                         "--wait", "150s", check=False, timeout=170)
                check(r.returncode == 0, "meshctl ca rotate %s: exit %d %s%s\n%s" % (
                    name, r.returncode, r.stdout, r.stderr,
                    self.cluster.meshctl("ca", "rotate", "--status", check=False).stdout))
                took[name] = time.monotonic() - t
                if name == "intermediate":
                    warned = self.cluster.meshctl("check", check=False)
                    check("meshlet CA M" in warned.stdout and "WARNING" in warned.stdout,
                          "meshctl check does not warn of M: " + warned.stdout)
        finally:
            load.stop()
        summary = load.result()
        check(failures_of(summary) == 0, describe_failures(summary))
        issuers = {p: json.loads(self.admin(p, "/certs"))["workload_certificate"]["chain"][0][
            "issuer"] for p in self.meshed_pods()}
        check(set(issuers.values()) == {"CN=meshlet CA N,O=meshlet"}, "issuers: %s" % issuers)
        for pod in self.meshed_pods():
            dump = json.loads(self.admin(pod, "/config_dump")).get("resources", {})
            bundle = [s["trust_bundle_pem"] for s in dump.get("secrets", [])
                      if s["name"] == "mesh-trust-bundle"]
            check(bundle and bundle[0].count("BEGIN CERTIFICATE") == 1,
                  "%s's mesh-trust-bundle: %s roots" % (
                      pod, bundle[0].count("BEGIN CERTIFICATE") if bundle else "no"))
        check(started() == before, "a proxy restarted: %s -> %s" % (before, started()))
        # The xDS streams still work: a pushed route is ACKed by every proxy.
        self.cluster.apply([self.route("v1")])
        self.wait_acked(timeout=60)
        return ("under load (%d requests, 0 failed): an intermediate rotation to one that "
                "expires in a day in %.0f s (meshctl check warned), then a root rotation in "
                "%.0f s; every one of %d proxies holds a certificate from the new intermediate "
                "and the new root alone, none restarted, and all ACKed a route pushed after" % (
                    summary["requests"], took["intermediate"], took["root"], len(issuers)))

    def attacks(self):
        """A pod without a sidecar (`outside`) attacks the control plane's discovery port under
        load: as productpage's node without a certificate, and with a certificate of its own
        identity (a join token for service account `attacker`) claiming productpage's service
        account or node id, and with forged golden-metrics reports. Each is refused; its own
        node's stream is served; the load sees no failure and every proxy stays ACKed."""
        victim = "productpage-v1-0." + self.cluster.namespace
        secret = self.cluster.create_join_token("attacker")
        ca_path = os.path.join(self.run.dir, "attacker-ca.pem")
        with open(ca_path, "w") as f:
            f.write(self.cluster.trust_pem)
        load = Load(self, "http://productpage:9080/products", 20, concurrency=2)
        try:
            r = self.run.in_pod_network("outside", [
                "/usr/bin/python3", os.path.join(HERE, "discovery_attacker.py"),
                "--ads", "%s:15012" % self.cluster.control_plane_ip, "--ca", ca_path,
                "--proto-root", self.bin_dir, "--victim", victim,
                "--namespace", self.cluster.namespace, "--victim-sa", "productpage",
                "--join-token", self.cluster.secrets[(self.cluster.namespace, secret)]["token"],
                "--own-sa", "attacker"],
                check=False, timeout=120)
        finally:
            load.stop()
        check(r.returncode == 0, "the attacker failed: %s %s" % (r.stdout, r.stderr[-2000:]))
        results = json.loads(r.stdout.strip().splitlines()[-1])
        expected = {"no_certificate": "UNAUTHENTICATED",
                    "other_service_account": "PERMISSION_DENIED",
                    "taken_node_id": "PERMISSION_DENIED", "forged_report": "PERMISSION_DENIED",
                    "anonymous_report": "UNAUTHENTICATED", "own_stream": "OK"}
        check(results == expected, "answers %s, expected %s" % (results, expected))
        summary = load.result()
        check(failures_of(summary) == 0, describe_failures(summary))
        proxies = self.wait_acked()
        holder = [p for p in proxies["items"] if p["id"] == victim]
        check(holder and holder[0].get("identity", "").endswith("/sa/productpage"),
              "productpage's node is no longer productpage's: %s" % holder)
        return "%s refused, its own node served; %d requests under load, 0 failed" % (
            ", ".join(k for k, v in results.items() if v != "OK"), summary["requests"])

    def outside(self):
        ip = self.cluster.pods["outside"]["ip"]
        url = "http://%s:8080/hello" % ip
        passed = self.get(url)
        check(json.loads(passed.stdout)["service"] == "outside", passed.stdout)
        mesh_config = {"apiVersion": "meshlet.io/v1", "kind": "MeshConfig",
                       "metadata": {"name": "mesh"},
                       "spec": {"outboundTrafficPolicy": "REGISTRY_ONLY"}}
        policy_file = self.cluster.apply_file("mesh.yaml", [mesh_config])
        self.wait_acked()
        try:
            refused = self.get(url, check_status=False)
            proxy_error, request_id = self.attribution(refused.stderr)
            check(proxy_error.startswith("client-0") and "; flag=NM; " in proxy_error and
                  request_id, "no attribution of the 502: %s" % refused.stderr)
            request_id, text = self.explain([request_id])
        finally:
            mesh_config["spec"]["outboundTrafficPolicy"] = "ALLOW_ANY"
            self.cluster.apply([mesh_config])
            self.wait_acked()
        check(refused.returncode == 1, "REGISTRY_ONLY: exit %d %s %s" % (
            refused.returncode, refused.stdout, refused.stderr))
        check("not in the mesh registry" in refused.stdout, refused.stdout)
        verdict = self.verdict(text)
        check(re.match(r"502 at \S+ outbound sidecar \(client-0[^)]*\): unknown destination "
                       r"\(destination %s:8080 is not in the mesh registry\): refused by "
                       r"MeshConfig/mesh \(from %s\) \(outboundTrafficPolicy REGISTRY_ONLY\)" % (
                           re.escape(ip), re.escape(policy_file)), verdict) and
              "NM: destination" in text, "meshctl explain %s:\n%s" % (request_id, text))
        again = self.get(url)
        return ("%s (no sidecar, no Service): ALLOW_ANY passed through (answered by outside); "
                "REGISTRY_ONLY: 502 \"%s\", meshctl explain: \"%s\"; ALLOW_ANY again: %s" % (
                    url, refused.stdout.strip()[:80], verdict,
                    json.loads(again.stdout)["service"]))

    def external(self):
        """Under REGISTRY_ONLY, what an ExternalService registers passes and nothing else: TLS to
        `outside` (openssl s_server in its network namespace, on 8443) by the name
        api.partner.test, and TCP to its port 8080 by its address; the same TLS without a name
        (an IP literal) or with another name, and TCP to another port, are refused."""
        sys.path.insert(0, cluster_lib.INTEGRATION_DIR)
        import mesh_util
        ip = self.cluster.pods["outside"]["ip"]
        d = os.path.join(self.run.dir, "external")
        os.makedirs(d)
        ca = mesh_util.make_ca(d, "partner-ca")
        cert, key = mesh_util.make_server_cert(d, "partner", ca, "DNS:api.partner.test")
        server = self.run.start_in_pod_network("outside", [
            "openssl", "s_server", "-quiet", "-www", "-accept", "8443", "-cert", cert,
            "-key", key], os.path.join(d, "s_server.log"))
        self.run.wait_until(lambda: self.run.in_pod_network("outside", [
            "curl", "-sk", "-m", "2", "-o", "/dev/null", "https://127.0.0.1:8443/"],
            check=False).returncode == 0, 10, "openssl s_server to answer")

        def tls(name, address=None):
            """curl's exit status and HTTP status for HTTPS from client-0 to `address` (default
            outside's):8443 naming `name` (None: the IP literal, no server name)."""
            url = "https://%s:8443/" % (name or ip)
            args = ["curl", "-s", "-m", "3", "--cacert", ca[0], "-o", "/dev/null",
                    "-w", "%{http_code}", url]
            if name:
                args[1:1] = ["--resolve", "%s:8443:%s" % (name, address or ip)]
            else:
                args[1:1] = ["-k"]
            r = self.run.in_pod_network("client-0", args, check=False)
            return r.returncode, r.stdout

        def tcp(port):
            r = self.run.in_pod_network("client-0", [
                "curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                "http://%s:%d/hello" % (ip, port)], check=False)
            return r.returncode, r.stdout

        mesh_config = {"apiVersion": "meshlet.io/v1", "kind": "MeshConfig",
                       "metadata": {"name": "mesh"},
                       "spec": {"outboundTrafficPolicy": "REGISTRY_ONLY"}}
        externals = [
            {"apiVersion": "meshlet.io/v1", "kind": "ExternalService",
             "metadata": {"name": "partner", "namespace": "default"},
             "spec": {"hosts": ["api.partner.test"], "ports": [{"number": 8443,
                                                                "protocol": "TLS"}],
                      "resolution": "STATIC", "endpoints": [ip]}},
            {"apiVersion": "meshlet.io/v1", "kind": "ExternalService",
             "metadata": {"name": "ledger", "namespace": "default"},
             "spec": {"hosts": ["ledger.partner.test"], "ports": [{"number": 8080,
                                                                   "protocol": "TCP"}],
                      "addresses": ["%s/32" % ip], "resolution": "NONE"}}]
        self.cluster.apply([mesh_config])
        self.wait_acked()
        try:
            before = tls("api.partner.test")
            check(before[0] != 0, "registered nothing yet, REGISTRY_ONLY: %s" % (before,))
            self.cluster.apply(externals)
            self.wait_acked()
            named = self.run.wait_until(lambda: (lambda r: r if r == (0, "200") else None)(
                tls("api.partner.test")), 10, "TLS to api.partner.test to pass",
                lambda: str(tls("api.partner.test")))
            refused = {"other name": tls("other.partner.test"), "IP literal": tls(None),
                       "TCP to another port": tcp(9090)}
            # The registered name towards another address (productpage's, where nothing listens
            # on 8443): the sidecar connects to the service's own endpoint, not there.
            elsewhere = self.cluster.pods["productpage-v1-0"]["ip"]
            redirected = tls("api.partner.test", elsewhere)
            passed_tcp = tcp(8080)
            opened = self.proxy_stat_sum("client-0", "meshlet_upstream_cx_total",
                                         'cluster="external|8443||partner.default"')
            http_summary = self.external_http(ip, ca, d)
        finally:
            for name in ("partner", "ledger"):
                self.cluster.meshctl("delete", "externalservice", name, check=False)
            mesh_config["spec"]["outboundTrafficPolicy"] = "ALLOW_ANY"
            self.cluster.apply([mesh_config])
            self.wait_acked()
            server.kill()
        check(passed_tcp == (0, "200"), "TCP to the registered address and port: %s" % (
            passed_tcp,))
        check(redirected == (0, "200"), "api.partner.test named towards %s: %s (the registered "
              "endpoint should have answered)" % (elsewhere, redirected))
        # TLS and TCP are closed; plain HTTP gets the sidecar's local 502.
        for what, result in refused.items():
            check(result[0] != 0 or result[1] == "502", "%s passed: %s" % (what, result))
        check(opened > 0, "client-0 opened no connection of cluster external|8443||partner.default")
        return ("REGISTRY_ONLY: TLS naming api.partner.test %s and TCP to %s:8080 %s passed "
                "through the ExternalServices (%d connections of their cluster); the name sent "
                "towards %s reached the registered endpoint; refused: %s; %s" % (
                    named[1], ip, passed_tcp[1], opened, elsewhere,
                    ", ".join("%s (curl exit %d, %s)" % (k, v[0], v[1] or "no answer")
                              for k, v in refused.items()), http_summary))

    def external_http(self, ip, ca, d):
        """Under REGISTRY_ONLY (external's), plain HTTP by Host and TLS origination: `outside`
        serves HTTP on 8081 (python3 http.server) and TLS on 9443-9446 (openssl s_server with a
        good certificate of `ca`, an expired one, one for another name, one of another CA).
        ExternalServices register web.partner.test on 8081 and, on 8082-8085, the four TLS hosts
        with `tls` (CA `ca`, inline). The registered Host passes; another Host, a Host that
        contradicts the absolute URI, and CONNECT are refused; the plain request to the good
        TLS host is answered over TLS; the three others get 503 saying why."""
        import mesh_util
        with open(os.path.join(d, "hello.txt"), "w") as f:
            f.write("hello external\n")
        web = self.run.start_in_pod_network("outside", [
            "python3", "-m", "http.server", "8081", "--bind", "0.0.0.0", "--directory", d],
            os.path.join(d, "http_server.log"))
        other_ca = mesh_util.make_ca(d, "other-ca")
        certificates = {
            "secure": mesh_util.make_server_cert(d, "secure", ca, "DNS:secure.partner.test"),
            "expired": mesh_util.make_expired_server_cert(d, "expired", ca,
                                                          "DNS:expired.partner.test"),
            "wrongname": mesh_util.make_server_cert(d, "wrongname", ca,
                                                    "DNS:other.partner.test"),
            "untrusted": mesh_util.make_server_cert(d, "untrusted", other_ca,
                                                    "DNS:untrusted.partner.test"),
        }
        servers = [web]
        for i, (name, (cert, key)) in enumerate(certificates.items()):
            servers.append(self.run.start_in_pod_network("outside", [
                "openssl", "s_server", "-quiet", "-www", "-accept", str(9443 + i), "-cert", cert,
                "-key", key], os.path.join(d, "s_server-%s.log" % name)))
        with open(ca[0]) as f:
            ca_pem = f.read()
        externals = [{"apiVersion": "meshlet.io/v1", "kind": "ExternalService",
                      "metadata": {"name": "web", "namespace": "default"},
                      "spec": {"hosts": ["web.partner.test"],
                               "ports": [{"number": 8081, "protocol": "HTTP"}],
                               "resolution": "STATIC", "endpoints": [ip]}}]
        for i, name in enumerate(certificates):
            externals.append({
                "apiVersion": "meshlet.io/v1", "kind": "ExternalService",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"hosts": ["%s.partner.test" % name],
                         "ports": [{"number": 8082 + i, "protocol": "HTTP",
                                    "targetPort": 9443 + i,
                                    "tls": {"caCertificates": ca_pem}}],
                         "resolution": "STATIC", "endpoints": [ip]}})

        def curl(url, *args, resolve=None):
            """(curl exit, HTTP status, body, x-meshlet-error) of `url` from client-0."""
            cmd = ["curl", "-s", "-m", "5", "-D", "-", "-w", "\n%{http_code}", url] + list(args)
            if resolve:
                cmd[1:1] = ["--resolve", resolve]
            r = self.run.in_pod_network("client-0", cmd, check=False)
            # text mode: the head's CRLFs read as newlines.
            head, _, rest = r.stdout.partition("\n\n")
            body, _, status = rest.rpartition("\n")
            error = re.search(r"(?im)^x-meshlet-error: (.*?)\r?$", head)
            return r.returncode, status.strip(), body, error.group(1) if error else None

        try:
            self.cluster.apply(externals)
            self.wait_acked()
            host = "web.partner.test:8081:%s" % ip
            registered = self.run.wait_until(
                lambda: (lambda r: r if r[1] == "200" else None)(
                    curl("http://web.partner.test:8081/hello.txt", resolve=host)),
                10, "plain HTTP to web.partner.test to pass",
                lambda: str(curl("http://web.partner.test:8081/hello.txt", resolve=host)))
            other_host = curl("http://%s:8081/hello.txt" % ip, "-H", "Host: other.partner.test")
            mismatch = curl("http://%s:8081" % ip, "--request-target",
                            "http://other.partner.test/hello.txt", "-H", "Host: web.partner.test")
            connect = self.run.in_pod_network("client-0", [
                "curl", "-s", "-m", "5", "-p", "-x", "http://%s:8081" % ip, "-o", "/dev/null",
                "-w", "%{http_connect} %{http_code}", "http://web.partner.test:8081/hello.txt"],
                check=False)
            originated = {name: curl("http://%s.partner.test:%d/" % (name, 8082 + i),
                                     resolve="%s.partner.test:%d:%s" % (name, 8082 + i, ip))
                          for i, name in enumerate(certificates)}
        finally:
            for e in externals:
                self.cluster.meshctl("delete", "externalservice", e["metadata"]["name"],
                                     check=False)
            for server in servers:
                server.kill()
        check(registered[2] == "hello external\n", "registered Host: %s" % (registered,))
        check(other_host[1] == "502" and "flag=NM" in (other_host[3] or ""),
              "another Host under REGISTRY_ONLY: %s" % (other_host,))
        check(mismatch[1] != "200", "absolute URI naming another host than Host: %s" % (
            mismatch,))
        check(connect.stdout.split()[:1] != ["200"] and "hello" not in connect.stdout,
              "CONNECT through the external port: exit %d %s" % (connect.returncode,
                                                                   connect.stdout))
        good = originated.pop("secure")
        # curl exit 0: the response ended (the server's close_notify is its end of stream).
        check(good[0] == 0 and good[1] == "200" and "s_server" in good[2],
              "TLS originated to secure: %s" % (good[:2],))
        reasons = {"expired": r"peer certificate \S+ expired at ",
                   "wrongname": r'is not for "wrongname\.partner\.test"',
                   "untrusted": r"is not issued by a trusted CA"}
        for name, result in originated.items():
            check(result[1] == "503" and result[2].startswith("upstream TLS handshake failed: ")
                  and re.search(reasons[name], result[2]),
                  "TLS originated to %s: %s" % (name, result))
        return ("plain HTTP: Host web.partner.test %s, another Host %s (%s), Host against the "
                "absolute URI %s, CONNECT %s; TLS originated: secure %s, %s" % (
                    registered[1], other_host[1], other_host[3], mismatch[1],
                    connect.stdout.strip(), good[1],
                    "; ".join("%s %s \"%s\"" % (k, v[1], v[2].strip())
                              for k, v in originated.items())))

    def server_first(self):
        r = self.cluster.exec("client-0", ["testapp", "tcp", "ledger:3306", "--send", "hello",
                                           "--send", "bye"], check=False)
        check(r.returncode == 0, "exit %d %s %s" % (r.returncode, r.stdout, r.stderr))
        lines = r.stdout.strip().splitlines()
        check(len(lines) == 3 and lines[0].startswith("220 "), r.stdout)
        return "ledger:3306 (Service port protocol TCP): banner %r, then %d echoes" % (
            lines[0], len(lines) - 1)


    def webhook(self):
        """An AdmissionReview to the control plane pod's webhook, verified with its CA's root for
        the Service's name, as the API server would send it; the patched pod is played."""
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": "hello-", "namespace": self.cluster.namespace,
                            "labels": {"app": "hello"},
                            "annotations": {
                                "sidecar.meshlet.io/mode": "classic",
                                "sidecar.meshlet.io/identity": "join-token",
                                "io.podman.annotations.init.container.type": "always"}},
               "spec": {"serviceAccountName": "hello", "containers": [{
                   "name": "hello", "image": "localhost/meshlet-testapp:%s" % cluster_lib.IMAGE_TAG,
                   "env": [{"name": "TESTAPP_SERVICE", "value": "hello"},
                           {"name": "TESTAPP_LISTEN", "value": "0.0.0.0:9080"},
                           {"name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                   "ports": [{"name": "http", "containerPort": 9080}],
                   "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}}]}}
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": "e2e-hello", "operation": "CREATE",
                              "namespace": self.cluster.namespace,
                              "kind": {"group": "", "version": "v1", "kind": "Pod"},
                              "object": pod}}
        review_path = os.path.join(self.run.dir, "review.json")
        ca_path = os.path.join(self.run.dir, "webhook-ca.pem")
        with open(review_path, "w") as f:
            json.dump(review, f)
        with open(ca_path, "w") as f:
            f.write(self.cluster.trust_pem)
        name = cluster_lib.CONTROL_PLANE_SERVICE
        r = self.run.in_pod_network(cluster_lib.CONTROL_PLANE_NAME, [
            "curl", "-sS", "--max-time", "10", "--cacert", ca_path, "--resolve",
            "%s:15017:127.0.0.1" % name, "-H", "Content-Type: application/json",
            "--data-binary", "@" + review_path, "https://%s:15017/inject" % name], check=False)
        check(r.returncode == 0, "the webhook did not answer: %s" % r.stderr)
        response = json.loads(r.stdout)["response"]
        check(response["allowed"] and response.get("patchType") == "JSONPatch", r.stdout[:500])
        import jsonpatch  # python3-jsonpatch (./dev test installs it)
        injected = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
        names = [c["name"] for c in injected["spec"]["containers"]]
        check(names[0] == "meshlet-proxy", "classic sidecar first: %s" % names)
        self.cluster.create_join_token("hello")
        self.cluster.apply_services([{"metadata": {"name": "hello"}, "spec": {"ports": [
            {"name": "http", "port": 9080, "targetPort": 9080}]}}])
        address = self.cluster.service_addresses["hello"]
        self.cluster.play_pod("hello-0", injected)
        self.cluster.wait_ready(["hello-0"])
        self.wait_acked()
        answer = json.loads(self.get("http://%s:9080/webhook" % address).stdout)
        check(answer.get("pod") == "hello-0", "answered by %s" % answer)
        handshakes = self.proxy_stat_sum("hello-0", "meshlet_downstream_cx_total",
                                         'listener="inbound"')
        check(handshakes >= 1, "hello-0's inbound listener counted no connection")
        # The kubelet's probe, rewritten: plaintext from outside the mesh to the proxy's 15020,
        # which asks the app on loopback.
        probe = injected["spec"]["containers"][1]["readinessProbe"]["httpGet"]
        check(probe == {"path": "/app-health/hello/readyz", "port": 15020}, "probe %s" % probe)
        status, body = self.cluster.pod_http(
            "outside", "http://%s:15020/app-health/hello/readyz" % self.cluster.pods["hello-0"]["ip"])
        check(status == 200 and "app probe 9080/healthz: HTTP 200" in body,
              "the rewritten probe: %s %s" % (status, body))
        return ("Pod injected by the webhook (%d patch operations; %s), played: GET "
                "http://%s:9080/ from client-0 answered by hello-0 through its inbound proxy; "
                "its rewritten readiness probe answered by the app through 15020" % (
                    len(json.loads(base64.b64decode(response["patch"]))), ", ".join(names),
                    address))

    def job(self):
        """A Job in classic mode: the app's last act is POST /quitquitquit to its proxy."""
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
               "spec": {"template": {
                   "metadata": {"labels": {"app": "once"}},
                   "spec": {"restartPolicy": "OnFailure", "serviceAccountName": "once",
                            "containers": [{
                                "name": "once",
                                "image": "localhost/meshlet-testapp:%s" % cluster_lib.IMAGE_TAG,
                                "command": ["testapp", "get", "--method", "POST",
                                            "http://127.0.0.1:15000/quitquitquit"]}]}}}}
        path = os.path.join(self.run.dir, "job.json")
        with open(path, "w") as f:
            json.dump(job, f)
        injected = self.cluster.inject([path])[0]
        self.cluster.create_join_token("once")
        started = time.monotonic()
        self.cluster.play_pod("once-0", injected["spec"]["template"])

        def exited():
            states = {}
            for c in self.cluster.containers("once-0"):
                if c.endswith("-infra") or c.endswith("-meshlet-init"):
                    continue
                out = self.run.podman(["inspect", "--format",
                                       "{{.State.Status}} {{.State.ExitCode}}", c]).strip()
                states[c] = out
            return states if all(v.startswith("exited") for v in states.values()) else None
        states = self.run.wait_until(exited, 60, "the Job's containers to exit")
        check(all(v == "exited 0" for v in states.values()), "exit states %s" % states)
        # Done: removed as a Job's finished pod is (the other scenarios count running proxies).
        self.cluster.delete_pod("once-0")
        return "Job pod once-0 completed in %.1f s: %s" % (
            time.monotonic() - started, ", ".join("%s %s" % kv for kv in sorted(states.items())))


    # --- the egress gateway -------------------------------------------------------------------

    def egress(self):
        """An egress gateway (a Gateway of class meshlet with a meshlet.io/egress listener, its
        proxy a pod of the Deployment `meshctl inject --gateway-class` writes, logging every
        call) is the only pod that reaches the "outside network" (a network namespace of its
        own, joined to that pod alone, serving HTTPS with openssl s_server). The ExternalService
        egress.partner.test (HTTP on 80, TLS to 9443 originated by the gateway, egressGateway
        set) and an AuthorizationPolicy on the Gateway letting client's identity call that host:
        client-0's plain HTTP call reaches the server through its sidecar, mTLS to the gateway
        (which sees client's SPIFFE id) and TLS from the gateway; productpage's identity is
        refused (403), as is client-0 for another host the gateway carries; neither client-0 nor
        `outside` reaches the server directly; the gateway's access log names who, where and how
        much."""
        sys.path.insert(0, cluster_lib.INTEGRATION_DIR)
        import mesh_util
        ns = self.cluster.namespace
        d = os.path.join(self.run.dir, "egress")
        os.makedirs(d)
        link = self.cluster.outside_link()
        server_end = link[1]
        ca = mesh_util.make_ca(d, "egress-partner-ca")
        cert, key = mesh_util.make_server_cert(d, "egress-partner", ca,
                                               "DNS:egress.partner.test,DNS:denied.partner.test")
        with open(ca[0]) as f:
            ca_pem = f.read()

        def gateway_api(kind, name, spec, namespaced=True):
            metadata = {"name": name, "namespace": ns} if namespaced else {"name": name}
            return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
                    "metadata": metadata, "spec": spec}

        self.cluster.kube_put("gatewayclasses", gateway_api(
            "GatewayClass", "meshlet", {"controllerName": "meshlet.io/gateway-controller"},
            namespaced=False))
        egress = gateway_api("Gateway", "egress", {
            "gatewayClassName": "meshlet",
            "listeners": [{"name": "out", "port": 15443, "protocol": "meshlet.io/egress"}]})
        self.cluster.kube_put("gateways", egress)
        manifest = os.path.join(self.run.dir, "gateway-egress.json")
        with open(manifest, "w") as f:
            json.dump(egress, f)
        deployment = [x for x in self.cluster.inject([manifest], ("--gateway-class", "meshlet"))
                      if x["kind"] == "Deployment"][0]
        template = deployment["spec"]["template"]
        for c in template["spec"]["containers"]:
            if c["name"] == "meshlet-proxy":  # the audit trail: one JSON line per call
                c["args"] = c.get("args", []) + ["--access-log=/dev/stdout"]
        self.cluster.create_join_token("egress-meshlet")
        netns = "mle%s" % hashlib.sha1(self.run.dir.encode()).hexdigest()[:10]
        servers = []
        externals = [{"apiVersion": "meshlet.io/v1", "kind": "ExternalService",
                      "metadata": {"name": name, "namespace": ns},
                      "spec": {"hosts": ["%s.partner.test" % name],
                               "ports": [{"number": 80, "protocol": "HTTP", "targetPort": 9443,
                                          "tls": {"caCertificates": ca_pem}}],
                               "resolution": "STATIC", "endpoints": [server_end],
                               "egressGateway": "%s/egress" % ns}}
                     for name in ("egress", "denied")]
        policy = {"apiVersion": "meshlet.io/v1", "kind": "AuthorizationPolicy",
                  "metadata": {"name": "egress-callers", "namespace": ns},
                  "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io",
                                           "kind": "Gateway", "name": "egress"}],
                           "rules": [{"from": [{"principals": [
                               "spiffe://cluster.local/ns/%s/sa/client" % ns]}],
                               "to": [{"hosts": ["egress.partner.test"]}]}]}}
        pod = None
        try:
            pod = self.cluster.play_pod("egress-meshlet-0", template)
            self.cluster.wait_ready([pod])
            self.cluster.join_outside_network(pod, netns, link)
            with open(os.path.join(d, "s_server.log"), "w") as log:
                servers.append(subprocess.Popen(
                    ["ip", "netns", "exec", netns, "openssl", "s_server", "-quiet", "-www",
                     "-accept", "9443", "-cert", cert, "-key", key],
                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT))
            self.cluster.apply(externals + [policy])
            self.wait_acked()
            return self.egress_checks(pod, ca, server_end)
        finally:
            for server in servers:
                server.kill()
                server.wait()
            self.cluster.remove_outside_network(netns)
            for e in externals + [policy]:
                self.cluster.meshctl("delete", e["kind"].lower(), e["metadata"]["name"],
                                     check=False)
            if pod is not None:
                self.cluster.delete_pod(pod, grace=5)
            self.cluster.kube_delete("gateways", "egress")

    def egress_checks(self, pod, ca, server_end):
        outside_ip = self.cluster.pods["outside"]["ip"]

        def call(from_pod, host):
            """(HTTP status, body, x-meshlet-error) of plain HTTP to `host` from `from_pod`'s
            network (through its sidecar); the name resolves to outside's address, as any
            address of the app's DNS would do: the sidecar matches the Host."""
            r = self.run.in_pod_network(from_pod, [
                "curl", "-s", "-m", "5", "-D", "-", "-w", "\n%{http_code}", "--resolve",
                "%s:80:%s" % (host, outside_ip), "http://%s/" % host], check=False)
            # text mode: the head's CRLFs read as newlines.
            head, _, rest = r.stdout.partition("\n\n")
            body, _, status = rest.rpartition("\n")
            error = re.search(r"(?im)^x-meshlet-error: (.*?)\r?$", head)
            return status.strip(), body, error.group(1) if error else None, r.returncode

        allowed = self.run.wait_until(
            lambda: (lambda r: r if r[0] == "200" else None)(call("client-0", "egress.partner.test")),
            20, "client-0's call through the egress gateway to pass",
            lambda: str(call("client-0", "egress.partner.test")))
        check("s_server" in allowed[1] and allowed[3] == 0,
              "the outside server's page (curl exit %d): %r" % (allowed[3], allowed[1][:200]))
        other_caller = call("productpage-v1-0", "egress.partner.test")
        other_host = call("client-0", "denied.partner.test")
        # Nobody but the gateway reaches the outside network.
        direct = {p: self.run.in_pod_network(p, [
            "curl", "-sk", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
            "https://%s:9443/" % server_end], check=False) for p in ("client-0", "outside")}
        # The gateway's audit trail: its access log's lines (JSON) of these calls.
        def lines():
            out = []
            for text in self.run.logs(pod + "-meshlet-proxy").splitlines():
                if text.startswith("{") and '"upstream_cluster"' in text:
                    out.append(json.loads(text))
            return out
        logged = self.run.wait_until(
            lambda: [l for l in lines() if l.get("response_code") == 200], 10,
            "the gateway's access log line of the call")
        check(other_caller[0] == "403" and "flag=AZ" in (other_caller[2] or ""),
              "productpage's identity through the egress gateway: %s" % (other_caller,))
        check(other_host[0] == "403", "client-0 to a host its policy does not name: %s" % (
            other_host,))
        for p, r in direct.items():
            check(r.returncode != 0 and r.stdout.strip() in ("", "000"),
                  "%s reached the outside network directly: exit %d %s" % (
                      p, r.returncode, r.stdout))
        line = logged[-1]
        check(line["downstream_peer_identity"] ==
              "spiffe://cluster.local/ns/%s/sa/client" % self.cluster.namespace and
              line["upstream_cluster"] == "external|80||egress.partner.test" and
              line["upstream_host"] == "%s:9443" % server_end and line["bytes_sent"] > 0,
              "the gateway's access log line: %s" % line)
        opened = self.proxy_stat_sum(pod, "meshlet_upstream_cx_total",
                                     'cluster="external|80||egress.partner.test"')
        return ("client-0 -> egress.partner.test through egress-meshlet-0: %s (TLS originated "
                "to %s:9443, %d connections from the gateway); productpage: %s %s; client-0 to "
                "denied.partner.test: %s; direct from client-0 and outside: %s; logged: %s -> "
                "%s, %s bytes" % (
                    allowed[0], server_end, opened, other_caller[0], other_caller[2],
                    other_host[0], ", ".join("exit %d" % r.returncode for r in direct.values()),
                    line["downstream_peer_identity"], line["upstream_host"], line["bytes_sent"]))

    # --- the gateway --------------------------------------------------------------------------

    GATEWAY_HOST = "bookinfo.example.com"
    GATEWAY_PORT = 8443

    def gateway_client(self, *args):
        """gateway_client.py (host python3) in `outside`'s network namespace: no sidecar, not in
        the mesh."""
        return [sys.executable, os.path.join(HERE, "gateway_client.py")] + list(args)

    def gateway_get(self, target, ca, path):
        r = self.run.in_pod_network("outside", self.gateway_client(
            "get", target, path, "--host", self.GATEWAY_HOST, "--ca", ca), check=False)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"status": None, "error": (r.stdout + r.stderr)[-500:]}

    def gateway(self):
        """A Gateway `edge` of class meshlet with an HTTPS listener for bookinfo.example.com (its
        certificate a kubernetes.io/tls Secret, from a CA made here), an HTTPRoute to productpage
        and reviews, all through the API server, and its proxy as a pod (of the Deployment
        `meshctl inject --gateway-class` writes). From `outside` over HTTPS: productpage
        answers; the gateway -> productpage hop is TLS on the wire under the gateway's SPIFFE
        id; the Gateway is Programmed with the pod's address.
        Under load (new and kept-alive connections): the Secret replaced (new handshakes get the
        new serial, kept connections keep theirs) and a path moved to another Service: 0
        failed."""
        sys.path.insert(0, cluster_lib.INTEGRATION_DIR)
        import mesh_util
        # The mesh serves productpage -> reviews before the gateway comes: productpage's proxy
        # has discovered reviews (on demand), so what fails below is the gateway's path.
        inside = self.count("http://productpage:9080/productpage", 5)
        check(failures_of(inside) == 0, "productpage from client-0, before any gateway object: "
              + describe_failures(inside))
        ns = self.cluster.namespace
        d = os.path.join(self.run.dir, "gateway")
        os.makedirs(d)
        ca = mesh_util.make_ca(d, "gateway-web-ca")
        first = mesh_util.make_server_cert(d, "bookinfo-1", ca, "DNS:" + self.GATEWAY_HOST)
        second = mesh_util.make_server_cert(d, "bookinfo-2", ca, "DNS:" + self.GATEWAY_HOST)
        serial = lambda cert: subprocess.run(
            ["openssl", "x509", "-noout", "-serial", "-in", cert[0]], check=True,
            capture_output=True, text=True).stdout.strip().partition("=")[2].upper()
        serials = (serial(first), serial(second))

        def secret(cert):
            data = {}
            for key, path in (("tls.crt", cert[0]), ("tls.key", cert[1])):
                with open(path, "rb") as f:
                    data[key] = base64.b64encode(f.read()).decode()
            return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": "bookinfo-cert", "namespace": ns}, "data": data}

        def gateway_api(kind, name, spec, namespaced=True):
            metadata = {"name": name}
            if namespaced:
                metadata["namespace"] = ns
            return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
                    "metadata": metadata, "spec": spec}

        def route(details_to):
            prefix = lambda path, service: {
                "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                "backendRefs": [{"name": service, "port": 9080}]}
            return gateway_api("HTTPRoute", "bookinfo", {
                "parentRefs": [{"name": "edge", "sectionName": "https"}],
                "hostnames": [self.GATEWAY_HOST],
                "rules": [prefix("/productpage", "productpage"),
                          prefix("/details", details_to)]})

        self.cluster.kube_put("gatewayclasses", gateway_api(
            "GatewayClass", "meshlet", {"controllerName": "meshlet.io/gateway-controller"},
            namespaced=False))
        self.cluster.kube_put("secrets", secret(first))
        edge = gateway_api("Gateway", "edge", {
            "gatewayClassName": "meshlet",
            "listeners": [{"name": "https", "port": self.GATEWAY_PORT, "protocol": "HTTPS",
                           "hostname": self.GATEWAY_HOST,
                           "tls": {"certificateRefs": [{"name": "bookinfo-cert"}]}}]})
        self.cluster.kube_put("gateways", edge)
        self.cluster.kube_put("httproutes", route("productpage"))
        # The Gateway's proxy as the control plane deploys it in a cluster: the Deployment
        # `meshctl inject --gateway-class meshlet` writes for it (docs/gateway.md), one replica.
        manifest = os.path.join(self.run.dir, "gateway-edge.json")
        with open(manifest, "w") as f:
            json.dump(edge, f)
        deployment = [d for d in self.cluster.inject([manifest], ("--gateway-class", "meshlet"))
                      if d["kind"] == "Deployment"][0]
        check(deployment["metadata"]["name"] == "edge-meshlet", "rendered %s" % deployment)
        self.cluster.create_join_token("edge-meshlet")
        pod = self.cluster.play_pod("edge-meshlet-0", deployment["spec"]["template"])
        try:
            return self.gateway_checks(pod, ca[0], serials, route,
                                       lambda: self.cluster.kube_put("secrets", secret(second)))
        finally:
            self.cluster.delete_pod(pod, grace=5)
            for kind, name in (("httproutes", "bookinfo"), ("gateways", "edge"),
                               ("secrets", "bookinfo-cert")):
                self.cluster.kube_delete(kind, name)

    def gateway_checks(self, pod, ca, serials, route, rotate):
        self.cluster.wait_ready([pod])
        ip = self.cluster.pods[pod]["ip"]
        target = "%s:%d" % (ip, self.GATEWAY_PORT)
        identity = json.loads(self.admin(pod, "/certs"))["workload_certificate"]["identity"]
        check(identity == "spiffe://cluster.local/ns/%s/sa/edge-meshlet" % self.cluster.namespace,
              "the gateway's identity: %s" % identity)
        productpage = [p for p, info in self.cluster.pods.items()
                       if info["labels"].get("app") == "productpage"][0]
        productpage_ip = self.cluster.pods[productpage]["ip"]

        # The first requests from outside, with the gateway's traffic captured on the bridge.
        capture = os.path.join(self.run.dir, "gateway.pcap")
        tshark = subprocess.Popen(
            ["tshark", "-q", "-i", self.run.bridge, "-f", "tcp and host %s" % ip, "-w", capture],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            self.run.wait_until(lambda: os.path.exists(capture) and os.path.getsize(capture) > 0,
                                10, "tshark to start capturing")
            time.sleep(0.5)
            got = self.run.wait_until(
                lambda: (lambda g: g if g.get("status") == 200 else None)(
                    self.gateway_get(target, ca, "/productpage")), 20,
                "GET https://%s/productpage through %s to answer 200" % (self.GATEWAY_HOST,
                                                                          target),
                lambda: "%s\nfrom client-0: %s\n%s" % (
                    self.gateway_get(target, ca, "/productpage"),
                    self.get("http://productpage:9080/productpage", check_status=False).stdout,
                    self.run.logs(pod + "-meshlet-proxy")[-3000:]))
            answer = json.loads(got["body"])
            check(answer["service"] == "productpage" and answer["status"] == 200 and
                  answer["calls"][0]["answer"]["service"] == "reviews", "answer %s" % answer)
            for _ in range(5):
                again = self.gateway_get(target, ca, "/productpage")
                check(again.get("status") == 200, "GET /productpage: %s" % again)
            time.sleep(1)
        finally:
            tshark.terminate()
            tshark.wait(timeout=10)
        streams, plaintext = harness.tcp_streams(capture)
        firsts = {k: (src, dst, dport, first) for k, (src, _, dst, dport, first) in
                  streams.items()}
        check(not plaintext, "plaintext HTTP to or from the gateway: %s" % plaintext[:5])
        upstream = [f for f in firsts.values() if f[:3] == (ip, productpage_ip, 9080)]
        inbound = [f for f in firsts.values() if f[1:3] == (ip, self.GATEWAY_PORT)]
        check(upstream and all(f[3][:2] == b"\x16\x03" for f in upstream),
              "gateway -> productpage connections: %s" % upstream)
        check(len(inbound) >= 6 and all(f[3][:2] == b"\x16\x03" for f in inbound),
              "outside -> gateway connections: %s" % inbound)
        tls_handshakes = self.proxy_stat_sum(productpage,
                                             "meshlet_downstream_tls_handshakes_total")
        check(tls_handshakes > 0, "productpage's proxy counted no TLS handshake")

        # The Gateway's status in the API server.
        path = "/apis/gateway.networking.k8s.io/v1/namespaces/%s/gateways/edge" % (
            self.cluster.namespace)

        def programmed():
            status = self.cluster.kube_get(path).get("status", {})
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            addresses = [a.get("value") for a in status.get("addresses", [])]
            return conditions.get("Programmed") == "True" and addresses == [ip] and status
        self.run.wait_until(programmed, 20, "Gateway edge Programmed with %s" % ip,
                            lambda: json.dumps(self.cluster.kube_get(path).get("status")))

        # Under load: the Secret rotated, then /details moved from productpage to reviews.
        log = os.path.join(self.run.dir, "gateway-load.log")
        load = self.run.start_in_pod_network("outside", self.gateway_client(
            "load", target, "--host", self.GATEWAY_HOST, "--ca", ca,
            "--paths", "/productpage,/details", "--fresh", "2", "--kept", "2"), log)
        phases = ["start"]

        def phase(name):
            load.stdin.write(name + "\n")
            load.stdin.flush()
            phases.append(name)
        try:
            time.sleep(2)
            phase("rotating")
            rotate()
            self.run.wait_until(
                lambda: self.gateway_get(target, ca, "/productpage").get("serial") == serials[1],
                20, "new handshakes to get serial %s" % serials[1],
                lambda: self.gateway_get(target, ca, "/productpage"))
            phase("rotated")
            time.sleep(2)
            phase("moving")
            moved_at = time.monotonic()
            self.cluster.kube_put("httproutes", route("reviews"))
            self.run.wait_until(
                lambda: json.loads(self.gateway_get(target, ca, "/details").get("body") or "{}")
                .get("service") == "reviews", 20, "/details to be answered by reviews")
            self.wait_acked()
            took = time.monotonic() - moved_at
            phase("moved")
            time.sleep(2)
        finally:
            load.stdin.close()
            try:
                load.wait(timeout=20)
            except subprocess.TimeoutExpired:
                load.kill()
        with open(log) as f:
            out = f.read()
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise Failed("the load gave no summary: %s" % out[-1000:])
        by_phase = {p["phase"]: p for p in result["phases"]}
        total = sum(p["requests"] for p in result["phases"])
        failed = sum(p["failed"] for p in result["phases"])
        check(failed == 0, "%d of %d failed: %s" % (failed, total, [
            (p["phase"], p["statuses"], p["errors"][:3]) for p in result["phases"] if p["failed"]]))
        old, new = serials
        check(set(by_phase["start"]["fresh_serials"]) == {old},
              "before the rotation: %s" % by_phase["start"])
        for name in ("moving", "moved"):
            check(set(by_phase[name]["fresh_serials"]) == {new},
                  "new connections after the rotation (%s): %s" % (name, by_phase[name]))
        kept_old = sum(by_phase[name]["kept_serials"].get(old, 0) for name in ("rotated", "moved"))
        check(kept_old > 0, "no request went over a connection kept from before the rotation: %s"
              % result)
        details = by_phase["start"]["services"].get("/details", {})
        check(set(details) == {"productpage"}, "/details before the move: %s" % details)
        details = by_phase["moved"]["services"].get("/details", {})
        check(set(details) == {"reviews"} and sum(details.values()) > 0,
              "/details after the move: %s" % details)
        return ("outside -> %s (HTTPS, SNI %s, verified) -> productpage 200, the gateway -> "
                "productpage hop TLS on the wire (%d connections, %d from outside) under %s; "
                "Gateway Programmed with %s; load %.0f s, %d requests (%d on new connections): "
                "Secret rotated (new handshakes serial %s -> %s, kept connections kept %s for %d "
                "requests), /details moved productpage -> reviews (ACKed in %.1f s), 0 failed" % (
                    target, self.GATEWAY_HOST, len(upstream), len(inbound), identity, ip,
                    result["seconds"], total,
                    sum(sum(p["fresh_serials"].values()) for p in result["phases"]),
                    old, new, old, kept_old, took))

    def discovery(self):
        """Services only the API server knows (cluster.py's fake), with ClusterIPs in the
        unroutable 240.241.0.0/16: reviews' pods (meshed) and outside (no sidecar)."""
        reviews = sorted(p for p, info in self.cluster.pods.items()
                         if info["labels"].get("app") == "reviews")
        check(len(reviews) >= 2, "reviews pods: %s" % reviews)

        def pod_object(name):
            info = self.cluster.pods[name]
            return {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": self.cluster.namespace,
                                 "labels": info["labels"]},
                    "spec": {"serviceAccountName": info["service_account"]},
                    "status": {"phase": "Running", "podIP": info["ip"]}}

        def service(name, cluster_ip, port):
            return {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": self.cluster.namespace},
                    "spec": {"type": "ClusterIP", "clusterIP": cluster_ip,
                             "clusterIPs": [cluster_ip], "ports": [port]}}

        def endpoint_slice(service_name, port, pods):
            return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": service_name + "-x1", "namespace": self.cluster.namespace,
                                 "labels": {"kubernetes.io/service-name": service_name}},
                    "addressType": "IPv4", "ports": [port],
                    "endpoints": [{"addresses": [self.cluster.pods[p]["ip"]],
                                   "conditions": {"ready": True},
                                   "targetRef": {"kind": "Pod", "name": p,
                                                 "namespace": self.cluster.namespace}}
                                  for p in pods]}

        for name in reviews + ["outside"]:
            self.cluster.kube_put("pods", pod_object(name))
        self.cluster.kube_put("services", service(
            "reviews-k8s", "240.241.0.10", {"name": "http", "port": 80, "targetPort": 9080}))
        self.cluster.kube_put("endpointslices", endpoint_slice(
            "reviews-k8s", {"name": "http", "port": 9080, "protocol": "TCP"}, reviews))
        # An unnamed port: detected (HTTP here).
        self.cluster.kube_put("services", service(
            "outside-k8s", "240.241.0.11", {"port": 8080, "targetPort": 8080}))
        self.cluster.kube_put("endpointslices", endpoint_slice(
            "outside-k8s", {"name": "", "port": 8080, "protocol": "TCP"}, ["outside"]))
        try:
            # client-0 discovers the Services on its first connection to each (on-demand, the
            # default): once the control plane resolves their addresses (what the sidecar's
            # lookup will be answered, as `meshctl proxy-config --lookup` shows it), the first
            # calls are answered.
            def resolved():
                r = self.cluster.meshctl(
                    "proxy-config", "client-0.%s" % self.cluster.namespace,
                    "--control-plane-only", "-o", "json",
                    "--lookup", "addr:240.241.0.10:80,addr:240.241.0.11:8080", check=False)
                if r.returncode != 0:
                    return False
                lookups = json.loads(r.stdout).get("lookups", [])
                return len(lookups) == 2 and all(k["result"] == "found" for k in lookups)
            self.run.wait_until(resolved, 20, "the control plane to resolve both ClusterIPs")
            by_ip = self.count("http://240.241.0.10/reviews", 20)
            check(failures_of(by_ip) == 0, describe_failures(by_ip))
            plain = self.get("http://240.241.0.11:8080/hello")
            check(json.loads(plain.stdout)["service"] == "outside", plain.stdout)
            hosts = self.run.wait_until(
                lambda: len(self.endpoints("client-0", "reviews-k8s")) == len(reviews) and
                self.endpoints("client-0", "outside-k8s") and
                self.endpoints("client-0", "reviews-k8s"),
                20, "client-0's proxy to have the discovered Services' endpoints",
                lambda: self.admin("client-0", "/clusters?format=json")[-3000:])
            check(all(h.get("tls") for h in hosts.values()),
                  "reviews-k8s endpoints not mTLS: %s" % hosts)
            outside = self.endpoints("client-0", "outside-k8s")
            check(not any(h.get("tls") for h in outside.values()),
                  "outside-k8s endpoint not plaintext: %s" % outside)
            by_ip = self.count("http://240.241.0.10/reviews", 20)
            check(failures_of(by_ip) == 0, describe_failures(by_ip))
            check(set(by_ip.get("pods", {})) == set(reviews),
                  "answered by %s, not all of %s" % (by_ip.get("pods"), reviews))
            plain = self.get("http://240.241.0.11:8080/hello")
            check(json.loads(plain.stdout)["service"] == "outside", plain.stdout)
            # One endpoint leaves the EndpointSlice: gone from the caller's proxy.
            removed = time.monotonic()
            self.cluster.kube_put("endpointslices", endpoint_slice(
                "reviews-k8s", {"name": "http", "port": 9080, "protocol": "TCP"}, reviews[:1]))
            self.run.wait_until(lambda: len(self.endpoints("client-0", "reviews-k8s")) == 1, 10,
                                "the removed endpoint to leave client-0's proxy")
            gone = time.monotonic() - removed
            after = self.count("http://240.241.0.10/reviews", 10)
            check(failures_of(after) == 0, describe_failures(after))
            check(set(after.get("pods", {})) == {reviews[0]}, "after: %s" % after.get("pods"))
        finally:
            for kind, name in (("services", "reviews-k8s"), ("services", "outside-k8s"),
                               ("endpointslices", "reviews-k8s-x1"),
                               ("endpointslices", "outside-k8s-x1")):
                self.cluster.kube_delete(kind, name)
        self.run.wait_until(lambda: not self.endpoints("client-0", "reviews-k8s"), 10,
                            "the deleted Service to leave client-0's proxy")
        return ("reviews-k8s (240.241.0.10:80) answered by %s over mTLS; outside-k8s "
                "(240.241.0.11:8080, unnamed port) by outside in plaintext; an endpoint removed "
                "from the EndpointSlice left client-0's proxy %.1f s later (as seen through "
                "podman); the deleted Services left" % (", ".join(reviews), gone))


SCENARIOS = [
    ("a", "mtls", Mesh.mtls),
    ("b", "retries", Mesh.retries),
    ("c", "breaker", Mesh.breaker),
    ("p", "timeout", Mesh.timeout),
    ("d", "ejection", Mesh.ejection),
    ("e", "route shift", Mesh.route_shift),
    ("f", "rotation", Mesh.rotation),
    ("g", "control plane", Mesh.control_plane_down),
    ("i", "trace", Mesh.trace),
    ("j", "outside", Mesh.outside),
    ("z", "external", Mesh.external),
    ("k", "server-first", Mesh.server_first),
    ("l", "webhook", Mesh.webhook),
    ("m", "job", Mesh.job),
    ("n", "discovery", Mesh.discovery),
    ("o", "attacks", Mesh.attacks),
    ("y", "gateway", Mesh.gateway),
    ("t", "egress", Mesh.egress),
    # After the others that read the CA's generated root: it moves the mesh to a new one.
    ("w", "ca rotate", Mesh.ca_rotate),
    # Last: it removes a pod the others use.
    ("h", "pod deleted", Mesh.pod_deleted),
]


# With --cni: pods captured by meshlet-cni on podman's CNI backend, and the scenarios whose
# outcome capture decides (the others run the same code once a pod is captured).
CNI_SCENARIOS = [
    ("q", "cni capture", Mesh.cni_capture),
    ("a", "mtls", Mesh.mtls),
    ("r", "cni rewrite", Mesh.cni_rewrite),
    ("v", "cni probe", Mesh.cni_probe),
    ("h", "pod deleted", Mesh.pod_deleted),
    # It stops the node agent and removes the pods.
    ("u", "cni uninstall", Mesh.cni_uninstall),
    # After u: a pod started while the plugin is not in the chain.
    ("x", "cni race", Mesh.cni_race),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--only", default="", help="comma-separated scenario letters")
    p.add_argument("--cni", action="store_true",
                   help="capture by meshlet-cni on podman's CNI backend (CNI_SCENARIOS)")
    args = p.parse_args()
    only = set(filter(None, args.only.split(",")))

    def body(run, suite):
        suite.scenario("images", lambda: run.build_images(os.path.abspath(args.bin_dir)) or
                       ", ".join(run.images), fatal=True)
        mesh = Mesh(run, os.path.abspath(args.bin_dir), cni=args.cni)
        suite.scenario("setup", mesh.setup, fatal=True)
        for letter, name, scenario in CNI_SCENARIOS if args.cni else SCENARIOS:
            if not only or letter in only:
                suite.scenario("%s %s" % (letter, name), lambda f=scenario: f(mesh))

    return harness.Suite("mesh-cni" if args.cni else "mesh").main(body, cni=args.cni)


if __name__ == "__main__":
    sys.exit(main())
