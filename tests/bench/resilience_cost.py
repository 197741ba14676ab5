"""What the resilience features cost per request when nothing fails, measured deterministically.

Usage: resilience_cost.py --sidecar BIN [--requests N] [--warmup N] [--rounds N] [--no-callgrind]
       resilience_cost.py --sidecar BIN --rps-rounds R [--duration S]

The sidecar (build it with --config=opt) runs the proxy comparison's two configurations,
peers/meshlet.yaml and peers/meshlet-resilience.yaml, in front of the same nginx upstream
(peers/upstream-nginx.conf), with one worker, and receives the same fixed-count load:
`h2load --h1 -n N -c 4` of GET / (1 KiB responses). Two figures per configuration:

  instructions per request   valgrind --tool=callgrind, counting only while the measured load
                             runs (callgrind_control -i on/off); deterministic to a fraction of a
                             percent, whatever else the machine is doing;
  CPU time per request       time the sidecar's threads spent on a CPU over the measured load
                             (/proc/PID/task/*/schedstat, nanoseconds), the median of --rounds
                             runs alternating the two configurations (noisy on a shared machine;
                             the instruction count is the figure to compare).

With --rps-rounds R it measures requests/s instead, the figure the target names, as the proxy
comparison does: both sidecars pinned to core 0, the nginx upstream and `wrk -t1 -c64 -dS` on
core 1, each round loading the two one after the other (the order alternates), R rounds; it
prints the median requests/s of each and the median of the per-round ratios with their spread.
It needs a quiet machine with two cores.

The difference is the cost of the retry policy, circuit breakers, retry budget, consecutive-failure
breaker, route timeout and outlier detection on a request that succeeds (docs/performance.md).
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

import proxy_compare as pc

CONFIGS = [("meshlet", "meshlet.yaml"), ("meshlet-resilience", "meshlet-resilience.yaml")]


def h2load(tool, port, requests):
    out = subprocess.run([tool, "--h1", "-n", str(requests), "-c", "4", "-m", "1",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=600).stdout
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if not m or int(m.group(2)) != requests:
        raise RuntimeError(f"h2load did not complete {requests} requests:\n{out}")


def start_sidecar(args, name, template, workdir, upstream_port, wrapper=()):
    port = pc.free_port()
    config = pc.render(template, workdir, {"H1_PORT": port, "UPSTREAM_PORT": upstream_port})
    proc = pc.Proc(name, [*wrapper, args.sidecar, "--config", config, "--concurrency", "1",
                          f"--admin-address=127.0.0.1:{pc.free_port()}", "--log-level", "warn",
                          "--drain-time=0s"], workdir)
    pc.wait_ready(proc, port, timeout=120.0)
    return proc, port


def stop(proc, timeout=120):
    if proc.proc.poll() is None:
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(timeout=timeout)
    proc.stop()


def instructions_per_request(args, tools, name, template, workdir, upstream_port):
    out_file = os.path.join(workdir, f"callgrind.{name}.out")
    proc, port = start_sidecar(args, name, template, workdir, upstream_port,
                               ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                f"--callgrind-out-file={out_file}"])
    h2load(tools["h2load"], port, args.warmup)
    subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                   capture_output=True)
    h2load(tools["h2load"], port, args.requests)
    subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True,
                   capture_output=True)
    stop(proc)
    with open(out_file) as f:
        m = re.search(r"^totals: (\d+)", f.read(), re.M)
    if not m:
        raise RuntimeError(f"no instruction total in {out_file}")
    return int(m.group(1)) / args.requests


def cpu_ns(pid):
    """Nanoseconds the process's threads have spent running (first field of schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def cpu_per_request(args, tools, name, template, workdir, upstream_port):
    proc, port = start_sidecar(args, name, template, workdir, upstream_port)
    h2load(tools["h2load"], port, args.warmup)
    before = cpu_ns(proc.pid)
    h2load(tools["h2load"], port, args.requests)
    after = cpu_ns(proc.pid)
    stop(proc)
    return (after - before) / args.requests / 1000


def requests_per_second(args, tools, workdir, upstream_port):
    """Median requests/s of each configuration and the per-round ratios (module docstring)."""
    ports = {}
    for name, template in CONFIGS:
        _, ports[name] = start_sidecar(args, name, template, workdir, upstream_port,
                                       ["taskset", "-c", "0"])
    rps = {name: [] for name, _ in CONFIGS}
    names = [name for name, _ in CONFIGS]

    def load(name, seconds):
        return pc.wrk_rps(ports[name], seconds, wrk=tools["wrk"])[0]

    for name in names:
        load(name, 1)  # warm-up: connections, first-use paths
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    for round_index in range(args.rps_rounds):
        for name in (names if round_index % 2 == 0 else names[::-1]):
            rps[name].append(load(name, args.duration))
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    base, res = names
    ratios = [r / b for r, b in zip(rps[res], rps[base])]
    for name in names:
        print(f"{name}: {statistics.median(rps[name]):,.0f} requests/s "
              f"(rounds: {' '.join(f'{v:.0f}' for v in rps[name])})")
    print(f"cost: {100 * (1 - statistics.median(ratios)):+.2f} % requests/s (median of the rounds' "
          f"ratios; {100 * (1 - max(ratios)):+.1f} to {100 * (1 - min(ratios)):+.1f} %)")
    print(f"load average {' '.join(load_before)} before, {' '.join(load_after)} after")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sidecar", required=True)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--rps-rounds", type=int, default=0)
    parser.add_argument("--duration", type=int, default=5, help="seconds per load (--rps-rounds)")
    args = parser.parse_args()
    tools = {t: pc.find_tool(t) for t in ("h2load", "nginx", "wrk")}
    missing = [t for t, path in tools.items() if path is None]
    if missing:
        sys.exit(f"missing: {missing} (./dev deps installs them)")
    workdir = tempfile.mkdtemp(prefix="meshlet-resilience-cost-")
    body = ("meshlet-bench-" * 80)[:pc.BODY_BYTES]
    up_h1, up_h2 = pc.free_port(), pc.free_port()
    upstream = pc.Proc("upstream-nginx",
                       [tools["nginx"], "-p", workdir, "-e", "stderr", "-c",
                        pc.render("upstream-nginx.conf", workdir,
                                  {"DIR": workdir, "H1_PORT": up_h1, "H2_PORT": up_h2,
                                   "BODY": body})], workdir,
                       cpu=1 if args.rps_rounds else None)
    try:
        pc.wait_ready(upstream, up_h1)
        if args.rps_rounds:
            requests_per_second(args, tools, workdir, up_h1)
            return
        results = {}
        if not args.no_callgrind:
            for name, template in CONFIGS:
                results[(name, "ir")] = instructions_per_request(args, tools, name, template,
                                                                 workdir, up_h1)
        cpu = {name: [] for name, _ in CONFIGS}
        for _ in range(args.rounds):
            for name, template in CONFIGS:
                cpu[name].append(cpu_per_request(args, tools, name, template, workdir, up_h1))
        print(f"{args.requests} requests (h2load --h1 -c 4), after {args.warmup} to warm up")
        base, res = CONFIGS[0][0], CONFIGS[1][0]
        if not args.no_callgrind:
            ir_base, ir_res = results[(base, "ir")], results[(res, "ir")]
            print(f"instructions/request  {base}: {ir_base:,.0f}  {res}: {ir_res:,.0f}  "
                  f"cost: {100 * (ir_res / ir_base - 1):+.2f} %")
        cpu_base, cpu_res = statistics.median(cpu[base]), statistics.median(cpu[res])
        print(f"CPU µs/request (median of {args.rounds})  {base}: {cpu_base:.2f} "
              f"{[round(v, 2) for v in cpu[base]]}  {res}: {cpu_res:.2f} "
              f"{[round(v, 2) for v in cpu[res]]}  cost: {100 * (cpu_res / cpu_base - 1):+.1f} %")
    finally:
        for p in pc.STARTED:
            p.stop()


if __name__ == "__main__":
    main()
