#!/usr/bin/env python3
"""What configured clusters cost a sidecar's workers: start-up, reload and memory at N clusters.

Usage: cluster_scale.py --sidecar BIN [--clusters 1000,5000] [--workers 1,2] [--endpoints 5]
                        [--used 0] [--json FILE] [--smoke]

Per cluster count and worker count, one sidecar with a static configuration: N clusters of
--endpoints endpoints each (127.0.0.1 on ports nothing listens on; never connected to unless
used), and one outbound HTTP listener whose route table has one virtual host per cluster
(`svc-I.bench`), as a whole-mesh outbound configuration has. Reported:
  - ready: exec to /ready answering 200, and the CPU time the process and its worker threads
    (worker-N) spent until then (each thread's schedstat: not inflated by a busy machine, as the
    wall time is). The workers apply the first snapshot one after the other before the sidecar is
    ready;
  - RssAnon from /proc/PID/status one second after ready (--used N: after one request to each of
    the first N clusters, which fails to connect: what clusters carrying traffic cost);
  - reload: SIGHUP with every cluster's endpoints changed (a new port each), until every worker
    counted the new snapshot (meshlet_worker_config_updates_total), and the CPU time the worker
    threads spent meanwhile (the main thread's parsing and translation are not theirs).
  - the clusters the workers built (meshlet_worker_clusters_built, summed): the used ones only.
Every wait is bounded (60 s). The configuration lives in a temporary directory removed at the end.
--smoke: 50 clusters, 3 used, failing unless exactly those 3 were built (not timed).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_yaml(clusters, endpoints, listener_port, base_port):
    out = ["static_resources:", "  listeners:",
           "  - name: outbound", f"    address: 127.0.0.1:{listener_port}",
           "    direction: OUTBOUND", "    protocol: PROTOCOL_HTTP",
           "    route_config_name: outbound", "  clusters:"]
    for i in range(clusters):
        out += [f"  - name: outbound|8080||svc-{i}.bench", "    connect_timeout: 250ms",
                "    load_assignment:", "      endpoints:"]
        for e in range(endpoints):
            out.append(f"      - address: 127.0.0.{1 + e}:{base_port + i % 1000}")
    out += ["  routes:", "  - name: outbound", "    virtual_hosts:"]
    for i in range(clusters):
        out += [f"    - name: svc-{i}", f"      domains: [\"svc-{i}.bench\"]", "      routes:",
                "      - match: {prefix: /}", f"        route: {{cluster: \"outbound|8080||svc-{i}.bench\"}}"]
    return "\n".join(out) + "\n"


def get(admin_port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^RssAnon:\s+(\d+)", f.read(), re.M).group(1))


def cpu_ms_by_thread(pid):
    """{"workers": CPU ms of the worker-N threads, "process": of the whole process}, from each
    thread's schedstat (time on a CPU, in ns): what the work cost whatever else the machine ran."""
    workers = total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                ns = int(f.read().split()[0])
        except OSError:
            continue
        total += ns
        if name.startswith("worker-"):
            workers += ns
    return {"workers": workers / 1e6, "process": total / 1e6}


def stat_sum(admin_port, name):
    _, body = get(admin_port, "/stats?filter=" + name)
    return sum(int(line.rpartition(": ")[2]) for line in body.splitlines()
               if line.split("{")[0].split(":")[0] == name)


def config_updates(admin_port):
    return stat_sum(admin_port, "meshlet_worker_config_updates_total")


def wait(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"timed out waiting for {what}")


def run_case(binary, clusters, workers, endpoints, used, workdir):
    path = os.path.join(workdir, "sidecar.yaml")
    listener_port = free_port()
    with open(path, "w") as f:
        f.write(config_yaml(clusters, endpoints, listener_port, 20000))
    admin_port = free_port()
    log = open(os.path.join(workdir, "sidecar.log"), "w")
    start = time.monotonic()
    proc = subprocess.Popen([binary, "--config", path, f"--admin-address=127.0.0.1:{admin_port}",
                             f"--concurrency={workers}"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {proc.returncode}")
            return get(admin_port, "/ready")[0] == 200
        wait(ready, "/ready")
        ready_s = time.monotonic() - start
        ready_cpu = cpu_ms_by_thread(proc.pid)
        for i in range(used):
            req = urllib.request.Request(f"http://127.0.0.1:{listener_port}/",
                                         headers={"Host": f"svc-{i}.bench"})
            try:
                urllib.request.urlopen(req, timeout=10).read()
            except urllib.error.HTTPError:
                pass  # 503: nothing listens there
        time.sleep(1)
        rss = rss_anon_kib(proc.pid)
        built = stat_sum(admin_port, "meshlet_worker_clusters_built")
        with open(path, "w") as f:
            f.write(config_yaml(clusters, endpoints, listener_port, 30000))
        before = config_updates(admin_port)
        cpu_before = cpu_ms_by_thread(proc.pid)
        start = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        wait(lambda: config_updates(admin_port) >= before + workers, "the reload")
        reload_s = time.monotonic() - start
        cpu_after = cpu_ms_by_thread(proc.pid)
        return {"clusters": clusters, "workers": workers, "used": used,
                "ready_s": round(ready_s, 3), "ready_cpu_ms": round(ready_cpu["process"]),
                "ready_workers_cpu_ms": round(ready_cpu["workers"]), "rss_anon_kib": rss,
                "clusters_built": built,
                "reload_s": round(reload_s, 3),
                "reload_workers_cpu_ms": round(cpu_after["workers"] - cpu_before["workers"])}
    finally:
        proc.kill()
        proc.wait()
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sidecar", required=True)
    parser.add_argument("--clusters", default="1000,5000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--used", type=int, default=0)
    parser.add_argument("--json")
    parser.add_argument("--smoke", action="store_true",
                        help="50 clusters, 3 used: fail unless exactly the used clusters were "
                             "built, once each, and every figure is present")
    args = parser.parse_args()
    if args.smoke:
        args.clusters, args.used = "50", 3
    results = []
    workdir = tempfile.mkdtemp(prefix="cluster-scale-")
    try:
        for clusters in [int(c) for c in args.clusters.split(",")]:
            for workers in [int(w) for w in args.workers.split(",")]:
                r = run_case(args.sidecar, clusters, workers, args.endpoints, args.used, workdir)
                print(f"{clusters} clusters, {workers} workers, {args.used} used: ready "
                      f"{r['ready_s']:.3f} s (CPU {r['ready_cpu_ms']} ms, workers "
                      f"{r['ready_workers_cpu_ms']} ms), RssAnon "
                      f"{r['rss_anon_kib'] / 1024:.1f} MiB, reload {r['reload_s']:.3f} s "
                      f"(workers' CPU {r['reload_workers_cpu_ms']} ms), clusters built "
                      f"{r['clusters_built']}", flush=True)
                results.append(r)
                # Each used cluster got one request, on one connection: built by one worker.
                if args.smoke and (r["clusters_built"] != args.used or r["rss_anon_kib"] <= 0):
                    print(f"FAIL: {r}", file=sys.stderr)
                    return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
