#!/usr/bin/env python3
"""Soak: a mesh under steady load, configuration pushes and certificate rotations, for a long time.

Usage:
  soak.py --control-plane BIN --sidecar BIN --testapp BIN [--duration 600] [--rate 2000]
          [--push-interval 10] [--cert-ttl 120] [--rss-tolerance 0.10] [--json OUT]
  soak.py --smoke ...   60 s at 1000 requests/s, 20 s certificates: the suite's version

The control plane (CA and xDS) configures two sidecars with workload certificates from join
tokens: frontend-0 calls the Service `backend` (port 9080), whose member backend-0 fronts the
sample app (tests/e2e/testapp). h2load sends a fixed rate of requests (h2c) to frontend's
outbound listener for the whole run; frontend reaches backend over mTLS. Meanwhile:
- every --push-interval seconds an HTTPRoute for backend is applied through the API (its timeout
  alternates), so a new configuration is pushed to frontend;
- certificates live --cert-ttl seconds and are renewed at half of that, so both sidecars rotate.
Pass criteria: no failed, errored or timed-out request and no non-2xx answer; at least 90 % of
the requests asked for were sent; every push acknowledged (frontend's ack count grew by at least
one per push); each sidecar rotated as often as its lifetime implies; each sidecar's RSS over the
last fifth of the run within --rss-tolerance of its RSS over the second fifth (after warm-up).
Prints a JSON summary (and writes it to --json); exits 1 when a criterion fails. Everything it
started is stopped, also on failure.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from mesh_util import (call_service, create_join_token, put_resource,  # noqa: E402
                       start_plaintext_control_plane, start_xds_sidecar, stop_all)
from ports import free_port  # noqa: E402
from sidecar_test import rss_kib  # noqa: E402

NAMESPACE = "soak"


class Mesh:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.sidecars = []
        self.apps = []
        self.cp = None

    def start(self):
        ttl = f"{self.args.cert_ttl}s"
        self.cp, self.api, self.ads, self.token = start_plaintext_control_plane(
            self.args.control_plane, self.tmp, "--cert-ttl", ttl, "--cert-max-ttl", ttl)
        self.put("services/backend", f"""apiVersion: meshlet.io/v1
kind: Service
metadata: {{name: backend, namespace: {NAMESPACE}}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http, port: 9080, protocol: HTTP}}]
""")
        app_port = free_port()
        app_log = open(os.path.join(self.tmp, "testapp.log"), "wb")
        app = subprocess.Popen([self.args.testapp, "serve", "--service", "backend",
                                "--listen", f"127.0.0.1:{app_port}"],
                               stdout=app_log, stderr=app_log)
        self.apps.append(_Process(app))
        self.backend = self.sidecar("backend-0", "backend", "--node-service=backend",
                                    "--node-label=app=backend", f"--node-port={app_port}")
        self.frontend = self.sidecar("frontend-0", "frontend", "--node-service=frontend")
        deadline = time.time() + 30
        while call_service(self.frontend.outbound, "backend:9080", "/")[0] != 200:
            if time.time() > deadline:
                raise RuntimeError("frontend never reached backend")
            time.sleep(0.2)

    def sidecar(self, node_id, account, *flags):
        token = create_join_token(self.api, self.token, account, "1h", NAMESPACE)
        s = start_xds_sidecar(self.tmp, self.ads, node_id, NAMESPACE, *flags, join_token=token,
                              service_account=account)
        self.sidecars.append(s)
        return s

    def put(self, path, yaml_text):
        put_resource(self.api, self.token, f"namespaces/{NAMESPACE}/{path}", yaml_text)

    def push(self, n):
        self.put("httproutes/backend", f"""apiVersion: meshlet.io/v1
kind: HTTPRoute
metadata: {{name: backend, namespace: {NAMESPACE}}}
spec:
  target: backend
  rules:
  - name: default
    backends: [{{service: backend}}]
    timeout: {5 + n % 2}s
""")

    def stop(self):
        stop_all(self.sidecars, self.apps, self.cp) if self.cp else None


class _Process:
    """A subprocess with close(), as stop_all expects of apps."""

    def __init__(self, proc):
        self.proc = proc

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serial(sidecar):
    try:
        return json.loads(sidecar.get("/certs")[1])["workload_certificate"]["serial"]
    except (ValueError, KeyError, TypeError, OSError):
        return None


def acks(sidecar):
    return sum(int(line.rpartition(": ")[2])
               for line in sidecar.stat_lines("meshlet_xds_client_updates_total")
               if 'result="ack"' in line)


def parse_h2load(text):
    out = {}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        keys = ["total", "started", "done", "succeeded", "failed", "errored", "timeout"]
        out.update(zip(keys, map(int, m.groups())))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        out.update(zip(["2xx", "3xx", "4xx", "5xx"], map(int, m.groups())))
    return out


def run(args):
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"), prefix="soak-")
    mesh = Mesh(args, tmp)
    h2load = None
    try:
        mesh.start()
        clients = 4
        h2load = subprocess.Popen(
            ["h2load", "-c", str(clients), "-m", "1", "--rps", str(args.rate / clients),
             "-D", str(args.duration), "-H", ":authority: backend:9080",
             f"http://127.0.0.1:{mesh.frontend.outbound}/soak"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        start = time.monotonic()
        samples = []  # (seconds, frontend RSS KiB, backend RSS KiB)
        serials = {"frontend": [serial(mesh.frontend)], "backend": [serial(mesh.backend)]}
        acks_before = acks(mesh.frontend)
        pushes = 0
        next_push = start + args.push_interval
        while h2load.poll() is None:
            now = time.monotonic()
            if now >= next_push and now - start < args.duration - 1:
                mesh.push(pushes)
                pushes += 1
                next_push += args.push_interval
            samples.append((now - start, rss_kib(mesh.frontend.proc.pid),
                            rss_kib(mesh.backend.proc.pid)))
            for name, s in (("frontend", mesh.frontend), ("backend", mesh.backend)):
                current = serial(s)
                if current is not None and current != serials[name][-1]:
                    serials[name].append(current)
            time.sleep(1)
        output = h2load.stdout.read()
        elapsed = time.monotonic() - start
        time.sleep(1)  # the last push's acknowledgement
        result = parse_h2load(output)
        result.update(duration_s=round(elapsed, 1), rate=args.rate, pushes=pushes,
                      acks=acks(mesh.frontend) - acks_before,
                      rotations={k: len(v) - 1 for k, v in serials.items()})
        fifth = args.duration / 5
        rss = {}
        for index, name in ((1, "frontend"), (2, "backend")):
            early = [s[index] for s in samples if fifth <= s[0] < 2 * fifth]
            late = [s[index] for s in samples if s[0] >= 4 * fifth]
            if early and late:
                rss[name] = {"early_kib": statistics.median(early),
                             "late_kib": statistics.median(late),
                             "max_kib": max(s[index] for s in samples)}
        result["rss"] = rss
        failures = check(args, result)
        result["failures"] = failures
        if failures:
            result["h2load"] = output[-2000:]
        return result
    finally:
        if h2load is not None and h2load.poll() is None:
            h2load.kill()
            h2load.wait()
        mesh.stop()


def check(args, r):
    failures = []
    if "total" not in r:
        return ["h2load printed no summary"]
    for key in ("failed", "errored", "timeout", "3xx", "4xx", "5xx"):
        if r.get(key, 0) != 0:
            failures.append(f"{r[key]} requests {key}")
    asked = args.rate * args.duration
    if r["succeeded"] < 0.9 * asked:
        failures.append(f"only {r['succeeded']} of {asked:.0f} requests sent and answered")
    if r["acks"] < r["pushes"]:
        failures.append(f"{r['pushes']} pushes, {r['acks']} acknowledgements")
    expected = int(args.duration // (args.cert_ttl / 2)) - 1
    for name, n in r["rotations"].items():
        if n < expected:
            failures.append(f"{name} rotated {n} times, expected at least {expected}")
    sanitized = "ASAN_OPTIONS" in os.environ or "TSAN_OPTIONS" in os.environ
    if sanitized:
        print("SKIP the RSS criterion: a sanitizer's allocator holds freed memory",
              file=sys.stderr)
    for name, m in r["rss"].items():
        change = (m["late_kib"] - m["early_kib"]) / m["early_kib"]
        m["change"] = round(change, 3)
        if abs(change) > args.rss_tolerance and not sanitized:
            failures.append(f"{name} RSS moved {change:+.1%} ({m['early_kib']} -> "
                            f"{m['late_kib']} KiB)")
    if len(r["rss"]) != 2:
        failures.append("too few RSS samples")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--control-plane", required=True)
    parser.add_argument("--sidecar", required=True)
    parser.add_argument("--testapp", required=True)
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--push-interval", type=float, default=10)
    parser.add_argument("--cert-ttl", type=float, default=120)
    parser.add_argument("--rss-tolerance", type=float, default=0.10)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.rate, args.cert_ttl, args.rss_tolerance = 60, 1000, 20, 0.25
    # The sidecar module reads its binary from here.
    import sidecar_test
    sidecar_test.SIDECAR = os.path.abspath(args.sidecar)
    args.control_plane = os.path.abspath(args.control_plane)
    args.testapp = os.path.abspath(args.testapp)
    result = run(args)
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if result["failures"]:
        print("SOAK FAILED: " + "; ".join(result["failures"]), file=sys.stderr)
        return 1
    print("soak passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
