#!/usr/bin/env python3
"""Per-request costs of one proxy that do not depend on how busy the machine is.

Runs the upstream and one proxy of proxy_compare.py (same peer configurations), warms it up, then
sends a fixed number of requests with h2load and reports, per proxied request:

  --tool alloc      heap allocations (malloc_counter.so preloaded; needs a C compiler or
                    --alloc-lib), counted over the measured requests only
  --tool callgrind  instructions (valgrind --tool=callgrind, zeroed after the warm-up); the
                    profile is kept for callgrind_annotate
  --tool strace     system calls (strace -c -f attached after the warm-up), by name
  --tool perf-trace the same counted by `perf trace -s` (kernel tracepoints): it slows the
                    proxy far less than strace, so requests share loop turns as they would
                    untraced; the figure to use with --rate
  --tool wakeups    wake-ups: each thread's voluntary context switches (a thread blocked in
                    epoll_wait or on a lock that runs again) and its CPU time (schedstat), per
                    request, by thread name; for the low-load figures, with --rate

Callgrind profiles and the strace summary go to --out, or else to a new temporary directory that
is kept and named in the last line; nothing is written to the current directory. The proxies'
working files (configurations, logs, the counts file) live in a temporary directory removed at
the end, or kept and named when the run fails.

  h1: h2load --h1 -n N -c 8 -m 1     h2: h2load -n N -c 4 -m 8 (h2c)

--hop measures a mesh call instead of one proxy: the client -> sidecar A (outbound) -> sidecar B
(inbound) -> the upstream, both sidecars measured (each one's figure, and their sum), A -> B as
the control plane configures it (peers/meshlet-mesh-*.yaml):

  --hop plain                 plaintext, HTTP/1.1 between the sidecars
  --hop mtls                  mTLS (certificates generated here with the openssl CLI, SPIFFE ids
                              and meshlet's attestation extension, as the mesh CA issues them),
                              HTTP/2 between the sidecars
  --hop-protocol h1|h2        another protocol between the sidecars than the mesh's: plain with
                              h2 differs from mtls only by TLS
  --connection-per-request    a new A -> B connection for every request (else one pooled):
                              with mtls a handshake per request, resumed with the session ticket
                              A kept as sidecars do
  --full-handshakes           with mtls: A keeps no tickets, so every handshake is a full one
                              (certificates sent and verified both ways)

--proxy haproxy --hop mtls measures HAProxy on the same two hops (two_hop.py's pair,
peers/two-hop-haproxy-*.cfg, one thread each): HTTP/2 between them (--hop-protocol h1: HTTP/1.1),
pooled.

--loadgen makes the client the open-loop load generator (//tests/bench/loadgen:loadgen) instead
of h2load, HTTP/1.1 only (h2load cannot read HAProxy's HTTP/1.1 responses after HTTP/2, whose
status line has no reason phrase): closed loop over 8 connections for --duration seconds, or with
--rate R open loop on a fixed schedule of R requests/s over 16 connections, as two_hop.py's
fixed-rate runs do (--connections N: over N); the figures are per request it completed.
--connections 1 without --rate sends one request at a time: each has loop turns of its own in
both proxies, as at a low rate, but without depending on when the client gets a core. At a low rate every
request has loop turns of its own, so strace and wakeups show what a request costs when nothing
shares a turn with it (the CPU per 1000 requests/s and the p99 of two_hop.py).

--pin places the processes as two_hop.py does: the measured proxies on core 0, the upstream and
the load generator on core 1, so the proxies of a hop share one core and batch as they do there.

With --connection-per-request the figures are per connection too; the difference to plain (same
protocol) is what a handshake costs. Each hop run also prints A's upstream connections and B's
resumed handshakes per request, which show the case ran as asked.

Examples:
  tests/bench/per_request_costs.py --sidecar bazel-bin/sidecar/sidecar --proxy meshlet \\
      --proto h1 --tool alloc
  tests/bench/per_request_costs.py --proxy nginx --proto h2 --tool strace
  tests/bench/per_request_costs.py --sidecar bazel-bin/sidecar/sidecar --hop mtls --tool callgrind
  tests/bench/per_request_costs.py --proxy haproxy --hop mtls --tool callgrind
  tests/bench/per_request_costs.py --sidecar bazel-bin/sidecar/sidecar --hop mtls --tool wakeups \\
      --rate 1000 --loadgen bazel-bin/tests/bench/loadgen/loadgen
  tests/bench/per_request_costs.py --sidecar bazel-bin/sidecar/sidecar --hop mtls --pin \\
      --tool perf-record --loadgen bazel-bin/tests/bench/loadgen/loadgen --duration 10
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mtls_bench  # noqa: E402  (its certificates)
import proxy_compare as pc  # noqa: E402

REPORT_SIGNAL = signal.SIGRTMIN + 4

# --hop-protocol: A's cluster protocol; by default the control plane's choice per --hop.
HOP_PROTOCOLS = {"h1": "UPSTREAM_HTTP1", "h2": "UPSTREAM_HTTP2"}
MESH_PROTOCOLS = {"plain": "h1", "mtls": "h2"}
# meshlet's attestation extension (common/tls/certificate.h), as the CA writes it.
ATTESTATION = "2.25.91612782728688830080571624761154758079=ASN1:UTF8String:join-token:bench\n"


def h2load(proto, port, n, conns, streams):
    argv = ["h2load", "-n", str(n), "-c", str(conns), "-t", "1"]
    argv += ["--h1", "-m", "1"] if proto == "h1" else ["-m", str(streams)]
    argv.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if not m or int(m.group(1)) != n:
        raise RuntimeError("h2load failed:\n" + out)
    return n


def loadgen_run(loadgen, port, duration, out_file, rate=None, connections=None, cpu=None):
    """HTTP/1.1 requests for `duration` s, no warm-up of its own: open loop at `rate`/s (over 16
    connections unless told), or closed loop (over 8, as h2load --h1 -c 8, unless told); returns
    how many completed (all must succeed)."""
    load = ["--connections", str(connections or (16 if rate else 8))]
    if rate:
        load += ["--rate", str(rate)]
    if cpu is not None:
        load += ["--cpu", str(cpu)]
    subprocess.run([loadgen, "--address", f"127.0.0.1:{port}", "--protocol", "http/1.1",
                    "--duration", f"{duration}s", "--warmup", "0s", "--quiet", "--output",
                    out_file] + load, check=True)
    with open(out_file) as f:
        requests = json.load(f)["requests"]
    failed = requests["errors"] + requests["non_2xx"] + requests.get("dropped", 0)
    if failed or requests["ok"] == 0:
        raise RuntimeError(f"the open-loop run failed requests: {requests}")
    return requests["ok"]


def thread_counts(pids):
    """{thread name: [voluntary context switches, CPU ns]} over the threads of `pids`."""
    counts = {}
    for p in pids:
        for task in os.listdir(f"/proc/{p}/task"):
            try:
                with open(f"/proc/{p}/task/{task}/comm") as f:
                    name = f.read().strip()
                with open(f"/proc/{p}/task/{task}/status") as f:
                    switches = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", f.read(),
                                             re.MULTILINE).group(1))
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    ns = int(f.read().split()[0])
            except (OSError, AttributeError):
                continue
            entry = counts.setdefault(name, [0, 0])
            entry[0] += switches
            entry[1] += ns
    return counts


def perf_shares(data, sort):
    """[(key, share of samples)] of a perf.data, largest first, sorted by `sort`."""
    text = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-q",
                           "--percent-limit", "0.5", "--sort", sort], capture_output=True,
                          text=True).stdout
    shares = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
        if m:
            key = " ".join(m.group(2).split())
            shares.append((key, float(m.group(1)) / 100))
    return shares


def build_alloc_lib(workdir):
    lib = os.path.join(workdir, "malloc_counter.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", lib,
                    os.path.join(HERE, "malloc_counter.c")], check=True)
    return lib


def tool_results(tool, measured, counts_file, out, run, label, file_label):
    """Runs `run` (sends the measured requests, returns how many) under `tool` and prints the
    figure per request of each of `measured` ([(name, pids)]) and, with several, their sum."""
    figures = []
    if tool == "wakeups":
        before = [thread_counts(pids) for _, pids in measured]
        split_before = [[pc.cpu_seconds(p) for p in pids] for _, pids in measured]
        n = run()
        after = [thread_counts(pids) for _, pids in measured]
        split_after = [[pc.cpu_seconds(p) for p in pids] for _, pids in measured]
        for (name, _), b, a, sb, sa in zip(measured, before, after, split_before, split_after):
            user, system = (sum(y[k] - x[k] for x, y in zip(sb, sa)) for k in (0, 1))
            system_share = system / (user + system) if user + system > 0 else 0
            per = {thread: [(y - x) / n for x, y in zip(b.get(thread, [0, 0]), values)]
                   for thread, values in a.items()}
            total = sum(w for w, _ in per.values())
            cpu_us = sum(ns for _, ns in per.values()) / 1000
            detail = ", ".join(f"{thread} {w:.2f}" for thread, (w, _) in
                               sorted(per.items(), key=lambda kv: -kv[1][0]) if w >= 0.005)
            figures.append((name, total, f"{total:.2f} ({detail}); CPU {cpu_us:.1f} us, "
                                         f"{system_share:.0%} of it in the kernel"))
        what = "wake-ups/request"
    elif tool == "alloc":
        def snapshot():
            open(counts_file, "w").close()
            os.chmod(counts_file, 0o666)
            for _, pids in measured:
                for p in pids:
                    os.kill(p, REPORT_SIGNAL)
            time.sleep(0.5)
            totals = {}
            for line in open(counts_file):
                fields = [int(x) for x in line.split()]
                totals[fields[0]] = fields[1:]
            return [[sum(totals.get(p, [0, 0, 0])[k] for p in pids) for k in range(3)]
                    for _, pids in measured]
        before = snapshot()
        n = run()
        after = snapshot()
        for (name, _), b, a in zip(measured, before, after):
            per = [(y - x) / n for x, y in zip(b, a)]
            figures.append((name, per[0], f"{per[0]:.2f} (realloc {per[1]:.2f}, free {per[2]:.2f})"))
        what = "allocations/request"
    elif tool == "callgrind":
        for _, pids in measured:
            for p in pids:
                subprocess.run(["callgrind_control", "-z", str(p)], capture_output=True)
        n = run()
        for _, pids in measured:
            for p in pids:
                subprocess.run(["callgrind_control", "-d", str(p)], capture_output=True)
        time.sleep(1.0)
        for name, pids in measured:
            best = 0
            for p in pids:
                path = os.path.join(out, f"callgrind.{name}.{file_label}.{p}.1")
                if not os.path.exists(path):
                    continue
                text = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no",
                                       path], capture_output=True, text=True).stdout
                m = re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", text)
                if m:
                    best = max(best, int(m.group(1).replace(",", "")))
            if best == 0:
                raise RuntimeError("no callgrind dump (callgrind_control could not reach the "
                                   "process: nginx's worker runs as another user)")
            figures.append((name, best / n, f"{best / n:.0f}"))
        what = "instructions/request"
    elif tool == "perf-record":
        recorders, datas = [], []
        for name, pids in measured:
            data = os.path.join(out, f"perf.{name}.{file_label}.data")
            datas.append(data)
            recorders.append(subprocess.Popen(
                ["perf", "record", "-q", "--no-buildid-cache", "-e", "cpu-clock", "-F", "4999",
                 "-o", data, "-p", ",".join(map(str, pids))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        before = [[pc.cpu_seconds(p) for p in pids] for _, pids in measured]
        n = run()
        for rec in recorders:
            rec.send_signal(signal.SIGINT)
            rec.wait()
        after = [[pc.cpu_seconds(p) for p in pids] for _, pids in measured]
        for (name, _), data, b, a in zip(measured, datas, before, after):
            cpu_us = sum(y[k] - x[k] for x, y in zip(b, a) for k in (0, 1)) * 1e6 / n
            shares = perf_shares(data, "dso")
            symbols = perf_shares(data, "dso,sym")
            by_dso = ", ".join(f"{d} {share * cpu_us:.2f}" for d, share in shares[:8])
            hot = "; ".join(f"{sym} {share * cpu_us:.2f}" for sym, share in symbols[:14])
            figures.append((name, cpu_us, f"{cpu_us:.1f} us CPU: {by_dso}\n    hottest (us): "
                                          f"{hot}"))
        what = "CPU per request (perf record -e cpu-clock)"
    else:
        traces, tracers = [], []
        for name, pids in measured:
            tids = [int(t) for p in pids for t in os.listdir(f"/proc/{p}/task")]
            trace = os.path.join(out, f"{tool}.{name}.{file_label}.txt")
            traces.append(trace)
            if tool == "strace":
                argv = ["strace", "-c", "-f", "-o", trace] + [a for t in tids
                                                              for a in ("-p", str(t))]
            else:
                argv = ["perf", "trace", "-s", "-o", trace, "-t", ",".join(map(str, tids))]
            tracers.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        n = run()
        for st in tracers:
            st.send_signal(signal.SIGINT)
            st.wait()
        for (name, _), trace in zip(measured, traces):
            calls = {}
            for line in open(trace):
                f = line.split()
                if tool == "strace":
                    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                        calls[f[-1]] = int(f[3])
                # perf trace -s: per thread, "NAME CALLS ERRORS TOTAL MIN AVG MAX STDDEV%".
                elif len(f) == 8 and f[1].isdigit() and f[-1].endswith("%"):
                    calls[f[0]] = calls.get(f[0], 0) + int(f[1])
            total = sum(calls.values()) / n
            detail = ", ".join(f"{c_name} {c / n:.2f}" for c_name, c in
                               sorted(calls.items(), key=lambda kv: -kv[1]) if c / n >= 0.01)
            figures.append((name, total, f"{total:.2f} ({detail})"))
        what = "system calls/request"
    if len(figures) == 1:
        print(f"{label}: {what} {figures[0][2]}" +
              (f" (profiles in {out})" if tool == "callgrind" else ""))
    else:
        print(f"{label}: {what}")
        for name, _, text in figures:
            print(f"  {name}: {text}")
        print(f"  sum: {sum(value for _, value, _ in figures):.2f}")


def where(tool, out, measured, file_label):
    """The line (or lines) naming where the tool's output went."""
    if tool == "perf-record":
        print(f"profiles in {out} (perf report -i FILE)")
    elif tool in ("strace", "perf-trace"):
        for name, _ in measured:
            print(f"{tool} summary in {os.path.join(out, f'{tool}.{name}.{file_label}.txt')}")
    elif tool == "callgrind" and len(measured) > 1:
        print(f"profiles in {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default="meshlet", choices=["meshlet", "haproxy", "nginx"])
    ap.add_argument("--proto", default="h1", choices=["h1", "h2"])
    ap.add_argument("--tool", default="alloc",
                    choices=["alloc", "callgrind", "strace", "perf-trace", "perf-record",
                             "wakeups"])
    ap.add_argument("-n", type=int, default=20000, help="measured requests")
    ap.add_argument("--rate", type=int, help="open loop: measured requests at this many per "
                    "second instead (needs --loadgen)")
    ap.add_argument("--duration", type=float, default=5.0,
                    help="with --loadgen: measured seconds")
    ap.add_argument("--loadgen", help="//tests/bench/loadgen:loadgen as the client (HTTP/1.1)")
    ap.add_argument("--connections", type=int,
                    help="with --loadgen: client connections (default 8, 16 with --rate)")
    ap.add_argument("--sidecar", help="meshlet sidecar binary (build --config=opt)")
    ap.add_argument("--config", default="meshlet.yaml", help="meshlet template: a name in peers/, or a path")
    ap.add_argument("--hop", choices=["plain", "mtls"],
                    help="measure two sidecars and the hop between them (meshlet only)")
    ap.add_argument("--hop-protocol", choices=sorted(HOP_PROTOCOLS),
                    help="between the sidecars (default: plain h1, mtls h2)")
    ap.add_argument("--connection-per-request", action="store_true",
                    help="a new connection between the sidecars for every request")
    ap.add_argument("--full-handshakes", action="store_true",
                    help="mtls: no session resumption between the sidecars")
    ap.add_argument("--pin", action="store_true",
                    help="as two_hop.py: the measured proxies on core 0, the upstream and "
                         "--loadgen on core 1")
    ap.add_argument("--alloc-lib", help="a prebuilt malloc_counter.so")
    ap.add_argument("--out", help="where callgrind and strace output go (default: a new "
                                  "temporary directory, kept and named at the end)")
    args = ap.parse_args()
    if args.proxy == "meshlet" and not args.sidecar:
        ap.error("--sidecar is required for meshlet")
    if args.hop and args.proxy == "nginx":
        ap.error("--hop measures meshlet sidecars or HAProxy")
    if args.proxy == "haproxy" and args.hop and (args.hop != "mtls" or
                                                 args.connection_per_request):
        ap.error("HAProxy's hop is --hop mtls over pooled connections")
    if args.rate is not None and (args.rate <= 0 or not args.loadgen):
        ap.error("--rate needs a positive rate and --loadgen")
    if args.loadgen and args.proto != "h1":
        ap.error("--loadgen sends HTTP/1.1 (--proto h1)")
    if args.pin and not args.loadgen:
        ap.error("--pin needs --loadgen (h2load is not pinned)")
    if args.pin and not {0, 1} <= os.sched_getaffinity(0):
        ap.error("--pin needs cores 0 and 1")
    if args.connections is not None and (args.connections < 1 or not args.loadgen):
        ap.error("--connections needs --loadgen and at least 1")
    if not args.hop and (args.hop_protocol or args.connection_per_request):
        ap.error("--hop-protocol and --connection-per-request describe a --hop")
    if args.full_handshakes and args.hop != "mtls":
        ap.error("--full-handshakes needs --hop mtls")
    hop = None
    if args.hop:
        hop_protocol = args.hop_protocol or MESH_PROTOCOLS[args.hop]
        # Words of the label and of the output files' names.
        hop = [args.hop] + ([hop_protocol] if args.hop_protocol else []) + \
            (["per-request"] if args.connection_per_request else []) + \
            (["full"] if args.full_handshakes else [])
    conns = 8 if args.proto == "h1" else 4
    streams = 8
    tools = {"nginx": pc.find_tool("nginx"), "haproxy": pc.find_tool("haproxy")}
    # World-writable: nginx's worker runs as nobody and writes its counts or profile here.
    workdir = tempfile.mkdtemp(prefix="per-request-")
    os.chmod(workdir, 0o1777)
    out = None
    if args.tool in ("callgrind", "strace", "perf-trace", "perf-record"):
        out = os.path.abspath(args.out) if args.out else tempfile.mkdtemp(
            prefix=f"per-request-{args.tool}-")
        os.makedirs(out, exist_ok=True)
    env = dict(os.environ)
    counts_file = os.path.join(workdir, "counts.txt")
    label = f"{args.proxy} {args.proto}" + (f" via {' '.join(hop)}" if hop else "")
    # Part of the callgrind and strace file names, after the process's name.
    file_label = ".".join([args.proto] + (hop or []))
    if args.tool == "alloc":
        env["LD_PRELOAD"] = args.alloc_lib or build_alloc_lib(workdir)
        env["MALLOC_COUNTER_OUT"] = counts_file
    elif args.tool == "callgrind":
        os.chmod(out, os.stat(out).st_mode | 0o1777)

    def start(name, argv):
        """Starts a measured process: under the tool's wrapper and environment."""
        prefix = []
        if args.tool == "callgrind":
            prefix = ["valgrind", "--tool=callgrind",
                      f"--callgrind-out-file={out}/callgrind.{name}.{file_label}.%p"]
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            return pc.Proc(name, prefix + argv, workdir, 0 if args.pin else None)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def sidecar(name, template, values, admin_port):
        config = pc.render(template, workdir, values)
        return start(name, [args.sidecar, "--config", config, "--concurrency", "1",
                            f"--admin-address=127.0.0.1:{admin_port}", "--log-level", "warn"])

    finished = False
    try:
        body = ("meshlet-bench-" * 80)[:pc.BODY_BYTES]
        up_h1, up_h2 = pc.free_port(), pc.free_port()
        upstream = pc.Proc("upstream-nginx", [tools["nginx"], "-p", workdir, "-e", "stderr", "-c",
                           pc.render("upstream-nginx.conf", workdir,
                                     {"DIR": workdir, "H1_PORT": up_h1, "H2_PORT": up_h2,
                                      "BODY": body})], workdir, 1 if args.pin else None)
        pc.wait_ready(upstream, up_h1)
        port = port_h2 = pc.free_port()
        admin = {}
        if args.hop:
            tls = args.hop == "mtls"
            # The mesh's protocol name for mTLS HTTP/2 (plaintext endpoints would get HTTP/1.1).
            protocol = "UPSTREAM_MESH_HTTP2" if tls and hop_protocol == "h2" else \
                HOP_PROTOCOLS[hop_protocol]
            mtls_bench.make_certificates(workdir, ATTESTATION)
            inbound_port = pc.free_port()
        if args.hop and args.proxy == "haproxy":
            for side in ("a", "b"):
                with open(os.path.join(workdir, f"{side}-combined.pem"), "w") as combined:
                    for part in (f"{side}.pem", f"{side}-key.pem"):
                        with open(os.path.join(workdir, part)) as f:
                            combined.write(f.read())

            def haproxy_side(name, values):
                config = os.path.join(workdir, f"haproxy-{name}.cfg")
                os.rename(pc.render(f"two-hop-haproxy-{name}.cfg", workdir,
                                    dict(values, DIR=workdir)), config)
                return start(name, [tools["haproxy"], "-db", "-f", config])
            procs = [
                ("inbound", haproxy_side("inbound", {"PORT": inbound_port, "NEXT_PORT": up_h1,
                                                     "SERVER_OPTIONS": ""})),
                ("outbound", haproxy_side("outbound", {
                    "PORT": port, "NEXT_PORT": inbound_port,
                    "ALPN": "http/1.1" if hop_protocol == "h1" else "h2"})),
            ]
        elif args.hop:
            admin = {"outbound": pc.free_port(), "inbound": pc.free_port()}
            common = {"DIR": workdir, "INBOUND_PORT": inbound_port}
            procs = [
                ("inbound", sidecar("inbound", "meshlet-mesh-inbound.yaml",
                                    dict(common, TLS_MODE="STRICT" if tls else "DISABLE",
                                         UPSTREAM_PORT=up_h1, UPSTREAM_PROTOCOL="UPSTREAM_HTTP1"),
                                    admin["inbound"])),
                ("outbound", sidecar("outbound", "meshlet-mesh-outbound.yaml",
                                     dict(common, H1_PORT=port, PROTOCOL=protocol,
                                          TLS=str(tls).lower(),
                                          MAX_REQUESTS=int(args.connection_per_request),
                                          NO_RESUMPTION=str(args.full_handshakes).lower()),
                                     admin["outbound"])),
            ]
        elif args.proxy == "meshlet":
            procs = [(args.proxy, sidecar(args.proxy, args.config,
                                          {"H1_PORT": port, "UPSTREAM_PORT": up_h1},
                                          pc.free_port()))]
        elif args.proxy == "haproxy":
            config = pc.render("haproxy.cfg", workdir, {"H1_PORT": port, "UPSTREAM_PORT": up_h1})
            procs = [(args.proxy, start(args.proxy, [tools["haproxy"], "-db", "-f", config]))]
        else:
            port_h2 = pc.free_port()
            config = pc.render("nginx.conf", workdir, {"DIR": workdir, "H1_PORT": port,
                                                       "H2_PORT": port_h2, "UPSTREAM_PORT": up_h1})
            procs = [(args.proxy, start(args.proxy, [tools["nginx"], "-p", workdir, "-e",
                                                     "stderr", "-c", config]))]
        deadline = time.time() + 60
        while not pc.http_get_ok(port):
            dead = [p for _, p in procs if not p.alive()]
            if time.time() > deadline or dead:
                raise RuntimeError("\n".join(p.log_tail() for p in (dead or [procs[-1][1]])))
            time.sleep(0.2)
        target = port if args.proto == "h1" else port_h2
        loadgen_file = os.path.join(workdir, "loadgen.json")
        if args.loadgen:
            loadgen_run(args.loadgen, target, 1.0, loadgen_file,
                        cpu=1 if args.pin else None)  # warm-up
        else:
            h2load(args.proto, target, max(2000, args.n // 10), conns, streams)  # warm-up
        # A (outbound) first, as the request goes.
        measured = [(name, pc.process_tree(p.pid)) for name, p in reversed(procs)]

        def hop_counters():
            if not admin:
                return None
            return (pc.admin_counter(admin["outbound"], "meshlet_upstream_cx_total"),
                    pc.admin_counter(admin["inbound"], "meshlet_downstream_tls_resumed_total"))

        counters_before = hop_counters()
        if args.loadgen:
            label += f" at {args.rate}/s" if args.rate else " (loadgen, closed loop)"
            if args.connections:
                label += f", {args.connections} connection{'s' if args.connections > 1 else ''}"

            def measured_run():
                n = loadgen_run(args.loadgen, target, args.duration, loadgen_file, args.rate,
                                args.connections, 1 if args.pin else None)
                print(f"{n} requests in {args.duration:g} s: {n / args.duration:.0f}/s")
                return n
        else:
            def measured_run():
                return h2load(args.proto, target, args.n, conns, streams)
        tool_results(args.tool, measured, counts_file, out, measured_run, label, file_label)
        counters_after = hop_counters()
        if admin:
            connections, resumed = (
                (after - before) / args.n for before, after in zip(counters_before,
                                                                   counters_after))
            print(f"  per request: {connections:.3f} connections from A to B, {resumed:.3f} of "
                  f"them resumed TLS sessions")
        where(args.tool, out, measured, file_label)
        finished = True
    finally:
        pc.stop_started(workdir, finished)


if __name__ == "__main__":
    main()
