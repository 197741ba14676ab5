#!/usr/bin/env python3
"""HTTP/2 abuse against one sidecar worker, and what it does to another client on that worker.

Usage: h2_abuse.py --sidecar BIN [--seconds 10] [--json OUT]

One sidecar (one worker) serves an HTTP listener with a direct response and a route to a local
upstream (the sample app is not needed: the upstream is a tiny Python server answering after
50 ms). A victim client, wrk over HTTP/1.1 with one connection, measures latency on the same
worker (the sidecar pinned to core 0, wrk and the attacker to the other cores, the attacker at
nice 19 so that sharing a core with it does not delay wrk's own measurements): first alone, then
while each attack runs from a separate process that reconnects whenever the sidecar cuts it off:

  rapid-reset    HEADERS for the upstream route, RST_STREAM at once, as fast as it can
  continuation   a HEADERS block that never ends: 1 KiB CONTINUATION frames
  empty-data     an open stream, then DATA frames without payload
  priority       PRIORITY frames for streams never opened
  ping           PING frames, never reading the ACKs
  settings       SETTINGS frames, never reading the ACKs

For each: the victim's requests/s and p50/p99, the sidecar's CPU time per second and RSS, and how
many attacker connections the sidecar ended (meshlet_http_downstream_cx_flood_total). The victim
runs unloaded before and after the attacks; "p99 x" is against the lower of those two p99s. The
target (issue: hardening) is the victim's p99 within 2x its unloaded value. Prints a table and
JSON.
"""

import argparse
import http.server
import json
import multiprocessing
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from h2_frames import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS,  # noqa: E402
                       PING, PREFACE, PRIORITY, RST_STREAM, SETTINGS, frame, hpack_literal,
                       request_block)
from ports import free_port  # noqa: E402
from sidecar_test import rss_kib  # noqa: E402

def attack_frames(kind):
    """An endless sequence of byte chunks for one connection of attack `kind`."""
    if kind == "rapid-reset":
        sid = 1
        while True:
            chunk = b""
            for _ in range(50):
                chunk += frame(HEADERS, END_STREAM | END_HEADERS, sid, request_block(b"/upstream")) + \
                    frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
                sid += 2
            yield chunk
    elif kind == "continuation":
        yield frame(HEADERS, 0, 1, request_block(b"/"))
        field = hpack_literal(b"x-filler", b"v" * 100) * 9
        while True:
            yield frame(CONTINUATION, 0, 1, field) * 16
    elif kind == "empty-data":
        yield frame(HEADERS, END_HEADERS, 1, request_block(b"/"))
        while True:
            yield frame(DATA, 0, 1) * 100
    elif kind == "priority":
        sid = 3
        while True:
            yield b"".join(frame(PRIORITY, 0, sid + 2 * i, struct.pack(">IB", 0, 16))
                           for i in range(100))
            sid += 200
    elif kind == "ping":
        while True:
            yield frame(PING, 0, 0, b"12345678") * 100
    elif kind == "settings":
        while True:
            yield frame(SETTINGS, 0, 0) * 100


def attacker(kind, port, seconds, counter, cpus):
    os.sched_setaffinity(0, {int(c) for c in range(int(cpus.split("-")[0]),
                                                    int(cpus.split("-")[-1]) + 1)})
    # Nice 19: wrk preempts the attacker whenever it wakes, as if each ran on a machine of its
    # own; the attacker still takes all the CPU wrk leaves (most of the core).
    os.nice(19)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0))
            counter.value += 1
            for chunk in attack_frames(kind):
                if time.time() >= deadline:
                    break
                s.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                s.close()
            except Exception:
                pass


class SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(0.05)
        try:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the rapid-reset attacker's requests are reset by the sidecar meanwhile

    def log_message(self, *args):
        pass


def config(port, upstream_port):
    return f"""static_resources:
  listeners:
  - name: http
    address: 127.0.0.1:{port}
    protocol: PROTOCOL_HTTP
    route_config_name: routes
  clusters:
  - name: upstream
    connect_timeout: 1s
    load_assignment:
      endpoints:
      - address: 127.0.0.1:{upstream_port}
  routes:
  - name: routes
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - match: {{prefix: /upstream}}
        route: {{cluster: upstream}}
      - match: {{prefix: /}}
        direct_response: {{status: 200, body: "ok"}}
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stat(admin, name):
    with urllib.request.urlopen(f"http://{admin}/stats?filter={name}", timeout=5) as r:
        return sum(int(l.rpartition(": ")[2]) for l in r.read().decode().splitlines()
                   if l.split("{")[0] == name)


CLIENT_CPUS = None  # set in main


def wrk(port, seconds):
    out = subprocess.run(["taskset", "-c", CLIENT_CPUS, "wrk", "-t1", "-c1", f"-d{seconds}s",
                          "--latency",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"rps": round(rps), "p50_ms": ms(50), "p99_ms": ms(99)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sidecar", required=True)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--json")
    args = parser.parse_args()

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin_port = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="h2-abuse-")
    path = os.path.join(tmp, "sidecar.yaml")
    with open(path, "w") as f:
        f.write(config(port, upstream.server_address[1]))
    log = open(os.path.join(tmp, "sidecar.log"), "wb")
    # The sidecar alone on core 0; wrk and the attacker share core 1 (with more cores, the rest).
    cores = os.cpu_count() or 1
    sidecar_cpu, client_cpus = ("0", f"1-{cores - 1}") if cores > 1 else ("0", "0")
    proc = subprocess.Popen(["taskset", "-c", sidecar_cpu,
                             os.path.abspath(args.sidecar), f"--config={path}", "--concurrency=1",
                             f"--admin-address=127.0.0.1:{admin_port}", "--log-level=warn"],
                            stdout=log, stderr=log)
    global CLIENT_CPUS
    CLIENT_CPUS = client_cpus
    admin = f"127.0.0.1:{admin_port}"
    results = {}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        wrk(port, 2)  # warm
        results["unloaded"] = wrk(port, args.seconds)
        for kind in ("rapid-reset", "continuation", "empty-data", "priority", "ping",
                     "settings"):
            floods_before = stat(admin, "meshlet_http_downstream_cx_flood_total")
            cpu_before = cpu_seconds(proc.pid)
            counter = multiprocessing.Value("i", 0)
            p = multiprocessing.Process(target=attacker,
                                        args=(kind, port, args.seconds + 1, counter,
                                              client_cpus))
            p.start()
            time.sleep(0.5)
            r = wrk(port, args.seconds)
            p.join()
            r["sidecar_cpu_per_s"] = round((cpu_seconds(proc.pid) - cpu_before) /
                                           (args.seconds + 1), 2)
            r["rss_kib"] = rss_kib(proc.pid)
            r["attacker_connections"] = counter.value
            r["connections_ended"] = stat(admin, "meshlet_http_downstream_cx_flood_total") - \
                floods_before
            results[kind] = r
        # Unloaded once more at the end: the tail of a 10 s run varies by itself, so the ratio is
        # against the lower of the two unloaded p99s.
        results["unloaded-after"] = wrk(port, args.seconds)
        baseline = min(results["unloaded"]["p99_ms"], results["unloaded-after"]["p99_ms"])
        for kind, r in results.items():
            r["p99_vs_unloaded"] = round(r["p99_ms"] / baseline, 2)
    finally:
        proc.kill()
        proc.wait()
        upstream.shutdown()
    print(f"{'case':14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99 x':>6} {'cpu/s':>6} "
          f"{'RSS KiB':>8} {'conns':>6} {'ended':>6}")
    for kind, r in results.items():
        print(f"{kind:14} {r['rps']:>8} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
              f"{r['p99_vs_unloaded']:>6} {r.get('sidecar_cpu_per_s', ''):>6} "
              f"{r.get('rss_kib', ''):>8} {r.get('attacker_connections', ''):>6} "
              f"{r.get('connections_ended', ''):>6}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
