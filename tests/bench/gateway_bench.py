#!/usr/bin/env python3
"""The way in, through the meshlet Gateway and through HAProxy doing the same job, in one run:

    client -> edge proxy (TLS termination, route by host and path) -> mTLS -> proxy -> app

Chains:
  direct        the client talks to the app (nginx, 1 KiB body) itself: the reference;
  meshlet       the gateway proxy (the sidecar binary with --gateway default/edge, configured by
                the control plane from a Gateway with an HTTP and an HTTPS listener for
                shop.example.com, the certificate from a Secret on a fake Kubernetes API, and an
                HTTPRoute /cart -> Service backend), calling the backend's sidecar with mesh mTLS
                under its workload identity (HTTP/2, pooled), which calls the app (HTTP/1.1);
  haproxy-mesh  an HAProxy edge (the same listeners, the same certificate, a host + path-prefix
                rule, 404 otherwise; peers/gateway-haproxy-edge.cfg) calling a receiving HAProxy
                with mutual TLS (mesh certificates with SPIFFE ids, ALPN --haproxy-alpn, pooled;
                peers/two-hop-haproxy-inbound.cfg), which calls the app: the same two hops;
  haproxy-edge  the HAProxy edge calling the app directly (plaintext): one hop, what an ingress
                without a mesh does, for scale.
The control plane, its API and the fake Kubernetes API only configure; they are idle while
measured. Every proxy runs one worker (--concurrency 1, nbthread 1) pinned to core --proxy-cpu,
the app and the load generator (//tests/bench/loadgen:loadgen, one thread, HTTP/1.1 keep-alive,
--connections connections, Host shop.example.com, path /cart/1) to core --load-cpu.

Each round, client (http: plaintext, https: TLS 1.3 to the edge, SNI shop.example.com) and chain,
in a rotated order:
  max      closed loop, one request in flight per connection: the maximum requests/s;
  @rate    open loop at --rate requests/s: latency p50/p99 from the intended send time, and the
           CPU time (user + system, /proc) of the chain's proxies per request;
and the peak RssAnon of the chain's proxies (100 ms samples during max). The summary prints
medians over the rounds [min-max] and meshlet's ratios to haproxy-mesh.

--costs TOOL measures instead what each proxy of a chain spends per request, as
per_request_costs.py does for the sidecar (its tool_results): strace, perf-trace (system calls),
wakeups (wake-ups and CPU by thread) and alloc (heap allocations: malloc_counter.so preloaded
into every process started; meshlet's chain only); closed loop over --connections for --duration
s after --warmup s, per client. Instructions (callgrind) are not measured here: a sidecar under
valgrind starts slower than the tests' harness waits for.

--smoke runs one short round and checks only that every request succeeded (HAProxy chains are
skipped with a SKIP line when it is not installed).

Usage: python3 tests/bench/gateway_bench.py --control-plane bazel-bin/control-plane/control-plane \
           --sidecar bazel-bin/sidecar/sidecar --loadgen bazel-bin/tests/bench/loadgen/loadgen \
           [--rounds 5] [--duration 5]
       after `bazel build --config=opt //control-plane //sidecar //tests/bench/loadgen:loadgen`.
"""

import argparse
import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import cp_api  # noqa: E402
import per_request_costs  # noqa: E402
import proxy_compare as pc  # noqa: E402
import sidecar_test  # noqa: E402
import two_hop  # noqa: E402
from mesh_util import (create_join_token, make_ca, make_server_cert,  # noqa: E402
                       start_fake_kubernetes, start_plaintext_control_plane, start_xds_sidecar,
                       stop_process)
from two_hop import failed, median_range, render_as  # noqa: E402

HOST = "shop.example.com"
PATH = "/cart/1"
NAMESPACE = "default"
GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"
K8S_TOKEN = "bench-control-plane-token"


class Chain:
    def __init__(self, name, port, tls_port, procs, version):
        self.name, self.port, self.tls_port, self.procs, self.version = (
            name, port, tls_port, procs, version)


def get(port, tls_ca=None, host=HOST, path=PATH):
    """The status of GET `path` for `host` on 127.0.0.1:port (HTTPS with SNI `host` when tls_ca
    is given), or None when nothing answered."""
    try:
        if tls_ca:
            context = ssl.create_default_context(cafile=tls_ca)
            conn = http.client.HTTPSConnection(host, port, timeout=2, context=context)
            conn.sock = context.wrap_socket(
                socket.create_connection(("127.0.0.1", port), timeout=2),
                server_hostname=host)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path, headers={"Host": host})
        status = conn.getresponse().status
        conn.close()
        return status
    except (OSError, http.client.HTTPException):
        return None


def wait_serving(name, procs, port, tls_port, web_ca, timeout=30):
    deadline = time.time() + timeout
    while not (get(port) == 200 and get(tls_port, web_ca) == 200):
        dead = [p for p in procs if not p.alive()]
        if dead or time.time() > deadline:
            raise RuntimeError(f"{name} does not serve {HOST}{PATH} on {port}/{tls_port}:\n"
                               + "\n".join(p.log_tail() for p in (dead or procs)))
        time.sleep(0.1)
    # The routing is real: another path is not the app's.
    if get(port, path="/account") != 404:
        raise RuntimeError(f"{name}: /account is not answered 404")


class SidecarProc:
    """A sidecar_test.Sidecar seen as a pc.Proc (pid, alive, log_tail), pinned to `cpu`."""

    def __init__(self, sidecar, cpu):
        self.sidecar, self.pid = sidecar, sidecar.proc.pid
        subprocess.run(["taskset", "-a", "-cp", str(cpu), str(self.pid)], check=True,
                       capture_output=True)

    def alive(self):
        return self.sidecar.proc.poll() is None

    def log_tail(self):
        return self.sidecar.log()[-2000:]


class Mesh:
    """The control plane (plaintext xDS, its CA), the fake Kubernetes API holding the shop
    certificate's Secret, the backend's sidecar in front of the app and the gateway proxy."""

    def __init__(self):
        self.sidecars, self.cp, self.fake = [], None, None

    def start(self, args, workdir, app_port, shop_cert):
        self.fake, kubernetes_flags = start_fake_kubernetes(workdir, K8S_TOKEN)
        with open(shop_cert[0]) as c, open(shop_cert[1]) as k:
            self.fake.put("secrets", {
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"namespace": NAMESPACE, "name": "shop-cert"},
                "data": {"tls.crt": base64.b64encode(c.read().encode()).decode(),
                         "tls.key": base64.b64encode(k.read().encode()).decode()}})
        self.cp, self.api, self.ads, self.token = start_plaintext_control_plane(
            args.control_plane, workdir, *kubernetes_flags, "--kubernetes-discovery=false",
            "--kubernetes-policy=false", "--webhook-address=off", "--xds-debounce", "20ms")
        self.put("gatewayclasses", "meshlet", "GatewayClass",
                 {"controllerName": "meshlet.io/gateway-controller"}, namespaced=False)
        self.port, self.tls_port = pc.free_port(), pc.free_port()
        self.put("gateways", "edge", "Gateway", {
            "gatewayClassName": "meshlet",
            "listeners": [
                {"name": "http", "port": self.port, "protocol": "HTTP", "hostname": HOST},
                {"name": "https", "port": self.tls_port, "protocol": "HTTPS", "hostname": HOST,
                 "tls": {"certificateRefs": [{"kind": "Secret", "name": "shop-cert"}]}}]})
        self.put("httproutes", "shop", "HTTPRoute", {
            "parentRefs": [{"name": "edge"}], "hostnames": [HOST],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/cart"}}],
                       "backendRefs": [{"name": "backend", "port": app_port}]}]})
        backend = start_xds_sidecar(
            workdir, self.ads, "backend-0", NAMESPACE, "--node-service=backend",
            f"--node-port={app_port}", "--log-level=warn",
            join_token=self.join_token("backend"), service_account="backend",
            binary=args.sidecar)
        self.sidecars.append(backend)
        gw_dir = tempfile.mkdtemp(dir=workdir)
        token_file = os.path.join(gw_dir, "join-token")
        with open(token_file, "w") as f:
            f.write(self.join_token("edge-meshlet") + "\n")
        gateway = sidecar_test.Sidecar(
            gw_dir, "{}\n", f"--xds={self.ads}", "--xds-plaintext=true",
            f"--ca-address={self.ads}", "--ca-plaintext=true", "--node-id=edge-meshlet-gw",
            f"--gateway={NAMESPACE}/edge", "--node-service-account=edge-meshlet",
            "--node-address=127.0.0.1", f"--join-token-file={token_file}", "--log-level=warn",
            concurrency=1, binary=args.sidecar)
        self.sidecars.append(gateway)
        self.procs = [SidecarProc(gateway, args.proxy_cpu), SidecarProc(backend, args.proxy_cpu)]

    def join_token(self, service_account):
        return create_join_token(self.api, self.token, service_account, "1h", NAMESPACE)

    def put(self, plural, name, kind, spec, namespaced=True):
        metadata = {"name": name}
        where = ""
        if namespaced:
            metadata["namespace"] = NAMESPACE
            where = f"/namespaces/{NAMESPACE}"
        body = json.dumps({"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
                           "metadata": metadata, "spec": spec}).encode()
        req = urllib.request.Request(cp_api.url(self.api, f"{GATEWAY_API}{where}/{plural}/{name}"),
                                     method="PUT", data=body,
                                     headers={"Authorization": "Bearer " + self.token})
        with cp_api.urlopen(req, timeout=5) as r:
            r.read()

    def stop(self):
        for s in self.sidecars:
            s.stop()
        if self.cp is not None:
            stop_process(self.cp)
        if self.fake is not None:
            self.fake.stop()


def measure_costs(args, chains, clients, out):
    """--costs TOOL: per_request_costs.tool_results over each chain's proxies (edge first) and
    client, closed loop over --connections for --duration s after a warm-up of --warmup s."""
    counts_file = os.path.join(out, "counts.txt")
    names = {"meshlet": ("gateway", "backend"), "haproxy-mesh": ("edge", "inbound"),
             "haproxy-edge": ("edge",)}
    for client in clients:
        for chain in chains:
            if chain.name not in names or (args.costs == "alloc" and chain.name != "meshlet"):
                continue
            label = f"{chain.name} {client}"
            measured = [(n, [p.pid]) for n, p in zip(names[chain.name], chain.procs)]

            def run(duration):
                res, _ = loadgen(args, chain, client, os.path.join(out, f"{label}.json"),
                                 duration=duration, warmup=0)
                if failed(res) or res["requests"]["ok"] == 0:
                    raise RuntimeError(f"{label}: failed requests {res['requests']}")
                return res["requests"]["ok"]
            run(args.warmup)
            per_request_costs.tool_results(args.costs, measured, counts_file, out,
                                           lambda: run(args.duration), label, client)


def start_haproxy_chains(args, haproxy, workdir, app_port, web_ca):
    version = pc.tool_version([haproxy, "-v"], r"version (\S+)")
    chains = []
    inbound = pc.free_port()
    receiver = pc.Proc("haproxy-inbound", [
        haproxy, "-db", "-f",
        render_as("two-hop-haproxy-inbound.cfg", "haproxy-inbound.cfg", workdir,
                  {"DIR": workdir, "PORT": inbound, "NEXT_PORT": app_port,
                   "SERVER_OPTIONS": ""})], workdir, args.proxy_cpu)
    for name, backend, next_port in (("haproxy-mesh", "mesh", inbound),
                                     ("haproxy-edge", "app", app_port)):
        port, tls_port = pc.free_port(), pc.free_port()
        edge = pc.Proc(name, [
            haproxy, "-db", "-f",
            render_as("gateway-haproxy-edge.cfg", f"{name}.cfg", workdir,
                      {"DIR": workdir, "PORT": port, "TLS_PORT": tls_port, "BACKEND": backend,
                       "NEXT_PORT": next_port, "ALPN": args.haproxy_alpn})],
            workdir, args.proxy_cpu)
        procs = [edge, receiver] if backend == "mesh" else [edge]
        wait_serving(name, procs, port, tls_port, web_ca)
        chains.append(Chain(name, port, tls_port, procs, version))
    return chains


def loadgen(args, chain, client, out, rate=None, duration=None, warmup=None):
    """Runs the generator against `chain` with `client` (http or https) for `duration` s after
    `warmup` s (default --duration, --warmup); returns (its JSON, the proxies' CPU seconds)."""
    duration = args.duration if duration is None else duration
    warmup = args.warmup if warmup is None else warmup
    https = client == "https" and chain.tls_port is not None
    argv = [args.loadgen, "--address", f"127.0.0.1:{chain.tls_port if https else chain.port}",
            "--protocol", "http/1.1", "--authority", HOST, "--path", PATH,
            "--connections", str(args.connections), "--duration", f"{duration}s",
            "--warmup", f"{warmup}s", "--cpu", str(args.load_cpu), "--quiet",
            "--output", out]
    if https:
        argv += ["--tls", "--tls-ca", args.web_ca, "--tls-server-name", HOST]
    argv += (["--concurrency", str(args.connections)] if rate is None
             else ["--rate", f"{rate:.0f}"])
    cpu_before = sum(sum(pc.cpu_seconds(p.pid)) for p in chain.procs)
    run = subprocess.run(argv, capture_output=True, text=True)
    cpu = sum(sum(pc.cpu_seconds(p.pid)) for p in chain.procs) - cpu_before
    if run.returncode != 0:
        raise RuntimeError(f"loadgen against {chain.name} ({client}) failed: {run.stderr}")
    with open(out) as f:
        return json.load(f), cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--control-plane", required=True, help="//control-plane")
    two_hop.add_run_flags(ap)
    ap.add_argument("--clients", default="http,https", help="http, https or both")
    ap.add_argument("--haproxy-alpn", default="h2", choices=["h2", "http/1.1"],
                    help="between haproxy-mesh's hops (default h2, like the mesh's)")
    ap.add_argument("--costs", choices=["strace", "perf-trace", "wakeups", "alloc"],
                    help="instead of the comparison: per_request_costs.py's figure per request "
                         "of each proxy of meshlet and the HAProxy chains (alloc: meshlet "
                         "only), closed loop over --connections for --duration s")
    ap.add_argument("--alloc-lib", help="a built malloc_counter.so (--costs alloc; default: "
                                        "compiled here from malloc_counter.c)")
    args = two_hop.parse_run_flags(ap)
    clients = [c for c in args.clients.split(",") if c]
    if not clients or any(c not in ("http", "https") for c in clients):
        ap.error("--clients: a comma-separated list of http and https")
    if args.rounds < 1 or args.duration <= 0 or args.rate <= 0 or args.connections < 1:
        ap.error("--rounds, --duration, --rate and --connections must be positive")

    tools = two_hop.find_tools()
    if tools is None:
        return 0
    workdir, out_dir = two_hop.work_dirs(args, "gateway-bench")
    ok, mesh = False, None
    try:
        # The shop certificate (P-256, from its own CA) for both edges; the mesh certificates
        # for HAProxy's hop.
        web_ca = make_ca(workdir, "web-ca")
        args.web_ca = web_ca[0]
        shop = make_server_cert(workdir, "shop", web_ca, f"DNS:{HOST}")
        two_hop.combine(workdir, "shop-combined.pem", shop)
        two_hop.make_mesh_certificates(workdir)
        body = ("meshlet-bench-" * 80)[:pc.BODY_BYTES]
        if args.costs:
            os.chmod(out_dir, 0o1777)  # the malloc counter's file
        if args.costs == "alloc":
            # Every process started from here on counts; only the proxies are asked to report.
            os.environ["LD_PRELOAD"] = args.alloc_lib or per_request_costs.build_alloc_lib(
                workdir)
            os.environ["MALLOC_COUNTER_OUT"] = os.path.join(out_dir, "counts.txt")
        app_port, app_h2 = pc.free_port(), pc.free_port()
        app = pc.Proc("app-nginx", [
            tools["nginx"], "-p", workdir, "-e", "stderr", "-c",
            pc.render("upstream-nginx.conf", workdir,
                      {"DIR": workdir, "H1_PORT": app_port, "H2_PORT": app_h2, "BODY": body})],
            workdir, args.load_cpu)
        pc.wait_ready(app, app_port, h2_port=app_h2)
        chains = [Chain("direct", app_port, None, [], "nginx app")]

        mesh = Mesh()
        mesh.start(args, workdir, app_port, shop)
        wait_serving("meshlet", mesh.procs, mesh.port, mesh.tls_port, args.web_ca)
        chains.append(Chain("meshlet", mesh.port, mesh.tls_port, mesh.procs,
                            pc.tool_version([args.sidecar, "--version"], r"(\S.*)")))
        if tools["haproxy"] is None:
            print("SKIP haproxy-mesh, haproxy-edge: haproxy is not installed")
        else:
            chains += start_haproxy_chains(args, tools["haproxy"], workdir, app_port,
                                           args.web_ca)
        idle = {c.name: sum(pc.memory_kib(p.pid)[1] for p in c.procs) for c in chains}
        print(f"gateway path, HTTP/1.1 keep-alive clients {'+'.join(clients)}, {args.connections} "
              f"connections, {args.rounds} rounds of {args.duration} s (+{args.warmup} s "
              f"warm-up); proxies on core {args.proxy_cpu}, client and app on core "
              f"{args.load_cpu}; load average {os.getloadavg()[0]:.2f}")
        for c in chains:
            print(f"  {c.name}: {c.version}")

        if args.costs:
            measure_costs(args, chains, clients, out_dir)
            print(f"raw results: {out_dir}")
            ok = True
            return 0

        results, failures = {}, []

        def keep(key, metric, value):
            results.setdefault(key, {}).setdefault(metric, []).append(value)

        for round_index in range(args.rounds):
            order = chains[round_index % len(chains):] + chains[:round_index % len(chains)]
            for client in clients:
                for chain in order:
                    if chain.name == "direct" and client == "https":
                        continue  # the app serves no TLS: direct is the plaintext reference
                    key = (chain.name, client)
                    label = f"r{round_index}-{chain.name}-{client}"
                    samplers = [pc.Sampler(p.pid) for p in chain.procs]
                    res, _ = loadgen(args, chain, client, os.path.join(out_dir, f"{label}-max.json"))
                    if samplers:
                        keep(key, "anon_kib", sum(s.stop()[1] for s in samplers))
                    keep(key, "max_rps", res["achieved_rate"])
                    failures += [f"{label} max"] if failed(res) else []
                    res, cpu = loadgen(args, chain, client,
                                       os.path.join(out_dir, f"{label}-fixed.json"), args.rate)
                    failures += [f"{label} fixed"] if failed(res) else []
                    keep(key, "p50", res["latency_us"]["p50"])
                    keep(key, "p99", res["latency_us"]["p99"])
                    done = res["requests"]["ok"] + res["requests"]["warmup"]
                    if chain.procs and done:
                        keep(key, "cpu_us", cpu / done * 1e6)

        print(f"\nmedians over {args.rounds} rounds [min-max]; latency in us at "
              f"{args.rate:.0f} requests/s (open loop, from the intended send); CPU: user + "
              f"system us per request of the chain's proxies together; RssAnon of the chain's "
              f"proxies, KiB")
        print(f"{'chain':<13} {'client':<6} {'max req/s':>22} {'p50':>18} {'p99':>20} "
              f"{'CPU us/req':>20} {'idle anon':>10} {'peak anon':>20}")
        for client in clients:
            for c in chains:
                r = results.get((c.name, client))
                if r is None:
                    continue
                print(f"{c.name:<13} {client:<6} {median_range(r['max_rps'], '.0f'):>22} "
                      f"{median_range(r['p50'], '.0f'):>18} {median_range(r['p99'], '.0f'):>20} "
                      f"{median_range(r.get('cpu_us', []), '.1f'):>20} "
                      f"{idle[c.name] if c.procs else '-':>10} "
                      f"{median_range(r.get('anon_kib', []), '.0f'):>20}")

        def med(key, metric):
            values = results.get(key, {}).get(metric)
            return sorted(values)[len(values) // 2] if values else None

        for client in clients:
            if ("haproxy-mesh", client) not in results:
                continue
            ratios = []
            for metric, what in (("max_rps", "max req/s"), ("p99", "p99"),
                                 ("cpu_us", "CPU per request"), ("anon_kib", "peak RssAnon")):
                m, h = med(("meshlet", client), metric), med(("haproxy-mesh", client), metric)
                ratios.append(f"{what} {m / h:.2f}" if m is not None and h else f"{what} -")
            print(f"meshlet / haproxy-mesh ({client}): {', '.join(ratios)}")
        ok = two_hop.report_failures(args, out_dir, failures)
        return 0 if ok else 1
    finally:
        if mesh is not None:
            mesh.stop()
        pc.stop_started(workdir, ok)


if __name__ == "__main__":
    sys.exit(main())
