"""The meshlet demo as pods (what `./dev demo` runs when podman can: as root, podman installed).

    pods.py start --bin-dir DIR [--state-dir DIR] [--traffic-seconds S] [--routes meshlet|gateway-api]
                  [--cni]
    pods.py stop [--state-dir DIR]
    pods.py traffic [--state-dir DIR] [--seconds S] [--summary-json FILE]

start: builds the images from DIR (deploy/images/build.py), plays the control plane as a pod,
applies the policies of examples/policies (retries and a 90/10 canary split for reviews, a
timeout for ratings; their Services come from the manifests; with --routes gateway-api the
routes are the Gateway API HTTPRoutes of examples/gateway-api, as demo.py applies them), and deploys examples/pods
(productpage -> reviews v1|v2 -> ratings, which fails one request in ten) and a client pod,
every one run through `meshctl inject` and played by podman (tests/e2e/cluster.py does what a
cluster would). Then a few seconds of traffic from the client pod, its summary, and where to
look. The pods keep running when it returns.

The pods live in a podman storage of their own under /var/tmp/meshlet-demo and on a network of
their own, internal (nothing leaves it); the host gets the network's gateway address so that the
dashboard and `meshctl` reach the control plane's pod from here. The state directory (default
.demo in the checkout) holds the meshctl context, the API token and what `stop` needs.

With --cni the pods are captured by the meshlet-cni plugin instead of a meshlet-init container
(docs/kubernetes.md, CNI mode): the network is on podman's CNI backend (Debian's
containernetworking-plugins), meshlet-cni-agent (from DIR) puts the plugin into the network's
conflist as a node's agent would, and `meshctl inject --cni` writes pods with no container
holding capabilities. The plugin reads the pods' annotations from an API server: a fake one on
loopback holding the demo's pods (tests/integration/fake_kubernetes_api.py), since podman passes
none. The agent keeps running with the pods; `stop` ends it, then removes the pods and the
network with its conflist.

stop: removes every pod, image and the network, and the state directory.
"""

import argparse
import collections
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(CHECKOUT, "tests", "e2e"))
import cluster as cluster_lib  # noqa: E402
import harness  # noqa: E402

sys.path.insert(0, HERE)
import demo  # noqa: E402  (its ROUTES: what --routes applies)

POLICIES = os.path.join(CHECKOUT, "examples", "policies")
MANIFESTS = [os.path.join(CHECKOUT, "examples", "pods"),
             os.path.join(CHECKOUT, "tests", "e2e", "manifests", "client.yaml")]
# The Gateway "bookinfo" and its route (policy), and its proxy (meshctl inject --gateway-class).
GATEWAY = os.path.join(HERE, "gateway.yaml")
GATEWAY_POD = "bookinfo-meshlet-0"
GATEWAY_PORT = 8080
# The way out: the egress Gateway (examples/demo/egress.yaml), its proxy the only pod on an
# "outside network" where api.partner.example answers HTTPS, and the ExternalService for it.
EGRESS = os.path.join(HERE, "egress.yaml")
EGRESS_POD = "egress-meshlet-0"
PARTNER = "api.partner.example"
MARKER = ".meshlet-demo"  # only a directory holding this file is ever removed
PODS_BASE = "/var/tmp/meshlet-demo"


def log(msg):
    print("\033[1m==> %s\033[0m" % msg, file=sys.stderr, flush=True)


class DemoError(Exception):
    pass


def usable():
    """None when the pods demo can run here, else why not."""
    return harness.skip_reason()


def state_file(state_dir):
    return os.path.join(state_dir, "pods.json")


def stop(state_dir, quiet=False):
    path = state_file(state_dir)
    if not os.path.exists(path):
        if not quiet:
            log("no pods demo running (%s does not exist)" % path)
        return False
    with open(path) as f:
        state = json.load(f)
    stop_node_agent(state)
    stop_outside(state)
    harness.remove_run(state["run_dir"], state["network"])
    if os.path.exists(os.path.join(state_dir, MARKER)):
        shutil.rmtree(state_dir)
    if not quiet:
        log("removed the demo's pods, images and network %s, and %s" % (state["network"],
                                                                         state_dir))
    return True


def stop_node_agent(state):
    """--cni: ends meshlet-cni-agent and its API server. Not an uninstall: the conflist and the
    plugin go with the run's directory, after the pods, whose teardown podman runs with the
    chain it cached when they started (meshlet-cni included)."""
    for key in ("agent", "api"):
        pid, start_time = state.get(key + "_pid"), state.get(key + "_start")
        if pid is not None and harness._process_start(pid) == start_time:
            os.kill(pid, signal.SIGKILL)  # else gone, or the pid is another process's by now


def stop_outside(state):
    """Ends the outside network's server and removes the network."""
    pid, start_time = state.get("outside_pid"), state.get("outside_start")
    if pid is not None and harness._process_start(pid) == start_time:
        os.kill(pid, signal.SIGKILL)
    if state.get("outside_netns"):
        cluster_lib.Cluster.remove_outside_network(state["outside_netns"])


def start_outside(run, cluster, state_dir):
    """The outside network (cluster.join_outside_network) joined to the egress gateway's pod:
    openssl s_server answering HTTPS as api.partner.example there, with a certificate of a CA
    made here, and the ExternalService api.partner.example through the gateway, verifying it
    with that CA. Returns what stop() needs to end it."""
    sys.path.insert(0, cluster_lib.INTEGRATION_DIR)
    import mesh_util
    d = os.path.join(state_dir, "outside")
    os.makedirs(d)
    ca = mesh_util.make_ca(d, "partner-ca")
    cert, key = mesh_util.make_server_cert(d, "partner", ca, "DNS:" + PARTNER)
    netns = "mle%s" % hashlib.sha1(run.dir.encode()).hexdigest()[:10]
    link = cluster.outside_link()
    cluster.join_outside_network(EGRESS_POD, netns, link)
    with open(os.path.join(d, "s_server.log"), "w") as out:
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, "openssl", "s_server", "-quiet", "-www", "-accept",
             "443", "-cert", cert, "-key", key],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    with open(ca[0]) as f:
        ca_pem = f.read()
    external = {"apiVersion": "meshlet.io/v1", "kind": "ExternalService",
                "metadata": {"name": "partner", "namespace": cluster.namespace},
                "spec": {"hosts": [PARTNER],
                         "ports": [{"name": "http", "number": 80, "protocol": "HTTP",
                                    "targetPort": 443, "tls": {"caCertificates": ca_pem}}],
                         "resolution": "STATIC", "endpoints": [link[1]],
                         "egressGateway": "%s/egress" % cluster.namespace}}
    log("meshctl apply: ExternalService partner (%s, TLS to %s:443 originated by the egress "
        "gateway, the only pod on that network)" % (PARTNER, link[1]))
    cluster.meshctl("apply", "-f", "-", input=json.dumps(external))
    return {"outside_netns": netns, "outside_pid": server.pid,
            "outside_start": harness._process_start(server.pid)}


def policies(routes):
    """What --routes applies (demo.py's ROUTES), without the Services of examples/policies: the
    pods' manifests have theirs."""
    files = []
    for path in demo.ROUTES[routes]:
        if os.path.isdir(path):
            files += [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".yaml")]
        else:
            files.append(path)
    return [f for f in files
            if not (os.path.dirname(f) == POLICIES and os.path.basename(f).startswith("00-"))]


def start(args):
    state_dir = os.path.abspath(args.state_dir)
    if os.path.exists(state_file(state_dir)):
        log("stopping the pods demo already running")
        stop(state_dir, quiet=True)
    elif os.path.exists(state_dir):
        if not os.path.exists(os.path.join(state_dir, MARKER)):
            raise DemoError("%s exists but was not made by the demo; not touching it" % state_dir)
        shutil.rmtree(state_dir)
    os.makedirs(state_dir)
    open(os.path.join(state_dir, MARKER), "w").close()
    os.environ["MESHLET_E2E_DIR"] = PODS_BASE
    run = harness.Run(name="demo", keep=True, cni=args.cni)
    run.__enter__()
    with open(state_file(state_dir), "w") as f:
        json.dump({"run_dir": run.dir, "network": run.network, "subnet": str(run.subnet),
                   "bridge": run.bridge}, f)
    try:
        log("building the images from %s" % args.bin_dir)
        run.build_images(args.bin_dir)
        cluster = cluster_lib.Cluster(run, os.path.join(args.bin_dir, "control-plane", "cli",
                                                        "meshctl"), cni=args.cni)
        node = {}
        if args.cni:
            log("meshlet-cni-agent: meshlet-cni into the network's conflist %s" % run.conflist())
            cluster.start_node_agent(os.path.join(args.bin_dir, "cni", "meshlet-cni-agent"),
                                     os.path.join(args.bin_dir, "cni", "meshlet-cni"))
            for key in ("agent", "api"):
                pid = cluster.node[key].pid
                node.update({key + "_pid": pid, key + "_start": harness._process_start(pid)})
            with open(state_file(state_dir), "w") as f:
                json.dump(dict({"run_dir": run.dir, "network": run.network,
                                "subnet": str(run.subnet), "bridge": run.bridge}, **node), f)
        log("the control plane as a pod at %s" % cluster.control_plane_ip)
        cluster.start_control_plane()
        for path in policies(args.routes):
            log("meshctl apply -f %s" % os.path.relpath(path, CHECKOUT))
            with open(path) as f:
                cluster.meshctl("apply", "-f", "-", input=f.read())
        log("meshctl apply -f examples/demo/gateway.yaml (the Gateway bookinfo and its route)")
        with open(GATEWAY) as f:
            cluster.meshctl("apply", "-f", "-", input=f.read())
        log("meshctl apply -f examples/demo/egress.yaml (the egress Gateway and who may call out)")
        with open(EGRESS) as f:
            cluster.meshctl("apply", "-f", "-", input=f.read())
        log("meshctl inject%s --gateway-class meshlet -f examples/pods/ -f "
            "examples/demo/gateway.yaml -f examples/demo/egress.yaml | podman kube play (and a "
            "client pod)" % (" --cni" if args.cni else ""))
        # The app resolves the partner's name to any address: its sidecar matches the Host.
        cluster.extra_host_aliases = [{"ip": str(run.subnet.network_address + 1),
                                       "hostnames": [PARTNER]}]
        cluster.deploy(MANIFESTS + [GATEWAY, EGRESS], extra=("--gateway-class", "meshlet"))
        cluster.wait_ready()
        node.update(start_outside(run, cluster, state_dir))
        with open(state_file(state_dir), "w") as f:  # for stop(), should what follows fail
            json.dump(dict({"run_dir": run.dir, "network": run.network,
                            "subnet": str(run.subnet), "bridge": run.bridge}, **node), f)
        # The host reaches the pods (dashboard, meshctl) through the network's gateway address.
        gateway = str(run.subnet.network_address + 1)
        subprocess.run(["ip", "addr", "replace", "%s/%d" % (gateway, run.subnet.prefixlen),
                        "dev", run.bridge], check=True, capture_output=True)
        token = os.path.join(state_dir, "api-token")
        run.podman(["cp", "%s:%s" % (cluster_lib.CONTROL_PLANE_CONTAINER, cluster_lib.API_TOKEN),
                    token])
        os.chmod(token, 0o600)
        # The API is HTTPS with a certificate from the control plane's CA: meshctl verifies it
        # with the CA's roots, read inside the control plane's pod.
        with open(os.path.join(state_dir, "ca.pem"), "w") as f:
            f.write(cluster.trust_pem)
        context = os.path.join(state_dir, "meshctl.yaml")
        with open(context, "w") as f:
            f.write("# meshctl context for the pods demo (MESHCTL_CONFIG=this file, or "
                    "bin/meshctl)\nserver: %s:15014\ntokenFile: api-token\n"
                    "certificateAuthority: ca.pem\nnamespace: default\n"
                    % cluster.control_plane_ip)
        os.makedirs(os.path.join(state_dir, "bin"))
        shutil.copy(os.path.join(args.bin_dir, "control-plane", "cli", "meshctl"),
                    os.path.join(state_dir, "bin", "meshctl.bin"))
        wrapper = os.path.join(state_dir, "bin", "meshctl")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\n# meshctl against the pods demo's control plane.\n"
                    "MESHCTL_CONFIG='%s' exec '%s' \"$@\"\n" % (
                        context, os.path.join(state_dir, "bin", "meshctl.bin")))
        os.chmod(wrapper, 0o755)
        with open(state_file(state_dir), "w") as f:
            json.dump(dict({"run_dir": run.dir, "network": run.network,
                            "subnet": str(run.subnet), "bridge": run.bridge,
                            "control_plane_ip": cluster.control_plane_ip, "pods": cluster.pods,
                            "cni": args.cni}, **node), f)
        all_acked(state_dir)
        log("the mesh is up; %g s of traffic from the client pod" % args.traffic_seconds)
        summary = traffic(run, cluster, args.traffic_seconds, cni=args.cni)
        print(summary["text"])
        print(guide(state_dir, cluster))
        run.detach()
        return summary
    except BaseException:
        run.dump()
        log("start failed: removing the demo's pods")
        stop(state_dir, quiet=True)
        raise


def meshctl(state_dir, *args):
    return subprocess.run([os.path.join(state_dir, "bin", "meshctl")] + list(args),
                          capture_output=True, text=True, timeout=30)


def all_acked(state_dir, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        r = meshctl(state_dir, "proxy-status")
        lines = [l for l in r.stdout.splitlines()[1:] if l.strip()]
        if r.returncode == 0 and lines and all(l.count("ACKED") == 4 and "NACKED" not in l
                                               for l in lines):
            return r.stdout
        if time.monotonic() > deadline:
            raise DemoError("not every proxy ACKed its configuration:\n" + r.stdout + r.stderr)
        time.sleep(0.5)


def client_get(run, cluster, url, *args):
    r = cluster.exec("client-0", ["testapp", "get", url] + list(args), check=False)
    return r


def summary_of(r):
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DemoError("no summary from testapp: %s %s" % (r.stdout, r.stderr))


def retries_by(cluster, pod):
    status, body = cluster.pod_http(pod, "http://127.0.0.1:15020/stats/prometheus")
    total = 0.0
    for line in body.splitlines() if status == 200 else []:
        if line.startswith("meshlet_upstream_rq_retry_total{") and "outbound|" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def traffic(run, cluster, seconds, cni=False):
    """Traffic from the client pod (fresh sampled traces, so the dashboard has some), then a
    summary: the split, retries, the canary header, the timeout."""
    failed_before = cluster_app_failed(cluster)
    retried_before = {p: retries_by(cluster, p) for p in ("client-0", "productpage-v1-0",
                                                         "reviews-v2-0")}
    main = summary_of(client_get(run, cluster, "http://productpage:9080/products",
                                 "--duration", "%gs" % seconds, "--concurrency", "2",
                                 "--trace"))
    split = summary_of(client_get(run, cluster, "http://reviews:9080/reviews", "--count", "100",
                                  "--concurrency", "2"))
    canary = summary_of(client_get(run, cluster, "http://reviews:9080/reviews", "--count", "5",
                                   "-H", "x-canary: always"))
    slow = client_get(run, cluster, "http://ratings:9080/slow", "--timeout", "3s")
    way_in = through_gateway(cluster, 20)
    way_out = summary_of(client_get(run, cluster, "http://%s/" % PARTNER, "--count", "10"))
    failed = cluster_app_failed(cluster) - failed_before
    retried = {p: retries_by(cluster, p) - before for p, before in retried_before.items()}
    pods = collections.Counter(split.get("pods", {}))
    ok = main["statuses"].get("200", 0)
    lines = [
        "",
        "Traffic: %d requests in %g s from client-0 to http://productpage:9080/products, %d "
        "answered 200 (%d failed)" % (main["requests"], seconds, ok, main["requests"] - ok),
        "  every call between pods: captured by iptables (%s), mutual TLS between the "
        "proxies" % ("rules installed by the meshlet-cni plugin; no pod holds capabilities"
                     if cni else "rules installed by each pod's meshlet-init"),
        "  reviews split (HTTPRoute reviews, rule split 90/10) over 100 calls: v1 %d, v2 %d" % (
            pods.get("reviews-v1-0", 0), pods.get("reviews-v2-0", 0)),
        "  canary:  x-canary: always -> %s" % ", ".join(
            "%s x%d" % kv for kv in sorted(canary.get("pods", {}).items())),
        "  retries: ratings answered %d requests 503 on purpose (1 in 10); retried by the "
        "proxies: %s" % (failed, ", ".join("%s %d" % (p, n) for p, n in retried.items() if n)
                         or "none"),
        "  timeout: GET http://ratings:9080/slow (ratings sleeps 1 s; HTTPRoute ratings: 300ms) "
        "-> %s" % (slow.stdout.strip()[:100] or slow.stderr.strip()[:100]),
        "  way in:  %d requests from this host (outside the mesh) to %s through the Gateway "
        "bookinfo's proxy, mutual TLS on to productpage: %d answered 200" % (
            way_in["requests"], way_in["url"], way_in["ok"]),
        "  way out: %d requests from client-0 to http://%s (ExternalService partner) through "
        "the egress gateway's proxy, the only pod that reaches it, which originates TLS: %d "
        "answered 200" % (way_out["requests"], PARTNER, way_out["statuses"].get("200", 0)),
    ]
    return {"requests": main["requests"], "ok": ok, "split": dict(pods), "canary":
            canary.get("pods", {}), "ratings_failed": failed, "retried": retried,
            "gateway": way_in, "egress": way_out, "text": "\n".join(lines)}


def gateway_url(cluster, path="/products"):
    return "http://%s:%d%s" % (cluster.pods[GATEWAY_POD]["ip"], GATEWAY_PORT, path)


def through_gateway(cluster, count):
    """`count` GETs from this host, which is not in the mesh, through the Gateway's proxy; the
    host reaches the demo's network through its gateway address."""
    url = gateway_url(cluster)
    ok = 0
    pods = collections.Counter()
    for _ in range(count):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read()
                ok += r.status == 200
                pods[json.loads(body).get("pod", "")] += 1  # who answered
        except (OSError, ValueError):
            pass
    return {"url": url, "requests": count, "ok": ok, "pods": dict(pods)}


def cluster_app_failed(cluster):
    r = cluster.exec("ratings-v1-0", ["testapp", "get", "http://127.0.0.1:9080/__stats"],
                     check=False)
    try:
        return json.loads(r.stdout)["failed"]
    except (ValueError, KeyError):
        return 0


def guide(state_dir, cluster):
    rel = os.path.relpath(state_dir, os.getcwd())
    d = rel if not rel.startswith("..") else state_dir
    cp = cluster.control_plane_ip
    r = meshctl(state_dir, "dashboard")
    lines = [
        "",
        "The demo keeps running as pods (podman; state and meshctl context in %s/):" % d,
        "",
        "  pods               %s" % ", ".join([cluster_lib.CONTROL_PLANE_NAME] +
                                              list(cluster.pods)),
        "  meshctl            %s/bin/meshctl proxy-status" % d,
        "                     %s/bin/meshctl get workloads" % d,
        "                     %s/bin/meshctl get svc          (each Service's virtual address)"
        % d,
        "                     %s/bin/meshctl describe httproute reviews" % d,
        "                     %s/bin/meshctl proxy-config productpage-v1-0.default" % d,
        "  golden metrics     %s/bin/meshctl stat        (success rate, RPS, latency per edge)" %
        d,
        "                     %s/bin/meshctl top" % d,
        "  traces             %s/bin/meshctl traces" % d,
        "  dashboard          %s" % (r.stdout.strip() or "%s/bin/meshctl dashboard" % d),
        "  control plane      curl --cacert %s/ca.pem --resolve meshlet-control-plane:15014:%s "
        "https://meshlet-control-plane:15014/metrics" % (d, cp),
        "                     (the pod's address; the host reaches the demo's network)",
        "  the way in         curl %s     (Gateway bookinfo: %s/bin/meshctl get gateways)"
        % (gateway_url(cluster), d),
        "  the way out        %s/bin/meshctl get externalservices   (through the egress gateway: "
        "%s/bin/meshctl proxy-config %s.default)" % (d, d, EGRESS_POD),
        "  more traffic       python3 examples/demo/pods.py traffic --seconds 10",
        "  inside a pod       %spodman --root %s/storage --runroot %s/run ps" % (
            "CONTAINERS_CONF=%s/containers.conf " % cluster.run.dir if cluster.cni else "",
            cluster.run.dir, cluster.run.dir),
        "  stop               ./dev demo --stop     (removes the pods, images, network and %s/)"
        % d,
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
            s.add_argument("--bin-dir", required=True)
            s.add_argument("--cni", action="store_true",
                           help="capture by the meshlet-cni plugin (podman's CNI backend, "
                           "meshlet-cni-agent from --bin-dir) instead of meshlet-init")
            s.add_argument("--routes", choices=sorted(demo.ROUTES),
                           default=os.environ.get("MESHLET_DEMO_ROUTES") or "meshlet",
                           help="the example routes as meshlet HTTPRoutes (examples/policies) "
                           "or as Gateway API HTTPRoutes (examples/gateway-api)")
        if name in ("start", "traffic"):
            s.add_argument("--summary-json", help="also write the traffic counts here")
            s.add_argument("--traffic-seconds", "--seconds", type=float, default=float(
                os.environ.get("MESHLET_DEMO_TRAFFIC_SECONDS") or 5))
    args = parser.parse_args()
    try:
        if args.command == "stop":
            stop(os.path.abspath(args.state_dir))
        elif args.command == "traffic":
            path = state_file(os.path.abspath(args.state_dir))
            if not os.path.exists(path):
                raise DemoError("no pods demo running (%s does not exist)" % path)
            with open(path) as f:
                state = json.load(f)
            run = harness.Run(name="demo", keep=True)
            run.dir, run.network, run.bridge = state["run_dir"], state["network"], state["bridge"]
            run.subnet = ipaddress.ip_network(state["subnet"])
            cluster = cluster_lib.Cluster(run, os.path.join(args.state_dir, "bin", "meshctl.bin"))
            cluster.pods = state["pods"]
            summary = traffic(run, cluster, args.traffic_seconds, cni=state.get("cni", False))
            print(summary["text"])
        else:
            summary = start(args)
        if args.command != "stop" and args.summary_json:
            with open(args.summary_json, "w") as f:
                json.dump({k: v for k, v in summary.items() if k != "text"}, f)
    except (DemoError, harness.E2EError) as e:
        print("demo: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
