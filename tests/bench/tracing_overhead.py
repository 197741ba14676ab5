#!/usr/bin/python3
"""What tracing costs the sidecar, measured in instructions per request (docs/performance.md).

Usage: tracing_overhead.py SIDECAR [--requests N] [--clients C] [--cpu-rounds R] [--keep DIR]
       tracing_overhead.py SIDECAR --rps-rounds R [--duration S] [--connections C] [--processes P]

One sidecar (one worker) proxies HTTP/1.1 keep-alive requests from h2load --h1 to a second
sidecar that answers with a fixed 1 KiB direct response. The proxying sidecar runs under
valgrind's callgrind, which counts every instruction of every thread, so the figure does not depend on what else the machine runs. Each mode runs twice, with
N and 2N requests; (Ir(2N) - Ir(N)) / N is the cost per request without start-up and shutdown,
less what the process spends per second when idle (measured from two idle spells) times the
extra wall time of the longer run (under valgrind the runs are slow, so timers would count).
Modes: tracing off, 1 % sampling, 100 % sampling, and 100 % with a client span for every attempt
(attempt_spans: EVERY_ATTEMPT; the default makes one span per request), OTLP protobuf to a
collector stub in this process that answers 200. Prints one line per mode and the overhead against "off". With --keep
DIR the callgrind profiles stay in DIR (callgrind-PERCENT-REQUESTS-IDLE.out, for
callgrind_annotate; "None" is tracing off).

With --cpu-rounds R it measures CPU time instead, without valgrind: the proxying sidecars (one per
mode) run side by side; in each of R rounds, one h2load per mode --h1 processes send N requests to
each of them at the same time, so the three share whatever else the machine is doing at that
moment and each round is a paired comparison. User + system time of each proxying process (every
thread, kernel time included) is read from /proc/PID/stat before the round and 1.2 s after its
loads end (so the export of the round's last spans is counted). Prints per mode the median
microseconds per request, the median of the per-round ratios against "off", and the load average.

With --rps-rounds R it measures requests/s, the figure the targets name, on a quiet machine: as
in the proxy comparison (proxy_compare.py), each proxying sidecar (every mode) runs one worker
pinned to core 0 with all its threads, while the upstream sidecar,
the collector (an nginx answering 200: the Python stub would take much of core 1 at 100 %) and the
load generator (wrk -t1 -cC -dS, HTTP/1.1 keep-alive) share core 1. In
each round the modes are loaded one after the other, in an order that rotates between rounds.
Each mode has --processes sidecars (default 3), one per round in turn: a process can be faster
or slower than another of the same build for its whole life, and that luck should not be read
as a mode's cost. --modes off,1 measures only "off" and 1 % sampling: more rounds of the pair
in the same time, for a narrower interval.
Prints per mode the median requests/s and CPU microseconds per request, and the median of the
per-round requests/s ratios against "off" with their spread. With --perf DIR, one more load per
mode is recorded by `perf record -e cpu-clock -g` (kernel time included) into DIR. Needs at least two cores and a
machine doing nothing else: the load average is printed before and after.
"""

import argparse
import http.server
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from ports import free_port  # noqa: E402,F401  (below the ephemeral range, see there)
import proxy_compare as pc  # noqa: E402  (this directory)


def wait_ready(admin_port, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sidecar exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("sidecar not ready")


class Sink(http.server.BaseHTTPRequestHandler):
    spans_bytes = 0

    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        Sink.spans_bytes += len(self.rfile.read(n))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def listener(name, port, route):
    return (f"  - name: {name}\n    address: 127.0.0.1:{port}\n    direction: OUTBOUND\n"
            f"    protocol: PROTOCOL_HTTP\n    route_config_name: {route}\n")


def proxy_config(port, up_port, percent, collector_port):
    text = ("static_resources:\n  listeners:\n" + listener("out", port, "r") +
            "  clusters:\n  - name: app\n    connect_timeout: 30s\n"
            "    load_assignment:\n      endpoints:\n"
            f"      - address: 127.0.0.1:{up_port}\n"
            "  routes:\n  - name: r\n    virtual_hosts:\n    - name: all\n"
            "      domains: [\"*\"]\n      routes:\n      - match: {prefix: /}\n"
            "        route: {cluster: app}\n")
    if percent is not None:
        # "100-every-attempt": 100 % with a client span for every attempt, not only retried ones.
        rate, _, every = str(percent).partition("-")
        text += (f"tracing:\n  sampling_percent: {rate}\n"
                 f"  collector_address: 127.0.0.1:{collector_port}\n"
                 "  protocol: OTLP_PROTO\n  service_name: bench\n"
                 f"  attempt_spans: {'EVERY_ATTEMPT' if every else 'RETRIED'}\n")
    return text


def cpu_seconds(pid):
    """(user, system) CPU seconds of the process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based), in clock ticks.
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def start_h2load(port, n, clients):
    return subprocess.Popen(["h2load", "--h1", "-n", str(n), "-c", str(clients),
                             f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def finish_h2load(load, n):
    out, _ = load.communicate(timeout=1200)
    done = re.search(r"status codes: (\d+) 2xx", out)
    if not done or int(done.group(1)) != n:
        raise RuntimeError("h2load: " + out[-800:])


def h2load(port, n, clients):
    finish_h2load(start_h2load(port, n, clients), n)


def start_proxy(sidecar, tmp, percent, up_port, collector_port, prefix):
    """A proxying sidecar (one worker) with tracing at `percent` (None: off), ready; returns
    (process, port, admin port)."""
    port, admin = free_port(), free_port()
    config = os.path.join(tmp, f"proxy-{percent}-{port}.yaml")
    with open(config, "w") as f:
        f.write(proxy_config(port, up_port, percent, collector_port))
    proc = subprocess.Popen(prefix + [sidecar, "--config", config, "--concurrency=1",
                                      "--drain-time=0s", f"--admin-address=127.0.0.1:{admin}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(admin, proc, 20)
    return proc, port, admin


def median(values):
    return sorted(values)[len(values) // 2]


def median_interval(values, confidence=0.95, resamples=4000):
    """A bootstrap confidence interval of the median of `values` (percentile method, fixed seed
    so that a report can be reproduced from its rounds)."""
    rng = random.Random(1)
    medians = sorted(median([rng.choice(values) for _ in values]) for _ in range(resamples))
    tail = (1 - confidence) / 2
    return medians[int(tail * resamples)], medians[min(int((1 - tail) * resamples), resamples - 1)]


def report_against_off(samples, what, load_before, load_after):
    """Per sampled mode, the median of the rounds' ratios to "off", its 95 % bootstrap confidence
    interval, and the rounds' spread."""
    for name in samples:
        if name == "off":
            continue
        ratios = [x / off for x, off in zip(samples[name], samples["off"])]
        low, high = median_interval(ratios)
        print(f"{name:>5}: {100 * (median(ratios) - 1):+.2f} % {what} against tracing off "
              f"(median of the rounds' ratios; 95 % interval {100 * (low - 1):+.2f} to "
              f"{100 * (high - 1):+.2f} %; rounds {100 * (min(ratios) - 1):+.1f} to "
              f"{100 * (max(ratios) - 1):+.1f} %)")
    print(f"load average {' '.join(load_before)} before, {' '.join(load_after)} after")


def measure_cpu(args, tmp, modes, up_port, collector_port):
    """Median CPU microseconds per request per mode (see the module's docstring)."""
    procs = {}
    try:
        for name, percent in modes:
            proc, port, _ = start_proxy(args.sidecar, tmp, percent, up_port, collector_port, [])
            procs[name] = (proc, port)
            h2load(port, 200, args.clients)  # warm-up: connections, first-use paths
        with open("/proc/loadavg") as f:
            load_before = f.read().split()[:3]
        samples = {name: [] for name, _ in modes}
        user_share = {name: [] for name, _ in modes}
        for _ in range(args.cpu_rounds):
            before = {name: cpu_seconds(proc.pid) for name, (proc, _) in procs.items()}
            loads = [(start_h2load(port, args.requests, args.clients))
                     for proc, port in procs.values()]
            for load in loads:
                finish_h2load(load, args.requests)
            time.sleep(1.2)
            for name, (proc, _) in procs.items():
                user, system = (a - b for a, b in zip(cpu_seconds(proc.pid), before[name]))
                samples[name].append((user + system) * 1e6 / args.requests)
                user_share[name].append(user / max(user + system, 1e-9))
        with open("/proc/loadavg") as f:
            load_after = f.read().split()[:3]
    finally:
        for proc, _ in procs.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    for name, v in samples.items():
        print(f"{name:>5}: {median(v):6.2f} us CPU/request, {100 * median(user_share[name]):.0f} % "
              f"of it user time (rounds: {' '.join(f'{x:.2f}' for x in v)})", flush=True)
    report_against_off(samples, "CPU per request", load_before, load_after)


NGINX_COLLECTOR = """worker_processes 1;
daemon off;
pid {dir}/collector.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/collector-body;
    client_body_buffer_size 4m;
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 ""; }}
    }}
}}
"""


def start_nginx_collector(tmp):
    """An nginx answering 200 to every POST: a collector that costs the load core little (the
    Python stub would take a good part of it at 100 % sampling). Returns (process, port)."""
    port = free_port()
    config = os.path.join(tmp, "collector-nginx.conf")
    with open(config, "w") as f:
        f.write(NGINX_COLLECTOR.format(dir=tmp, port=port))
    proc = subprocess.Popen(["nginx", "-p", tmp, "-e", "stderr", "-c", config],
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces",
                                                          data=b"x"), timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("nginx collector did not start")


def measure_rps(args, tmp, modes, up_port):
    """Requests/s per mode with the proxy pinned to its own core (see the module's docstring)."""
    # Several processes per mode, taken in turn: one process can be faster or slower than
    # another of the same build for its whole life (its memory layout, which allocator arenas
    # churn), and with one process per mode that luck would be read as the mode's cost.
    procs = {}
    all_procs = []
    collector, collector_port = start_nginx_collector(tmp)
    try:
        for name, percent in modes:
            procs[name] = []
            for _ in range(args.processes):
                started = start_proxy(args.sidecar, tmp, percent, up_port, collector_port,
                                      ["taskset", "-c", "0"])
                all_procs.append(started)
                procs[name].append(started)
                # Warm-up: connections, first-use paths, the span pool.
                pc.wrk_rps(started[1], 1, args.connections)
        with open("/proc/loadavg") as f:
            load_before = f.read().split()[:3]
        rps = {name: [] for name, _ in modes}
        cpu = {name: [] for name, _ in modes}
        by_process = {name: [[] for _ in range(args.processes)] for name, _ in modes}
        names = [name for name, _ in modes]
        for round_index in range(args.rps_rounds):
            shift = round_index % len(names)
            which = round_index % args.processes
            for name in names[shift:] + names[:shift]:
                proc, port, _ = procs[name][which]
                before = sum(cpu_seconds(proc.pid))
                rate, total = pc.wrk_rps(port, args.duration, args.connections)
                time.sleep(0.3)  # the export of this load's last spans is counted
                rps[name].append(rate)
                by_process[name][which].append(rate)
                cpu[name].append((sum(cpu_seconds(proc.pid)) - before) * 1e6 / total)
        with open("/proc/loadavg") as f:
            load_after = f.read().split()[:3]
        if args.perf:
            # One more load per mode, sampled by perf's CPU clock (kernel time included: counters
            # may not exist in a VM), for `perf report -i DIR/perf-MODE.data`.
            os.makedirs(args.perf, exist_ok=True)
            for name in names:
                proc, port, _ = procs[name][0]
                label = re.sub(r"[^0-9a-z]+", "-", name.replace("%", "pct"))
                data = os.path.join(args.perf, f"perf-{label}.data")
                recorder = subprocess.Popen(
                    ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-g", "-p",
                     str(proc.pid), "-o", data], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                _, total = pc.wrk_rps(port, args.duration, args.connections)
                time.sleep(0.3)
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=60)
                print(f"{name:>5}: perf profile of {total} requests in {data}", flush=True)
        dropped = {name: sum(pc.admin_counter(admin, "meshlet_tracing_spans_dropped_total")
                             for _, _, admin in started)
                   for name, started in procs.items()}
    finally:
        for proc, _, _ in all_procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        collector.terminate()
        collector.wait(timeout=10)

    for name in names:
        print(f"{name:>5}: {median(rps[name]):9.0f} requests/s, {median(cpu[name]):5.2f} us CPU/request, "
              f"{dropped[name]} spans dropped (rounds: {' '.join(f'{x:.0f}' for x in rps[name])})",
              flush=True)
        if args.processes > 1:
            print(f"{'':>5}  median requests/s of each process: "
                  f"{' '.join(f'{median(v):.0f}' for v in by_process[name])}", flush=True)
    report_against_off(rps, "requests/s", load_before, load_after)


# Tracing modes by --modes key: (name, sampling percent or variant). The default sampling (attempt
# spans RETRIED: one span per request) and, at 100 %, a client span for every attempt as well.
MODES = {"off": ("off", None), "1": ("1%", 1), "100": ("100%", 100),
         "every": ("100%, every attempt", "100-every-attempt")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("sidecar")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--cpu-rounds", type=int, default=0)
    parser.add_argument("--rps-rounds", type=int, default=0)
    parser.add_argument("--duration", type=int, default=5, help="seconds per load (--rps-rounds)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (--rps-rounds)")
    parser.add_argument("--processes", type=int, default=3,
                        help="--rps-rounds: sidecar processes per mode, loaded in turn (not a "
                        "multiple of the number of modes, or a process would always be loaded "
                        "at the same place in the round's order)")
    parser.add_argument("--keep", help="directory for the callgrind profiles (else a temporary one)")
    parser.add_argument("--perf", help="--rps-rounds: also record one load per mode with perf into "
                        "this directory")
    modes_help = ("the modes to measure, comma-separated, among " +
                  ", ".join(f"{key} ({name})" for key, (name, _) in MODES.items()) +
                  "; off is always measured, as the others are compared with it (fewer modes: "
                  "more rounds in the same time)")
    parser.add_argument("--modes", default=",".join(MODES), help=modes_help.replace("%", "%%"))
    args = parser.parse_args()
    chosen = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (known: {', '.join(MODES)})")
    modes = [MODES["off"]] + [MODES[key] for key in MODES if key != "off" and key in chosen]
    if len(modes) < 2:
        parser.error("--modes: name at least one mode besides off")
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.rps_rounds and args.rps_rounds < args.processes:
        parser.error("--rps-rounds must be at least --processes (each process gets rounds in turn)")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    tmp = args.keep or tempfile.mkdtemp()
    if args.rps_rounds:
        # This process (the collector stub) and what it starts (the upstream sidecar) on core 1;
        # the proxying sidecars pin themselves to core 0.
        os.sched_setaffinity(0, {1})

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()

    # The upstream: a sidecar answering every request itself.
    up_port, up_admin = free_port(), free_port()
    body = "x" * 1024
    up_yaml = os.path.join(tmp, "upstream.yaml")
    with open(up_yaml, "w") as f:
        f.write("static_resources:\n  listeners:\n" + listener("up", up_port, "direct") +
                "  clusters: []\n  routes:\n  - name: direct\n    virtual_hosts:\n"
                "    - name: all\n      domains: [\"*\"]\n      routes:\n"
                "      - match: {prefix: /}\n"
                f"        direct_response: {{status: 200, body: \"{body}\"}}\n")
    upstream = subprocess.Popen([args.sidecar, "--config", up_yaml, "--concurrency=1",
                                 f"--admin-address=127.0.0.1:{up_admin}"],
                                stderr=subprocess.DEVNULL)
    wait_ready(up_admin, upstream, 10)

    results = {}
    if args.cpu_rounds or args.rps_rounds:
        try:
            if args.rps_rounds:
                measure_rps(args, tmp, modes, up_port)
            else:
                measure_cpu(args, tmp, modes, up_port, sink.server_address[1])
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)
            sink.shutdown()
        return 0
    try:
        for name, percent in modes:
            runs = {}
            # (requests, idle seconds): two loads, and two idle spells that measure what the
            # process spends per second without requests (timers; nothing is exported when idle),
            # which is subtracted for the load runs' difference in wall time.
            for n, idle in ((args.requests, 0), (2 * args.requests, 0), (0, 3), (0, 9)):
                port, admin = free_port(), free_port()
                config = os.path.join(tmp, f"proxy-{percent}-{n}-{idle}.yaml")
                text = proxy_config(port, up_port, percent, sink.server_address[1])
                with open(config, "w") as f:
                    f.write(text)
                out = os.path.join(tmp, f"callgrind-{percent}-{n}-{idle}.out")
                proc = subprocess.Popen(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                     args.sidecar, "--config", config, "--concurrency=1", "--drain-time=0s",
                     f"--admin-address=127.0.0.1:{admin}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait_ready(admin, proc, 60)
                # The same warm-up in every run (it cancels out): connections, first-use paths.
                subprocess.run(["h2load", "--h1", "-n", "50", "-c", str(args.clients),
                                f"http://127.0.0.1:{port}/"], capture_output=True, timeout=600)
                started = time.monotonic()
                if n:
                    h2load(port, n, args.clients)
                else:
                    time.sleep(idle)
                seconds = time.monotonic() - started
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
                with open(out) as f:
                    totals = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
                runs[(n, idle)] = (int(totals.group(1)), seconds)
            (ir1, t1), (ir2, t2) = runs[(args.requests, 0)], runs[(2 * args.requests, 0)]
            (ir_a, s_a), (ir_b, s_b) = runs[(0, 3)], runs[(0, 9)]
            idle_rate = (ir_b - ir_a) / (s_b - s_a)
            raw = (ir2 - ir1) / args.requests
            results[name] = (ir2 - ir1 - idle_rate * (t2 - t1)) / args.requests
            print(f"{name:>5}: {results[name]:10.0f} instructions/request "
                  f"(raw {raw:.0f}; idle {idle_rate:.0f}/s subtracted for {t2 - t1:.1f} s more "
                  f"wall time)", flush=True)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
        sink.shutdown()
    off = results["off"]
    for name in results:
        if name == "off":
            continue
        print(f"{name:>5}: +{100 * (results[name] - off) / off:.2f} % instructions per request "
              f"against tracing off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
