"""Runs the meshlet demo mesh on 127.0.0.1 (what `./dev demo` calls after building).

    demo.py start --bin-dir DIR [--state-dir DIR] [--port-base N] [--traffic-seconds S]
                  [--routes meshlet|gateway-api]
    demo.py stop [--state-dir DIR]
    demo.py traffic [--state-dir DIR] [--seconds S]

start: the control plane, four sample workloads (frontend -> reviews v1 | v2 -> ratings), each
behind its own sidecar, a meshctl context, the policies of examples/policies applied (with
--routes gateway-api, its routes as the Gateway API HTTPRoutes of examples/gateway-api), a few
seconds of traffic and its summary. Everything it makes lives in the state directory: copies of
the binaries, logs, pid files, the control plane's data, the sidecars' xDS caches. The processes
keep running when it returns. A demo already running in the same state directory is stopped first.

stop: ends every process recorded in the state directory's pid files and removes the directory.

Defaults come from the environment: MESHLET_DEMO_DIR (.demo in the checkout),
MESHLET_DEMO_PORT_BASE (17000: the demo uses BASE+12, BASE+14 and BASE+80..BASE+113),
MESHLET_DEMO_TRAFFIC_SECONDS (3), MESHLET_DEMO_ROUTES (meshlet).
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))
POLICIES = os.path.join(CHECKOUT, "examples", "policies")
GATEWAY_ROUTES = os.path.join(CHECKOUT, "examples", "gateway-api")
# What `--routes` applies: the example policies as they are (meshlet's own HTTPRoute kind), or
# their Services and TrafficPolicy with the routes written as Gateway API HTTPRoutes.
ROUTES = {
    "meshlet": [POLICIES],
    "gateway-api": [os.path.join(POLICIES, "00-services.yaml"),
                    os.path.join(POLICIES, "10-reviews-retries.yaml"), GATEWAY_ROUTES],
}
MARKER = ".meshlet-demo"  # only a directory holding this file is ever removed

# reviews-v1 answers 503 to 3 requests in a row of every 20: fewer than the 4 tries the reviews
# TrafficPolicy allows, so the caller's retries hide every one of them.
FAIL_EVERY, FAIL_BURST = 20, 3
# (node id, service, version, upstream the app calls, app flags); Service ports as in
# examples/policies/00-services.yaml.
CONTROL_PLANE_ID = "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane"
WORKLOADS = [
    ("frontend-0", "frontend", "v1", "reviews:9080", []),
    # The frontend's sidecar retries these under TrafficPolicy reviews; reviews-v1's own sidecar
    # (inbound) retries only what never reached its app, so attempts do not multiply.
    ("reviews-v1-0", "reviews", "v1", "ratings:9080",
     ["--fail-every", str(FAIL_EVERY), "--fail-burst", str(FAIL_BURST)]),
    ("reviews-v2-0", "reviews", "v2", "ratings:9080", []),
    ("ratings-0", "ratings", "v1", None, ["--slow-ms", "1000"]),
]


def log(msg):
    print("\033[1m==> %s\033[0m" % msg, file=sys.stderr, flush=True)


class DemoError(Exception):
    pass


def ports(base):
    """Every port the demo listens on, by name."""
    p = {"xds": base + 12, "api": base + 14, "otlp": base + 16}
    for i, (node, *_rest) in enumerate(WORKLOADS):
        first = base + 80 + 10 * i
        p[node] = {"app": first, "inbound": first + 1, "outbound": first + 2, "admin": first + 3}
    return p


def all_ports(p):
    return [p["xds"], p["api"], p["otlp"]] + [v for node, *_ in WORKLOADS
                                              for v in p[node].values()]


def http_get(url, headers=None, token=None, timeout=5, ca_file=None):
    """(status, body, headers); an https:// URL is verified with the PEM roots of `ca_file`
    (the control plane's API: its certificate names the control plane, not 127.0.0.1)."""
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, headers=headers)
    context = None
    if ca_file:
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:  # the control plane has not written it yet
            return 0, str(e), {}
        context.check_hostname = False
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers
    except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
        return 0, str(e), {}


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise DemoError("timed out after %.0f s waiting for %s" % (timeout, what))


class State:
    """The state directory's layout."""

    def __init__(self, path):
        self.dir = os.path.abspath(path)
        self.run = os.path.join(self.dir, "run")
        self.logs = os.path.join(self.dir, "logs")
        self.bin = os.path.join(self.dir, "bin")
        self.cp_data = os.path.join(self.dir, "control-plane")
        self.xds_cache = os.path.join(self.dir, "xds-cache")
        self.context = os.path.join(self.dir, "meshctl.yaml")

    def info(self):
        with open(os.path.join(self.dir, "demo.json")) as f:
            return json.load(f)


# ---- stop -------------------------------------------------------------------------------------

def ours(pid, state):
    """True when pid is alive and was started by this demo (its command line names the state
    directory), so a recycled pid is never signalled."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return state.dir.encode() in f.read()
    except OSError:
        return False


def stop(state, quiet=False):
    if not os.path.isdir(state.dir):
        if not quiet:
            log("no demo running (%s does not exist)" % state.dir)
        return
    if not os.path.exists(os.path.join(state.dir, MARKER)):
        raise DemoError("%s exists but was not made by the demo (no %s file); not touching it"
                        % (state.dir, MARKER))
    pids = {}
    if os.path.isdir(state.run):
        for name in sorted(os.listdir(state.run)):
            if name.endswith(".pid"):
                with open(os.path.join(state.run, name)) as f:
                    text = f.read().strip()
                if text.isdigit() and ours(int(text), state):
                    pids[name[:-4]] = int(text)
    for name, pid in pids.items():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(ours(pid, state) for pid in pids.values()):
        time.sleep(0.05)
    for name, pid in pids.items():
        if ours(pid, state):
            log("%s (pid %d) did not stop on SIGTERM: SIGKILL" % (name, pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if not quiet:
        log("stopped %d processes%s" % (len(pids), ": " + ", ".join(
            "%s (%d)" % item for item in pids.items()) if pids else ""))
    shutil.rmtree(state.dir)
    if not quiet:
        log("removed %s" % state.dir)


# ---- start ------------------------------------------------------------------------------------

def spawn(state, name, argv):
    """Starts argv in its own session (it outlives this script) with output to logs/NAME.log,
    and records its pid in run/NAME.pid."""
    with open(os.path.join(state.logs, name + ".log"), "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                close_fds=True, start_new_session=True)
    with open(os.path.join(state.run, name + ".pid"), "w") as f:
        f.write("%d\n" % proc.pid)
    return proc


def check_ports_free(ports, base):
    """Raises DemoError naming the ports of `ports` something on 127.0.0.1 holds already."""
    taken = []
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    if taken:
        raise DemoError("ports already in use on 127.0.0.1: %s; choose other ports with "
                        "MESHLET_DEMO_PORT_BASE (now %d)" % (" ".join(map(str, taken)), base))


def meshctl(state, *args):
    env = dict(os.environ, MESHCTL_CONFIG=state.context)
    return subprocess.run([os.path.join(state.bin, "meshctl.bin")] + list(args), env=env,
                          capture_output=True, text=True, timeout=30)


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def prepare(state, bin_dir, port_list, port_base, info_file, info):
    """A fresh state directory (a demo running there is stopped first) holding copies of the
    binaries and the app, once the ports are known to be free; `info` written to `info_file`."""
    binaries = [(os.path.join(bin_dir, src), dst) for src, dst in (
        ("control-plane/control-plane", "control-plane"), ("sidecar/sidecar", "sidecar"),
        ("control-plane/cli/meshctl", "meshctl.bin"))]
    for path, _ in binaries:
        if not os.path.isfile(path):
            raise DemoError("%s is missing: build it first (./dev demo does)" % path)
    if os.path.exists(state.dir):
        log("stopping the demo already running in %s" % state.dir)
        stop(state, quiet=True)
    check_ports_free(port_list, port_base)
    for d in (state.dir, state.run, state.logs, state.bin, state.xds_cache):
        os.makedirs(d, exist_ok=True)
    open(os.path.join(state.dir, MARKER), "w").close()
    with open(os.path.join(state.dir, info_file), "w") as f:
        json.dump(info, f, indent=1)
    # Copies: the running demo does not change when bazel-bin is rebuilt (or switches
    # configuration) under it.
    for src, dst in binaries:
        shutil.copy(src, os.path.join(state.bin, dst))
    shutil.copy(os.path.join(HERE, "app.py"), os.path.join(state.dir, "app.py"))


def start(args):
    state = State(args.state_dir)
    p = ports(args.port_base)
    prepare(state, args.bin_dir, all_ports(p), args.port_base, "demo.json",
            {"port_base": args.port_base, "ports": p})
    with open(os.path.join(state.bin, "meshctl"), "w") as f:
        f.write("#!/bin/sh\n# meshctl against the demo's control plane.\n"
                "MESHCTL_CONFIG='%s' exec '%s' \"$@\"\n"
                % (state.context, os.path.join(state.bin, "meshctl.bin")))
    os.chmod(os.path.join(state.bin, "meshctl"), 0o755)

    log("control plane: API 127.0.0.1:%d, xDS 127.0.0.1:%d" % (p["api"], p["xds"]))
    spawn(state, "control-plane", [
        os.path.join(state.bin, "control-plane"), "--data-dir", state.cp_data,
        "--api-address", "127.0.0.1:%d" % p["api"],
        # Discovery over TLS with the certificate the control plane's CA issues to itself; it
        # serves only sidecars that present their own workload certificates.
        "--xds-address=127.0.0.1:%d" % p["xds"], "--xds-listen-host=127.0.0.1",
        # The sidecars send their spans over the discovery port (OTLP/gRPC, authenticated by
        # their certificates); this receiver is for the apps' own spans. No Zipkin receiver.
        "--otlp-address=127.0.0.1:%d" % p["otlp"], "--zipkin-address="])
    token_file = os.path.join(state.cp_data, "api-token")
    # The API is HTTPS with a certificate from the control plane's CA, whose root it wrote.
    ca_file = os.path.join(state.cp_data, "ca", "root-cert.pem")
    wait_for(lambda: http_get("https://127.0.0.1:%d/healthz" % p["api"], ca_file=ca_file)[0]
             == 200 and os.path.exists(token_file), 10, "the control plane's API")
    with open(state.context, "w") as f:
        f.write("# meshctl context for the demo (MESHCTL_CONFIG=this file, or bin/meshctl)\n"
                "server: 127.0.0.1:%d\ntokenFile: control-plane/api-token\n"
                "certificateAuthority: control-plane/ca/root-cert.pem\n"
                "namespace: default\n" % p["api"])

    for path in ROUTES[args.routes]:
        log("meshctl apply -f %s" % os.path.relpath(path, CHECKOUT))
        r = meshctl(state, "apply", "-f", path)
        sys.stderr.write(r.stdout + r.stderr)
        if r.returncode != 0:
            raise DemoError("meshctl apply failed")

    # Each workload proves its identity (a service account named after its service) with a
    # single-use join token, and then presents the certificate it bought on every call to the
    # control plane, which it verifies as its CA's own identity.
    trust_bundle = os.path.join(state.cp_data, "ca", "root-cert.pem")
    for node, service, version, upstream, flags in WORKLOADS:
        wp = p[node]
        r = meshctl(state, "token", "create", "--namespace", "default", "--service-account",
                    service, "--ttl", "10m", "--single-use")
        if r.returncode != 0:
            raise DemoError("meshctl token create failed: " + r.stderr)
        token_file = os.path.join(state.dir, node + ".join-token")
        with open(token_file, "w") as f:
            f.write(r.stdout)
        os.chmod(token_file, 0o600)
        argv = [sys.executable, os.path.join(state.dir, "app.py"), "--workload", node,
                "--service", service, "--version", version, "--port", str(wp["app"])] + flags
        if upstream:
            argv += ["--upstream", upstream, "--outbound", str(wp["outbound"])]
        spawn(state, node + ".app", argv)
        # The bootstrap holds only what has no flag: every request is traced, to the control
        # plane's collector over the discovery port (OTLP_GRPC: the xDS channel's TLS and the
        # workload certificate, so the spans are recorded under the sidecar's registration),
        # and golden metrics are reported every 2 s instead of 10 s so that `meshctl stat` shows
        # the traffic soon after it. Where spans and reports go (the control plane, from --xds)
        # and the services' names (--node-service) come from the flags.
        bootstrap = os.path.join(state.dir, node + ".bootstrap.yaml")
        with open(bootstrap, "w") as f:
            f.write("tracing:\n  sampling_percent: 100\n  protocol: OTLP_GRPC\n"
                    "  flush_interval: 0.5s\nmetrics_report:\n  interval: 2s\n")
        spawn(state, node + ".sidecar", [
            os.path.join(state.bin, "sidecar"), "--config=" + bootstrap,
            "--xds=127.0.0.1:%d" % p["xds"], "--xds-ca=" + trust_bundle,
            "--xds-server-identity=" + CONTROL_PLANE_ID, "--ca-address=127.0.0.1:%d" % p["xds"],
            "--join-token-file=" + token_file, "--node-service-account=" + service,
            "--xds-cache-dir=" + os.path.join(state.xds_cache, node),
            "--node-id=" + node, "--node-service=" + service, "--node-namespace=default",
            "--node-address=127.0.0.1", "--node-port=%d" % wp["app"],
            "--node-label=app=" + service, "--node-label=version=" + version,
            # Loopback: every sidecar shares the host, so each announces its own listener
            # ports instead of the defaults 15006/15001 (docs/control-plane.md, Registry).
            "--node-label=meshlet.io/inbound-port=%d" % wp["inbound"],
            "--node-label=meshlet.io/outbound-port=%d" % wp["outbound"],
            "--admin-address=127.0.0.1:%d" % wp["admin"], "--concurrency=1",
            "--drain-time=1s", "--access-log=" + os.path.join(state.logs, node + ".access.log")])
        log("%-13s app 127.0.0.1:%d, sidecar inbound %d, outbound %d, admin %d" % (
            node, wp["app"], wp["inbound"], wp["outbound"], wp["admin"]))

    def all_acked():
        r = meshctl(state, "proxy-status")
        return r.returncode == 0 and "NACKED" not in r.stdout and "PENDING" not in r.stdout \
            and len(re.findall(r"\bACKED", r.stdout)) == 4 * len(WORKLOADS)

    wait_for(lambda: all(http_get("http://127.0.0.1:%d/ready" % p[n]["admin"])[0] == 200
                         for n, *_ in WORKLOADS), 15, "every sidecar to be ready")
    wait_for(all_acked, 15, "every sidecar to ACK its configuration (meshctl proxy-status)")
    frontend = "http://127.0.0.1:%d/" % p["frontend-0"]["inbound"]

    def crosses():
        status, body, _ = http_get(frontend)
        if status != 200:
            return False
        doc = json.loads(body)
        reviews = doc.get("upstream", {})
        return reviews.get("route") == "split" and "workload" in reviews.get("upstream", {})

    # Several in a row, the canary's way to v2 included: on a busy machine the first answer can
    # come while the sidecars still discover what the others route to, and the traffic below
    # would count those misses as the policies' failures.
    def chain_works():
        if not all(crosses() for _ in range(5)):
            return False
        status, body, _ = http_get(frontend, headers={"x-canary": "always"})
        return status == 200 and json.loads(body).get("upstream", {}).get("version") == "v2"

    wait_for(chain_works, 15, "requests to cross frontend -> reviews -> ratings")
    log("the mesh is up; %g s of traffic to the frontend" % args.traffic_seconds)
    summary = traffic(state, p, args.traffic_seconds)
    print(summary["text"])
    print(guide(state, p))
    return summary


# ---- traffic ----------------------------------------------------------------------------------

def retries(p):
    """Retries sent by each sidecar, split by the direction of the cluster:
    {(node, "inbound"|"outbound"): n}, from meshlet_upstream_rq_retry_total in /stats."""
    out = collections.Counter()
    for node, *_ in WORKLOADS:
        status, body, _ = http_get("http://127.0.0.1:%d/stats?filter=rq_retry_total"
                                   % p[node]["admin"])
        for line in body.splitlines() if status == 200 else []:
            m = re.match(r'meshlet_upstream_rq_retry_total\{cluster="(inbound|outbound)[^}]*\}: '
                         r'(\d+)$', line)
            if m:
                out[(node, m.group(1))] += int(m.group(2))
    return out


def app_stats(port):
    status, body, _ = http_get("http://127.0.0.1:%d/__stats" % port)
    return json.loads(body) if status == 200 else {}


def traffic(state, p, seconds):
    """Drives two keep-alive clients at the frontend for SECONDS, then a few requests showing
    the canary header and the ratings timeout; returns the counts and a printable summary."""
    frontend = "http://127.0.0.1:%d" % p["frontend-0"]["inbound"]
    before_failed = app_stats(p["reviews-v1-0"]["app"]).get("failed", 0)
    before_retries = retries(p)
    counts = collections.Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        while time.monotonic() < deadline:
            status, body, _ = http_get(frontend + "/")
            key = ["status", status]
            if status == 200:
                doc = json.loads(body)
                reviews = doc.get("upstream", {})
                ratings = reviews.get("upstream", {})
                key = [reviews.get("version") or "reviews-error",
                       "ratings" if ratings.get("workload") else "no-ratings"]
            with lock:
                counts[tuple(key)] += 1
                counts["total"] += 1
                counts["ok"] += status == 200

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    canary = collections.Counter()
    for _ in range(5):
        status, body, _ = http_get(frontend + "/", headers={"x-canary": "always"})
        canary[json.loads(body)["upstream"].get("version") if status == 200 else status] += 1
    slow = []
    for _ in range(2):
        started = time.monotonic()
        status, body, _ = http_get(frontend + "/slow")
        took = time.monotonic() - started
        ratings = json.loads(body)["upstream"].get("upstream", {}) if status == 200 else {}
        slow.append((status, ratings.get("status"), ratings.get("ms"), took))

    injected = app_stats(p["reviews-v1-0"]["app"]).get("failed", 0) - before_failed
    retried = retries(p)
    retried.subtract(before_retries)
    v1 = sum(n for k, n in counts.items() if isinstance(k, tuple) and k[0] == "v1")
    v2 = sum(n for k, n in counts.items() if isinstance(k, tuple) and k[0] == "v2")
    with_ratings = sum(n for k, n in counts.items() if isinstance(k, tuple) and k[1] == "ratings")
    total = counts["total"]
    pct = lambda n: 100.0 * n / total if total else 0.0
    lines = [
        "",
        "Traffic: %d requests in %.1f s to the frontend, %d answered 200 (%d failed)" % (
            total, seconds, counts["ok"], total - counts["ok"]),
        "  frontend -> reviews v1  %5d  (%4.1f %%)   HTTPRoute reviews, rule split: 90/10" % (
            v1, pct(v1)),
        "  frontend -> reviews v2  %5d  (%4.1f %%)" % (v2, pct(v2)),
        "  ... -> ratings          %5d  (every hop: frontend, reviews, ratings, 4 sidecars)" % (
            with_ratings),
        "  retries: reviews-v1 answered %d attempts 503 on purpose (%d in a row of every %d)," % (
            injected, FAIL_BURST, FAIL_EVERY),
        "           retried by reviews-v1-0's own sidecar (inbound, never-reached only): %d" % (
            retried[("reviews-v1-0", "inbound")]),
        "           and by frontend-0's sidecar (TrafficPolicy reviews, up to 3 on 503): %d" % (
            retried[("frontend-0", "outbound")]),
        "           calls from the frontend to reviews that failed after all that: %d" % (
            total - v1 - v2),
        "  canary:  x-canary: always -> %s   (rule canary-header)" % ", ".join(
            "%s x%d" % kv for kv in sorted(canary.items(), key=str)),
    ]
    # One line for all the /slow calls.
    lines.append("  timeout: GET /slow x%d (ratings sleeps 1 s) -> ratings answered %s "
                 "(HTTPRoute ratings: 300ms); frontend %s" % (
                     len(slow),
                     ", ".join("%s after %s ms" % (r, ms) for _, r, ms, _ in slow),
                     ", ".join("%s in %.2f s" % (status, took) for status, _, _, took in slow)))
    return {"total": total, "ok": counts["ok"], "v1": v1, "v2": v2, "ratings": with_ratings,
            "injected_failures": injected,
            "retries": {"%s/%s" % k: n for k, n in retried.items() if n}, "canary": dict(canary),
            "slow": slow, "text": "\n".join(lines)}


def guide(state, p):
    rel = os.path.relpath(state.dir, os.getcwd())
    d = rel if not rel.startswith("..") else state.dir
    f = p["frontend-0"]
    lines = [
        "",
        "The demo keeps running (state, logs and pid files in %s/):" % d,
        "",
        "  send requests      curl http://127.0.0.1:%d/            (frontend's sidecar, inbound)" %
        f["inbound"],
        "                     curl -H 'x-canary: always' http://127.0.0.1:%d/" % f["inbound"],
        "                     python3 examples/demo/demo.py traffic --seconds 10",
        "  meshctl            %s/bin/meshctl proxy-status" % d,
        "    (context: %s/meshctl.yaml;" % d,
        "     or export MESHCTL_CONFIG=%s)" % state.context,
        "                     %s/bin/meshctl get workloads" % d,
        "                     %s/bin/meshctl get httproutes -A" % d,
        "                     %s/bin/meshctl describe httproute reviews" % d,
        "                     %s/bin/meshctl proxy-config frontend-0" % d,
        "  golden metrics     %s/bin/meshctl stat        (success rate, RPS, latency per edge)" % d,
        "                     %s/bin/meshctl top         (busiest paths, live)" % d,
        "  dashboard          %s/bin/meshctl dashboard   (prints its URL: service graph, traces," % d,
        "                     proxies)",
        "  control plane      curl --cacert %s/control-plane/ca/root-cert.pem --resolve "
        "meshlet-control-plane:%d:127.0.0.1 https://meshlet-control-plane:%d/metrics"
        % (d, p["api"], p["api"]),
        "  sidecar admin      (each also has /clusters, /config_dump, /listeners, /stats)",
    ]
    for node, *_ in WORKLOADS:
        lines.append("    %-13s    curl http://127.0.0.1:%d/stats/prometheus" % (
            node, p[node]["admin"]))
    lines += [
        "                     curl http://127.0.0.1:%d/clusters" % f["admin"],
        "                     curl http://127.0.0.1:%d/config_dump" % f["admin"],
        "  access logs        %s/logs/NODE.access.log (one JSON line per request)" % d,
        "  process logs       %s/logs/control-plane.log, NODE.sidecar.log, NODE.app.log" % d,
        "  stop               ./dev demo --stop     (ends every process, removes %s/)" % d,
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    default_dir = os.environ.get("MESHLET_DEMO_DIR") or os.path.join(CHECKOUT, ".demo")
    for name in ("start", "stop", "traffic"):
        s = sub.add_parser(name)
        s.add_argument("--state-dir", default=default_dir)
        if name == "start":
            s.add_argument("--bin-dir", required=True, help="bazel-bin of the build to run")
            s.add_argument("--port-base", type=int,
                           default=int(os.environ.get("MESHLET_DEMO_PORT_BASE") or 17000))
            s.add_argument("--summary-json", help="also write the traffic counts here")
            s.add_argument("--routes", choices=sorted(ROUTES),
                           default=os.environ.get("MESHLET_DEMO_ROUTES") or "meshlet",
                           help="the example routes as meshlet HTTPRoutes (examples/policies) "
                           "or as Gateway API HTTPRoutes (examples/gateway-api)")
        if name in ("start", "traffic"):
            s.add_argument("--traffic-seconds", "--seconds", type=float, default=float(
                os.environ.get("MESHLET_DEMO_TRAFFIC_SECONDS") or 3))
    args = parser.parse_args()
    try:
        if args.command == "stop":
            stop(State(args.state_dir))
        elif args.command == "traffic":
            state = State(args.state_dir)
            if not os.path.isdir(state.dir):
                raise DemoError("no demo running in %s" % state.dir)
            print(traffic(state, state.info()["ports"], args.traffic_seconds)["text"])
        else:
            state = State(args.state_dir)
            try:
                summary = start(args)
            except BaseException:
                # Leave nothing running, whatever went wrong (even ^C); keep the logs to read.
                if os.path.exists(os.path.join(state.dir, MARKER)):
                    stop_processes_only(state)
                raise
            if args.summary_json:
                with open(args.summary_json, "w") as f:
                    json.dump({k: v for k, v in summary.items() if k != "text"}, f)
    except DemoError as e:
        print("demo: %s" % e, file=sys.stderr)
        return 1
    return 0


def stop_processes_only(state):
    """After a failed start: kills the processes, prints the end of their logs and keeps the
    files (./dev demo --stop removes them)."""
    for name in os.listdir(state.run) if os.path.isdir(state.run) else []:
        if name.endswith(".pid"):
            with open(os.path.join(state.run, name)) as f:
                text = f.read().strip()
            if text.isdigit() and ours(int(text), state):
                os.kill(int(text), signal.SIGKILL)
    try:
        for name in sorted(os.listdir(state.logs)) if os.path.isdir(state.logs) else []:
            if name.endswith(".log") and not name.endswith(".access.log"):
                text = tail(os.path.join(state.logs, name), 5)
                if text:
                    sys.stderr.write("--- %s\n%s" % (name, text))
        log("start failed: every process stopped; logs kept in %s (./dev demo --stop removes "
            "them)" % state.logs)
    except OSError:  # stderr closed
        pass


if __name__ == "__main__":
    sys.exit(main())
