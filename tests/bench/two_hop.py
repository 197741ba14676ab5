#!/usr/bin/env python3
"""The path a mesh request takes, through each proxy under comparison, in one run:

    client -> proxy A (plaintext in) -> mutual TLS -> proxy B -> upstream (HTTP/1.1)

Chains: "direct" (the client talks to the upstream itself), "meshlet" (two sidecars, HTTP/2
over mTLS between them as the control plane configures it, peers/meshlet-mesh-*.yaml),
"haproxy-h1" and "haproxy-h2" (HAProxy 2.6, HTTP/1.1 or HTTP/2 over mTLS between the hops) and
"nginx" (nginx 1.22, HTTP/1.1 over mTLS: nginx cannot proxy HTTP/2). Certificates are made at
run time (a P-256 mesh root and one leaf per side, SPIFFE ids as the mesh CA issues them, and
a.bench / b.bench as DNS names for nginx, which verifies a host name). Every
proxy runs one worker pinned to core 0 (`--proxy-cpu`), the upstream nginx and the load
generator (//tests/bench/loadgen:loadgen, one thread) to core 1 (`--load-cpu`). All chains run
at once, one is loaded at a time, in a rotated order each round.

Each round and chain:
  max      closed loop, `--concurrency` requests in flight over `--connections` connections
           (default 16; one request each for HTTP/1.1, four streams each for h2): the maximum
           requests/s;
  @1000    open loop at `--rate` requests/s (default 1000): latency p50/p99 from the intended
           send time, and CPU of both proxies (user + system, /proc) per 1000 requests/s;
  @50%     open loop at half of this round's maximum of the chain: p50/p99;
and the peak RssAnon of both proxies together (100 ms samples while loaded). Added latency is the
chain's percentile minus direct's at the same rate in the same round. The summary prints medians
over the rounds with min-max, and meshlet's ratios to HAProxy's better configuration and to nginx.

--grpc runs gRPC instead: unary calls (one 1 KiB message each way) from an h2 client to
delay_server_bin (`--delay-server`, the project's gRPC server, no delay) as the upstream over h2c;
meshlet's inbound sidecar and HAProxy's receiving side reach it over HTTP/2, nginx uses grpc_pass
with HTTP/2 over mTLS between its hops (peers/two-hop-nginx-grpc-*.conf); HAProxy runs only with
HTTP/2 between the hops (gRPC's trailers need it).

--smoke runs one short round without the @50% runs and checks only that every request succeeded
(a chain whose proxy is not installed is skipped with a SKIP line). Raw results (one loadgen JSON per run) go to --out.

Usage: python3 tests/bench/two_hop.py --sidecar bazel-bin/sidecar/sidecar \
           --loadgen bazel-bin/tests/bench/loadgen/loadgen [--rounds 5] [--duration 5]
       after `bazel build --config=opt //sidecar //tests/bench/loadgen:loadgen`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import mtls_bench
import per_request_costs
import proxy_compare as pc

GRPC_METHOD = "/meshlet.bench.Delay/Call"


class Chain:
    """One proxy pair (or direct): where the client connects, and the processes to measure."""

    def __init__(self, name, port, h2_port, procs, version):
        self.name, self.port, self.h2_port, self.procs, self.version = (
            name, port, h2_port, procs, version)


def render_as(template, name, workdir, values):
    """peers/TEMPLATE filled in, under its own name (a template serves several processes)."""
    path = os.path.join(workdir, name)
    os.rename(pc.render(template, workdir, values), path)
    return path


def start_chains(args, tools, workdir, up_port, skip):
    chains = [Chain("direct", up_port, None, [], "upstream nginx")]

    def wait(name, procs, port):
        deadline = time.time() + 30
        # gRPC chains answer no GET: a connection accepted is enough (the warm-up does the rest).
        while not (pc.accepts_connections(port) if args.grpc else pc.http_get_ok(port)):
            dead = [p for p in procs if not p.alive()]
            if dead or time.time() > deadline:
                raise RuntimeError(f"{name} does not answer on {port}:\n" +
                                   "\n".join(p.log_tail() for p in (dead or procs)))
            time.sleep(0.1)

    # meshlet: outbound sidecar A, inbound sidecar B.
    port, inbound = pc.free_port(), pc.free_port()
    common = {"DIR": workdir, "INBOUND_PORT": inbound}
    b = pc.Proc("meshlet-inbound", [
        args.sidecar, "--config", pc.render("meshlet-mesh-inbound.yaml", workdir,
                                            dict(common, TLS_MODE="STRICT", UPSTREAM_PORT=up_port,
                                                 UPSTREAM_PROTOCOL="UPSTREAM_HTTP2" if args.grpc
                                                 else "UPSTREAM_HTTP1")),
        "--concurrency", "1", f"--admin-address=127.0.0.1:{pc.free_port()}", "--log-level",
        "warn"], workdir, args.proxy_cpu)
    a = pc.Proc("meshlet-outbound", [
        args.sidecar, "--config", pc.render("meshlet-mesh-outbound.yaml", workdir,
                                            dict(common, H1_PORT=port,
                                                 PROTOCOL="UPSTREAM_MESH_HTTP2", TLS="true",
                                                 MAX_REQUESTS=0, NO_RESUMPTION="false")),
        "--concurrency", "1", f"--admin-address=127.0.0.1:{pc.free_port()}", "--log-level",
        "warn"], workdir, args.proxy_cpu)
    wait("meshlet", [a, b], port)
    chains.append(Chain("meshlet", port, port, [a, b],
                        pc.tool_version([args.sidecar, "--version"], r"(\S.*)")))

    if "haproxy" not in skip:
        pairs = [("haproxy-h2", "h2")] if args.grpc else [("haproxy-h1", "http/1.1"),
                                                          ("haproxy-h2", "h2")]
        for alpn_name, alpn in pairs:
            port, inbound = pc.free_port(), pc.free_port()
            b = pc.Proc(f"{alpn_name}-inbound", [
                tools["haproxy"], "-db", "-f",
                render_as("two-hop-haproxy-inbound.cfg", f"{alpn_name}-inbound.cfg", workdir,
                          {"DIR": workdir, "PORT": inbound, "NEXT_PORT": up_port,
                           "SERVER_OPTIONS": "proto h2" if args.grpc else ""})],
                workdir, args.proxy_cpu)
            a = pc.Proc(f"{alpn_name}-outbound", [
                tools["haproxy"], "-db", "-f",
                render_as("two-hop-haproxy-outbound.cfg", f"{alpn_name}-outbound.cfg", workdir,
                          {"DIR": workdir, "PORT": port, "NEXT_PORT": inbound, "ALPN": alpn})],
                workdir, args.proxy_cpu)
            wait(alpn_name, [a, b], port)
            chains.append(Chain(alpn_name, port, port, [a, b],
                                pc.tool_version([tools["haproxy"], "-v"], r"version (\S+)")))

    if "nginx" not in skip:
        # gRPC: grpc_pass with HTTP/2 between the hops, one client port (h2c); otherwise HTTP/1.1
        # between the hops and a second client port for h2c.
        kind = "-grpc" if args.grpc else ""
        port, inbound = pc.free_port(), pc.free_port()
        h2_port = port if args.grpc else pc.free_port()
        b = pc.Proc("nginx-inbound", [
            tools["nginx"], "-p", workdir, "-e", "stderr", "-c",
            pc.render(f"two-hop-nginx{kind}-inbound.conf", workdir,
                      {"DIR": workdir, "PORT": inbound, "NEXT_PORT": up_port})],
            workdir, args.proxy_cpu)
        outbound = {"DIR": workdir, "PORT": port, "NEXT_PORT": inbound}
        if not args.grpc:
            outbound["H2_PORT"] = h2_port
        a = pc.Proc("nginx-outbound", [
            tools["nginx"], "-p", workdir, "-e", "stderr", "-c",
            pc.render(f"two-hop-nginx{kind}-outbound.conf", workdir, outbound)],
            workdir, args.proxy_cpu)
        wait("nginx", [a, b], port)
        chains.append(Chain("nginx", port, h2_port, [a, b],
                            pc.tool_version([tools["nginx"], "-v"], r"nginx/(\S+)")))
    return chains


def cpu_total(chain):
    return sum(sum(pc.cpu_seconds(p.pid)) for p in chain.procs)


def anon_kib(chain):
    return sum(pc.memory_kib(p.pid)[1] for p in chain.procs)


def loadgen(args, chain, out, label, rate=None):
    """Runs the generator against `chain`; returns (its JSON, the proxies' CPU seconds, wall s)."""
    port = chain.port
    protocol = "http/1.1"
    if args.client_protocol == "h2":
        protocol = "h2"
        port = chain.h2_port or chain.port
        if chain.name == "direct" and not args.grpc:
            port = args.upstream_h2_port
    argv = [args.loadgen, "--address", f"127.0.0.1:{port}", "--protocol", protocol,
            "--connections", str(args.connections), "--duration", f"{args.duration}s",
            "--warmup", f"{args.warmup}s", "--cpu", str(args.load_cpu), "--quiet",
            "--output", out]
    if args.grpc:
        argv += ["--grpc", "--path", GRPC_METHOD, "--body-bytes", str(pc.BODY_BYTES)]
    if rate is None:
        argv += ["--concurrency", str(args.concurrency)]
    else:
        # Where the tail falls in time, in the kept JSON: spread over the run, or one stall.
        argv += ["--rate", f"{rate:.0f}", "--slowest", "50"]
    cpu_before, wall_before = cpu_total(chain), time.monotonic()
    run = subprocess.run(argv, capture_output=True, text=True)
    cpu, wall = cpu_total(chain) - cpu_before, time.monotonic() - wall_before
    if run.returncode != 0:
        raise RuntimeError(f"loadgen against {chain.name} ({label}) failed: {run.stderr}")
    with open(out) as f:
        result = json.load(f)
    return result, cpu, wall


def failed(result):
    r = result["requests"]
    return r["errors"] + r["non_2xx"] + r["dropped"] + r["unfinished"]


def median_range(values, spec):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, spec)
    return f"{format(med, spec)} [{format(min(values), spec)}-{format(max(values), spec)}]"


def add_run_flags(ap):
    """The flags of a comparison's runs, shared with gateway_bench.py."""
    ap.add_argument("--sidecar", required=True, help="meshlet sidecar (build --config=opt)")
    ap.add_argument("--loadgen", required=True, help="//tests/bench/loadgen:loadgen")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before each run")
    ap.add_argument("--rate", type=float, default=1000.0, help="the fixed rate (requests/s)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--proxy-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--out", help="raw results (default: a new temporary directory, kept)")
    ap.add_argument("--smoke", action="store_true",
                    help="one short round; fails if any request fails")


def parse_run_flags(ap):
    """The parsed flags, a smoke run's short ones put in."""
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.duration, args.warmup, args.rate = 1, 1.0, 0.3, 200.0
    return args


def find_tools():
    """The peers and tools of the comparisons by name (None where not installed), or None after
    a SKIP line when one they cannot do without is missing."""
    tools = {name: pc.find_tool(name) for name in ("nginx", "haproxy", "openssl", "taskset")}
    for name in ("nginx", "openssl", "taskset"):
        if tools[name] is None:
            print(f"SKIP: {name} is not installed (the upstream, the certificates, pinning)")
            return None
    return tools


def work_dirs(args, prefix):
    """(working directory, raw results directory): the results in --out, else in the working
    directory for a smoke run (removed with it), else in a new kept temporary directory."""
    # World-writable: nginx's workers run as nobody.
    workdir = tempfile.mkdtemp(prefix=f"{prefix}-work-")
    os.chmod(workdir, 0o1777)
    if args.out:
        out_dir = os.path.abspath(args.out)
    elif args.smoke:
        out_dir = os.path.join(workdir, "results")
    else:
        out_dir = tempfile.mkdtemp(prefix=f"{prefix}-")
    os.makedirs(out_dir, exist_ok=True)
    return workdir, out_dir


def make_mesh_certificates(workdir):
    """mtls_bench's mesh root and leaves a, b in `workdir`, plus a-combined.pem and
    b-combined.pem (certificate and key, as HAProxy reads them)."""
    mtls_bench.make_certificates(workdir, per_request_costs.ATTESTATION, dns_names=True)
    for sa in ("a", "b"):
        combine(workdir, f"{sa}-combined.pem", (f"{sa}.pem", f"{sa}-key.pem"))


def combine(workdir, name, parts):
    with open(os.path.join(workdir, name), "w") as combined:
        for part in parts:
            with open(os.path.join(workdir, part)) as f:
                combined.write(f.read())


def report_failures(args, out_dir, failures):
    """Names the raw results (unless a smoke run's, removed) and the failed runs; True when none
    failed."""
    if not args.smoke or args.out:
        print(f"raw results: {out_dir}")
    if failures:
        print(f"FAILED requests in: {', '.join(failures)}")
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_flags(ap)
    ap.add_argument("--concurrency", type=int,
                    help="closed loop: requests in flight (default: one per connection for an "
                         "HTTP/1.1 client, 4 per connection for h2)")
    ap.add_argument("--client-protocol", choices=["h1", "h2"], default="h1")
    ap.add_argument("--grpc", action="store_true", help="gRPC calls (needs --delay-server)")
    ap.add_argument("--delay-server", help="//tests/bench/loadgen:delay_server_bin (the gRPC "
                                           "upstream of --grpc)")
    args = parse_run_flags(ap)
    if args.grpc:
        if not args.delay_server:
            ap.error("--grpc needs --delay-server")
        args.client_protocol = "h2"
    if args.concurrency is None:
        args.concurrency = args.connections * (4 if args.client_protocol == "h2" else 1)
    if args.rounds < 1 or args.duration <= 0 or args.rate <= 0:
        ap.error("--rounds, --duration and --rate must be positive")

    tools = find_tools()
    if tools is None:
        return 0
    skip = set()
    if tools["haproxy"] is None:
        print("SKIP haproxy-h1, haproxy-h2: haproxy is not installed")
        skip.add("haproxy")
    workdir, out_dir = work_dirs(args, "two-hop")
    ok = False
    try:
        make_mesh_certificates(workdir)
        body = ("meshlet-bench-" * 80)[:pc.BODY_BYTES]
        up_h1, up_h2 = pc.free_port(), pc.free_port()
        args.upstream_h2_port = up_h2
        if args.grpc:
            upstream = pc.Proc("upstream-grpc", [
                args.delay_server, "--listen", f"127.0.0.1:{up_h1}", "--grpc-method",
                GRPC_METHOD, "--response-bytes", str(pc.BODY_BYTES)], workdir, args.load_cpu)
            deadline = time.time() + 10
            while not pc.accepts_connections(up_h1):
                if not upstream.alive() or time.time() > deadline:
                    raise RuntimeError(f"the gRPC upstream did not start:\n{upstream.log_tail()}")
                time.sleep(0.05)
        else:
            upstream = pc.Proc("upstream-nginx", [
                tools["nginx"], "-p", workdir, "-e", "stderr", "-c",
                pc.render("upstream-nginx.conf", workdir,
                          {"DIR": workdir, "H1_PORT": up_h1, "H2_PORT": up_h2, "BODY": body})],
                workdir, args.load_cpu)
            pc.wait_ready(upstream, up_h1, h2_port=up_h2)
        chains = start_chains(args, tools, workdir, up_h1, skip)
        idle = {c.name: anon_kib(c) for c in chains}
        print(f"two hops, client {'gRPC' if args.grpc else args.client_protocol}, {args.rounds} rounds of {args.duration} s "
              f"(+{args.warmup} s warm-up); proxies on core {args.proxy_cpu}, client and upstream "
              f"on core {args.load_cpu}; load average {os.getloadavg()[0]:.2f}")
        for c in chains:
            print(f"  {c.name}: {c.version}")

        # results[chain][metric] = [value per round]
        results = {c.name: {} for c in chains}
        failures = []

        def keep(chain, metric, value):
            results[chain.name].setdefault(metric, []).append(value)

        for round_index in range(args.rounds):
            order = chains[round_index % len(chains):] + chains[:round_index % len(chains)]
            rates = {}
            for chain in order:
                sampler = pc.Sampler(chain.procs[0].pid) if chain.procs else None
                sampler_b = pc.Sampler(chain.procs[1].pid) if chain.procs else None
                label = f"r{round_index}-{chain.name}"
                res, cpu, wall = loadgen(args, chain, os.path.join(out_dir, f"{label}-max.json"),
                                         "max")
                if sampler:
                    keep(chain, "anon_kib", sampler.stop()[1] + sampler_b.stop()[1])
                keep(chain, "max_rps", res["achieved_rate"])
                rates[chain.name] = res["achieved_rate"]
                failures += [f"{label} max"] if failed(res) else []
                res, cpu, wall = loadgen(args, chain, os.path.join(out_dir, f"{label}-fixed.json"),
                                         "fixed", args.rate)
                failures += [f"{label} fixed"] if failed(res) else []
                keep(chain, "p50_fixed", res["latency_us"]["p50"])
                keep(chain, "p99_fixed", res["latency_us"]["p99"])
                if chain.procs:
                    # Both proxies' CPU (cores) per 1000 requests/s, per proxy.
                    keep(chain, "cpu_per_1000", cpu / wall / (args.rate / 1000) / 2)
            for chain in order:
                # The smoke checks the paths, not a load near a proxy's limit on a busy machine.
                if chain.name == "direct" or args.smoke:
                    continue
                half = max(rates[chain.name] / 2, 1)
                label = f"r{round_index}-{chain.name}"
                res, _, _ = loadgen(args, chain, os.path.join(out_dir, f"{label}-half.json"),
                                    "50 %", half)
                direct, _, _ = loadgen(args, chains[0],
                                       os.path.join(out_dir, f"{label}-half-direct.json"),
                                       "50 % direct", half)
                failures += [f"{label} half"] if failed(res) or failed(direct) else []
                keep(chain, "added_p50_half", res["latency_us"]["p50"] - direct["latency_us"]["p50"])
                keep(chain, "added_p99_half", res["latency_us"]["p99"] - direct["latency_us"]["p99"])
            for chain in chains[1:]:
                r = results[chain.name]
                d = results["direct"]
                keep(chain, "added_p50_fixed", r["p50_fixed"][-1] - d["p50_fixed"][-1])
                keep(chain, "added_p99_fixed", r["p99_fixed"][-1] - d["p99_fixed"][-1])

        print(f"\nmedians over {args.rounds} rounds [min-max]; latency added to direct in us "
              f"(open loop, from the intended send); CPU in cores per 1000 requests/s per proxy; "
              f"RssAnon of both proxies, KiB")
        print(f"{'chain':<12} {'max req/s':>22} {'+p50 @' + format(args.rate, '.0f'):>20} "
              f"{'+p99 @' + format(args.rate, '.0f'):>20} {'+p50 @50%':>20} {'+p99 @50%':>20} "
              f"{'CPU/1000':>22} {'idle anon':>10} {'peak anon':>18}")
        for c in chains:
            r = results[c.name]
            print(f"{c.name:<12} {median_range(r.get('max_rps', []), '.0f'):>22} "
                  f"{median_range(r.get('added_p50_fixed', []), '.0f'):>20} "
                  f"{median_range(r.get('added_p99_fixed', []), '.0f'):>20} "
                  f"{median_range(r.get('added_p50_half', []), '.0f'):>20} "
                  f"{median_range(r.get('added_p99_half', []), '.0f'):>20} "
                  f"{median_range(r.get('cpu_per_1000', []), '.4f'):>22} "
                  f"{idle[c.name] if c.procs else '-':>10} "
                  f"{median_range(r.get('anon_kib', []), '.0f'):>18}")

        def med(name, metric):
            values = results.get(name, {}).get(metric)
            return statistics.median(values) if values else None

        haproxy = [n for n in ("haproxy-h1", "haproxy-h2") if n in results]
        if haproxy:
            best = max(haproxy, key=lambda n: med(n, "max_rps"))
            print(f"\nmeshlet / {best} (HAProxy's best by max req/s):")
            for metric, what in (("max_rps", "max req/s"), ("added_p99_fixed", "added p99 @rate"),
                                 ("cpu_per_1000", "CPU per 1000 req/s"),
                                 ("anon_kib", "peak RssAnon")):
                m, h = med("meshlet", metric), med(best, metric)
                # An added latency at or below direct's (noise on a busy machine) has no ratio.
                ratio = f"{m / h:.2f}" if m is not None and h is not None and m >= 0 and h > 0 \
                    else "-"
                print(f"  {what}: {ratio}")
        if "nginx" in results:
            m, n = med("meshlet", "max_rps"), med("nginx", "max_rps")
            print(f"meshlet / nginx max req/s: {m / n:.2f}" if m and n else "")
        ok = report_failures(args, out_dir, failures)
        return 0 if ok else 1
    finally:
        pc.stop_started(workdir, ok)


if __name__ == "__main__":
    sys.exit(main())
