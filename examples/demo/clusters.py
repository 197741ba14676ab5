"""Two meshlet clusters on 127.0.0.1, linked (what `./dev demo --clusters 2` calls after building).

    clusters.py start --bin-dir DIR [--state-dir DIR] [--port-base N]
    clusters.py stop [--state-dir DIR]

start: two control planes, `west` and `east`, each its own trust domain (west.example,
east.example) and each trusting the other's roots (SPIFFE federation). west runs `frontend`,
which calls `reviews`, and its own `reviews`; east runs a `reviews` it exports (label
meshlet.io/export=true) and an east-west gateway (a Gateway listener of protocol
meshlet.io/east-west). `meshctl multicluster link` links west to east. Then it shows, on
frontend's calls: every answer from west's reviews while it runs; its sidecar stopped, the answers
from east's reviews through the gateway, which sees frontend's own SPIFFE id (mTLS end to end);
its sidecar started again, the answers from west again. Everything keeps running when it returns;
docs/multicluster.md explains what it shows.

stop: ends every process recorded in the state directory and removes it (as demo.py stop).

Defaults come from the environment: MESHLET_DEMO_DIR (.demo in the checkout),
MESHLET_DEMO_PORT_BASE (17000: this demo uses BASE+300..BASE+360 and BASE+400..BASE+460).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import demo
from demo import DemoError, log, wait_for

CLUSTERS = ("west", "east")
# Per cluster: the workloads (node id, service, the upstream its app calls).
WORKLOADS = {
    "west": [("frontend-0", "frontend", "reviews:9080"), ("reviews-0", "reviews", None)],
    "east": [("reviews-0", "reviews", None)],
}
EAST_WEST = "east-west"


def ports(base):
    """Every port, by cluster and name."""
    out = {}
    for i, cluster in enumerate(CLUSTERS):
        at = base + 300 + 100 * i
        p = {"api": at, "xds": at + 2, "gateway": at + 4, "gateway-admin": at + 6}
        for j, (node, _, _) in enumerate(WORKLOADS[cluster]):
            first = at + 20 + 10 * j
            p[node] = {"app": first, "inbound": first + 1, "outbound": first + 2,
                       "admin": first + 3}
        out[cluster] = p
    return out


def all_ports(p):
    found = []
    for cluster in CLUSTERS:
        for value in p[cluster].values():
            found += list(value.values()) if isinstance(value, dict) else [value]
    return found


class Layout(demo.State):
    def cp(self, cluster):
        return os.path.join(self.dir, cluster)

    def context_of(self, cluster):
        return os.path.join(self.dir, "meshctl-%s.yaml" % cluster)


def meshctl(state, cluster, *args):
    env = dict(os.environ, MESHCTL_CONFIG=state.context_of(cluster))
    return subprocess.run([os.path.join(state.bin, "meshctl.bin")] + list(args), env=env,
                          capture_output=True, text=True, timeout=30)


def apply(state, cluster, text):
    path = os.path.join(state.dir, "%s-policy.yaml" % cluster)
    with open(path, "w") as f:
        f.write(text)
    r = meshctl(state, cluster, "apply", "-f", path)
    if r.returncode != 0:
        raise DemoError("meshctl apply in %s failed: %s" % (cluster, r.stdout + r.stderr))


def reviews_service(exported):
    labels = "\n  labels: {meshlet.io/export: \"true\"}" if exported else ""
    return ("apiVersion: meshlet.io/v1\nkind: Service\nmetadata:\n  name: reviews\n"
            "  namespace: default%s\nspec:\n  ports: [{name: http, port: 9080}]\n" % labels)


def start_sidecar(state, p, cluster, node, service, app_port=None, gateway=None):
    """A sidecar of `cluster` for `node` (or the gateway proxy), with a join token of its
    service account (reusable for an hour: the demo restarts a sidecar)."""
    account = service if gateway is None else "%s-meshlet" % EAST_WEST
    r = meshctl(state, cluster, "token", "create", "--namespace", "default",
                "--service-account", account, "--ttl", "1h")
    if r.returncode != 0:
        raise DemoError("meshctl token create in %s failed: %s" % (cluster, r.stderr))
    token_file = os.path.join(state.dir, "%s-%s.join-token" % (cluster, node))
    with open(token_file, "w") as f:
        f.write(r.stdout)
    os.chmod(token_file, 0o600)
    cp = state.cp(cluster)
    argv = [os.path.join(state.bin, "sidecar"),
            "--xds=127.0.0.1:%d" % p[cluster]["xds"],
            "--xds-ca=" + os.path.join(cp, "ca", "root-cert.pem"),
            "--xds-server-identity=spiffe://%s.example/ns/meshlet-system/sa/"
            "meshlet-control-plane" % cluster,
            "--ca-address=127.0.0.1:%d" % p[cluster]["xds"], "--trust-domain=%s.example" % cluster,
            "--join-token-file=" + token_file, "--node-service-account=" + account,
            "--node-namespace=default", "--node-address=127.0.0.1", "--concurrency=1",
            "--drain-time=1s"]
    if gateway is not None:
        argv += ["--node-id=%s-0" % EAST_WEST, "--gateway=default/" + EAST_WEST,
                 "--admin-address=127.0.0.1:%d" % p[cluster]["gateway-admin"]]
    else:
        wp = p[cluster][node]
        argv += ["--node-id=%s-%s" % (cluster, node), "--node-service=" + service,
                 "--node-port=%d" % wp["app"],
                 "--node-label=meshlet.io/inbound-port=%d" % wp["inbound"],
                 "--node-label=meshlet.io/outbound-port=%d" % wp["outbound"],
                 "--admin-address=127.0.0.1:%d" % wp["admin"],
                 "--access-log=" + os.path.join(state.logs, "%s-%s.access.log" % (cluster, node))]
    demo.spawn(state, "%s-%s.sidecar" % (cluster, node), argv)


def answer(p):
    """(which reviews answered frontend, the caller id that reviews saw), or (status, error)."""
    status, body, _ = demo.http_get("http://127.0.0.1:%d/" % p["west"]["frontend-0"]["inbound"])
    if status != 200:
        return status, body[:100]
    upstream = json.loads(body).get("upstream", {})
    return upstream.get("workload", upstream.get("status")), upstream.get("caller")


def start(args):
    state = Layout(args.state_dir)
    p = ports(args.port_base)
    demo.prepare(state, args.bin_dir, all_ports(p), args.port_base, "clusters.json",
                 {"port_base": args.port_base, "ports": p})

    for cluster in CLUSTERS:
        other = CLUSTERS[1 - CLUSTERS.index(cluster)]
        log("control plane %s: API 127.0.0.1:%d, xDS 127.0.0.1:%d" % (
            cluster, p[cluster]["api"], p[cluster]["xds"]))
        demo.spawn(state, "%s-control-plane" % cluster, [
            os.path.join(state.bin, "control-plane"), "--data-dir", state.cp(cluster),
            "--api-address", "127.0.0.1:%d" % p[cluster]["api"],
            "--xds-address=127.0.0.1:%d" % p[cluster]["xds"], "--xds-listen-host=127.0.0.1",
            "--otlp-address=", "--zipkin-address=", "--trust-domain=%s.example" % cluster,
            "--cluster-name=" + cluster, "--multicluster-poll-interval=1s",
            "--federate=%s.example=file:%s" % (
                other, os.path.join(state.dir, "roots-of-%s.pem" % other)),
            "--federation-refresh-min=200ms", "--federation-refresh-max=2s"])
    for cluster in CLUSTERS:
        cp = state.cp(cluster)
        ca_file = os.path.join(cp, "ca", "root-cert.pem")
        token_file = os.path.join(cp, "api-token")
        wait_for(lambda: demo.http_get("https://127.0.0.1:%d/healthz" % p[cluster]["api"],
                                       ca_file=ca_file)[0] == 200 and os.path.exists(token_file),
                 15, "%s's control plane" % cluster)
        with open(state.context_of(cluster), "w") as f:
            f.write("# meshctl context for cluster %s\nserver: 127.0.0.1:%d\n"
                    "tokenFile: %s/api-token\ncertificateAuthority: %s/ca/root-cert.pem\n"
                    "serverIdentity: spiffe://%s.example/ns/meshlet-system/sa/"
                    "meshlet-control-plane\nnamespace: default\n"
                    % (cluster, p[cluster]["api"], cluster, cluster, cluster))
        # The other cluster trusts this one's workloads by this root.
        shutil.copy(ca_file, os.path.join(state.dir, "roots-of-%s.pem" % cluster))

    apply(state, "west", reviews_service(exported=False))
    apply(state, "east", reviews_service(exported=True) + """---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: meshlet}
spec: {controllerName: meshlet.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: %s, namespace: default}
spec:
  gatewayClassName: meshlet
  listeners:
  - {name: mesh, port: %d, protocol: meshlet.io/east-west}
""" % (EAST_WEST, p["east"]["gateway"]))

    for cluster in CLUSTERS:
        for node, service, upstream in WORKLOADS[cluster]:
            wp = p[cluster][node]
            argv = [sys.executable, os.path.join(state.dir, "app.py"),
                    "--workload", "%s-%s" % (cluster, service), "--service", service,
                    "--port", str(wp["app"])]
            if upstream:
                argv += ["--upstream", upstream, "--outbound", str(wp["outbound"])]
            demo.spawn(state, "%s-%s.app" % (cluster, node), argv)
            start_sidecar(state, p, cluster, node, service)
            log("%s %-11s app 127.0.0.1:%d, sidecar inbound %d, admin %d" % (
                cluster, node, wp["app"], wp["inbound"], wp["admin"]))
    start_sidecar(state, p, "east", EAST_WEST, EAST_WEST, gateway=True)
    log("east east-west gateway 127.0.0.1:%d, admin %d" % (
        p["east"]["gateway"], p["east"]["gateway-admin"]))

    wait_for(lambda: answer(p)[0] == "west-reviews", 20, "frontend's calls to reach reviews")
    log("meshctl multicluster link (west reads what east exports)")
    r = meshctl(state, "west", "multicluster", "link", "--remote-context",
                state.context_of("east"))
    sys.stderr.write(r.stdout + r.stderr)
    if r.returncode != 0:
        raise DemoError("meshctl multicluster link failed")
    wait_for(lambda: meshctl(state, "west", "multicluster", "check").returncode == 0, 15,
             "the link to be up (meshctl multicluster check)")
    wait_for(lambda: "127.0.0.1:%d" % p["east"]["gateway"] in demo.http_get(
        "http://127.0.0.1:%d/clusters" % p["west"]["frontend-0"]["admin"])[1], 15,
        "frontend's sidecar to know east's gateway")
    check = meshctl(state, "west", "multicluster", "check").stdout

    healthy = [answer(p)[0] for _ in range(20)]
    log("west's reviews sidecar stopped")
    stop_one(state, "west-reviews-0.sidecar")
    stopped = time.monotonic()
    moved = wait_for(lambda: (lambda a: a if a[0] == "east-reviews" else None)(answer(p)), 20,
                     "frontend's calls to reach east's reviews")
    failover = time.monotonic() - stopped
    during = [answer(p)[0] for _ in range(20)]
    log("west's reviews sidecar started again")
    start_sidecar(state, p, "west", "reviews-0", "reviews")
    started = time.monotonic()
    wait_for(lambda: answer(p)[0] == "west-reviews", 20, "frontend's calls to come back to west")
    failback = time.monotonic() - started
    summary = {"healthy": healthy, "during": during, "caller": moved[1],
               "failover_seconds": round(failover, 2), "failback_seconds": round(failback, 2)}
    print(check)
    print("frontend -> reviews, 20 calls while west's reviews runs: %s" % counts(healthy))
    print("  west's reviews sidecar stopped: east answered after %.2f s; 20 calls: %s" % (
        failover, counts(during)))
    print("  east's reviews saw the caller %s (mTLS from west's frontend, through east's "
          "gateway)" % moved[1])
    print("  started again: west answered after %.2f s" % failback)
    print(guide(state, p))
    return summary


def counts(answers):
    out = {}
    for a in answers:
        out[str(a)] = out.get(str(a), 0) + 1
    return ", ".join("%s %d" % item for item in sorted(out.items()))


def stop_one(state, name):
    path = os.path.join(state.run, name + ".pid")
    with open(path) as f:
        pid = int(f.read())
    if demo.ours(pid, state):
        os.kill(pid, 15)
        wait_for(lambda: not demo.ours(pid, state), 10, name + " to stop")


def guide(state, p):
    rel = os.path.relpath(state.dir, os.getcwd())
    d = rel if not rel.startswith("..") else state.dir
    return "\n".join([
        "",
        "The two clusters keep running (state, logs and pid files in %s/):" % d,
        "",
        "  send requests      curl http://127.0.0.1:%d/     (west's frontend, calling reviews)"
        % p["west"]["frontend-0"]["inbound"],
        "  the link           MESHCTL_CONFIG=%s/meshctl-west.yaml %s/bin/meshctl.bin "
        "multicluster check" % (d, d),
        "  what east exports  MESHCTL_CONFIG=%s/meshctl-east.yaml %s/bin/meshctl.bin "
        "get services" % (d, d),
        "  fail over          kill $(cat %s/run/west-reviews-0.sidecar.pid), then curl again"
        % d,
        "  frontend's view    curl http://127.0.0.1:%d/clusters   (east's gateway: 127.0.0.1:%d,"
        % (p["west"]["frontend-0"]["admin"], p["east"]["gateway"]),
        "                     locality cluster east)",
        "  the gateway        curl http://127.0.0.1:%d/stats/prometheus | grep client_hello"
        % p["east"]["gateway-admin"],
        "  logs               %s/logs/" % d,
        "  stop               ./dev demo --stop",
        "  how it works       docs/multicluster.md",
        "",
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    default_dir = os.environ.get("MESHLET_DEMO_DIR") or os.path.join(demo.CHECKOUT, ".demo")
    for name in ("start", "stop"):
        s = sub.add_parser(name)
        s.add_argument("--state-dir", default=default_dir)
        if name == "start":
            s.add_argument("--bin-dir", required=True, help="bazel-bin of the build to run")
            s.add_argument("--port-base", type=int,
                           default=int(os.environ.get("MESHLET_DEMO_PORT_BASE") or 17000))
            s.add_argument("--summary-json", help="also write what it measured here")
    args = parser.parse_args()
    try:
        state = Layout(args.state_dir)
        if args.command == "stop":
            demo.stop(state)
            return 0
        try:
            summary = start(args)
        except BaseException:
            if os.path.exists(os.path.join(state.dir, demo.MARKER)):
                demo.stop_processes_only(state)
            raise
        if args.summary_json:
            with open(args.summary_json, "w") as f:
                json.dump(summary, f)
    except DemoError as e:
        print("demo: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
