"""meshlet against HAProxy and nginx as the same one-hop reverse proxy, in the same run.

Usage:
  proxy_compare.py --sidecar BINARY [--duration 10] [--rounds 3] [--json FILE]
  proxy_compare.py --sidecar BINARY --smoke

Every proxy forwards every request to one upstream (nginx returning a fixed 1024-byte body) over
pooled keep-alive HTTP/1.1 connections. Each proxy runs ONE worker (meshlet --concurrency 1,
HAProxy nbthread 1, nginx worker_processes 1), pinned with taskset to one core; the upstream and
the load generators share the other core. All proxies run at the same time and are loaded one
after the other with identical parameters; the rounds rotate the order and the figures printed
are the medians over the rounds.

Cases:
  h1       wrk -t1 -c64 --latency                 HTTP/1.1 keep-alive, as fast as possible
  h2       h2load -c16 -m16                       h2c (prior knowledge), 256 streams in flight
  h1-rate  h2load --h1 -c16 --rps R               HTTP/1.1 at a fixed rate, for latency
  h2-rate  h2load -c16 -m1 --rps R                h2c at a fixed rate, for latency

Per case and proxy the output has requests/s, p50 and p99 latency, the proxy's CPU use (its
own core is 1.00) and CPU time per request (user + system, µs), the requests/s ratios to HAProxy
and nginx, and memory (VmRSS and RssAnon from /proc/PID/status, summed over the proxy's processes)
idle before any traffic and the peak sampled under load.

--smoke runs every case for one second against every proxy installed and only checks that every
request succeeded (exit status 1 otherwise); a peer or tool that is not installed is reported with
a SKIP line. It is the test gate's check that this benchmark still runs.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from ports import free_port  # noqa: E402,F401  (below the ephemeral range, see there)

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
KiB = 1024
BODY_BYTES = 1024
SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin"]


def find_tool(name):
    path = shutil.which(name)
    if path:
        return path
    for d in SBIN:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def render(template_name, out_dir, values):
    """Fills {{NAME}} placeholders of peers/TEMPLATE (or of TEMPLATE, a path); writes the result
    into out_dir, never over the template, and returns its path."""
    with open(os.path.join(PEERS, template_name)) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    left = re.findall(r"\{\{[A-Z0-9_]+\}\}", code)
    if left:
        raise RuntimeError(f"{template_name}: unfilled placeholders {sorted(set(left))}")
    path = os.path.join(out_dir, os.path.basename(template_name))
    with open(path, "w") as f:
        f.write(text)
    return path


def process_tree(pid):
    """pid and all its descendants (nginx: master and worker)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def memory_kib(pid):
    """(VmRSS, RssAnon) in KiB, summed over the process tree."""
    rss = anon = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1])
        except OSError:
            pass
    return rss, anon


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """(user, system) CPU time of the process tree, in seconds."""
    user = system = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def http_get_ok(port, timeout=1.0):
    """True when GET / on 127.0.0.1:port answers 200 with the 1 KiB body."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return head.startswith(b"HTTP/1.1 200") and len(body) == BODY_BYTES
    except OSError:
        return False


# Every server started, so that all of them are stopped whatever fails.
STARTED = []


def stop_started(workdir, ok):
    """Stops every started server, last first; removes `workdir` when `ok`, else keeps it and
    says where."""
    for p in reversed(STARTED):
        p.stop()
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"working files kept in {workdir}", file=sys.stderr)


class Proc:
    """A started server process; stop() ends it and (nginx) its workers."""

    def __init__(self, name, argv, workdir, cpu=None):
        STARTED.append(self)
        self.name = name
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        # taskset execs the program, so the pid is the server's own.
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-2000:]

    def stop(self):
        if self.log.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                # Its own process group (start_new_session): nginx's worker goes with it.
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def accepts_connections(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ready(proc, port, timeout=10.0, h2_port=None):
    """Waits for GET / to succeed on `port` and, for h2c (prior knowledge) ports that answer no
    HTTP/1.1, for `h2_port` to accept connections."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.log_tail()}")
        if http_get_ok(port) and (h2_port is None or accepts_connections(h2_port)):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} is not answering on port {port}:\n{proc.log_tail()}")


# ---------------------------------------------------------------------------------------------
# Load generators and their output.

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out):
    result = {"requests": 0, "errors": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None}
    match = re.search(r"(\d+) requests in", out)
    if match:
        result["requests"] = int(match.group(1))
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match:
        result["rps"] = float(match.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if match:
            result[key] = _ms(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match:
        result["errors"] += sum(int(g) for g in match.groups())
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match:
        result["errors"] += int(match.group(1))
    return result


def admin_counter(admin_port, name):
    """Sum of a counter's series on a sidecar's admin /stats page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=10) as r:
        text = r.read().decode()
    return sum(int(line.rpartition(": ")[2]) for line in text.splitlines()
               if line.rpartition(": ")[0].split("{")[0] == name)


def wrk_rps(port, seconds, connections=64, cpu=1, wrk="wrk"):
    """(requests/s, requests) of `wrk -t1 -cCONNECTIONS` against http://127.0.0.1:PORT/ pinned to
    core `cpu`, for the paired-rounds benchmarks; any error or non-2xx answer raises."""
    out = subprocess.run(["taskset", "-c", str(cpu), wrk, "-t1", f"-c{connections}",
                          f"-d{seconds}s", f"http://127.0.0.1:{port}/"], capture_output=True,
                         text=True, timeout=seconds + 60).stdout
    result = parse_wrk(out)
    if result["rps"] <= 0 or result["errors"]:
        raise RuntimeError(f"wrk against port {port}:\n{out[-800:]}")
    return result["rps"], result["requests"]


def parse_h2load(out, log_file):
    result = {"requests": 0, "errors": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None}
    match = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if match:
        result["rps"] = float(match.group(1))
    match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if match:
        started, done, succeeded = int(match.group(2)), int(match.group(3)), int(match.group(4))
        result["requests"] = succeeded
        result["errors"] = (done - succeeded) + int(match.group(5)) + int(match.group(6)) + \
            int(match.group(7))
        if started == 0:
            # In a timed run (-D) h2load counts requests only once they start: a client whose
            # connection failed (refused, reset before the SETTINGS exchange) adds nothing to
            # "failed". Zero started is therefore a failure of its own, not an empty success.
            result["errors"] += 1
            result["note"] = "h2load started no request: no connection reached the proxy"
    else:
        result["errors"] += 1
    match = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if match:
        result["errors"] += int(match.group(3)) + int(match.group(4))
    # Per-request log: start time (µs), status, duration (µs).
    durations = []
    try:
        with open(log_file) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    durations.append(int(parts[2]))
    except OSError:
        pass
    if durations:
        durations.sort()
        result["p50_ms"] = durations[len(durations) // 2] / 1000.0
        result["p99_ms"] = durations[min(len(durations) - 1, int(len(durations) * 0.99))] / 1000.0
    return result


class Case:
    def __init__(self, name, tool, describe):
        self.name, self.tool, self.describe = name, tool, describe


def case_list(rate):
    return [
        Case("h1", "wrk", "wrk -t1 -c64 --latency"),
        Case("h2", "h2load", "h2load -t1 -c16 -m16"),
        Case("h1-rate", "h2load", f"h2load --h1 -t1 -c16 -m1 --rps {rate} (x16)"),
        Case("h2-rate", "h2load", f"h2load -t1 -c16 -m1 --rps {rate} (x16)"),
    ]


def run_case(case, tools, port_h1, port_h2, duration, warmup, load_cpu, workdir, rate):
    """Runs one case against one proxy; returns the parsed figures."""
    pin = ["taskset", "-c", str(load_cpu)] if load_cpu is not None else []
    url_h1 = f"http://127.0.0.1:{port_h1}/"
    url_h2 = f"http://127.0.0.1:{port_h2}/"
    if case.name == "h1":
        argv = pin + [tools["wrk"], "-t1", "-c64", f"-d{duration}s", "--latency", url_h1]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
        return parse_wrk(out.stdout + out.stderr), out.stdout + out.stderr
    log_file = os.path.join(workdir, "h2load.log")
    if os.path.exists(log_file):
        os.unlink(log_file)
    common = [tools["h2load"], "-t1", "-c16", f"-D{duration}", f"--log-file={log_file}"]
    if warmup:
        common.append(f"--warm-up-time={warmup}")
    if case.name == "h2":
        argv = pin + common + ["-m16", url_h2]
    elif case.name == "h1-rate":
        argv = pin + common + ["--h1", "-m1", f"--rps={rate}", url_h1]
    else:
        argv = pin + common + ["-m1", f"--rps={rate}", url_h2]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + warmup + 30)
    return parse_h2load(out.stdout + out.stderr, log_file), out.stdout + out.stderr


class Sampler:
    """Samples a process tree's memory every 100 ms while a case runs; keeps the peaks."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_rss = self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            rss, anon = memory_kib(self.pid)
            self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
            self._stop.wait(0.1)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak_rss, self.peak_anon


# ---------------------------------------------------------------------------------------------
# Proxies.

class Proxy:
    """One proxy under test (or "direct": the upstream itself)."""

    def __init__(self, name, proc, port_h1, port_h2, version):
        self.name, self.proc, self.port_h1, self.port_h2 = name, proc, port_h1, port_h2
        self.version = version
        self.idle = None  # (VmRSS, RssAnon) KiB before any traffic


def tool_version(argv, pattern):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "?"


def start_all(args, tools, workdir, skip):
    """Starts the upstream and every proxy that is installed; returns (upstream, [Proxy])."""
    body = ("meshlet-bench-" * 80)[:BODY_BYTES]
    up_h1, up_h2 = free_port(), free_port()
    upstream = Proc("upstream-nginx", [tools["nginx"], "-p", workdir, "-e", "stderr", "-c",
                                        render("upstream-nginx.conf", workdir,
                                               {"DIR": workdir, "H1_PORT": up_h1,
                                                "H2_PORT": up_h2, "BODY": body})],
                    workdir, args.load_cpu)
    wait_ready(upstream, up_h1, h2_port=up_h2)
    proxies = [Proxy("direct", upstream, up_h1, up_h2, "upstream nginx")]

    def meshlet(name, template):
        port = free_port()
        config = render(template, workdir, {"H1_PORT": port, "UPSTREAM_PORT": up_h1})
        proc = Proc(name, [args.sidecar, "--config", config, "--concurrency", "1",
                           f"--admin-address=127.0.0.1:{free_port()}", "--log-level", "warn"],
                    workdir, args.proxy_cpu)
        wait_ready(proc, port)
        version = tool_version([args.sidecar, "--version"], r"(\S.*)")
        return Proxy(name, proc, port, port, version)

    proxies.append(meshlet("meshlet", "meshlet.yaml"))
    if args.resilience:
        proxies.append(meshlet("meshlet-resilience", "meshlet-resilience.yaml"))

    if "haproxy" in skip:
        pass
    else:
        port = free_port()
        config = render("haproxy.cfg", workdir, {"H1_PORT": port, "UPSTREAM_PORT": up_h1})
        proc = Proc("haproxy", [tools["haproxy"], "-db", "-f", config], workdir, args.proxy_cpu)
        wait_ready(proc, port)
        proxies.append(Proxy("haproxy", proc, port, port,
                             tool_version([tools["haproxy"], "-v"], r"version (\S+)")))

    if "nginx" not in skip:
        port_h1, port_h2 = free_port(), free_port()
        config = render("nginx.conf", workdir, {"DIR": workdir, "H1_PORT": port_h1,
                                                "H2_PORT": port_h2, "UPSTREAM_PORT": up_h1})
        proc = Proc("nginx", [tools["nginx"], "-p", workdir, "-e", "stderr", "-c", config],
                    workdir, args.proxy_cpu)
        wait_ready(proc, port_h1, h2_port=port_h2)
        proxies.append(Proxy("nginx", proc, port_h1, port_h2,
                             tool_version([tools["nginx"], "-v"], r"nginx/(\S+)")))
    return upstream, proxies


# ---------------------------------------------------------------------------------------------

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sidecar", required=True, help="meshlet sidecar binary (build --config=opt)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per case and round")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per proxy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1000,
                        help="fixed-rate cases: requests/s per connection (16 connections)")
    parser.add_argument("--cases", default="h1,h2,h1-rate,h2-rate")
    parser.add_argument("--proxies", default="direct,meshlet,meshlet-resilience,haproxy,nginx")
    parser.add_argument("--proxy-cpu", type=int, default=0, help="core for the proxy under test")
    parser.add_argument("--load-cpu", type=int, default=1, help="core for upstream and clients")
    parser.add_argument("--no-pin", action="store_true", help="do not pin anything to cores")
    parser.add_argument("--smoke", action="store_true",
                        help="one short round; only check that every request succeeds")
    parser.add_argument("--json", help="write all measurements to this file")
    args = parser.parse_args()
    wanted_proxies = args.proxies.split(",")
    args.resilience = "meshlet-resilience" in wanted_proxies
    if args.smoke:
        args.duration, args.warmup, args.rounds, args.no_pin = 1, 0, 1, True
        args.rate = 200
    if args.no_pin or (os.cpu_count() or 1) < 2:
        args.proxy_cpu = args.load_cpu = None

    tools = {name: find_tool(name) for name in ("wrk", "h2load", "haproxy", "nginx")}
    if not tools["nginx"]:
        print("SKIP all: nginx is not installed; it is the upstream of every case "
              "(Debian package nginx-light)")
        return 0
    skip = set()
    for name, package in (("haproxy", "haproxy"), ("nginx", "nginx-light")):
        if name not in wanted_proxies:
            skip.add(name)
        elif not tools[name]:
            print(f"SKIP {name}: not installed (Debian package {package})")
            skip.add(name)
    cases = [c for c in case_list(args.rate) if c.name in args.cases.split(",")]
    runnable = []
    for case in cases:
        if tools[case.tool]:
            runnable.append(case)
        else:
            package = {"wrk": "wrk", "h2load": "nghttp2-client"}[case.tool]
            print(f"SKIP case {case.name}: {case.tool} is not installed (Debian package {package})")
    cases = runnable

    workdir = tempfile.mkdtemp(prefix="proxy-compare-")
    upstream = None
    proxies = []
    failures = []
    results = {}  # (case, proxy) -> list of per-round dicts
    try:
        upstream, proxies = start_all(args, tools, workdir, skip)
        proxies = [p for p in proxies if p.name in wanted_proxies]
        time.sleep(0.5 if args.smoke else 1.5)
        for p in proxies:
            p.idle = memory_kib(p.proc.pid)
        print(f"# sidecar: {args.sidecar} ({proxies[1].version if len(proxies) > 1 else '?'})")
        print("# peers: " + ", ".join(f"{p.name} {p.version}" for p in proxies
                                      if p.name in ("haproxy", "nginx")))
        print(f"# one worker per proxy; proxy core: {args.proxy_cpu}, upstream + client core: "
              f"{args.load_cpu}; {args.duration} s per case, {args.rounds} round(s), "
              f"load average before: {os.getloadavg()[0]:.2f}")
        sys.stdout.flush()

        if args.warmup and not args.smoke:
            for p in proxies:
                for case in cases[:2]:
                    run_case(case, tools, p.port_h1, p.port_h2, args.warmup, 0, args.load_cpu,
                             workdir, args.rate)

        for round_index in range(args.rounds):
            shift = round_index % len(proxies)
            order = proxies[shift:] + proxies[:shift]
            for case in cases:
                for p in order:
                    sampler = Sampler(p.proc.pid)
                    cpu_before, wall_before = cpu_seconds(p.proc.pid), time.monotonic()
                    # No warm-up inside a measured run (the warm-up phase came first), so that
                    # the CPU time counted belongs to the requests counted.
                    result, output = run_case(case, tools, p.port_h1, p.port_h2, args.duration,
                                              0, args.load_cpu, workdir, args.rate)
                    wall = time.monotonic() - wall_before
                    cpu_after = cpu_seconds(p.proc.pid)
                    user, system = (cpu_after[i] - cpu_before[i] for i in (0, 1))
                    result["cpu"] = (user + system) / wall
                    served = max(result["requests"], 1)
                    result["user_us"], result["sys_us"] = (user * 1e6 / served,
                                                           system * 1e6 / served)
                    result["peak_rss"], result["peak_anon"] = sampler.stop()
                    results.setdefault((case.name, p.name), []).append(result)
                    ok = result["requests"] > 0 and result["errors"] == 0
                    if not ok:
                        note = f" ({result['note']})" if result.get("note") else ""
                        failures.append(f"{case.name} via {p.name}: {result['requests']} ok, "
                                        f"{result['errors']} failed{note}\n{output}")
                    if args.smoke:
                        print(f"{'PASS' if ok else 'FAIL'} {case.name:8s} {p.name:19s} "
                              f"{result['requests']} requests, {result['errors']} failed")
                    else:
                        print(f"  round {round_index + 1} {case.name:8s} {p.name:19s} "
                              f"{result['rps']:9.0f} req/s  p50 {fmt(result['p50_ms'], '.3f')} ms"
                              f"  p99 {fmt(result['p99_ms'], '.3f')} ms  cpu {result['cpu']:.2f}"
                              f"  us/req {result['user_us']:.2f}+{result['sys_us']:.2f}"
                              f"{'  ERRORS ' + str(result['errors']) if result['errors'] else ''}")
                    sys.stdout.flush()
        for p in proxies:
            p.after = memory_kib(p.proc.pid)
    finally:
        for proc in reversed(STARTED):
            proc.stop()
        if not failures:
            shutil.rmtree(workdir, ignore_errors=True)

    if args.smoke:
        for failure in failures:
            print("FAILED: " + failure)
        return 1 if failures else 0

    summary = report(cases, proxies, results, args)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    for failure in failures:
        print("ERRORS: " + failure.splitlines()[0])
    return 1 if failures else 0


def report(cases, proxies, results, args):
    """Prints the median table; returns it as a dict."""
    summary = {"cases": {}, "memory": {}, "duration": args.duration, "rounds": args.rounds}
    print()
    print(f"{'case':8s} {'proxy':19s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'cpu':>5s} "
          f"{'us/req usr+sys':>14s} {'/haproxy':>8s} {'/nginx':>7s} {'peak RSS':>9s} "
          f"{'peak anon':>9s}")
    for case in cases:
        table = {}
        for p in proxies:
            rounds = results.get((case.name, p.name), [])
            if not rounds:
                continue
            row = {key: median([r[key] for r in rounds]) for key in
                   ("rps", "p50_ms", "p99_ms", "cpu", "user_us", "sys_us")}
            row["peak_rss_kib"] = max(r["peak_rss"] for r in rounds)
            row["peak_anon_kib"] = max(r["peak_anon"] for r in rounds)
            row["errors"] = sum(r["errors"] for r in rounds)
            table[p.name] = row
        summary["cases"][case.name] = table
        for name, row in table.items():
            ratios = []
            for peer in ("haproxy", "nginx"):
                if peer in table and table[peer]["rps"] and name != peer:
                    ratios.append(row["rps"] / table[peer]["rps"])
                else:
                    ratios.append(None)
            row["ratio_haproxy"], row["ratio_nginx"] = ratios
            print(f"{case.name:8s} {name:19s} {row['rps']:9.0f} {fmt(row['p50_ms'], '8.3f')} "
                  f"{fmt(row['p99_ms'], '8.3f')} {row['cpu']:5.2f} "
                  f"{row['user_us']:6.2f}+{row['sys_us']:<7.2f} {fmt(ratios[0], '8.2f')} "
                  f"{fmt(ratios[1], '7.2f')} {row['peak_rss_kib']:9d} {row['peak_anon_kib']:9d}")
    print()
    print(f"{'memory KiB':19s} {'idle VmRSS':>10s} {'idle RssAnon':>12s} {'load VmRSS':>10s} "
          f"{'load RssAnon':>12s} {'after VmRSS':>11s} {'after RssAnon':>13s}")
    for p in proxies:
        peak_rss = max((r["peak_rss"] for (c, n), rs in results.items() if n == p.name
                        for r in rs), default=0)
        peak_anon = max((r["peak_anon"] for (c, n), rs in results.items() if n == p.name
                         for r in rs), default=0)
        summary["memory"][p.name] = {"idle_rss_kib": p.idle[0], "idle_anon_kib": p.idle[1],
                                     "load_rss_kib": peak_rss, "load_anon_kib": peak_anon,
                                     "after_rss_kib": p.after[0], "after_anon_kib": p.after[1],
                                     "version": p.version}
        print(f"{p.name:19s} {p.idle[0]:10d} {p.idle[1]:12d} {peak_rss:10d} {peak_anon:12d} "
              f"{p.after[0]:11d} {p.after[1]:13d}")
    return summary


if __name__ == "__main__":
    sys.exit(main())
