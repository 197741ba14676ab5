"""What sharing telemetry between control-plane replicas costs (ADR 0050).

Usage: telemetry_replicas.py CONTROL_PLANE [--sidecars N] [--clusters K] [--interval S]
                             [--spans-per-second R] [--seconds D] [--replicas M] [--check]

Starts a 3-member etcd and M control-plane replicas on it (all on 127.0.0.1, removed at exit),
then plays N sidecars for D seconds: each sends a golden-metrics report with K clusters every S
seconds to its replica (sidecar i to replica i mod M, as sidecars spread over a Service), and R
spans per second go to the replicas' OTLP receivers in turn (batches of 10, OTLP JSON). With
--replicas 1 the one control plane uses the file store and nothing is forwarded: the baseline.

Prints, per replica: CPU seconds over the measured time (after one warm-up interval), RSS, the
golden series and spans it holds (with sharing every replica holds all of them: N x K series and
every span), and its forwarded batches (sent, failed, skipped). --check exits 1 unless every
replica holds every series and span (the suite's smoke run).

Needs Debian's etcd-server and python3-grpcio; uses tests/integration/etcd_util.py.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "integration"))
import cp_api  # noqa: E402
from etcd_util import EtcdCluster, etcd_installed  # noqa: E402
from mesh_util import stop_process  # noqa: E402
from ports import free_port  # noqa: E402

REPORT_METHOD = "/meshlet.metrics.v1.MetricsService/Report"


# Protobuf wire encoding, enough for xds/metrics.proto's MetricsReport.
def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire_type, payload):
    key = varint(number << 3 | wire_type)
    if wire_type == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def histogram(buckets):
    """Histogram{bucket (packed), count (packed), sum} from {index: count}."""
    indices = sorted(buckets)
    return (field(1, 2, b"".join(varint(i) for i in indices))
            + field(2, 2, b"".join(varint(buckets[i]) for i in indices))
            + field(3, 0, sum(buckets.values()) * 1000))


def report(node, service, instance, start_ns, clusters, requests):
    """A MetricsReport of `clusters` destination clusters, `requests` requests on each so far."""
    body = (field(1, 2, node.encode()) + field(2, 2, service.encode())
            + field(3, 2, b"default") + field(4, 0, instance)
            + field(5, 0, time.time_ns()) + field(7, 0, start_ns))
    for c in range(clusters):
        spread = {40 + b: max(1, requests // (b + 1)) for b in range(10)}
        cluster = (field(1, 2, f"outbound|8080||svc-{c}.default".encode())
                   + field(2, 2, histogram(spread))
                   + field(4, 0, requests * 512) + field(5, 0, requests * 2048)
                   + field(6, 0, 1 + requests // 100))
        body += field(6, 2, cluster)
    return body


def spans_body(count):
    trace = os.urandom(16).hex()
    now = time.time_ns()
    spans = [{"traceId": trace, "spanId": os.urandom(8).hex(), "name": "GET /", "kind": 2,
              "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000000),
              "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}]}
             for _ in range(count)]
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "bench.default"}}]},
        "scopeSpans": [{"spans": spans}]}]}).encode()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


class Mesh:
    def __init__(self, control_plane, replicas):
        self.work = tempfile.mkdtemp(prefix="telemetry-replicas-")
        self.procs = []
        self.etcd = None
        if replicas > 1:
            self.etcd = EtcdCluster(self.work, members=3)
            self.etcd.start()
        self.replicas = [self.start_replica(control_plane, r) for r in range(replicas)]

    def start_replica(self, control_plane, r):
        data = os.path.join(self.work, f"cp-{r}")
        log_path = os.path.join(self.work, f"cp-{r}.log")
        otlp = free_port()
        args = [control_plane, "--data-dir", data, "--api-address", "127.0.0.1:0",
                "--xds-address", "127.0.0.1:0", "--xds-plaintext", "--zipkin-address=",
                f"--otlp-address=127.0.0.1:{otlp}", "--golden-max-series", "1000000"]
        if self.etcd is not None:
            args += [*self.etcd.store_args(), "--replica-name", f"r{r}"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=log)
        self.procs.append(proc)
        deadline = time.time() + 20
        while time.time() < deadline:
            text = open(log_path).read()
            api = re.search(r"API on (127\.0\.0\.1:\d+)", text)
            ads = re.search(r"ADS on (127\.0\.0\.1:\d+)", text)
            if api and ads and "trace collector" in text:
                with open(os.path.join(data, "api-token")) as f:
                    token = f.read().strip()
                # The API is HTTPS: its CA pinned by the fingerprint the replica logged.
                cp_api.pin_from_log(api.group(1), log_path, log_path + ".ca.pem")
                return {"name": f"r{r}", "proc": proc, "api": api.group(1),
                        "ads": ads.group(1), "otlp": otlp, "token": token}
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"control plane {r} did not start:\n{open(log_path).read()}")

    def metrics(self, replica):
        with cp_api.urlopen(f"https://{replica['api']}/metrics", timeout=10) as r:
            text = r.read().decode()

        def value(pattern):
            m = re.search(pattern + r" (\d+)", text)
            return int(m.group(1)) if m else 0
        return {"series": value(r"meshlet_cp_golden_series"),
                "spans": value(r"meshlet_cp_telemetry_store_spans"),
                "sent": value(r'meshlet_cp_peer_telemetry_batches_total\{result="sent"\}'),
                "failed": value(r'meshlet_cp_peer_telemetry_batches_total\{result="failed"\}'),
                "skipped": value(r'meshlet_cp_peer_telemetry_batches_total\{result="skipped"\}')}

    def close(self):
        for p in self.procs:
            stop_process(p)
        if self.etcd is not None:
            self.etcd.stop_all()
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("control_plane")
    parser.add_argument("--sidecars", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--spans-per-second", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.replicas > 1 and not etcd_installed():
        print("SKIP: etcd is not installed (Debian package etcd-server)")
        return 0
    mesh = Mesh(os.path.abspath(args.control_plane), args.replicas)
    try:
        channels = [grpc.insecure_channel(r["ads"]) for r in mesh.replicas]
        calls = [c.unary_unary(REPORT_METHOD) for c in channels]
        start_ns = time.time_ns()
        sidecars = [(f"bench-{i}", i % len(mesh.replicas), int.from_bytes(os.urandom(7), "big"))
                    for i in range(args.sidecars)]
        sent_reports = sent_spans = 0
        begin = time.time()
        warm = begin + args.interval  # every sidecar has reported once
        cpu0 = None
        span_credit = 0.0
        last = begin
        # Sidecar i reports at begin + (k + i / N) * interval: one pointer walks them in order.
        due, rounds = 0, 0
        while time.time() < warm + args.seconds:
            now = time.time()
            if cpu0 is None and now >= warm:
                cpu0 = [cpu_seconds(r["proc"].pid) for r in mesh.replicas]
                measured_from = now
            while begin + (rounds + due / len(sidecars)) * args.interval <= now:
                node, r, instance = sidecars[due]
                requests = int((now - begin) * 10)
                calls[r](report(node, "bench", instance, start_ns, args.clusters, requests),
                         timeout=10)
                sent_reports += 1
                due += 1
                if due == len(sidecars):
                    due, rounds = 0, rounds + 1
            span_credit += (now - last) * args.spans_per_second
            while span_credit >= 10:
                r = mesh.replicas[(sent_spans // 10) % len(mesh.replicas)]
                req = urllib.request.Request(f"http://127.0.0.1:{r['otlp']}/v1/traces",
                                             data=spans_body(10),
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=10).read()
                sent_spans += 10
                span_credit -= 10
            last = now
            time.sleep(0.01)
        measured = time.time() - measured_from
        cpu1 = [cpu_seconds(r["proc"].pid) for r in mesh.replicas]
        time.sleep(1.0 + 0.5)  # the last batches reach the peers
        mode = "shared by" if args.replicas > 1 else "one control plane,"
        print(f"{args.sidecars} sidecars x {args.clusters} clusters every {args.interval:g} s "
              f"({args.sidecars / args.interval:.0f} reports/s), {args.spans_per_second} spans/s, "
              f"{mode} {len(mesh.replicas)} replica(s); measured {measured:.0f} s; "
              f"{sent_reports} reports, {sent_spans} spans sent")
        print("replica  cpu_s  cpu_%  rss_MiB  series  spans  batches_sent/failed/skipped")
        ok = True
        for r, before, after in zip(mesh.replicas, cpu0, cpu1):
            m = mesh.metrics(r)
            print(f"{r['name']:7} {after - before:6.2f} {100 * (after - before) / measured:6.1f} "
                  f"{rss_mib(r['proc'].pid):8.1f} {m['series']:7} {m['spans']:6} "
                  f"{m['sent']}/{m['failed']}/{m['skipped']}")
            ok = ok and m["series"] == args.sidecars * args.clusters and m["spans"] == sent_spans
        for c in channels:
            c.close()
        if args.check and not ok:
            print("FAIL: a replica does not hold every series and span")
            return 1
        return 0
    finally:
        mesh.close()


if __name__ == "__main__":
    sys.exit(main())
