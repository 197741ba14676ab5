#!/usr/bin/env python3
"""Per-request costs of one proxy that do not depend on how busy the machine is.

Runs the upstream and one proxy of proxy_compare.py (same peer configurations), warms it up, then
sends a fixed number of requests with h2load and reports, per proxied request:

  --tool alloc      heap allocations (malloc_counter.so preloaded; needs a C compiler or
                    --alloc-lib), counted over the measured requests only
  --tool callgrind  instructions (valgrind --tool=callgrind, zeroed after the warm-up); the
                    profile is kept for callgrind_annotate
  --tool strace     system calls (strace -c -f attached after the warm-up), by name

Callgrind profiles and the strace summary go to --out, or else to a new temporary directory that
is kept and named in the last line; nothing is written to the current directory. The proxies'
working files (configurations, logs, the counts file) live in a temporary directory removed at
the end, or kept and named when the run fails.

  h1: h2load --h1 -n N -c 8 -m 1     h2: h2load -n N -c 4 -m 8 (h2c)

Examples:
  tests/bench/per_request_costs.py --sidecar bazel-bin/sidecar/sidecar --proxy meshlet \\
      --proto h1 --tool alloc
  tests/bench/per_request_costs.py --proxy nginx --proto h2 --tool strace
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import proxy_compare as pc  # noqa: E402

REPORT_SIGNAL = signal.SIGRTMIN + 4


def h2load(proto, port, n, conns, streams):
    argv = ["h2load", "-n", str(n), "-c", str(conns), "-t", "1"]
    argv += ["--h1", "-m", "1"] if proto == "h1" else ["-m", str(streams)]
    argv.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if not m or int(m.group(1)) != n:
        raise RuntimeError("h2load failed:\n" + out)


def build_alloc_lib(workdir):
    lib = os.path.join(workdir, "malloc_counter.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", lib,
                    os.path.join(HERE, "malloc_counter.c")], check=True)
    return lib


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default="meshlet", choices=["meshlet", "haproxy", "nginx"])
    ap.add_argument("--proto", default="h1", choices=["h1", "h2"])
    ap.add_argument("--tool", default="alloc", choices=["alloc", "callgrind", "strace"])
    ap.add_argument("-n", type=int, default=20000, help="measured requests")
    ap.add_argument("--sidecar", help="meshlet sidecar binary (build --config=opt)")
    ap.add_argument("--config", default="meshlet.yaml", help="meshlet template in peers/")
    ap.add_argument("--alloc-lib", help="a prebuilt malloc_counter.so")
    ap.add_argument("--out", help="where callgrind and strace output go (default: a new "
                                  "temporary directory, kept and named at the end)")
    args = ap.parse_args()
    if args.proxy == "meshlet" and not args.sidecar:
        ap.error("--sidecar is required for meshlet")
    conns = 8 if args.proto == "h1" else 4
    streams = 8
    tools = {"nginx": pc.find_tool("nginx"), "haproxy": pc.find_tool("haproxy")}
    # World-writable: nginx's worker runs as nobody and writes its counts or profile here.
    workdir = tempfile.mkdtemp(prefix="per-request-")
    os.chmod(workdir, 0o1777)
    out = None
    if args.tool != "alloc":
        out = os.path.abspath(args.out) if args.out else tempfile.mkdtemp(
            prefix=f"per-request-{args.tool}-")
        os.makedirs(out, exist_ok=True)
    env = dict(os.environ)
    counts_file = os.path.join(workdir, "counts.txt")
    prefix = []
    if args.tool == "alloc":
        env["LD_PRELOAD"] = args.alloc_lib or build_alloc_lib(workdir)
        env["MALLOC_COUNTER_OUT"] = counts_file
    elif args.tool == "callgrind":
        os.chmod(out, os.stat(out).st_mode | 0o1777)
        prefix = ["valgrind", "--tool=callgrind",
                  f"--callgrind-out-file={out}/callgrind.{args.proxy}.{args.proto}.%p"]
    finished = False
    try:
        body = ("meshlet-bench-" * 80)[:pc.BODY_BYTES]
        up_h1, up_h2 = pc.free_port(), pc.free_port()
        upstream = pc.Proc("upstream-nginx", [tools["nginx"], "-p", workdir, "-e", "stderr", "-c",
                           pc.render("upstream-nginx.conf", workdir,
                                     {"DIR": workdir, "H1_PORT": up_h1, "H2_PORT": up_h2,
                                      "BODY": body})], workdir)
        pc.wait_ready(upstream, up_h1)
        port = port_h2 = pc.free_port()
        if args.proxy == "meshlet":
            config = pc.render(args.config, workdir, {"H1_PORT": port, "UPSTREAM_PORT": up_h1})
            argv = [args.sidecar, "--config", config, "--concurrency", "1",
                    f"--admin-address=127.0.0.1:{pc.free_port()}", "--log-level", "warn"]
        elif args.proxy == "haproxy":
            config = pc.render("haproxy.cfg", workdir, {"H1_PORT": port, "UPSTREAM_PORT": up_h1})
            argv = [tools["haproxy"], "-db", "-f", config]
        else:
            port_h2 = pc.free_port()
            config = pc.render("nginx.conf", workdir, {"DIR": workdir, "H1_PORT": port,
                                                       "H2_PORT": port_h2, "UPSTREAM_PORT": up_h1})
            argv = [tools["nginx"], "-p", workdir, "-e", "stderr", "-c", config]
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            proxy = pc.Proc(args.proxy, prefix + argv, workdir)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        deadline = time.time() + 60
        while not pc.http_get_ok(port):
            if time.time() > deadline or not proxy.alive():
                raise RuntimeError(proxy.log_tail())
            time.sleep(0.2)
        target = port if args.proto == "h1" else port_h2
        h2load(args.proto, target, max(2000, args.n // 10), conns, streams)  # warm-up
        pids = pc.process_tree(proxy.pid)

        if args.tool == "alloc":
            def snapshot():
                open(counts_file, "w").close()
                os.chmod(counts_file, 0o666)
                for p in pids:
                    os.kill(p, REPORT_SIGNAL)
                time.sleep(0.5)
                totals = [0, 0, 0]
                for line in open(counts_file):
                    fields = [int(x) for x in line.split()[1:]]
                    totals = [a + b for a, b in zip(totals, fields)]
                return totals
            before = snapshot()
            h2load(args.proto, target, args.n, conns, streams)
            after = snapshot()
            per = [(b - a) / args.n for a, b in zip(before, after)]
            print(f"{args.proxy} {args.proto}: allocations/request {per[0]:.2f} "
                  f"(realloc {per[1]:.2f}, free {per[2]:.2f})")
        elif args.tool == "callgrind":
            for p in pids:
                subprocess.run(["callgrind_control", "-z", str(p)], capture_output=True)
            h2load(args.proto, target, args.n, conns, streams)
            for p in pids:
                subprocess.run(["callgrind_control", "-d", str(p)], capture_output=True)
            time.sleep(1.0)
            best = 0
            for p in pids:
                path = os.path.join(out, f"callgrind.{args.proxy}.{args.proto}.{p}.1")
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
            print(f"{args.proxy} {args.proto}: instructions/request {best / args.n:.0f} "
                  f"(profiles in {out})")
        else:
            tids = [int(t) for p in pids for t in os.listdir(f"/proc/{p}/task")]
            trace = os.path.join(out, f"strace.{args.proxy}.{args.proto}.txt")
            st = subprocess.Popen(["strace", "-c", "-f", "-o", trace] +
                                  [a for t in tids for a in ("-p", str(t))],
                                  stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            h2load(args.proto, target, args.n, conns, streams)
            st.send_signal(signal.SIGINT)
            st.wait()
            calls = {}
            for line in open(trace):
                f = line.split()
                if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                    calls[f[-1]] = int(f[3])
            total = sum(calls.values()) / args.n
            detail = ", ".join(f"{name} {c / args.n:.2f}" for name, c in
                               sorted(calls.items(), key=lambda kv: -kv[1]) if c / args.n >= 0.01)
            print(f"{args.proxy} {args.proto}: system calls/request {total:.2f} ({detail})")
            print(f"strace summary in {trace}")
        finished = True
    finally:
        for p in reversed(pc.STARTED):
            p.stop()
        if finished:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"working files kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
