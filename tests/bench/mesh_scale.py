"""What a sidecar and the control plane cost as the mesh grows: meshes of N services.

Usage: mesh_scale.py --control-plane BIN --sidecar BIN --meshctl BIN --xds-load BIN
                     [--services 100,1000,5000] [--modes whole-mesh,scoped,on-demand] [--smoke]
                     [--help]

Each service (namespace `bench`) has --endpoints-per-service pods (default 10: half labelled
version=v1, half v2) and one EndpointSlice, in the tests' fake Kubernetes API server
(tests/integration/fake_kubernetes_api.py), which the control plane discovers as in a cluster;
an HTTPRoute sending requests with `x-canary: always` to the subset version=v2 (the rest take the
default route to the whole service), and a TrafficPolicy (timeouts, retries, outlier detection).
So every service is two clusters of a caller, and 5 000 services are 50 000 endpoints. The
policy is written into the store's directory before the control plane starts, as a restarted
control plane finds it (in the form the API stores: each kind's body is taken from a control
plane started for that and written to through its API), because writing it through the API one resource at
a time takes minutes at 1 000 services; what such writes cost is measured on its own.

Modes: `whole-mesh` (MeshConfig discovery.mode WholeMesh: the whole mesh to every sidecar, the
default before on-demand discovery), `scoped` (MeshConfig
scopeToDependencies, each sidecar declaring 10 dependencies, svc-0 to svc-9, in its
meshlet.io/dependencies label) and `on-demand` (MeshConfig discovery.mode OnDemand: the real
sidecar declares nothing and calls svc-0 to svc-9 once ready, each discovered by its host on
first use; the simulated sidecars declare them as in `scoped`). Pod addresses are on loopback
(127.x.y.z, where nothing answers port 8080): the on-demand calls end in a local connection
refused, which is what a call costs the sidecar, and nothing leaves the machine.

Per mesh size and mode:
- the control plane: start to its first publication of the Kubernetes Services, RSS then;
- one real sidecar (--sidecar-workers workers, plaintext xDS): start to /ready answering 200
  (bounded by --ready-timeout; when it never gets there, what /ready and its log say), its
  RssAnon from /proc/PID/status once ready (after a second); in `on-demand`, then one request
  to each of svc-0..svc-9 through its outbound listener (Host svc-N.bench.svc.cluster.local:8080):
  the first request's time per service (p50, max: the lookup's wait plus the refused
  connection), a second request's (no wait), the first less the second over the first and the
  last tenth of the services called (whether the wait grows with what the sidecar holds), the
  control plane's CPU per first request over the same tenths and its RSS before and after the
  calls, that no first request got the "*" host's 404, and RssAnon after the calls (the highest
  of samples every half second for --settle seconds from a second after them: long enough for a
  golden-metrics report, whose work faults in again pages the sidecar gave back once its
  configuration work settled);
  per --call-block calls (100), the first request's extra time over the second's and the
  sidecar's wait per lookup split into its own apply time (its main thread's time per xDS
  response, meshlet_xds_client_apply_seconds) and the rest (the control plane's answer and the
  way there and back); --xds-cache: the sidecar saves its configuration (--xds-cache-dir) as
  injected sidecars do;
- --changes endpoint changes (a pod of one of svc-0..svc-9 made not ready in its EndpointSlice,
  or ready again): bytes the sidecar read per change (/proc/PID/io rchar: with plaintext xDS
  and no traffic that is what the control plane pushed it), the control plane's CPU time per
  change (from the change until it and the sidecar are quiet again) and its RSS after the
  changes. CPU time is each thread's /proc/PID/task/TID/schedstat, in nanoseconds (utime and
  stime count 10 ms ticks), in ms with one decimal, until the work last moved it (the 0.3 s
  of quiet that follows is not counted); the median of the changes leaves out the few that
  met the control plane's periodic work (its idle CPU per second, over 2 s before the changes, is
  shown beside);
- a policy write: `meshctl apply` of one changed TrafficPolicy (median of 3: its time, the
  server's part from meshlet_cp_api_request_seconds, the control plane's CPU until it and the
  sidecar are quiet again), and, in the
  whole-mesh mode, of the whole mesh's HTTPRoutes and TrafficPolicies changed (one apply of all
  documents, bounded by --apply-timeout: past it, how many were written);
- endpoint-change propagation to --clients simulated sidecars (//tests/bench/xds_load, the
  sidecar's real XdsClient on delta streams, --no-validate: parsing only, one thread) besides the
  real one: per round an endpoint of svc-0 changes in the fake API server, and the round ends
  when every client applied svc-0's assignment carrying it; p50/p99 of change → all applied, p99 of change
  → one client applied, the control plane's CPU per round (median, from one round's change to the
  next's). Skipped when the real sidecar was
  never ready (the clients would not be either).
Every wait is bounded; a case that cannot finish says what failed and the run goes on.
One line per case, then a Markdown table of all of them (--json FILE: the figures as JSON).
--smoke: 10 services, all three modes, 20 clients, 2 rounds, failing unless every figure is present
and sane (not timed).
"""

import argparse
import json
import os
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import cp_api  # noqa: E402
from fake_kubernetes_api import FakeApiServer  # noqa: E402
from mesh_util import make_ca, make_server_cert  # noqa: E402
from ports import free_port  # noqa: E402

NAMESPACE = "bench"
PORT = 8080
TOKEN = "bench-token"
DEPENDENCIES = 10  # the scoped sidecar's declared dependencies: svc-0 .. svc-9
STORE_MAGIC = "meshlet-store-v1"  # control-plane/store/file_store.h


class CaseFailed(Exception):
    """A case that cannot go on; the message says what failed."""


def wait_until(predicate, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def proc_status(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, RssAnon), 0 when the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"^%s:\s+(\d+)" % field, f.read(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def cpu_ns(pid):
    """Nanoseconds `pid`'s threads have spent on a CPU: the first field of each
    /proc/PID/task/TID/schedstat (utime and stime in /proc/PID/stat count 10 ms clock ticks, too
    coarse for a change costing a few milliseconds). A thread that exits takes its time with it;
    the control plane's threads live as long as it does."""
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


# Below this much CPU per quiet window (settle) the control plane counts as idle: its periodic
# work runs tens of microseconds now and then (and a few milliseconds once a second, which a
# window holding it counts as work: the window starts again).
IDLE_CPU_NS = 200_000


def rchar(pid):
    with open("/proc/%d/io" % pid) as f:
        return int(re.search(r"^rchar:\s+(\d+)", f.read(), re.M).group(1))


def settle(samplers, quiet=0.3, timeout=15):
    """Waits until no sampler's value has moved for `quiet` seconds. Returns the values when that
    quiet time began (when the work last moved them), or None on timeout. A sampler is a
    function, or (function, tolerance): a move of at most `tolerance` since the quiet time began
    does not count (an idle process's CPU time still creeps)."""
    samplers = [s if isinstance(s, tuple) else (s, 0) for s in samplers]
    deadline = time.monotonic() + timeout
    start = [f() for f, _ in samplers]
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = [f() for f, _ in samplers]
        if any(abs(n - b) > tolerance for n, b, (_, tolerance) in zip(now, start, samplers)):
            start, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return start
    return None


def cp_quiet(cp):
    """A settle() sampler: the control plane's CPU time, idle below IDLE_CPU_NS a window."""
    return (lambda: cpu_ns(cp.proc.pid), IDLE_CPU_NS)


# The mesh: Kubernetes objects in the fake API server.

def service_name(s):
    return "svc-%d" % s


def pod_ip(s, i):
    return "127.%d.%d.%d" % (1 + s // 250, s % 250, 1 + i)


def pod(s, i, per_service):
    """A Pod as discovery reads it (metadata only): labels app and version."""
    name = "%s-%d" % (service_name(s), i)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": "uid-" + name,
                         "labels": {"app": service_name(s),
                                    "version": "v1" if i < per_service // 2 else "v2"}},
            "spec": {"serviceAccountName": service_name(s)},
            "status": {"phase": "Running", "podIP": pod_ip(s, i)}}


def endpoint_slice(s, per_service, not_ready=(), marker=None):
    """svc-s's EndpointSlice: its pods (those in `not_ready` not ready), plus with `marker` an
    address 10.255.X.Y without a Pod that marks xds_load's round X * 256 + Y."""
    endpoints = [{"addresses": [pod_ip(s, i)], "conditions": {"ready": i not in not_ready},
                  "targetRef": {"kind": "Pod", "namespace": NAMESPACE,
                                "name": "%s-%d" % (service_name(s), i)}}
                 for i in range(per_service)]
    if marker is not None:
        endpoints.append({"addresses": ["10.255.%d.%d" % (marker // 256, marker % 256)],
                          "conditions": {"ready": True}})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": service_name(s) + "-abcde", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": service_name(s)}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
            "endpoints": endpoints}


def fill_cluster(fake, services, per_service):
    for s in range(services):
        for i in range(per_service):
            fake.put("pods", pod(s, i, per_service), announce=False)
        fake.put("services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service_name(s), "namespace": NAMESPACE},
            "spec": {"clusterIP": "10.96.%d.%d" % (s // 250, s % 250 + 1),
                     "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
                     "selector": {"app": service_name(s)}}}, announce=False)
        fake.put("endpointslices", endpoint_slice(s, per_service), announce=False)


# The policy: YAML for meshctl, JSON for the store.

def http_route(s):
    name = service_name(s)
    return ("apiVersion: meshlet.io/v1\nkind: HTTPRoute\n"
            "metadata: {name: %s, namespace: %s}\nspec:\n  target: %s\n  rules:\n"
            "  - name: canary\n    matches:\n    - headers: [{name: x-canary, value: always}]\n"
            "    backends: [{service: %s, subset: {version: v2}}]\n"
            % (name, NAMESPACE, name, name))


def traffic_policy(s, attempts=2):
    name = service_name(s)
    return ("apiVersion: meshlet.io/v1\nkind: TrafficPolicy\n"
            "metadata: {name: %s, namespace: %s}\nspec:\n  target: %s\n"
            "  timeouts: {request: 2s, perTry: 500ms}\n  retries: {attempts: %d}\n"
            "  outlierDetection: {consecutive5xx: 5, baseEjectionTime: 30s}\n"
            % (name, NAMESPACE, name, attempts))


MESH_CONFIG = ("apiVersion: meshlet.io/v1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
               "spec: {scopeToDependencies: true}\n")
MESH_CONFIG_WHOLE_MESH = ("apiVersion: meshlet.io/v1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
                          "spec: {discovery: {mode: WholeMesh}}\n")
MESH_CONFIG_ON_DEMAND = ("apiVersion: meshlet.io/v1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
                         "spec: {discovery: {mode: OnDemand}}\n")


class ControlPlane:
    """The control-plane binary with its data in `tmp`/data, plaintext xDS, Kubernetes
    discovery from `fake` when given; every address on 127.0.0.1, ports from its log."""

    def __init__(self, binary, tmp, fake=None, ca_file=None, timeout=300):
        self.data = os.path.join(tmp, "data")
        self.log_path = os.path.join(tmp, "cp.log")
        args = [binary, "--data-dir", self.data, "--api-address", "127.0.0.1:0",
                "--xds-plaintext", "--xds-address", "127.0.0.1:0", "--webhook-address=off",
                "--otlp-address=", "--zipkin-address=", "--webhook-configuration="]
        if fake is not None:
            token = os.path.join(tmp, "kubernetes-token")
            with open(token, "w") as f:
                f.write(TOKEN)
            args += ["--kubernetes-api", fake.address, "--kubernetes-ca-file", ca_file,
                     "--kubernetes-token-file", token]
        else:
            args += ["--kubernetes-api="]
        started = time.monotonic()
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out)
        self.api = self.ads = None
        ready_text = "are mesh destinations" if fake is not None else "ca: issuing"

        def up():
            text = self.log()
            if self.proc.poll() is not None:
                raise CaseFailed("the control plane exited: " + text[-2000:])
            if self.api is None:
                m = re.search(r"API on (127\.0\.0\.1:\d+)", text)
                if m:
                    self.api = m.group(1)
                    cp_api.trust(self.api, self.ca_file())
            if self.ads is None:
                m = re.search(r"ADS on (127\.0\.0\.1:\d+)", text)
                self.ads = m.group(1) if m else None
            return self.api and self.ads and ready_text in text

        if not wait_until(up, timeout):
            self.stop()
            raise CaseFailed("the control plane did not publish within %d s: %s"
                             % (timeout, self.log()[-2000:]))
        self.start_seconds = time.monotonic() - started
        with open(os.path.join(self.data, "api-token")) as f:
            self.token = f.read().strip()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def ca_file(self):
        return cp_api.root_file(self.data)

    def stored_body(self, yaml_text, path, kind, namespace, name):
        """Writes `yaml_text` through the API (PUT `path`) and returns the body the store holds."""
        req = urllib.request.Request(
            cp_api.url(self.api, "/apis/meshlet.io/v1/" + path), method="PUT",
            data=yaml_text.encode(), headers={"Authorization": "Bearer " + self.token,
                                              "Content-Type": "application/yaml"})
        with cp_api.urlopen(req, timeout=10) as r:
            r.read()
        with open(os.path.join(self.data, "store", "resources", kind, namespace, name)) as f:
            return f.read().split("\n", 1)[1]

    def api_seconds(self, operation):
        """(sum of seconds, count) of meshlet_cp_api_request_seconds{operation}: the server's
        part of the API requests of that operation so far."""
        with cp_api.urlopen(cp_api.url(self.api, "/metrics"), timeout=10) as r:
            text = r.read().decode()
        figures = {}
        for suffix in ("sum", "count"):
            m = re.search(r'^meshlet_cp_api_request_seconds_%s\{operation="%s"\} (\S+)$'
                          % (suffix, operation), text, re.M)
            if m is None:
                raise CaseFailed("no meshlet_cp_api_request_seconds_%s{operation=%s} in /metrics"
                                 % (suffix, operation))
            figures[suffix] = float(m.group(1))
        return figures["sum"], figures["count"]

    def meshctl(self, meshctl, path, timeout):
        """(seconds, documents written, error text) of `meshctl apply -f path`."""
        started = time.monotonic()
        try:
            p = subprocess.Popen([meshctl, "apply", "-f", path, "--server", self.api,
                                  "--token-file", os.path.join(self.data, "api-token"),
                                  "--ca-file", self.ca_file()],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as e:
            return 0, 0, "meshctl: %s" % e
        try:
            out, err = p.communicate(timeout=timeout)
            error = "" if p.returncode == 0 else "meshctl apply exited %d: %s" % (
                p.returncode, err[-500:])
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            error = "not done after %d s" % timeout
        return time.monotonic() - started, len(out.splitlines()), error

    def stop(self):
        stop_process(self.proc)


def stop_process(proc, group=False):
    """SIGTERM, then SIGKILL after 10 s; waits for the exit. With `group`, the signals go to the
    process group `proc` leads (started with start_new_session), so that what it forked ends too."""
    def signal_(sig):
        try:
            if group:
                os.killpg(proc.pid, sig)
            elif proc.poll() is None:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass
    if proc.poll() is None or group:
        signal_(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            signal_(signal.SIGKILL)
            proc.wait()
        if group:
            # The leader is gone; what it left in the group (a wrapper's child) is ended too.
            signal_(signal.SIGKILL)


def store_templates(control_plane_bin):
    """Each kind's stored body for svc-0 (and the MeshConfig's), as a control plane stores them."""
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    cp = None
    try:
        cp = ControlPlane(control_plane_bin, tmp, timeout=30)
        ns = "namespaces/%s/" % NAMESPACE
        return {"HTTPRoute": cp.stored_body(http_route(0), ns + "httproutes/svc-0", "HTTPRoute",
                                            NAMESPACE, "svc-0"),
                "TrafficPolicy": cp.stored_body(traffic_policy(0), ns + "trafficpolicies/svc-0",
                                                "TrafficPolicy", NAMESPACE, "svc-0"),
                "MeshConfig": cp.stored_body(MESH_CONFIG, "meshconfigs/mesh", "MeshConfig",
                                             "_cluster", "mesh"),
                "MeshConfigWholeMesh": cp.stored_body(MESH_CONFIG_WHOLE_MESH, "meshconfigs/mesh",
                                                      "MeshConfig", "_cluster", "mesh"),
                "MeshConfigOnDemand": cp.stored_body(MESH_CONFIG_ON_DEMAND, "meshconfigs/mesh",
                                                     "MeshConfig", "_cluster", "mesh")}
    finally:
        if cp is not None:
            cp.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def seed_store(data, templates, services, mode):
    """Writes the mesh's policy into the file store in `data` (<data-dir>/store, as
    control-plane/store/file_store.h lays it out:
    one file per resource, a header line with its revision)."""
    revision = 0

    def put(kind, namespace, name, body):
        nonlocal revision
        revision += 1
        directory = os.path.join(data, "resources", kind, namespace)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "w") as f:
            f.write("%s %d %d\n%s" % (STORE_MAGIC, revision, revision, body))

    for s in range(services):
        for kind in ("HTTPRoute", "TrafficPolicy"):
            put(kind, NAMESPACE, service_name(s),
                templates[kind].replace('"svc-0"', '"%s"' % service_name(s)))
    if mode == "whole-mesh":
        put("MeshConfig", "_cluster", "mesh", templates["MeshConfigWholeMesh"])
    elif mode == "scoped":
        put("MeshConfig", "_cluster", "mesh", templates["MeshConfig"])
    elif mode == "on-demand":
        put("MeshConfig", "_cluster", "mesh", templates["MeshConfigOnDemand"])
    with open(os.path.join(data, "revision"), "w") as f:
        f.write("%d\n" % revision)


class ProbeSidecar:
    """One real sidecar registered as node `probe` in the bench namespace."""

    def __init__(self, binary, tmp, ads, workers, dependencies, wrapper="", xds_cache=False):
        self.admin = free_port()
        self.outbound = free_port()
        self.log_path = os.path.join(tmp, "sidecar.log")
        config = os.path.join(tmp, "sidecar.yaml")
        with open(config, "w") as f:
            f.write("{}\n")
        args = [binary, "--config", config, "--admin-address=127.0.0.1:%d" % self.admin,
                "--concurrency=%d" % workers, "--xds=" + ads, "--xds-plaintext=true",
                "--node-id=probe", "--node-namespace=" + NAMESPACE,
                "--node-address=127.0.0.1",
                "--node-label=meshlet.io/inbound-port=%d" % free_port(),
                "--node-label=meshlet.io/outbound-port=%d" % self.outbound]
        # A profiler's command line before the sidecar's (--sidecar-wrapper): the process
        # measured is then the wrapper's, so its memory figures are not the sidecar's.
        args = shlex.split(wrapper) + args
        if dependencies:
            args.append("--node-label=meshlet.io/dependencies=" + dependencies)
        if xds_cache:
            # As injected sidecars run: every applied response saved (--xds-cache-dir).
            args.append("--xds-cache-dir=" + os.path.join(tmp, "xds-cache"))
        self.started = time.monotonic()
        with open(self.log_path, "w") as out:
            # Its own process group: a wrapper (--sidecar-wrapper) may fork the sidecar as its
            # child, and stop() must end both.
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out,
                                         start_new_session=True)

    def get(self, path, timeout=5):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin, path),
                                        timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except (OSError, urllib.error.URLError) as e:
            return 0, str(e)

    def wait_ready(self, timeout):
        """Seconds from start to /ready 200, or None (then .why says what /ready and the log
        said)."""
        def ready():
            if self.proc.poll() is not None:
                return True
            return self.get("/ready")[0] == 200
        wait_until(ready, timeout, interval=0.01)
        if self.proc.poll() is None and self.get("/ready")[0] == 200:
            return time.monotonic() - self.started
        status, body = self.get("/ready")
        with open(self.log_path, errors="replace") as f:
            lines = [l for l in f.read().splitlines() if " E " in l or "error" in l.lower()]
        self.why = "not ready after %d s (%s): /ready %d %s; log: %s" % (
            timeout, "exited %s" % self.proc.returncode if self.proc.poll() is not None
            else "running", status, body.strip()[:200], " | ".join(lines[-2:])[:400])
        return None

    def configured(self):
        """(outbound clusters, routes with a header match) in its /config_dump: what the
        seeded policy gave it; (None, None) when the dump does not come within a minute."""
        status, body = self.get("/config_dump", timeout=60)
        if status != 200:
            return None, None
        resources = json.loads(body).get("resources", {})
        clusters = sum(1 for c in resources.get("clusters", [])
                       if c.get("name", "").startswith("outbound|"))
        # A route table's own hosts and those of its ServiceRoutes (one per Service port).
        vhosts = [vhost for table in resources.get("routes", [])
                  for vhost in table.get("virtual_hosts", [])]
        vhosts += [sr["virtual_host"] for sr in resources.get("service_routes", [])
                   if "virtual_host" in sr]
        header_routes = sum(1 for vhost in vhosts for route in vhost.get("routes", [])
                            if route.get("match", {}).get("headers"))
        return clusters, header_routes

    def call(self, s):
        """(HTTP status, seconds) of one GET to svc-s through the outbound listener (status 0:
        no HTTP answer)."""
        request = urllib.request.Request(
            "http://127.0.0.1:%d/" % self.outbound,
            headers={"Host": "%s.%s.svc.cluster.local:%d" % (service_name(s), NAMESPACE, PORT)})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            e.read()
            status = e.code
        except (OSError, urllib.error.URLError):
            status = 0
        return status, time.monotonic() - started

    def stop(self):
        stop_process(self.proc, group=True)


def percentile(values, q):
    """The ceil(q * n)-th smallest of `values` (q in (0, 1])."""
    ordered = sorted(values)
    return ordered[max(0, -(-int(q * 1000) * len(ordered) // 1000) - 1)]


def histogram(text, name, labels):
    """(cumulative counts by upper bound, sum, count) of Prometheus histogram `name` with the
    label text `labels` (e.g. 'kind="host"') in exposition `text`; None when absent."""
    buckets = []
    for m in re.finditer(r'^%s_bucket\{%s,le="([^"]+)"\} (\S+)$' % (name, labels), text, re.M):
        buckets.append((float(m.group(1)), float(m.group(2))))
    total = re.search(r'^%s_sum\{%s\} (\S+)$' % (name, labels), text, re.M)
    count = re.search(r'^%s_count\{%s\} (\S+)$' % (name, labels), text, re.M)
    if not buckets or total is None or count is None:
        return None
    return buckets, float(total.group(1)), float(count.group(1))


def bucket_quantile(buckets, count, q):
    """The upper bound of the bucket holding the q-quantile (Prometheus buckets: at most that)."""
    for bound, cumulative in buckets:
        if cumulative >= q * count:
            return bound
    return float("inf")


def histogram_totals(text, name):
    """(sum, count) of every series of Prometheus histogram `name` in exposition `text`, whatever
    their labels; (0, 0) when absent."""
    total = sum(float(v) for v in re.findall(r'^%s_sum(?:\{[^}]*\})? (\S+)$' % name, text, re.M))
    count = sum(float(v) for v in re.findall(r'^%s_count(?:\{[^}]*\})? (\S+)$' % name, text,
                                             re.M))
    return total, count


def lookup_costs(sidecar):
    """(wait sum, wait count, apply sum, apply count, CPU seconds) from the sidecar's stats: its
    waits for host lookups (meshlet_on_demand_wait_seconds{kind="host"}) and the main thread's
    time handling xDS responses (meshlet_xds_client_apply_seconds, every type); and the process's
    CPU time, read before the stats; None when the stats do not come."""
    cpu = cpu_ns(sidecar.proc.pid) / 1e9
    status, text = sidecar.get("/stats/prometheus", timeout=30)
    if status != 200:
        return None
    waits = histogram(text, "meshlet_on_demand_wait_seconds", 'kind="host"')
    apply_sum, apply_count = histogram_totals(text, "meshlet_xds_client_apply_seconds")
    wait_sum, wait_count = (waits[1], waits[2]) if waits is not None else (0.0, 0.0)
    return wait_sum, wait_count, apply_sum, apply_count, cpu


def on_demand_calls(sidecar, calls, block=100, cp=None):
    """One request to each of svc-0..svc-(calls-1), twice: figures of the first (discovering) and
    the second requests, and of the sidecar's own wait for the lookups
    (meshlet_on_demand_wait_seconds{kind="host"}: the wait alone, without the refused connection
    and the retry both requests meet). Per `block` first calls (the sidecar's stats read between
    blocks): the first request's extra time over the second's (p50), the sidecar's mean wait per
    lookup, the part of it the sidecar spent applying xDS responses (its main thread's time per
    response, meshlet_xds_client_apply_seconds, summed over the block and divided by its
    lookups) and the rest: the control plane's answer and the way there and back; and the
    sidecar's CPU time per lookup (all its threads: a figure the machine's load stretches less
    than the wait). With `cp`: the control plane's CPU per first request over the first and the
    last tenth of the calls (what a lookup costs it as the sidecar holds more keys) and its RSS
    before and after the calls."""
    first, second, statuses, cp_cpu = [], [], [], []
    cp_rss_before = proc_status(cp.proc.pid, "VmRSS") if cp is not None else None
    marks = [lookup_costs(sidecar)]
    for s in range(calls):
        cpu_before = cpu_ns(cp.proc.pid) / 1e9 if cp is not None else 0
        status, seconds = sidecar.call(s)
        if cp is not None:
            cp_cpu.append(cpu_ns(cp.proc.pid) / 1e9 - cpu_before)
        statuses.append(status)
        first.append(seconds)
        if (s + 1) % block == 0 or s + 1 == calls:
            marks.append(lookup_costs(sidecar))
    for s in range(calls):
        second.append(sidecar.call(s)[1])
    extra = [f - s for f, s in zip(first, second)]
    tenth = max(1, calls // 10)
    result = {"calls": calls,
              "first_p50_ms": statistics.median(first) * 1000,
              "first_p99_ms": percentile(first, 0.99) * 1000, "first_max_ms": max(first) * 1000,
              "second_p50_ms": statistics.median(second) * 1000,
              "second_p99_ms": percentile(second, 0.99) * 1000,
              # First minus second request to the same service, over the first and the last
              # tenth of the calls: whether the wait grows with what the sidecar holds.
              "extra_p50_first_tenth_ms": statistics.median(extra[:tenth]) * 1000,
              "extra_p50_last_tenth_ms": statistics.median(extra[-tenth:]) * 1000,
              "extra_mean_first_tenth_ms": statistics.mean(extra[:tenth]) * 1000,
              "extra_mean_last_tenth_ms": statistics.mean(extra[-tenth:]) * 1000,
              "first_statuses": {str(k): statuses.count(k) for k in sorted(set(statuses))},
              # The "*" host's 404 (or no answer) means the host was not discovered.
              "undiscovered": sum(1 for st in statuses if st in (0, 404))}
    if cp is not None:
        result.update({
            "cp_cpu_per_first_call_first_tenth_ms": statistics.mean(cp_cpu[:tenth]) * 1000,
            "cp_cpu_per_first_call_last_tenth_ms": statistics.mean(cp_cpu[-tenth:]) * 1000,
            "cp_rss_before_calls_mib": cp_rss_before / 1024,
            "cp_rss_after_calls_mib": proc_status(cp.proc.pid, "VmRSS") / 1024})
    blocks = []
    for b in range(len(marks) - 1):
        start, end = b * block, min(calls, (b + 1) * block)
        entry = {"calls": "%d-%d" % (start, end - 1),
                 "extra_p50_ms": statistics.median(extra[start:end]) * 1000}
        before, after = marks[b], marks[b + 1]
        if before is not None and after is not None and after[1] > before[1]:
            lookups = after[1] - before[1]
            wait = (after[0] - before[0]) / lookups
            applying = (after[2] - before[2]) / lookups
            entry.update({"wait_mean_ms": wait * 1000,
                          "sidecar_cpu_ms_per_lookup": (after[4] - before[4]) / lookups * 1000,
                          "sidecar_apply_ms_per_lookup": applying * 1000,
                          "responses_per_lookup": (after[3] - before[3]) / lookups,
                          "rest_ms_per_lookup": (wait - applying) * 1000})
        blocks.append(entry)
    result["per_block"] = blocks
    status, text = sidecar.get("/stats/prometheus", timeout=30)
    waits = histogram(text, "meshlet_on_demand_wait_seconds", 'kind="host"') \
        if status == 200 else None
    if waits is not None and waits[2] > 0:
        buckets, total, count = waits
        result.update({"waits": int(count), "wait_mean_ms": total / count * 1000,
                       "wait_p50_le_ms": bucket_quantile(buckets, count, 0.5) * 1000,
                       "wait_p99_le_ms": bucket_quantile(buckets, count, 0.99) * 1000})
    return result


def print_blocks(calls):
    """The per-block figures of on_demand_calls, one line each."""
    for b in calls.get("per_block", []):
        line = "  calls %s: first - second p50 %.1f ms" % (b["calls"], b["extra_p50_ms"])
        if "sidecar_cpu_ms_per_lookup" in b:
            line += "; sidecar CPU %.1f ms per lookup" % b["sidecar_cpu_ms_per_lookup"]
        if "wait_mean_ms" in b:
            line += ("; sidecar wait mean %.1f ms = applying %.1f ms (%.1f responses) + "
                     "control plane and transit %.1f ms" % (
                         b["wait_mean_ms"], b["sidecar_apply_ms_per_lookup"],
                         b["responses_per_lookup"], b["rest_ms_per_lookup"]))
        print(line, flush=True)


def endpoint_changes(fake, cp, sidecar, count, per_service, ready):
    """Bytes pushed to the sidecar and control-plane CPU milliseconds per endpoint change
    (lists)."""
    not_ready = {}
    pushed, cpu = [], []
    for k in range(count):
        s = k % DEPENDENCIES
        not_ready[s] = () if not_ready.get(s) else (0,)
        before_bytes = rchar(sidecar.proc.pid) if ready else 0
        before_cpu = cpu_ns(cp.proc.pid)
        fake.put("endpointslices", endpoint_slice(s, per_service, not_ready=not_ready[s]))
        if ready:
            # Something arrives (a change of a dependency reaches every mode's sidecar) ...
            wait_until(lambda: rchar(sidecar.proc.pid) > before_bytes, 10)
        # ... then both are quiet again.
        samplers = [cp_quiet(cp)]
        if ready:
            samplers.append(lambda: rchar(sidecar.proc.pid))
        quiet = settle(samplers)
        if quiet is None:
            raise CaseFailed("change %d: the control plane or the sidecar still busy after 15 s"
                             % k)
        cpu.append((quiet[0] - before_cpu) / 1e6)
        if ready:
            pushed.append(rchar(sidecar.proc.pid) - before_bytes)
    return pushed, cpu


def idle_cpu(cp, seconds=2.0):
    """The control plane's CPU milliseconds per second while nothing changes (its periodic work), shown
    beside the CPU figures: a change that meets them counts them too."""
    before = cpu_ns(cp.proc.pid)
    time.sleep(seconds)
    return (cpu_ns(cp.proc.pid) - before) / 1e6 / seconds


def propagation(args, fake, cp, declares, work):
    """Runs xds_load with --clients clients, driving its rounds by changing svc-0's endpoints;
    returns its figures (dict), or raises CaseFailed with its error."""
    cmd = [args.xds_load, "--server-pid", str(cp.proc.pid), "--address", cp.ads,
           "--driver-stdio", "--endpoint-marker", "outbound|%d||svc-0.%s" % (PORT, NAMESPACE),
           "--node-namespace", NAMESPACE, "--node-service", "load", "--clients",
           str(args.clients), "--rounds", str(args.rounds), "--no-validate",
           "--connect-timeout", str(args.connect_timeout), "--delta"]
    if declares:
        cmd += ["--dependencies", dependency_list()]
    stderr_path = os.path.join(work, "xds_load.stderr")
    deadline = time.monotonic() + args.connect_timeout + 70 * (args.rounds + 1) + 30
    lines = []
    # The control plane's CPU time at each round's change and when the last round ended (the
    # first line xds_load prints after its rounds): per round, from its change until the next.
    round_cpu = []
    with open(stderr_path, "w") as err:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                             text=True, bufsize=1)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CaseFailed("xds_load not done in time")
            readable, _, _ = select.select([p.stdout], [], [], min(remaining, 1))
            if not readable:
                continue
            line = p.stdout.readline()
            if not line:
                break
            m = re.match(r"change (\d+)$", line.strip())
            if m or len(round_cpu) == args.rounds:
                round_cpu.append(cpu_ns(cp.proc.pid))
            if m:
                fake.put("endpointslices", endpoint_slice(0, args.endpoints_per_service,
                                                          marker=int(m.group(1))))
                p.stdin.write("ok\n")
                p.stdin.flush()
            else:
                lines.append(line.rstrip())
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = "\n".join(lines)
    if p.returncode != 0:
        with open(stderr_path) as f:
            text = f.read().strip()
        # Its first line says what failed; a client's status names its last stream error.
        m = re.search(r'"last_stream_error":"([^"]*)"', text)
        raise CaseFailed("xds_load: %s%s" % (text.splitlines()[0][:300] if text else "exited %d"
                                             % p.returncode,
                                             "; a client's last stream error: " + m.group(1)
                                             if m else ""))

    def number(pattern):
        m = re.search(pattern, text)
        if not m:
            raise CaseFailed("xds_load printed no %r: %s" % (pattern, text[-400:]))
        return float(m.group(1))

    return {"clients": args.clients, "rounds": args.rounds,
            "connect_s": number(r"initial connect\+configure all: ([\d.]+) s"),
            "all_p50_s": number(r"all applied\+ACKed: p50 ([\d.]+) s"),
            "all_p99_s": number(r"all applied\+ACKed: p50 [\d.]+ s, p99 ([\d.]+) s"),
            "one_p99_s": number(r"one client applied: p50 [\d.]+ s, p99 ([\d.]+) s"),
            "cp_cpu_per_round_ms": statistics.median(
                (b - a) / 1e6 for a, b in zip(round_cpu, round_cpu[1:])),
            "cp_rss_mib": number(r"control plane: RSS ([\d.]+) MiB")}


def dependency_list():
    return ",".join("%s.%s" % (service_name(s), NAMESPACE) for s in range(DEPENDENCIES))


def dump_sidecar(sidecar, directory, services):
    """What the sidecar holds after its calls, for finding where its memory goes: its
    /proc/PID/smaps and status, and its admin /stats and /clusters, as DIR/SERVICES-NAME."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, "%d-" % services)
    for name in ("smaps", "status"):
        try:
            shutil.copyfile("/proc/%d/%s" % (sidecar.proc.pid, name), base + name)
        except OSError:
            pass
    for path, name in (("/stats", "stats"), ("/clusters", "clusters")):
        status, body = sidecar.get(path, timeout=60)
        with open(base + name, "w") as f:
            f.write(body)


def run_case(args, templates, services, mode):
    """One mesh size in one mode: a dict of figures, with "failed" set to what failed if the
    case could not finish."""
    scoped = mode == "scoped"
    on_demand = mode == "on-demand"
    result = {"services": services, "mode": mode,
              "endpoints": services * args.endpoints_per_service}
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    fake = cp = sidecar = None
    try:
        ca = make_ca(tmp, "cluster-ca")
        fake = FakeApiServer(make_server_cert(tmp, "apiserver", ca), TOKEN)
        fill_cluster(fake, services, args.endpoints_per_service)
        seed_store(os.path.join(tmp, "data", "store"), templates, services, mode)
        cp = ControlPlane(args.control_plane, tmp, fake, ca[0], timeout=args.start_timeout)
        result["cp_start_s"] = cp.start_seconds
        result["cp_rss_start_mib"] = proc_status(cp.proc.pid, "VmRSS") / 1024
        sidecar = ProbeSidecar(args.sidecar, tmp, cp.ads, args.sidecar_workers,
                               dependency_list() if scoped else "", args.sidecar_wrapper,
                               args.xds_cache)
        ready = sidecar.wait_ready(args.ready_timeout)
        if ready is None:
            result["failed"] = "sidecar " + sidecar.why
        else:
            result["ready_s"] = ready
            time.sleep(1)
            result["rss_anon_kib"] = proc_status(sidecar.proc.pid, "RssAnon")
            if on_demand:
                result["calls"] = on_demand_calls(sidecar, min(args.calls, services),
                                                  max(1, args.call_block), cp)
                time.sleep(1)
                samples = [proc_status(sidecar.proc.pid, "RssAnon")]
                settled = time.monotonic() + args.settle
                while time.monotonic() < settled:
                    time.sleep(0.5)
                    samples.append(proc_status(sidecar.proc.pid, "RssAnon"))
                result["rss_anon_1s_after_calls_kib"] = samples[0]
                result["rss_anon_after_calls_kib"] = max(samples)
                if args.dump_after_calls:
                    dump_sidecar(sidecar, args.dump_after_calls, services)
            result["clusters"], result["header_routes"] = sidecar.configured()
        # The control plane's side of an endpoint change is measured either way (a sidecar that
        # is not ready may still be connected, and is pushed to).
        result["cp_idle_cpu_ms_per_s"] = idle_cpu(cp)
        pushed, cpu = endpoint_changes(fake, cp, sidecar, args.changes,
                                       args.endpoints_per_service, ready is not None)
        if pushed:
            result["bytes_per_change"] = statistics.median(pushed)
        result["cp_cpu_per_change_ms"] = statistics.median(cpu)
        result["cp_rss_after_changes_mib"] = proc_status(cp.proc.pid, "VmRSS") / 1024
        # One policy write: a TrafficPolicy that changes each time; the server's part of it from
        # its request-duration histogram (one PUT per apply), and the control plane's CPU from the
        # apply until it and the sidecar are quiet again (the write and its push).
        one = os.path.join(tmp, "one.yaml")
        times, server, cpu = [], [], []
        for attempt in range(3):
            with open(one, "w") as f:
                f.write(traffic_policy(0, attempts=3 + attempt))
            before = cp.api_seconds("put")
            before_cpu = cpu_ns(cp.proc.pid)
            seconds, _, error = cp.meshctl(args.meshctl, one, 60)
            if error:
                result["apply_one_failed"] = error
                break
            samplers = [cp_quiet(cp)]
            if ready is not None:
                samplers.append(lambda: rchar(sidecar.proc.pid))
            quiet = settle(samplers)
            if quiet is not None:
                cpu.append((quiet[0] - before_cpu) / 1e6)
            after = cp.api_seconds("put")
            times.append(seconds)
            if after[1] == before[1] + 1:
                server.append(after[0] - before[0])
        if times:
            result["apply_one_s"] = statistics.median(times)
        if server:
            result["apply_one_server_s"] = statistics.median(server)
        if cpu:
            result["apply_one_cp_cpu_ms"] = statistics.median(cpu)
        if ready is not None and args.clients > 0:
            try:
                result["propagation"] = propagation(args, fake, cp, scoped or on_demand, tmp)
            except CaseFailed as e:
                result["propagation_failed"] = str(e)
        if mode == "whole-mesh" and args.apply_timeout > 0:
            whole = os.path.join(tmp, "whole.yaml")
            with open(whole, "w") as f:
                f.write("---\n".join(doc for s in range(services)
                                     for doc in (http_route(s), traffic_policy(s, attempts=4))))
            seconds, written, error = cp.meshctl(args.meshctl, whole, args.apply_timeout)
            result["apply_whole"] = {"seconds": seconds, "written": written,
                                     "documents": 2 * services, "error": error}
    except CaseFailed as e:
        result["failed"] = (result.get("failed", "") + "; " if "failed" in result else "") + str(e)
    finally:
        if sidecar is not None:
            sidecar.stop()
        if cp is not None:
            cp.stop()
        if fake is not None:
            fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def cell(value, fmt):
    return "—" if value is None else fmt % value


def row(r):
    p = r.get("propagation") or {}
    whole = r.get("apply_whole")
    if whole is None:
        whole_text = "—"
    elif whole["error"]:
        whole_text = "%s (%d of %d written)" % (whole["error"], whole["written"],
                                                 whole["documents"])
    else:
        whole_text = "%.1f s (%d documents)" % (whole["seconds"], whole["documents"])
    rss = r.get("rss_anon_kib")
    calls = r.get("calls")
    after = r.get("rss_anon_after_calls_kib")
    return [
        "{:,}".format(r["services"]).replace(",", " "), r["mode"],
        cell(rss / 1024 if rss is not None else None, "%.1f MB"),
        cell(r.get("ready_s"), "%.2f s"),
        "%.1f MB; first call p50 %.1f ms, p99 %.1f ms (second %.1f ms, %.1f ms); wait mean "
        "%.1f ms, p99 ≤ %g ms; first less second, first/last tenth %.1f/%.1f ms; CP CPU per "
        "first call %.1f/%.1f ms, CP RSS %.0f → %.0f MiB" % (
            after / 1024, calls["first_p50_ms"], calls["first_p99_ms"], calls["second_p50_ms"],
            calls["second_p99_ms"], calls.get("wait_mean_ms", float("nan")),
            calls.get("wait_p99_le_ms", float("nan")), calls["extra_p50_first_tenth_ms"],
            calls["extra_p50_last_tenth_ms"],
            calls.get("cp_cpu_per_first_call_first_tenth_ms", float("nan")),
            calls.get("cp_cpu_per_first_call_last_tenth_ms", float("nan")),
            calls.get("cp_rss_before_calls_mib", float("nan")),
            calls.get("cp_rss_after_calls_mib", float("nan")))
        if calls and after is not None else "—",
        cell(r["bytes_per_change"] / 1024 if "bytes_per_change" in r else None, "%.1f KB"),
        cell(r.get("cp_cpu_per_change_ms"), "%.1f ms") +
        cell(r.get("cp_idle_cpu_ms_per_s"), " (idle %.2f ms/s)"),
        cell(r.get("cp_rss_after_changes_mib"), "%.0f MiB"),
        cell(r["apply_one_s"] * 1000 if "apply_one_s" in r else None, "%.0f ms") +
        cell(r["apply_one_server_s"] * 1000 if "apply_one_server_s" in r else None,
             " (server %.1f ms") + cell(r.get("apply_one_cp_cpu_ms"), ", CP CPU %.1f ms)"),
        whole_text,
        cell(p.get("all_p99_s"), "%.2f s") if p else r.get("propagation_failed", "—"),
        cell(p.get("cp_cpu_per_round_ms"), "%.1f ms") if p else "—",
        r.get("failed", ""),
    ]


HEADER = ["services", "mode", "sidecar RssAnon", "ready",
          "after calling %(calls)s services (on-demand)", "bytes per endpoint change",
          "CP CPU per change (idle)", "CP RSS", "apply one (server, CP CPU)", "apply whole mesh",
          "change → %s applied, p99", "CP CPU per round (%s streams)", "failed"]


def check_smoke(results):
    """--smoke: every figure present and sane."""
    problems = []
    for r in results:
        name = "%d services, %s" % (r["services"], r["mode"])
        reached = r["services"] if r["mode"] == "whole-mesh" else min(DEPENDENCIES, r["services"])
        if "failed" in r:
            problems.append("%s: %s" % (name, r["failed"]))
            continue
        checks = [
            ("ready", 0 < r.get("ready_s", -1) < 30),
            ("RssAnon", 100 < r.get("rss_anon_kib", 0) < 512 * 1024),
            ("bytes per change", 0 < r.get("bytes_per_change", 0) < 1024 * 1024),
            # Nanosecond CPU time: a change costs more than nothing, and less than a second in a
            # mesh of 10 services; an idle control plane spends a few ms a second.
            ("CP CPU per change", 0 < r.get("cp_cpu_per_change_ms", 0) < 1000),
            ("CP idle CPU", 0 <= r.get("cp_idle_cpu_ms_per_s", -1) < 50),
            ("apply one, CP CPU", 0 < r.get("apply_one_cp_cpu_ms", 0) < 5000),
            ("CP RSS", 1 < r.get("cp_rss_after_changes_mib", 0) < 4096),
            ("apply one", 0 < r.get("apply_one_s", -1) < 30),
            ("apply one, server", 0 < r.get("apply_one_server_s", -1) <= r["apply_one_s"]),
            # Two clusters of every service it reaches, and each service's header match.
            ("clusters", r.get("clusters") == 2 * reached),
            ("header-match routes", r.get("header_routes", 0) >= reached),
            ("propagation", "propagation" in r and
             0 < r["propagation"]["all_p99_s"] < 30 and
             r["propagation"]["one_p99_s"] <= r["propagation"]["all_p99_s"] and
             0 < r["propagation"]["cp_cpu_per_round_ms"] < 5000),
        ]
        if r["mode"] == "on-demand":
            calls = r.get("calls") or {}
            checks.append(("on-demand calls", calls.get("undiscovered") == 0 and
                           0 < calls.get("first_max_ms", 0) < 5000))
            checks.append(("on-demand waits", calls.get("waits", 0) >= calls.get("calls", 1)))
            blocks = calls.get("per_block") or [{}]
            checks.append(("on-demand apply time", all(
                b.get("responses_per_lookup", 0) > 0 and
                b.get("sidecar_apply_ms_per_lookup", -1) >= 0 for b in blocks)))
            checks.append(("RssAnon after calls", r.get("rss_anon_after_calls_kib", 0) > 100))
        if r["mode"] == "whole-mesh":
            whole = r.get("apply_whole") or {}
            checks.append(("apply whole mesh", not whole.get("error", "missing") and
                           whole.get("written") == whole.get("documents")))
        problems += ["%s: %s missing or not sane: %s" % (name, what, json.dumps(r))
                     for what, ok in checks if not ok]
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--control-plane", required=True)
    p.add_argument("--sidecar", required=True)
    p.add_argument("--meshctl", required=True)
    p.add_argument("--xds-load", required=True)
    p.add_argument("--services", default="100,1000,5000",
                   help="comma-separated mesh sizes (default 100,1000,5000)")
    p.add_argument("--modes", default="whole-mesh,scoped,on-demand")
    p.add_argument("--endpoints-per-service", type=int, default=10)
    p.add_argument("--sidecar-workers", type=int, default=2)
    p.add_argument("--changes", type=int, default=10, help="endpoint changes measured")
    p.add_argument("--clients", type=int, default=1000,
                   help="simulated sidecars for propagation (0: skip)")
    p.add_argument("--rounds", type=int, default=5, help="propagation rounds")
    p.add_argument("--connect-timeout", type=int, default=180,
                   help="seconds all clients may take to get their first configuration")
    p.add_argument("--start-timeout", type=int, default=300)
    p.add_argument("--ready-timeout", type=int, default=120)
    p.add_argument("--apply-timeout", type=int, default=300,
                   help="seconds the whole-mesh apply may take (0: skip it)")
    p.add_argument("--calls", type=int, default=DEPENDENCIES,
                   help="on-demand mode: distinct services the real sidecar calls once ready "
                        "(default 10; at most the mesh's size)")
    p.add_argument("--settle", type=float, default=12,
                   help="on-demand mode: seconds RssAnon is sampled after the calls, its highest "
                        "sample reported (default 12: past one 10 s golden-metrics report)")
    p.add_argument("--call-block", type=int, default=100,
                   help="on-demand mode: the calls' figures are also given per this many calls "
                        "(default 100)")
    p.add_argument("--xds-cache", action="store_true",
                   help="the real sidecar saves its configuration (--xds-cache-dir), as injected "
                        "sidecars do")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--sidecar-wrapper", default="",
                   help="a command line the real sidecar runs under (e.g. 'heaptrack -o FILE'); "
                        "its memory figures are then the wrapper's")
    p.add_argument("--dump-after-calls", metavar="DIR",
                   help="on-demand mode: write the sidecar's smaps, status, /stats and /clusters "
                        "after its calls into DIR")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    # Stopped from outside: the cases' cleanup (processes, temporary directories) still runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("mesh_scale: terminated"))
    if args.smoke:
        args.services, args.modes = "10", "whole-mesh,scoped,on-demand"
        args.changes, args.clients, args.rounds = 3, 20, 2
        args.connect_timeout, args.ready_timeout, args.apply_timeout = 20, 20, 30
        args.settle = 1
    sizes = [int(x) for x in args.services.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in ("whole-mesh", "scoped", "on-demand"):
            p.error("--modes: %r is not whole-mesh, scoped or on-demand" % m)
    print("mesh_scale: %s; sidecar %d workers; %d endpoints per service; load average %s"
          % (args.sidecar, args.sidecar_workers, args.endpoints_per_service,
             open("/proc/loadavg").read().split()[0]), flush=True)
    templates = store_templates(args.control_plane)
    results = []
    for services in sizes:
        for mode in modes:
            r = run_case(args, templates, services, mode)
            results.append(r)
            print(json.dumps(r), flush=True)
            print_blocks(r.get("calls") or {})
    header = [h % {"calls": args.calls} if "%(calls)s" in h
              else h % ("{:,}".format(args.clients).replace(",", " ")) if "%s" in h else h
              for h in HEADER]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        print("| " + " | ".join(row(r)) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.smoke:
        problems = check_smoke(results)
        if problems:
            raise SystemExit("smoke:\n" + "\n".join(problems))
        print("smoke: every figure present and sane")


if __name__ == "__main__":
    main()
